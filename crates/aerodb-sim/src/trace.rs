//! The trace hash: xxh3 over a canonical encoding of every event the
//! scheduler processes and every outcome the harness observes, so two runs
//! of one seed can be compared with a single number.

use xxhash_rust::xxh3::Xxh3;

/// Canonical, length-prefixed encoding fed straight into the hash.
pub struct Trace {
    hasher: Xxh3,
    entries: u64,
}

impl Default for Trace {
    fn default() -> Self {
        Trace::new()
    }
}

impl Trace {
    /// An empty trace.
    pub fn new() -> Self {
        Trace { hasher: Xxh3::new(), entries: 0 }
    }

    /// Starts an entry tagged `tag` (a stable name, never a `Debug` string).
    pub fn entry(&mut self, tag: &str) -> &mut Self {
        self.entries += 1;
        self.hasher.update(&[0xFE]);
        self.str(tag)
    }

    /// Adds an integer.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.hasher.update(&v.to_le_bytes());
        self
    }

    /// Adds a 128-bit value (fingerprints, digests).
    pub fn u128(&mut self, v: u128) -> &mut Self {
        self.hasher.update(&v.to_le_bytes());
        self
    }

    /// Adds a length-prefixed byte string.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.hasher.update(&(b.len() as u64).to_le_bytes());
        self.hasher.update(b);
        self
    }

    /// Adds a length-prefixed string.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    /// Entries recorded so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// The hash so far, as 32 hex digits.
    pub fn hex(&self) -> String {
        format!("{:032x}", self.hasher.digest128())
    }
}

/// Something with a canonical trace encoding.
pub trait TraceEncode {
    /// Writes one entry describing `self`.
    fn encode(&self, trace: &mut Trace);
}
