//! Starting the primary's replication endpoint (`--repl-listen`): wires
//! the primary's WAL, snapshot scheduler and fence into
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

/// Binds the replication port (printing `listening repl ADDR`) and serves
/// replicas on background threads.
pub fn start(addr: &str, opened: &OpenedPrimary, security: PrimarySecurity) -> Result<PrimaryServer, StartupError> {
    let listener = TcpListener::bind(addr).map_err(|e| StartupError::Other(format!("cannot bind repl address {addr}: {e}")))?;
    let bound = listener.local_addr().map_err(|e| StartupError::Other(format!("cannot read bound repl address: {e}")))?;
    let cluster_id = ClusterId::parse(&opened.identity.cluster_id).map_err(|e| StartupError::Other(format!("identity.json: {e}")))?;
    let disk: Arc<dyn Disk> = OsDisk::shared();
    let wal = PrimaryWal::new(cluster_id.clone(), disk.clone(), opened.engine.segments().clone(), opened.engine.durable().clone());
    let ctx = PrimaryContext {
        cluster_id,
        wal,
        disk,
        // The scheduler serves the newest kept snapshot, creating one when none
        // exists, serialised with its own snapshotting and retention.
        snapshots: opened.snapshots.clone(),
        fence: opened.fence.clone(),
        registry: Arc::new(ReplicaRegistry::default()),
        security,
    };
    tracing::info!(token = ctx.security.token.is_some(), tls = ctx.security.tls.is_some(), "replication port security");
    let server = PrimaryServer::serve(listener, ctx, PrimaryServerConfig::default())
        .map_err(|e| StartupError::Other(format!("cannot start the replication server: {e}")))?;
    announce("repl", bound);
    Ok(server)
}
