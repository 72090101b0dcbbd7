//! Snapshot byte formats (documented byte by byte in docs/formats.md).
//!
//! A snapshot is a directory `snapshots/<C_snap as 20 digits>/` holding
//! data files `data-000000.bin`, `data-000001.bin`, ... and `manifest.json`.
//!
//! Data file:
//!
//! ```text
//! off size field
//!   0    8 magic              b"AERODBSN"
//!   8    4 format_version     u32 LE = 2 (1 still read), equal to the manifest's
//!  12    4 header_len         u32 LE = 32
//!  16    8 boundary_commit_id u64 LE, C_snap of the snapshot this file belongs to
//!  24    4 file_index         u32 LE, N of data-N.bin
//!  28    4 crc32c             over bytes [0, 28)
//!  32    … version records, in strictly increasing (collection, key, CommitId) order
//!
//! version record:
//!   0    4 record_len         u32 LE, whole record including this field
//!   4    8 commit_id          u64 LE (1..=C_snap)
//!  12    1 kind               1 = put (document), 2 = tombstone
//!  13    1 collection_len     1..=255
//!  14    1 key_len            1..=255
//!  15    1 reserved           0
//!  16    4 doc_len            u32 LE (0 for a tombstone)
//!  20    … collection | key | doc
//! ```
//!
//! The whole file (header included) is covered by the crc32c stored in the
//! manifest, and its size is stated there too. The manifest is a
//! checksummed envelope (`aerodb_wal::checksummed`) whose body is
//! [`Manifest`].
//!
//! Format version 2 (this build) adds the manifest's `history_horizon`: the
//! snapshot holds exactly the versions retained at that horizon (MVCC-4).
//! Version 1 snapshots (written before garbage collection existed) are
//! still read, as horizon 0 with full history; nothing else changed.

use aerodb_mvcc::store::{OwnedVersion, VersionRef};
use aerodb_mvcc::AppliedState;
use aerodb_wal::le::{u32_at as le_u32, u64_at as le_u64};
use aerodb_wal::record::MAX_RECORD_LEN;
use aerodb_wal::{CommitId, Fingerprint, Lsn, StateDigest};
use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize};

/// Format version of the manifest and of data files written by this build.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 2;
/// Every format version this build reads: 1 (no `history_horizon`, read as
/// horizon 0) and 2.
pub const READABLE_SNAPSHOT_FORMATS: &[u32] = &[1, 2];
/// Name of the manifest file inside a snapshot directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Largest manifest accepted (bounded read).
pub const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;
/// Magic bytes that start every data file.
pub const DATA_MAGIC: &[u8; 8] = b"AERODBSN";
/// Length of a data file header.
pub const DATA_HEADER_LEN: usize = 32;
/// Length of the fixed part of a version record.
pub const VERSION_HEADER_LEN: usize = 20;
/// Largest version record accepted: a full header, the longest names and
/// the largest document a WAL record can carry.
pub const MAX_VERSION_RECORD_LEN: usize = VERSION_HEADER_LEN + 255 + 255 + MAX_RECORD_LEN;
/// Default target size of one data file.
pub const DEFAULT_FILE_TARGET_BYTES: u64 = 64 * 1024 * 1024;
/// Prefix of a snapshot being written (removed at startup, F-S1).
pub const TMP_PREFIX: &str = ".tmp-";
/// Prefix of a snapshot being deleted (removed at startup).
pub const DEL_PREFIX: &str = ".del-";
/// Prefix of a snapshot the scrub found damaged and withdrew (CORE-6):
/// never used, never removed automatically, kept for forensics.
pub const DAMAGED_PREFIX: &str = ".damaged-";

const KIND_PUT: u8 = 1;
const KIND_TOMBSTONE: u8 = 2;

/// Directory name of the snapshot with boundary `commit_id`.
pub fn snapshot_dir_name(commit_id: CommitId) -> String {
    format!("{commit_id:020}")
}

/// Parses a snapshot directory name (exactly 20 ASCII digits).
pub fn parse_snapshot_dir_name(name: &str) -> Option<CommitId> {
    if name.len() != 20 || !name.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

/// Name of the temporary directory a snapshot is written into.
pub fn tmp_dir_name(commit_id: CommitId) -> String {
    format!("{TMP_PREFIX}{commit_id:020}")
}

/// Name of data file number `index`.
pub fn data_file_name(index: u32) -> String {
    format!("data-{index:06}.bin")
}

/// One file listed in the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    /// File name inside the snapshot directory.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// crc32c of the whole file.
    pub crc32c: u32,
}

/// Body of `manifest.json`: the cut and every data file. Serialized with a
/// fixed field order, so the bytes are a pure function of the cut.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`SNAPSHOT_FORMAT_VERSION`].
    pub format_version: u32,
    /// Cluster id of the primary that produced it (32 hex digits).
    pub cluster_id: String,
    /// C_snap: every version with CommitId <= it, nothing later.
    pub boundary_commit_id: CommitId,
    /// L_snap: end LSN of the record with CommitId C_snap.
    pub boundary_lsn: Lsn,
    /// F_snap: fingerprint of that record.
    #[serde(deserialize_with = "de_fingerprint")]
    pub boundary_fingerprint: Fingerprint,
    /// State digest over every version in the snapshot.
    #[serde(deserialize_with = "de_digest")]
    pub state_digest: StateDigest,
    /// History horizon at C_snap (format 2; a format 1 manifest has none
    /// and is read as 0): the snapshot holds exactly the versions retained
    /// at it, and a node restored from it answers no read view below it.
    #[serde(default)]
    pub history_horizon: CommitId,
    /// Number of version records across all data files.
    pub version_count: u64,
    /// Data files, in order.
    pub files: Vec<ManifestFile>,
}

impl Manifest {
    /// The applied state the snapshot restores.
    pub fn cut(&self) -> AppliedState {
        AppliedState { commit_id: self.boundary_commit_id, end_lsn: self.boundary_lsn, fingerprint: self.boundary_fingerprint, state_digest: self.state_digest }
    }

    /// Total size of the data files in bytes.
    pub fn data_bytes(&self) -> u64 {
        self.files.iter().fold(0u64, |acc, f| acc.saturating_add(f.size))
    }
}

fn de_fingerprint<'de, D: Deserializer<'de>>(d: D) -> Result<Fingerprint, D::Error> {
    let text = String::deserialize(d)?;
    Fingerprint::from_hex(&text).ok_or_else(|| serde::de::Error::custom("fingerprint must be 32 hex digits"))
}

fn de_digest<'de, D: Deserializer<'de>>(d: D) -> Result<StateDigest, D::Error> {
    let text = String::deserialize(d)?;
    StateDigest::from_hex(&text).ok_or_else(|| serde::de::Error::custom("state digest must be 32 hex digits"))
}

/// The header of a data file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataHeader {
    /// Format version (one of [`READABLE_SNAPSHOT_FORMATS`]; written as
    /// [`SNAPSHOT_FORMAT_VERSION`]).
    pub format_version: u32,
    /// C_snap of the snapshot.
    pub boundary_commit_id: CommitId,
    /// Index of the file.
    pub file_index: u32,
}

/// Why a data file header is unusable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataHeaderError {
    /// Wrong magic or a version this build cannot read.
    Format(String),
    /// Header checksum mismatch.
    Checksum,
    /// Too short.
    Truncated,
}

impl DataHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; DATA_HEADER_LEN] {
        let mut b = [0u8; DATA_HEADER_LEN];
        b[0..8].copy_from_slice(DATA_MAGIC);
        b[8..12].copy_from_slice(&self.format_version.to_le_bytes());
        b[12..16].copy_from_slice(&(DATA_HEADER_LEN as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.boundary_commit_id.to_le_bytes());
        b[24..28].copy_from_slice(&self.file_index.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and verifies a header.
    pub fn decode(b: &[u8]) -> Result<DataHeader, DataHeaderError> {
        if b.len() < DATA_HEADER_LEN {
            return Err(DataHeaderError::Truncated);
        }
        if &b[0..8] != DATA_MAGIC {
            return Err(DataHeaderError::Format("bad magic".into()));
        }
        if crc32c::crc32c(&b[0..28]) != le_u32(b, 28) {
            return Err(DataHeaderError::Checksum);
        }
        let version = le_u32(b, 8);
        if !READABLE_SNAPSHOT_FORMATS.contains(&version) {
            return Err(DataHeaderError::Format(format!("data file format version {version}")));
        }
        if le_u32(b, 12) as usize != DATA_HEADER_LEN {
            return Err(DataHeaderError::Format(format!("header length {}", le_u32(b, 12))));
        }
        Ok(DataHeader { format_version: version, boundary_commit_id: le_u64(b, 16), file_index: le_u32(b, 24) })
    }
}

/// Encoded length of a version record.
pub fn version_record_len(v: &OwnedVersion) -> usize {
    record_len_of(&as_ref(v))
}

/// Encoded length of the record of a borrowed version.
pub fn record_len_of(v: &VersionRef<'_>) -> usize {
    VERSION_HEADER_LEN + v.collection.len() + v.key.len() + v.doc.map_or(0, <[u8]>::len)
}

fn as_ref(v: &OwnedVersion) -> VersionRef<'_> {
    VersionRef { collection: &v.collection, key: &v.key, commit_id: v.commit_id, doc: v.doc.as_deref() }
}

/// Appends the record of one version to `out`. Fails (writing nothing)
/// when a name or the document does not fit the format.
pub fn encode_version(out: &mut Vec<u8>, v: &OwnedVersion) -> Result<(), String> {
    encode_version_ref(out, &as_ref(v))
}

/// [`encode_version`] of a borrowed version (snapshot creation encodes
/// straight from the store).
pub fn encode_version_ref(out: &mut Vec<u8>, v: &VersionRef<'_>) -> Result<(), String> {
    let (c, k) = (v.collection, v.key);
    if c.is_empty() || c.len() > 255 || k.is_empty() || k.len() > 255 {
        return Err(format!("collection and key must be 1..=255 bytes (got {} and {})", c.len(), k.len()));
    }
    let len = record_len_of(v);
    if len > MAX_VERSION_RECORD_LEN {
        return Err(format!("version record of {len} bytes exceeds the maximum"));
    }
    if v.commit_id == 0 {
        return Err("version with CommitId 0".into());
    }
    let (kind, doc) = match v.doc {
        Some(d) => (KIND_PUT, d),
        None => (KIND_TOMBSTONE, &[][..]),
    };
    out.reserve(len);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&v.commit_id.to_le_bytes());
    out.extend_from_slice(&[kind, c.len() as u8, k.len() as u8, 0]);
    out.extend_from_slice(&(doc.len() as u32).to_le_bytes());
    out.extend_from_slice(c);
    out.extend_from_slice(k);
    out.extend_from_slice(doc);
    Ok(())
}

/// Result of looking for a version record at the start of some bytes.
#[derive(Debug)]
pub enum Decoded {
    /// A whole record: the version and the record's length.
    Version(OwnedVersion, usize),
    /// The bytes end inside the record: this many bytes are needed in total.
    Incomplete(usize),
}

/// Decodes the version record starting at `chunk[at]`. Names and document
/// are zero-copy slices of `chunk`. Never panics on any bytes.
pub fn decode_version(chunk: &Bytes, at: usize) -> Result<Decoded, &'static str> {
    match decode_version_ref(chunk.get(at..).unwrap_or_default())? {
        DecodedRef::Incomplete(needed) => Ok(Decoded::Incomplete(needed)),
        DecodedRef::Version(v, len) => {
            let base = at + VERSION_HEADER_LEN;
            let (c, k) = (v.collection.len(), v.key.len());
            let collection = chunk.slice(base..base + c);
            let key = chunk.slice(base + c..base + c + k);
            let doc = v.doc.map(|_| chunk.slice(base + c + k..at + len));
            Ok(Decoded::Version(OwnedVersion { collection, key, commit_id: v.commit_id, doc }, len))
        }
    }
}

/// [`Decoded`] with the version borrowed from the bytes.
#[derive(Debug)]
pub enum DecodedRef<'a> {
    /// A whole record: the version and the record's length.
    Version(VersionRef<'a>, usize),
    /// The bytes end inside the record: this many bytes are needed in total.
    Incomplete(usize),
}

/// Decodes the version record at the start of `b`, borrowing names and
/// document from it (a loader copies them once, into the store). Makes
/// exactly the checks [`decode_version`] makes. Never panics on any bytes.
pub fn decode_version_ref(b: &[u8]) -> Result<DecodedRef<'_>, &'static str> {
    if b.len() < 4 {
        return Ok(DecodedRef::Incomplete(VERSION_HEADER_LEN));
    }
    let len = le_u32(b, 0) as usize;
    if !(VERSION_HEADER_LEN + 2..=MAX_VERSION_RECORD_LEN).contains(&len) {
        return Err("record length out of bounds");
    }
    if b.len() < len {
        return Ok(DecodedRef::Incomplete(len));
    }
    let commit_id = le_u64(b, 4);
    let (kind, c, k, reserved) = (b[12], b[13] as usize, b[14] as usize, b[15]);
    let doc_len = le_u32(b, 16) as usize;
    if reserved != 0 {
        return Err("reserved byte is not zero");
    }
    if c == 0 || k == 0 {
        return Err("empty collection or key");
    }
    if commit_id == 0 {
        return Err("version with CommitId 0");
    }
    if VERSION_HEADER_LEN.checked_add(c + k).and_then(|n| n.checked_add(doc_len)) != Some(len) {
        return Err("record length does not match its fields");
    }
    let base = VERSION_HEADER_LEN;
    let collection = &b[base..base + c];
    let key = &b[base + c..base + c + k];
    let doc = match kind {
        KIND_PUT => Some(&b[base + c + k..len]),
        KIND_TOMBSTONE if doc_len == 0 => None,
        KIND_TOMBSTONE => return Err("tombstone with a body"),
        _ => return Err("unknown version kind"),
    };
    Ok(DecodedRef::Version(VersionRef { collection, key, commit_id, doc }, len))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn v(c: &str, k: &str, id: u64, doc: Option<&str>) -> OwnedVersion {
        OwnedVersion {
            collection: Bytes::copy_from_slice(c.as_bytes()),
            key: Bytes::copy_from_slice(k.as_bytes()),
            commit_id: id,
            doc: doc.map(|d| Bytes::copy_from_slice(d.as_bytes())),
        }
    }

    /// F-S4: version records round-trip; every truncation is incomplete,
    /// never a wrong version.
    #[test]
    fn f_s4_version_record_roundtrip_and_truncation() {
        for ver in [v("c", "k", 7, Some("{\"a\":1}")), v("coll", "key", 1, None)] {
            let mut out = Vec::new();
            encode_version(&mut out, &ver).unwrap();
            assert_eq!(out.len(), version_record_len(&ver));
            let bytes = Bytes::from(out.clone());
            match decode_version(&bytes, 0).unwrap() {
                Decoded::Version(got, len) => {
                    assert_eq!(got, ver);
                    assert_eq!(len, out.len());
                }
                Decoded::Incomplete(_) => panic!("whole record reported incomplete"),
            }
            for cut in 0..out.len() {
                let short = Bytes::copy_from_slice(&out[..cut]);
                assert!(matches!(decode_version(&short, 0), Ok(Decoded::Incomplete(_))), "cut {cut}");
            }
        }
    }

    /// F-S4: data file headers reject a flipped byte.
    #[test]
    fn f_s4_data_header_roundtrip_and_flip() {
        let h = DataHeader { format_version: SNAPSHOT_FORMAT_VERSION, boundary_commit_id: 42, file_index: 3 };
        let b = h.encode();
        assert_eq!(DataHeader::decode(&b), Ok(h));
        for i in 0..b.len() {
            let mut bad = b;
            bad[i] ^= 0x10;
            assert!(DataHeader::decode(&bad).is_err(), "flip at {i}");
        }
        assert_eq!(parse_snapshot_dir_name(&snapshot_dir_name(42)), Some(42));
        assert_eq!(parse_snapshot_dir_name(&tmp_dir_name(42)), None);
    }

    proptest::proptest! {
        /// F-S4: the version decoder never panics on arbitrary bytes.
        #[test]
        fn f_s4_version_decoder_total_on_arbitrary_bytes(data in proptest::collection::vec(proptest::num::u8::ANY, 0..200), at in 0usize..220) {
            let _ = decode_version(&Bytes::from(data), at);
        }
    }
}
