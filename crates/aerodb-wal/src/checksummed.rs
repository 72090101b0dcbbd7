//! Small checksummed JSON files (identity, replica metadata): every file
//! that is read back at startup is versioned and checksummed.
//!
//! On disk: `{"crc32c":N,"body":{...}}` where N is the crc32c of the exact
//! serialized bytes of `body`. Bodies are structs, so serialization order is
//! fixed and the checksum is reproducible.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::disk::{write_atomic, Disk};

const MAX_META_FILE: u64 = 1024 * 1024;

/// Why a checksummed file could not be read.
#[derive(Debug, Error)]
pub enum ChecksummedFileError {
    /// The file could not be read at all.
    #[error("cannot read {path}: {source}")]
    Io {
        /// File path.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The envelope or body is not the expected JSON.
    #[error("{path} is not valid: {detail}")]
    Malformed {
        /// File path.
        path: String,
        /// What did not parse.
        detail: String,
    },
    /// The stored checksum does not match the body.
    #[error("{path}: crc32c mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum {
        /// File path.
        path: String,
        /// Stored value.
        stored: u32,
        /// Computed value.
        computed: u32,
    },
}

impl ChecksummedFileError {
    /// Stable code for errors and explanations.
    pub fn code(&self) -> &'static str {
        match self {
            ChecksummedFileError::Io { .. } => "META_UNREADABLE",
            ChecksummedFileError::Malformed { .. } => "META_MALFORMED",
            ChecksummedFileError::Checksum { .. } => "META_CHECKSUM_MISMATCH",
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    crc32c: u32,
    body: Box<serde_json::value::RawValue>,
}

/// Serializes `body`, checksums it and writes it atomically.
pub fn write_checksummed<T: Serialize>(disk: &dyn Disk, path: &Path, body: &T) -> std::io::Result<()> {
    let raw = serde_json::to_string(body).map_err(std::io::Error::other)?;
    let crc = crc32c::crc32c(raw.as_bytes());
    let raw = serde_json::value::RawValue::from_string(raw).map_err(std::io::Error::other)?;
    let mut bytes = serde_json::to_vec(&Envelope { crc32c: crc, body: raw }).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    write_atomic(disk, path, &bytes)
}

/// Reads and verifies a file written by [`write_checksummed`].
pub fn read_checksummed<T: DeserializeOwned>(disk: &dyn Disk, path: &Path) -> Result<T, ChecksummedFileError> {
    let shown = path.display().to_string();
    let bytes = disk.read_bounded(path, MAX_META_FILE).map_err(|source| ChecksummedFileError::Io { path: shown.clone(), source })?;
    let env: Envelope = serde_json::from_slice(&bytes).map_err(|e| ChecksummedFileError::Malformed { path: shown.clone(), detail: e.to_string() })?;
    let computed = crc32c::crc32c(env.body.get().as_bytes());
    if computed != env.crc32c {
        return Err(ChecksummedFileError::Checksum { path: shown, stored: env.crc32c, computed });
    }
    serde_json::from_str(env.body.get()).map_err(|e| ChecksummedFileError::Malformed { path: shown, detail: e.to_string() })
}
