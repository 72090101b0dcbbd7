//! Counters of the HTTP surfaces (RES-3), captured into
//! `aerodb_repl_explain::facts::HttpFacts` for `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::http::limits::SurfaceLimits;
use crate::http::refusal::LimitRefusal;

/// One surface's live counters.
#[derive(Debug)]
pub struct SurfaceStats {
    /// `client` or `dx`.
    pub name: &'static str,
    /// The bounds in force.
    pub limits: SurfaceLimits,
    open: AtomicU64,
    rejects: [AtomicU64; LimitRefusal::CODES.len()],
}

impl SurfaceStats {
    /// Zeroed counters for a surface.
    pub fn new(name: &'static str, limits: SurfaceLimits) -> Self {
        SurfaceStats { name, limits, open: AtomicU64::new(0), rejects: Default::default() }
    }

    /// Counts one refusal by its code.
    pub fn reject(&self, refusal: &LimitRefusal) {
        if let Some(i) = LimitRefusal::CODES.iter().position(|c| *c == refusal.code()) {
            self.rejects[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    // Read by the DX API (`/metrics`), which a build without replication does not have.
    #[cfg_attr(not(feature = "replication"), allow(dead_code))]
    /// Connections open now.
    pub fn open_connections(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Takes a connection slot if one is free (the cap is `max_connections`).
    pub fn try_open(self: &std::sync::Arc<Self>) -> Option<ConnectionSlot> {
        let max = self.limits.max_connections as u64;
        self.open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).ok()?;
        Some(ConnectionSlot { stats: self.clone() })
    }

    // Read by the DX API (`/metrics`), which a build without replication does not have.
    #[cfg_attr(not(feature = "replication"), allow(dead_code))]
    /// Refusals so far, every code listed (zeros included), fixed order.
    pub fn rejects(&self) -> Vec<(&'static str, u64)> {
        LimitRefusal::CODES.iter().zip(&self.rejects).map(|(c, n)| (*c, n.load(Ordering::Relaxed))).collect()
    }
}

/// One open connection's slot; dropping it frees the slot.
#[derive(Debug)]
pub struct ConnectionSlot {
    stats: std::sync::Arc<SurfaceStats>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::AcqRel);
    }
}
