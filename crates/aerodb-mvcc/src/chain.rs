//! The compact per-key representation of the store (RES-1): names held
//! inline when short, and version chains that keep their only version
//! inline.
//!
//! Almost every key holds exactly one version: history is retained only
//! inside the GC window. A `Vec<Version>` per key would cost a heap
//! allocation (four versions of capacity after the first push) for every
//! live key; a [`Chain`] spills to a vector only while a key has history.
//! Names (collections and keys, at most 255 bytes) of up to
//! [`Name::INLINE`] bytes need no allocation at all, and a longer one has
//! an allocation of exactly its length that nothing else shares, so no
//! name or version ever pins a WAL read buffer or network chunk.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

use aerodb_wal::CommitId;
use bytes::Bytes;

use crate::store::{ChainEntry, Version};

/// A version as the store holds it. The body is an allocation of exactly
/// its length with no header: 16 bytes in the chain instead of a `Bytes`'
/// 32, and no 16-byte reference count per body (about 1 MB per 60,000
/// versions). A read copies the body out (a few hundred bytes, next to
/// the cost of answering the read); what is stored never changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stored {
    /// CommitId that created this version.
    pub commit_id: CommitId,
    /// Body, or `None` for a tombstone.
    pub doc: Option<Box<[u8]>>,
}

impl Stored {
    /// A version holding a copy of `doc`.
    pub fn new(commit_id: CommitId, doc: Option<&[u8]>) -> Stored {
        Stored { commit_id, doc: doc.map(Box::from) }
    }

    /// A copy of the body as `Bytes`.
    pub fn doc_bytes(&self) -> Option<Bytes> {
        self.doc.as_deref().map(Bytes::copy_from_slice)
    }

    /// The public form of this version.
    pub fn to_version(&self) -> Version {
        Version { commit_id: self.commit_id, doc: self.doc_bytes() }
    }
}

impl ChainEntry for Stored {
    fn commit_id(&self) -> CommitId {
        self.commit_id
    }
    fn is_tombstone(&self) -> bool {
        self.doc.is_none()
    }
}

/// A collection or key name, compared, ordered and hashed exactly like its
/// bytes (so a map keyed by it is looked up and ranged with `&[u8]`).
#[derive(Clone)]
pub(crate) enum Name {
    /// Up to [`Name::INLINE`] bytes, no allocation.
    Inline {
        /// Bytes used.
        len: u8,
        /// The name, zero padded.
        bytes: [u8; Name::INLINE],
    },
    /// A longer name in an allocation of exactly its length.
    Heap(Box<[u8]>),
}

impl Name {
    /// Longest name held inline: fills the 24 bytes the heap variant needs.
    pub const INLINE: usize = 22;

    /// A name holding a copy of `name`.
    pub fn new(name: &[u8]) -> Name {
        match u8::try_from(name.len()) {
            Ok(len) if name.len() <= Name::INLINE => {
                let mut bytes = [0u8; Name::INLINE];
                bytes[..name.len()].copy_from_slice(name);
                Name::Inline { len, bytes }
            }
            _ => Name::Heap(name.into()),
        }
    }

    /// The name's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Name::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Name::Heap(b) => b,
        }
    }
}

impl Borrow<[u8]> for Name {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Name {}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    /// Byte order. Two inline names compare as their zero-padded arrays,
    /// read as big-endian integers, then by length: the same order as
    /// their bytes (a name that is a prefix of another, trailing zeros
    /// included, pads to an equal-or-smaller array and is shorter), without
    /// a `memcmp` call per comparison on the store's hot insert path.
    ///
    /// Inlined into the key index's searches (`crate::keys`: short keys
    /// are searched as inline names); a heap name takes the out-of-line
    /// byte comparison.
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        if let (Name::Inline { len: a_len, bytes: a }, Name::Inline { len: b_len, bytes: b }) = (self, other) {
            return inline_words(a).cmp(&inline_words(b)).then(a_len.cmp(b_len));
        }
        self.cmp_bytes(other)
    }
}

impl Name {
    /// Byte order for names of which at least one is on the heap.
    #[inline(never)]
    fn cmp_bytes(&self, other: &Self) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

/// An inline name's padded bytes as big-endian integers (their order is the
/// arrays' lexicographic order).
#[inline(always)]
fn inline_words(bytes: &[u8; Name::INLINE]) -> (u128, u64) {
    let (head, tail) = bytes.split_at(16);
    let mut high = [0u8; 16];
    high.copy_from_slice(head);
    let mut low = [0u8; 8];
    low[..Name::INLINE - 16].copy_from_slice(tail);
    (u128::from_be_bytes(high), u64::from_be_bytes(low))
}

impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// The versions of one key, oldest first, never empty.
#[derive(Clone, Debug)]
pub(crate) enum Chain {
    /// The common case: one version, held inline.
    One(Stored),
    /// Two or more versions (history inside the GC window).
    Many(Vec<Stored>),
}

impl Chain {
    /// The versions, oldest first.
    pub fn as_slice(&self) -> &[Stored] {
        match self {
            Chain::One(v) => std::slice::from_ref(v),
            Chain::Many(vs) => vs,
        }
    }

    /// A chain of `versions` (oldest first), or `None` when there are none.
    pub fn from_vec(mut versions: Vec<Stored>) -> Option<Chain> {
        match versions.len() {
            0 => None,
            1 => versions.pop().map(Chain::One),
            _ => {
                versions.shrink_to_fit();
                Some(Chain::Many(versions))
            }
        }
    }

    /// The newest version.
    pub fn newest(&self) -> &Stored {
        match self {
            Chain::One(v) => v,
            // Never empty: a `Many` chain holds at least two versions.
            Chain::Many(vs) => &vs[vs.len() - 1],
        }
    }

    /// Appends a newer version (spilling to a vector of exactly two).
    pub fn push(&mut self, version: Stored) {
        match self {
            Chain::Many(vs) => vs.push(version),
            Chain::One(only) => {
                let placeholder = Stored { commit_id: 0, doc: None };
                let older = std::mem::replace(only, placeholder);
                *self = Chain::Many(vec![older, version]);
            }
        }
    }

    /// Removes the `n` oldest versions; `false` when that leaves none (the
    /// caller then removes the key). A chain left with one version goes
    /// back inline; a vector left mostly empty is shrunk.
    pub fn remove_oldest(&mut self, n: usize) -> bool {
        match self {
            Chain::One(_) => n == 0,
            Chain::Many(vs) => {
                vs.drain(..n.min(vs.len()));
                match vs.len() {
                    0 => false,
                    1 => {
                        if let Some(only) = vs.pop() {
                            *self = Chain::One(only);
                        }
                        true
                    }
                    len => {
                        if vs.capacity() > 2 * len + 4 {
                            vs.shrink_to_fit();
                        }
                        true
                    }
                }
            }
        }
    }

    /// Removes the versions with these CommitIds wherever they are (not
    /// expected: removals are prefixes); `false` when none is left.
    pub fn remove_commits(&mut self, commits: &[CommitId]) -> bool {
        let kept: Vec<Stored> = self.as_slice().iter().filter(|v| !commits.contains(&v.commit_id)).cloned().collect();
        match Chain::from_vec(kept) {
            Some(chain) => {
                *self = chain;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn v(commit_id: u64) -> Stored {
        Stored::new(commit_id, Some(format!("{{\"v\":{commit_id}}}").as_bytes()))
    }

    /// RES-1: a name and a one-version chain cost no allocation of their
    /// own beyond the document, and the per-key entry stays small.
    #[test]
    fn res_1_per_key_representation_is_compact() {
        assert_eq!(std::mem::size_of::<Name>(), 24);
        assert_eq!(std::mem::size_of::<Stored>(), 24);
        assert!(std::mem::size_of::<Chain>() <= 32, "{}", std::mem::size_of::<Chain>());
        assert!(matches!(Name::new(&[b'k'; Name::INLINE]), Name::Inline { .. }));
        assert!(matches!(Name::new(&[b'k'; Name::INLINE + 1]), Name::Heap(_)));
        let mut chain = Chain::One(v(1));
        chain.push(v(2));
        assert!(matches!(&chain, Chain::Many(vs) if vs.capacity() == 2));
        chain.push(v(3));
        assert_eq!(chain.as_slice().iter().map(|v| v.commit_id).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(chain.newest().commit_id, 3);
        assert!(chain.remove_oldest(2));
        assert!(matches!(&chain, Chain::One(only) if only.commit_id == 3), "back inline once one version is left");
        assert!(!chain.remove_oldest(1));
        let mut chain = Chain::from_vec(vec![v(1), v(2), v(3)]).unwrap();
        assert!(chain.remove_commits(&[2]));
        assert_eq!(chain.as_slice().iter().map(|v| v.commit_id).collect::<Vec<_>>(), [1, 3]);
        assert!(Chain::from_vec(Vec::new()).is_none());
        assert_eq!(std::mem::size_of::<crate::gc::Candidate>(), 56, "one GC candidate per superseded version in the window");
        let c = crate::gc::Candidate::new(9, b"users", b"alice", 7, u128::MAX - 5);
        assert_eq!((crate::gc::path_names(c.path()), c.hash()), ((&b"users"[..], &b"alice"[..]), u128::MAX - 5));
        let long = [b'k'; 255];
        let c = crate::gc::Candidate::new(9, &long, &long, 7, 1);
        assert_eq!(crate::gc::path_names(c.path()), (&long[..], &long[..]));
    }

    /// RES-1: the inline names' integer comparison orders exactly like
    /// their bytes at the edges: prefixes, trailing zero bytes, the 16-byte
    /// word boundary and the longest inline name against a heap one.
    #[test]
    fn res_1_inline_name_order_matches_bytes_at_the_edges() {
        let names: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![0, 0],
            b"a".to_vec(),
            b"a\0".to_vec(),
            b"a\0\0b".to_vec(),
            b"ab".to_vec(),
            vec![b'k'; 15],
            vec![b'k'; 16],
            [vec![b'k'; 16], vec![0]].concat(),
            [vec![b'k'; 16], vec![1]].concat(),
            vec![b'k'; 21],
            vec![b'k'; 22],
            [vec![b'k'; 21], vec![0]].concat(),
            vec![b'k'; 23],
            [vec![b'k'; 22], vec![0]].concat(),
            vec![0xff; 22],
            b"backlog-00000123".to_vec(),
            b"backlog-00000124".to_vec(),
        ];
        for a in &names {
            for b in &names {
                assert_eq!(Name::new(a).cmp(&Name::new(b)), a.cmp(b), "{a:?} vs {b:?}");
            }
        }
    }

    proptest! {
        /// RES-1: inline and heap names compare, order and hash exactly like
        /// their bytes, so maps keyed by them behave as with byte keys.
        #[test]
        fn res_1_names_order_and_compare_like_their_bytes(a in proptest::collection::vec(any::<u8>(), 0..40), b in proptest::collection::vec(any::<u8>(), 0..40)) {
            let (na, nb) = (Name::new(&a), Name::new(&b));
            prop_assert_eq!(na.as_bytes(), &a[..]);
            prop_assert_eq!(na.cmp(&nb), a.cmp(&b));
            prop_assert_eq!(na.partial_cmp(&nb), Some(a.cmp(&b)));
            prop_assert_eq!(na == nb, a == b);
            let hash = |x: &dyn Fn(&mut std::collections::hash_map::DefaultHasher)| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                x(&mut h);
                h.finish()
            };
            prop_assert_eq!(hash(&|h| na.hash(h)), hash(&|h| a[..].hash(h)));
        }
    }
}
