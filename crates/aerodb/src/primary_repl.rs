//! Starting the primary's replication endpoint (`--repl-listen`): wires
//! the primary's WAL, snapshot scheduler, fence and replica registry into
//! `aerodb_repl_net::PrimaryServer`.

use std::net::TcpListener;
use std::sync::Arc;

use aerodb_repl_core::ids::ClusterId;
use aerodb_repl_core::primary_io::PrimaryWal;
use aerodb_repl_net::primary::PrimarySecurity;
use aerodb_repl_net::{PrimaryContext, PrimaryServer, PrimaryServerConfig, ReplicaRegistry};
use aerodb_wal::disk::{Disk, OsDisk};

use crate::error::StartupError;
use crate::node::{announce, OpenedPrimary};

/// Serves replicas on the (early-bound) replication listener on
/// background threads, printing `listening repl ADDR`.
/// `client_addr` (the bound client API address) goes into every ACCEPT so
/// replicas can tell clients where writes go; `security` is the port's
/// token authentication and TLS.
pub fn start(
    listener: TcpListener,
    opened: &OpenedPrimary,
    client_addr: Option<std::net::SocketAddr>,
    security: PrimarySecurity,
) -> Result<PrimaryServer, StartupError> {
    listener.set_nonblocking(false).map_err(|e| StartupError::Other(format!("cannot configure the repl listener: {e}")))?;
    let bound = listener.local_addr().map_err(|e| StartupError::Other(format!("cannot read bound repl address: {e}")))?;
    let cluster_id = ClusterId::parse(&opened.identity.cluster_id).map_err(|e| StartupError::Other(format!("identity.json: {e}")))?;
    let disk: Arc<dyn Disk> = OsDisk::shared();
    let wal = PrimaryWal::new(cluster_id.clone(), disk.clone(), opened.engine.segments().clone(), opened.engine.durable().clone())
        .with_wal_keep_bytes(opened.options.wal_keep_bytes);
    let ctx = PrimaryContext {
        cluster_id,
        wal,
        disk,
        // The scheduler serves the newest kept snapshot, creating one when none
        // exists, serialised with its own snapshotting and retention.
        snapshots: opened.snapshots.clone(),
        fence: opened.fence.clone(),
        registry: opened.replicas.clone().unwrap_or_else(|| Arc::new(ReplicaRegistry::default())),
        security,
    };
    tracing::info!(token = ctx.security.token.is_some(), tls = ctx.security.tls.is_some(), "replication port security");
    let mut config = PrimaryServerConfig::default();
    config.session.client_addr = client_addr;
    let server = PrimaryServer::serve(listener, ctx, config).map_err(|e| StartupError::Other(format!("cannot start the replication server: {e}")))?;
    announce("repl", bound);
    Ok(server)
}
