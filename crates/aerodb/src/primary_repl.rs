//! Starting the primary's replication endpoint (`--repl-listen`).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use aerodb_repl_net::server::{self, PrimaryContext, ReplicaRegistry};
use aerodb_wal::disk::{Disk, OsDisk};

use crate::error::StartupError;
use crate::node::{announce, OpenedPrimary};
use crate::snapshot_glue::BootstrapSnapshots;

/// Binds the replication port (printing `listening repl ADDR`) and serves
/// replicas on background threads. Returns the replica registry.
pub fn start(addr: &str, opened: &OpenedPrimary, stop: Arc<AtomicBool>) -> Result<Arc<ReplicaRegistry>, StartupError> {
    let listener = server::bind(addr).map_err(|e| StartupError::Other(format!("cannot bind repl address {addr}: {e}")))?;
    let bound = listener.local_addr().map_err(|e| StartupError::Other(format!("cannot read bound repl address: {e}")))?;
    announce("repl", bound);
    let disk: Arc<dyn Disk> = OsDisk::shared();
    // The scheduler serves the newest kept snapshot, creating one when none
    // exists, serialised with its own snapshotting and retention.
    let scheduler = opened.snapshots.clone();
    let provider = BootstrapSnapshots::new(move || scheduler.request_snapshot(false));
    let registry = Arc::new(ReplicaRegistry::default());
    let ctx = PrimaryContext {
        cluster_id: opened.identity.cluster_id.clone(),
        disk,
        segments: opened.engine.segments().clone(),
        durable: opened.engine.durable().clone(),
        snapshots: Arc::new(provider),
        replicas: registry.clone(),
        stop,
        fence: opened.fence.clone(),
    };
    std::thread::Builder::new()
        .name("repl-accept".into())
        .spawn(move || server::serve(listener, ctx))
        .map_err(|e| StartupError::Other(format!("cannot start the replication server: {e}")))?;
    Ok(registry)
}
