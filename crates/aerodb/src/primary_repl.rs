//! Starting the primary's replication endpoint (`--repl-listen`).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use aerodb_repl_net::server::{self, PrimaryContext, ReplicaRegistry};
use aerodb_snapshot::{create_snapshot, list_snapshots, validate_snapshot, SnapshotInfo};
use aerodb_wal::disk::{Disk, OsDisk};

use crate::datadir::DataDir;
use crate::error::StartupError;
use crate::node::{announce, OpenedPrimary, PrimaryOptions};
use crate::snapshot_glue::BootstrapSnapshots;

/// Binds the replication port (printing `listening repl ADDR`) and serves
/// replicas on background threads. Returns the replica registry.
pub fn start(addr: &str, opened: &OpenedPrimary, opts: &PrimaryOptions, stop: Arc<AtomicBool>) -> Result<Arc<ReplicaRegistry>, StartupError> {
    let listener = server::bind(addr).map_err(|e| StartupError::Other(format!("cannot bind repl address {addr}: {e}")))?;
    let bound = listener.local_addr().map_err(|e| StartupError::Other(format!("cannot read bound repl address: {e}")))?;
    announce("repl", bound);
    let disk: Arc<dyn Disk> = OsDisk::shared();
    let snapshots_dir = DataDir::new(&opts.data_dir).snapshots();
    let store = opened.engine.store().clone();
    let cluster = opened.identity.cluster_id.clone();
    let provider = BootstrapSnapshots::new(move || {
        // Newest snapshot whose files all check, else a fresh one at the current applied state.
        for snap in list_snapshots(&OsDisk, &snapshots_dir)? {
            if let Ok(manifest) = validate_snapshot(&OsDisk, &snap.path, Some(&cluster)) {
                return Ok(SnapshotInfo::from_manifest(&snap.path, &manifest, false));
            }
        }
        create_snapshot(&OsDisk, &snapshots_dir, &store, &cluster)
    });
    let registry = Arc::new(ReplicaRegistry::default());
    let ctx = PrimaryContext {
        cluster_id: opened.identity.cluster_id.clone(),
        disk,
        segments: opened.engine.segments().clone(),
        durable: opened.engine.durable().clone(),
        snapshots: Arc::new(provider),
        replicas: registry.clone(),
        stop,
    };
    std::thread::Builder::new().name("repl-accept".into()).spawn(move || server::serve(listener, ctx)).map_err(|e| StartupError::Other(format!("cannot start the replication server: {e}")))?;
    Ok(registry)
}
