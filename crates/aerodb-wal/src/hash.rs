//! Fingerprints and state digests: the two 128-bit values that let any two
//! nodes prove they hold the same history (fingerprint) and the same state
//! (digest) without exchanging the data itself.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use xxhash_rust::xxh3::Xxh3;

use crate::record::Op;
use crate::CommitId;

/// Chained history fingerprint: `f(record) = H(f(previous), record bytes)`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Fingerprint(pub u128);

/// The fingerprint "before the first record". Fixed forever: changing it
/// would make every existing WAL look diverged.
pub const GENESIS_FINGERPRINT: Fingerprint = Fingerprint(0x4145_524f_4442_2d47_454e_4553_4953_2d31);

/// Order-independent digest over every version with CommitId <= C.
///
/// It is a wrapping sum of per-version hashes, so applying a commit adds
/// and applying a GC record subtracts (MVCC-4), in any order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StateDigest(pub u128);

impl StateDigest {
    /// The digest of the empty state (CommitId 0).
    pub const EMPTY: StateDigest = StateDigest(0);

    /// Adds one version's hash.
    #[must_use]
    pub fn plus_version(self, version_hash: u128) -> StateDigest {
        StateDigest(self.0.wrapping_add(version_hash))
    }

    /// Removes one version's hash (a GC record removing that version).
    #[must_use]
    pub fn minus_version(self, version_hash: u128) -> StateDigest {
        StateDigest(self.0.wrapping_sub(version_hash))
    }

    /// Removes a wrapping sum of version hashes at once (a GC record
    /// removing all of those versions).
    #[must_use]
    pub fn minus_hashes(self, hash_sum: u128) -> StateDigest {
        self.minus_version(hash_sum)
    }

    /// The digest after adding every version that `ops` creates at `commit_id`.
    #[must_use]
    pub fn after_ops<'a>(self, commit_id: CommitId, ops: impl IntoIterator<Item = &'a Op>) -> StateDigest {
        ops.into_iter().fold(self, |d, op| d.plus_version(version_hash(commit_id, op)))
    }
}

/// Hash of one version: its CommitId, collection, key, and body or tombstone.
///
/// Every field is length-prefixed so that no two distinct versions can feed
/// the same byte stream into the hash.
pub fn version_hash(commit_id: CommitId, op: &Op) -> u128 {
    version_hash_parts(commit_id, op.collection(), op.key(), op.doc())
}

/// [`version_hash`] from the version's parts, for stores that do not keep an [`Op`].
/// The byte stream is laid out once in a stack buffer and hashed in one
/// call (the same XXH3-128 of the same bytes as a streaming hasher fed
/// field by field, which larger versions still use).
pub fn version_hash_parts(commit_id: CommitId, collection: &[u8], key: &[u8], doc: Option<&[u8]>) -> u128 {
    const PREFIX: &[u8] = b"aerodb.version.v1";
    const INLINE: usize = 1024;
    let len = PREFIX.len() + 8 + 4 + collection.len() + 4 + key.len() + 1 + doc.map_or(0, |d| 8 + d.len());
    if len <= INLINE {
        let mut buf = [0u8; INLINE];
        let mut at = 0;
        for part in [PREFIX, &commit_id.to_le_bytes(), &(collection.len() as u32).to_le_bytes(), collection, &(key.len() as u32).to_le_bytes(), key] {
            buf[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        match doc {
            Some(body) => {
                buf[at] = 1;
                at += 1;
                buf[at..at + 8].copy_from_slice(&(body.len() as u64).to_le_bytes());
                at += 8;
                buf[at..at + body.len()].copy_from_slice(body);
                at += body.len();
            }
            None => at += 1,
        }
        return xxhash_rust::xxh3::xxh3_128(&buf[..at]);
    }
    let mut h = Xxh3::new();
    h.update(PREFIX);
    h.update(&commit_id.to_le_bytes());
    h.update(&(collection.len() as u32).to_le_bytes());
    h.update(collection);
    h.update(&(key.len() as u32).to_le_bytes());
    h.update(key);
    match doc {
        Some(body) => {
            h.update(&[1]);
            h.update(&(body.len() as u64).to_le_bytes());
            h.update(body);
        }
        None => h.update(&[0]),
    }
    h.digest128()
}

/// Computes the fingerprint of a record from its predecessor's and the
/// record's covered bytes (see `record::fingerprint_input`).
pub(crate) fn chain_fingerprint(previous: Fingerprint, covered: &[&[u8]]) -> Fingerprint {
    let mut h = Xxh3::new();
    h.update(&previous.0.to_le_bytes());
    for part in covered {
        h.update(part);
    }
    Fingerprint(h.digest128())
}

macro_rules! hex128 {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:032x}", self.0)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:032x})", stringify!($t), self.0)
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                <$t>::from_hex(&text).ok_or_else(|| serde::de::Error::custom(concat!("expected 32 hex digits for ", stringify!($t))))
            }
        }
        impl $t {
            /// Parses the 32-hex-digit form produced by `Display`.
            pub fn from_hex(text: &str) -> Option<Self> {
                if text.len() != 32 {
                    return None;
                }
                u128::from_str_radix(text, 16).ok().map(Self)
            }
        }
    };
}
hex128!(Fingerprint);
hex128!(StateDigest);

#[cfg(test)]
mod tests {
    use super::*;

    /// The field-by-field stream the digest has always hashed.
    fn streamed(commit_id: CommitId, collection: &[u8], key: &[u8], doc: Option<&[u8]>) -> u128 {
        let mut h = Xxh3::new();
        h.update(b"aerodb.version.v1");
        h.update(&commit_id.to_le_bytes());
        h.update(&(collection.len() as u32).to_le_bytes());
        h.update(collection);
        h.update(&(key.len() as u32).to_le_bytes());
        h.update(key);
        match doc {
            Some(body) => {
                h.update(&[1]);
                h.update(&(body.len() as u64).to_le_bytes());
                h.update(body);
            }
            None => h.update(&[0]),
        }
        h.digest128()
    }

    /// REPL-4: the version hash (and so every state digest) is the same
    /// whether the bytes are laid out inline or streamed: documents of
    /// every size around the inline limit, tombstones, long names.
    #[test]
    fn repl_4_version_hash_is_the_same_inline_or_streamed() {
        let body: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
        let name = [b'k'; 255];
        for len in (0..1100).chain([2000, 3000]) {
            for (c, k) in [(&b"c"[..], &b"key"[..]), (&name[..], &name[..])] {
                assert_eq!(version_hash_parts(42, c, k, Some(&body[..len])), streamed(42, c, k, Some(&body[..len])), "doc of {len} bytes");
            }
        }
        assert_eq!(version_hash_parts(7, b"c", b"k", None), streamed(7, b"c", b"k", None));
        assert_eq!(version_hash_parts(7, &name, &name, None), streamed(7, &name, &name, None));
    }
}
