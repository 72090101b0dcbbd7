//! AeroDB write-ahead log.
//!
//! This crate owns the WAL's bytes: the record and segment formats, the
//! primary's group-commit writer (the only place CommitIds are assigned),
//! raw appending for replicas, reading whole records back, the one chain
//! validation routine, and crash recovery that truncates only a torn tail.
//! It knows nothing about documents' meaning, MVCC visibility or
//! replication roles, and it must never skip, repair or re-encode a record:
//! invalid bytes are either a torn tail (dropped and reported) or corruption
//! (an error naming the LSN, the check and the rule), and zeros after the
//! last record of the last segment are the primary's preallocated space
//! (`log::Preallocation`), never WAL. It also owns the
//! durable high-water mark (CORE-5): its file format, the writer that keeps
//! it current off the commit path, the group committer's bound on how far
//! durable WAL may run ahead of it, and the pure judgement of what recovery
//! may drop given the mark; and re-verification of sealed segments (scrub,
//! CORE-6) and the repair of a WAL tail from another node's copy.
//!
//! A record round trip: encoding chains the fingerprint, and decoding
//! verifies the crc32c before anything else is read (CORE-2).
//!
//! ```
//! use aerodb_wal::record::{decode_record, encode_record};
//! use aerodb_wal::{Op, StateDigest, GENESIS_FINGERPRINT};
//! use bytes::Bytes;
//!
//! let ops = [Op::Put { collection: Bytes::from_static(b"users"), key: Bytes::from_static(b"alice"), doc: Bytes::from_static(b"{}") }];
//! let (bytes, fingerprint) = encode_record(1, StateDigest(7), GENESIS_FINGERPRINT, &ops).unwrap();
//! let (record, len) = decode_record(&Bytes::from(bytes.clone())).unwrap();
//! assert_eq!((record.commit_id, record.fingerprint, len), (1, fingerprint, bytes.len()));
//!
//! let mut damaged = bytes;
//! damaged[30] ^= 1;
//! assert_eq!(decode_record(&Bytes::from(damaged)).unwrap_err().code(), "CHECKSUM_MISMATCH");
//! ```
//!
//! A whole WAL (group commit, then recovery): `examples/append_and_recover.rs`.

pub mod checksummed;
pub mod disk;
pub mod durable;
pub mod group;
pub mod hash;
pub mod history;
pub mod le;
pub mod log;
pub mod mark;
pub mod mark_check;
pub mod mark_writer;
pub mod plant;
pub mod record;
pub mod recovery;
pub mod repair;
pub mod seal_check;
pub mod segment;
pub mod validate;
pub mod writer;

/// Byte position in the logical WAL stream (continuous across segments).
pub type Lsn = u64;
/// Commit identifier assigned by the primary; 0 means "nothing committed".
pub type CommitId = u64;

pub use hash::{Fingerprint, StateDigest, GENESIS_FINGERPRINT};
pub use record::{Op, Record, RecordBody, RecordPosition};
pub use validate::{ChainTip, ChainValidator, ChainViolation};

/// Aborts the process at a named crash point when armed through the
/// `fail` crate (`FAILPOINTS=name=return`). Compiled to nothing unless the
/// `failpoints` feature of `fail` is enabled (test builds of `aerodb`).
#[macro_export]
macro_rules! crash_point {
    ($name:expr) => {
        $crate::__fail::fail_point!($name, |_| {
            eprintln!("crash point {} reached: aborting", $name);
            std::process::abort()
        })
    };
}

#[doc(hidden)]
pub use fail as __fail;
