//! Reconnect backoff: exponential with full jitter, from a seeded
//! generator so the simulator replays it exactly. (A crate such as
//! `backon` draws jitter from its own global RNG, which a deterministic
//! simulation cannot replay; this is the whole algorithm in a few lines.)

use super::Millis;

/// SplitMix64: a tiny, well-known, seedable generator (jitter only; it
/// never decides anything about history).
#[derive(Clone, Debug)]
pub struct Jitter(u64);

impl Jitter {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Jitter(seed)
    }
    /// The next pseudo-random value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Exponential backoff with full jitter between `min_ms` and a cap.
#[derive(Clone, Debug)]
pub struct Backoff {
    min_ms: Millis,
    max_ms: Millis,
    attempt: u32,
    jitter: Jitter,
}

impl Backoff {
    /// A backoff from `min_ms` doubling up to `max_ms`.
    pub fn new(min_ms: Millis, max_ms: Millis, seed: u64) -> Self {
        Backoff { min_ms: min_ms.max(1), max_ms: max_ms.max(min_ms.max(1)), attempt: 0, jitter: Jitter::new(seed) }
    }

    /// The delay before the next attempt: uniformly in
    /// `[min, min(max, min * 2^attempt)]`.
    pub fn next_delay(&mut self) -> Millis {
        let ceiling = self.min_ms.saturating_mul(1u64 << self.attempt.min(20)).min(self.max_ms);
        self.attempt = self.attempt.saturating_add(1);
        let span = ceiling - self.min_ms + 1;
        self.min_ms + self.jitter.next_u64() % span
    }

    /// Forgets past failures (after a successful session).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Consecutive failures so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// REPL-10: backoff only schedules retries; it is bounded, jittered and
    /// replays exactly from the same seed.
    #[test]
    fn repl_10_backoff_is_bounded_jittered_and_deterministic() {
        let mut a = Backoff::new(50, 5_000, 7);
        let mut b = Backoff::new(50, 5_000, 7);
        let xs: Vec<_> = (0..30).map(|_| a.next_delay()).collect();
        let ys: Vec<_> = (0..30).map(|_| b.next_delay()).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|d| (50..=5_000).contains(d)));
        assert!(xs[20..].iter().any(|d| *d > 1_000), "grows toward the cap: {xs:?}");
        let distinct: std::collections::BTreeSet<_> = xs[10..].iter().collect();
        assert!(distinct.len() > 5, "jittered: {xs:?}");
        a.reset();
        assert!(a.next_delay() <= 50);
    }
}
