//! The durable high-water mark (CORE-5): a small, checksummed, versioned
//! file stating how far the WAL is known to be durable, so recovery can
//! tell a torn tail (never acknowledged) from lost acknowledged history.
//!
//! ```text
//! off size field
//!   0    8 magic            b"AERODBHM"
//!   8    4 format_version   u32 LE = 1
//!  12    4 flags            u32 LE; bit 0 = clean_shutdown; every other bit 0
//!  16    8 end_lsn          u64 LE, end of the last record known durable
//!  24    8 commit_id        u64 LE, CommitId of that record (0 = none)
//!  32   16 fingerprint      u128 LE, fingerprint of that record (genesis constant at 0)
//!  48    8 window_bytes     u64 LE, the crash window in force: the most WAL bytes the
//!                           writer may append beyond end_lsn before the next mark
//!  56    4 reserved         zero
//!  60    4 crc32c           over bytes [0, 60)
//! ```
//!
//! The file is `wal/durable.mark`, replaced atomically and durably
//! ([`write_atomic`]: temporary file, fsync, rename, directory fsync), so a
//! crash leaves the previous mark or the new one. A mark only ever names a
//! record whose bytes were fsynced before the mark was written.

use std::path::{Path, PathBuf};

use serde::Serialize;
use thiserror::Error;

use crate::disk::{write_atomic, Disk};
use crate::hash::Fingerprint;
use crate::le::{u128_at, u32_at, u64_at};
use crate::validate::ChainTip;
use crate::{CommitId, Lsn};

/// File name of the mark inside the WAL directory.
pub const MARK_FILE: &str = "durable.mark";
/// Encoded length of a mark.
pub const MARK_LEN: usize = 64;
const MARK_MAGIC: &[u8; 8] = b"AERODBHM";
const MARK_VERSION: u32 = 1;
const FLAG_CLEAN_SHUTDOWN: u32 = 1;

/// The durable high-water mark: `(end LSN, CommitId, fingerprint)` of the
/// last record known fsynced, whether it was written at a clean shutdown,
/// and the crash window its writer enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct DurableMark {
    /// End LSN of the record the mark names.
    pub end_lsn: Lsn,
    /// Its CommitId.
    pub commit_id: CommitId,
    /// Its fingerprint.
    pub fingerprint: Fingerprint,
    /// Written at a clean shutdown at the exact end of the WAL: recovery
    /// may then drop no byte at all.
    pub clean_shutdown: bool,
    /// The most bytes the writer of this mark could append beyond
    /// `end_lsn` before writing the next mark (CORE-5 crash window).
    pub window_bytes: u64,
}

impl DurableMark {
    /// A mark naming `tip`.
    pub fn at(tip: ChainTip, clean_shutdown: bool, window_bytes: u64) -> Self {
        DurableMark { end_lsn: tip.end_lsn, commit_id: tip.commit_id, fingerprint: tip.fingerprint, clean_shutdown, window_bytes }
    }

    /// The history tip the mark names.
    pub fn tip(&self) -> ChainTip {
        ChainTip { end_lsn: self.end_lsn, commit_id: self.commit_id, fingerprint: self.fingerprint }
    }

    /// The 64 bytes on disk.
    pub fn encode(&self) -> [u8; MARK_LEN] {
        let mut b = [0u8; MARK_LEN];
        b[0..8].copy_from_slice(MARK_MAGIC);
        b[8..12].copy_from_slice(&MARK_VERSION.to_le_bytes());
        let flags = if self.clean_shutdown { FLAG_CLEAN_SHUTDOWN } else { 0 };
        b[12..16].copy_from_slice(&flags.to_le_bytes());
        b[16..24].copy_from_slice(&self.end_lsn.to_le_bytes());
        b[24..32].copy_from_slice(&self.commit_id.to_le_bytes());
        b[32..48].copy_from_slice(&self.fingerprint.0.to_le_bytes());
        b[48..56].copy_from_slice(&self.window_bytes.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and verifies a mark. Checks, in order: length, magic,
    /// crc32c, format version, flags and reserved bytes.
    pub fn decode(b: &[u8]) -> Result<DurableMark, MarkFormatError> {
        if b.len() != MARK_LEN {
            return Err(MarkFormatError::Length(b.len()));
        }
        if &b[0..8] != MARK_MAGIC {
            return Err(MarkFormatError::Magic);
        }
        let stored = u32_at(b, 60);
        let computed = crc32c::crc32c(&b[0..60]);
        if stored != computed {
            return Err(MarkFormatError::Checksum { stored, computed });
        }
        let version = u32_at(b, 8);
        if version != MARK_VERSION {
            return Err(MarkFormatError::Version(version));
        }
        let flags = u32_at(b, 12);
        if flags & !FLAG_CLEAN_SHUTDOWN != 0 || b[56..60] != [0, 0, 0, 0] {
            return Err(MarkFormatError::Reserved);
        }
        Ok(DurableMark {
            end_lsn: u64_at(b, 16),
            commit_id: u64_at(b, 24),
            fingerprint: Fingerprint(u128_at(b, 32)),
            clean_shutdown: flags & FLAG_CLEAN_SHUTDOWN != 0,
            window_bytes: u64_at(b, 48),
        })
    }
}

/// Why the bytes of a mark file are not a valid mark.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum MarkFormatError {
    /// The file is not exactly [`MARK_LEN`] bytes.
    #[error("mark file is {0} bytes, expected {MARK_LEN}")]
    Length(usize),
    /// Wrong magic bytes.
    #[error("mark magic mismatch")]
    Magic,
    /// crc32c mismatch.
    #[error("mark crc32c mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum {
        /// Stored value.
        stored: u32,
        /// Computed value.
        computed: u32,
    },
    /// A format version this build cannot read.
    #[error("unsupported mark format version {0}")]
    Version(u32),
    /// Unknown flag bits or non-zero reserved bytes.
    #[error("mark has unknown flags or non-zero reserved bytes")]
    Reserved,
}

/// Why the mark could not be read. Every variant refuses startup (CORE-5):
/// without a trustworthy mark, recovery cannot bound what it may drop.
#[derive(Debug, Error)]
pub enum MarkReadError {
    /// The file exists but cannot be read.
    #[error("cannot read the durable mark {path}: {source} (CORE-5)")]
    Io {
        /// File path.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The file is not a valid mark.
    #[error("the durable mark {path} is invalid: {error} (CORE-5)")]
    Invalid {
        /// File path.
        path: String,
        /// What is wrong.
        error: MarkFormatError,
    },
}

impl MarkReadError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            MarkReadError::Io { .. } => "MARK_UNREADABLE",
            MarkReadError::Invalid { error: MarkFormatError::Version(_), .. } => "MARK_VERSION",
            MarkReadError::Invalid { .. } => "MARK_CORRUPT",
        }
    }
    /// Rule enforced.
    pub fn rule_id(&self) -> &'static str {
        "CORE-5"
    }
}

/// The path of the mark in a WAL directory.
pub fn mark_path(wal_dir: &Path) -> PathBuf {
    wal_dir.join(MARK_FILE)
}

/// Reads the mark of `wal_dir`; `Ok(None)` when there is none.
pub fn read_mark(disk: &dyn Disk, wal_dir: &Path) -> Result<Option<DurableMark>, MarkReadError> {
    let path = mark_path(wal_dir);
    if !disk.exists(&path) {
        return Ok(None);
    }
    let shown = path.display().to_string();
    let bytes = disk.read_bounded(&path, MARK_LEN as u64).map_err(|source| MarkReadError::Io { path: shown.clone(), source })?;
    DurableMark::decode(&bytes).map(Some).map_err(|error| MarkReadError::Invalid { path: shown, error })
}

/// Writes the mark of `wal_dir` atomically and durably (file and directory
/// fsynced before this returns).
pub fn write_mark(disk: &dyn Disk, wal_dir: &Path, mark: &DurableMark) -> std::io::Result<()> {
    crate::crash_point!("mark.before_write");
    write_atomic(disk, &mark_path(wal_dir), &mark.encode())?;
    crate::crash_point!("mark.after_write");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark() -> DurableMark {
        DurableMark {
            end_lsn: 812_345,
            commit_id: 4242,
            fingerprint: Fingerprint(0x0123_4567_89ab_cdef_0011_2233_4455_6677),
            clean_shutdown: true,
            window_bytes: 8 << 20,
        }
    }

    /// CORE-5: a mark round-trips, and every single flipped bit, a truncation
    /// or an extension is detected.
    #[test]
    fn core_5_mark_round_trips_and_every_flip_is_detected() {
        let m = mark();
        let b = m.encode();
        assert_eq!(DurableMark::decode(&b), Ok(m));
        let unclean = DurableMark { clean_shutdown: false, ..m };
        assert_eq!(DurableMark::decode(&unclean.encode()), Ok(unclean));
        for i in 0..MARK_LEN {
            for bit in 0..8 {
                let mut bad = b;
                bad[i] ^= 1 << bit;
                assert!(DurableMark::decode(&bad).is_err(), "flip of bit {bit} at {i}");
            }
        }
        assert_eq!(DurableMark::decode(&b[..63]), Err(MarkFormatError::Length(63)));
        let mut longer = b.to_vec();
        longer.push(0);
        assert_eq!(DurableMark::decode(&longer), Err(MarkFormatError::Length(65)));
    }

    /// CORE-5: the documented byte layout (docs/formats.md) is what is written.
    #[test]
    fn core_5_mark_layout_is_the_documented_one() {
        let b = mark().encode();
        assert_eq!(&b[0..8], b"AERODBHM");
        assert_eq!(u32_at(&b, 8), 1);
        assert_eq!(u32_at(&b, 12), 1);
        assert_eq!(u64_at(&b, 16), 812_345);
        assert_eq!(u64_at(&b, 24), 4242);
        assert_eq!(u128_at(&b, 32), 0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        assert_eq!(u64_at(&b, 48), 8 << 20);
        assert_eq!(&b[56..60], &[0, 0, 0, 0]);
        assert_eq!(u32_at(&b, 60), crc32c::crc32c(&b[..60]));
    }
}
