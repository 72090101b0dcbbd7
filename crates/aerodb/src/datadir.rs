//! The data directory: its layout, its identity file (role and cluster id,
//! fixed at initialisation, REPL-1) and the exclusive process lock.

use std::fs::File;
use std::path::{Path, PathBuf};

use aerodb_wal::checksummed::{read_checksummed, write_checksummed};
use aerodb_wal::disk::Disk;
use serde::{Deserialize, Serialize};

use crate::error::StartupError;

/// The role a data directory was initialised with. Immutable (REPL-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Accepts writes and assigns CommitIds.
    Primary,
    /// Follows a primary; never accepts writes.
    Replica,
    /// Replication disabled.
    Standalone,
}

impl Role {
    /// The name used on the CLI and in files.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
            Role::Standalone => "standalone",
        }
    }
}

/// Contents of `identity.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Format version of this file.
    pub format_version: u32,
    /// The role fixed at initialisation.
    pub role: Role,
    /// 128-bit cluster id as 32 hex digits (a replica's is its primary's).
    pub cluster_id: String,
    /// Set on primary and standalone directories created (or upgraded) by
    /// a version that keeps a durable high-water mark (CORE-5): a missing
    /// mark then means it was removed, and startup refuses.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub durable_mark: bool,
}

const IDENTITY_FORMAT: u32 = 1;

/// Paths inside a data directory.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Wraps a root path.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }
    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// `identity.json`.
    pub fn identity(&self) -> PathBuf {
        self.root.join("identity.json")
    }
    /// `wal/`.
    pub fn wal(&self) -> PathBuf {
        self.root.join("wal")
    }
    /// `snapshots/`.
    pub fn snapshots(&self) -> PathBuf {
        self.root.join("snapshots")
    }
    /// `LOCK`.
    fn lock_path(&self) -> PathBuf {
        self.root.join("LOCK")
    }

    /// Takes the exclusive lock that keeps a second process off this
    /// directory. Held until the returned file is dropped.
    pub fn lock(&self) -> Result<File, StartupError> {
        std::fs::create_dir_all(&self.root).map_err(|e| StartupError::io("create data dir", &self.root, e))?;
        let path = self.lock_path();
        let file = File::options().create(true).truncate(false).write(true).open(&path).map_err(|e| StartupError::io("open lock", &path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(_) => Err(StartupError::Locked { path: self.root.display().to_string() }),
        }
    }

    /// Reads the identity, if the directory was initialised.
    pub fn read_identity(&self, disk: &dyn Disk) -> Result<Option<Identity>, StartupError> {
        let path = self.identity();
        if !disk.exists(&path) {
            return Ok(None);
        }
        let id: Identity =
            read_checksummed(disk, &path).map_err(|e| StartupError::Metadata { code: e.code(), file: path.display().to_string(), detail: e.to_string() })?;
        if id.format_version != IDENTITY_FORMAT {
            return Err(StartupError::Metadata {
                code: "META_VERSION",
                file: path.display().to_string(),
                detail: format!("unsupported format_version {}", id.format_version),
            });
        }
        Ok(Some(id))
    }

    /// Records role and cluster id (once, at initialisation). Primary and
    /// standalone directories are marked as keeping a durable mark.
    pub fn write_identity(&self, disk: &dyn Disk, role: Role, cluster_id: &str) -> Result<Identity, StartupError> {
        let id = Identity { format_version: IDENTITY_FORMAT, role, cluster_id: cluster_id.to_string(), durable_mark: role != Role::Replica };
        self.rewrite_identity(disk, &id)?;
        Ok(id)
    }

    /// Replaces the identity file (atomically, durably).
    pub fn rewrite_identity(&self, disk: &dyn Disk, id: &Identity) -> Result<(), StartupError> {
        write_checksummed(disk, &self.identity(), id).map_err(|e| StartupError::io("write identity", &self.identity(), e))
    }

    /// Checks that an initialised directory has `role` (REPL-1).
    pub fn check_role(id: &Identity, role: Role) -> Result<(), StartupError> {
        if id.role != role {
            return Err(StartupError::RoleMismatch { recorded: id.role, requested: role });
        }
        Ok(())
    }
}

/// A fresh random 128-bit id (cluster or replica) as 32 hex digits.
pub fn random_hex_id() -> Result<String, StartupError> {
    let mut buf = [0u8; 16];
    getrandom::getrandom(&mut buf).map_err(|e| StartupError::Other(format!("no OS randomness for an id: {e}")))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}
