//! Everything that can go wrong creating, validating or loading a snapshot.
//!
//! Each variant has a stable [`SnapshotError::code`] and the rule it
//! enforces ([`SnapshotError::rule_id`]): validation failures are F-S4
//! (the snapshot is rejected, nothing changes), failures to produce one are
//! REPL-8 (no snapshot is published).

use aerodb_wal::StateDigest;
use thiserror::Error;

/// Why a snapshot could not be created, validated or loaded.
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// An IO operation failed.
    #[error("snapshot IO error during {op} on {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// File or directory.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A file the manifest lists (or the manifest itself) is absent.
    #[error("snapshot {snapshot}: file {file} is missing")]
    MissingFile {
        /// Snapshot directory name.
        snapshot: String,
        /// Missing file.
        file: String,
    },
    /// The directory holds a file the manifest does not list.
    #[error("snapshot {snapshot}: unexpected file {file} (not in the manifest)")]
    ExtraFile {
        /// Snapshot directory name.
        snapshot: String,
        /// Unexpected file.
        file: String,
    },
    /// The manifest does not parse, fails its checksum, or is inconsistent.
    #[error("snapshot {snapshot}: invalid manifest: {detail}")]
    Manifest {
        /// Snapshot directory name.
        snapshot: String,
        /// What is wrong.
        detail: String,
    },
    /// A format (magic or version) this build cannot read.
    #[error("snapshot {snapshot}: {file}: unsupported format: {detail}")]
    Format {
        /// Snapshot directory name.
        snapshot: String,
        /// File.
        file: String,
        /// What is wrong.
        detail: String,
    },
    /// The snapshot belongs to another cluster.
    #[error("snapshot {snapshot} belongs to cluster {found}, expected {expected}")]
    Cluster {
        /// Snapshot directory name.
        snapshot: String,
        /// Cluster this node belongs to.
        expected: String,
        /// Cluster the manifest names.
        found: String,
    },
    /// A file's size differs from the manifest (e.g. truncated).
    #[error("snapshot {snapshot}: {file} is {found} bytes, manifest says {expected}")]
    SizeMismatch {
        /// Snapshot directory name.
        snapshot: String,
        /// File.
        file: String,
        /// Size in the manifest.
        expected: u64,
        /// Size on disk.
        found: u64,
    },
    /// A file's crc32c differs from the manifest.
    #[error("snapshot {snapshot}: {file} crc32c mismatch (manifest {expected:#010x}, computed {computed:#010x})")]
    Checksum {
        /// Snapshot directory name.
        snapshot: String,
        /// File.
        file: String,
        /// crc32c in the manifest.
        expected: u32,
        /// crc32c of the bytes on disk.
        computed: u32,
    },
    /// Checksums match but the contents are not a valid cut (bad record,
    /// versions out of order or beyond the boundary, wrong count).
    #[error("snapshot {snapshot}: {file} at offset {offset}: {detail}")]
    Corrupt {
        /// Snapshot directory name.
        snapshot: String,
        /// File (or `manifest.json`).
        file: String,
        /// Byte offset in the file where the problem was found.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
    /// The loaded state's digest differs from the manifest's.
    #[error("snapshot {snapshot}: loaded state digest {computed} differs from the manifest's {expected}")]
    Digest {
        /// Snapshot directory name.
        snapshot: String,
        /// Digest in the manifest.
        expected: StateDigest,
        /// Digest of the loaded versions.
        computed: StateDigest,
    },
    /// A version cannot be encoded (name longer than a snapshot record allows).
    #[error("cannot encode snapshot version: {detail}")]
    Unencodable {
        /// What is wrong.
        detail: String,
    },
    /// Creation, or a scrub check, was stopped (shutdown, RES-3); nothing
    /// was published and nothing is known about the unread rest.
    #[error("snapshot creation or check cancelled")]
    Cancelled,
}

impl SnapshotError {
    pub(crate) fn io(op: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        SnapshotError::Io { op, path: path.display().to_string(), source }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            SnapshotError::Io { .. } => "SNAPSHOT_IO",
            SnapshotError::MissingFile { .. } => "SNAPSHOT_MISSING_FILE",
            SnapshotError::ExtraFile { .. } => "SNAPSHOT_EXTRA_FILE",
            SnapshotError::Manifest { .. } => "SNAPSHOT_MANIFEST",
            SnapshotError::Format { .. } => "SNAPSHOT_FORMAT",
            SnapshotError::Cluster { .. } => "SNAPSHOT_CLUSTER",
            SnapshotError::SizeMismatch { .. } => "SNAPSHOT_SIZE",
            SnapshotError::Checksum { .. } => "SNAPSHOT_CHECKSUM",
            SnapshotError::Corrupt { .. } => "SNAPSHOT_CORRUPT",
            SnapshotError::Digest { .. } => "SNAPSHOT_DIGEST",
            SnapshotError::Unencodable { .. } => "SNAPSHOT_UNENCODABLE",
            SnapshotError::Cancelled => "SNAPSHOT_CANCELLED",
        }
    }

    /// The rule this error enforces: `F-S4` for a snapshot that failed
    /// validation, `REPL-8` for failing to produce or read one.
    pub fn rule_id(&self) -> &'static str {
        if self.is_validation_failure() {
            "F-S4"
        } else {
            "REPL-8"
        }
    }

    /// Whether the snapshot's contents were found invalid (as opposed to an
    /// IO failure or a cancelled creation).
    pub fn is_validation_failure(&self) -> bool {
        !matches!(self, SnapshotError::Io { .. } | SnapshotError::Unencodable { .. } | SnapshotError::Cancelled)
    }
}
