//! Binds the snapshot crate to replication: how a replica validates and
//! loads a transferred snapshot, and which snapshot a primary serves.

use std::path::Path;
use std::sync::Arc;

use aerodb_mvcc::{AppliedState, Store};
use aerodb_repl_core::replica::{SnapshotFormat, SnapshotRejected};
use aerodb_repl_net::server::{SnapshotProvider, SnapshotToServe};
use aerodb_snapshot::{load_snapshot, read_manifest, SnapshotError, SnapshotInfo};
use aerodb_wal::disk::{Disk, OsDisk};

/// Largest manifest file served.
const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

fn rejected(e: &SnapshotError) -> SnapshotRejected {
    SnapshotRejected { code: e.code().to_string(), rule_id: e.rule_id().to_string(), detail: e.to_string() }
}

/// The on-disk snapshot format of `aerodb-snapshot`.
pub struct SnapshotFiles;

impl SnapshotFormat for SnapshotFiles {
    fn manifest_files(&self, dir: &Path) -> Result<Vec<(String, u64)>, SnapshotRejected> {
        let manifest = read_manifest(&OsDisk, dir).map_err(|e| rejected(&e))?;
        Ok(manifest.files.into_iter().map(|f| (f.name, f.size)).collect())
    }

    fn load(&self, dir: &Path, expected_cluster: &str) -> Result<(Store, AppliedState), SnapshotRejected> {
        let (store, manifest) = load_snapshot(&OsDisk, dir, Some(expected_cluster)).map_err(|e| rejected(&e))?;
        Ok((store, manifest.cut()))
    }
}

/// Serves the snapshot chosen by a request function (the primary's
/// scheduler: newest snapshot, created on demand when none exists).
pub struct BootstrapSnapshots {
    request: Box<dyn Fn() -> Result<SnapshotInfo, SnapshotError> + Send + Sync>,
    disk: Arc<dyn Disk>,
}

impl BootstrapSnapshots {
    /// Wraps a request function.
    pub fn new(request: impl Fn() -> Result<SnapshotInfo, SnapshotError> + Send + Sync + 'static) -> Self {
        BootstrapSnapshots { request: Box::new(request), disk: OsDisk::shared() }
    }
}

impl SnapshotProvider for BootstrapSnapshots {
    fn snapshot_for_bootstrap(&self) -> Result<SnapshotToServe, String> {
        let info = (self.request)().map_err(|e| e.to_string())?;
        let manifest = read_manifest(&*self.disk, &info.path).map_err(|e| e.to_string())?;
        let raw = self.disk.read_bounded(&info.path.join("manifest.json"), MAX_MANIFEST_BYTES).map_err(|e| e.to_string())?;
        let files = manifest.files.iter().map(|f| info.path.join(&f.name)).collect();
        Ok(SnapshotToServe { manifest: raw, files })
    }
}
