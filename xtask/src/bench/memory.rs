//! Memory under overwrites (issue 12, RES-1): a primary and a replica,
//! `keys` live 200-byte documents overwritten pass after pass until 10× the
//! live data has been written; RSS of both nodes empty, after pass 5 and
//! after pass 10 (flat from pass 5 to 10 is the target: memory follows live
//! data and the retention window, not history).

use std::time::Duration;

use serde_json::{Map, Value};

use super::load::{self, Stop, Work};
use super::replication::{primary, primary_commit_id, replica, wait_caught_up, WRITE_CLIENTS};
use super::{round, Ctx, DOC_BYTES};

/// Passes over the live keys (the first writes them, the rest overwrite).
pub(crate) const PASSES: u64 = 10;
const MIB: f64 = 1024.0 * 1024.0;

/// RSS in bytes of (primary, replica).
type Rss = (u64, u64);

/// The memory figures.
pub(crate) struct MemoryFigures {
    keys: u64,
    empty: Rss,
    pass5: Rss,
    pass10: Rss,
    ops: u64,
    wall: Duration,
}

impl MemoryFigures {
    /// Adds `rss_overwrite_*`, `mem_*_per_live_byte_*` and companions.
    pub(crate) fn record(&self, out: &mut Map<String, Value>) {
        let live = (self.keys * DOC_BYTES as u64) as f64;
        out.insert("overwrite_keys".into(), Value::from(self.keys));
        out.insert("overwrite_live_bytes".into(), Value::from(self.keys * DOC_BYTES as u64));
        out.insert("overwrite_passes".into(), Value::from(PASSES));
        out.insert("overwrite_per_s".into(), round(self.ops as f64 / self.wall.as_secs_f64().max(1e-9), 1));
        for (role, empty, p5, p10) in [("primary", self.empty.0, self.pass5.0, self.pass10.0), ("replica", self.empty.1, self.pass5.1, self.pass10.1)] {
            out.insert(format!("rss_overwrite_{role}_mib"), round(p10 as f64 / MIB, 1));
            out.insert(format!("rss_overwrite_{role}_pass5_mib"), round(p5 as f64 / MIB, 1));
            out.insert(format!("rss_overwrite_{role}_pass10_mib"), round(p10 as f64 / MIB, 1));
            out.insert(format!("rss_overwrite_{role}_pass10_over_pass5"), round(p10 as f64 / (p5 as f64).max(1.0), 3));
            out.insert(format!("rss_empty_{role}_mib"), round(empty as f64 / MIB, 1));
            out.insert(format!("mem_per_live_byte_{role}"), round(p10 as f64 / live.max(1.0), 2));
            out.insert(format!("mem_growth_per_live_byte_{role}"), round(p10.saturating_sub(empty) as f64 / live.max(1.0), 2));
        }
    }
}

/// Runs the overwrite passes over `keys` live keys.
pub(crate) fn overwrite(ctx: &Ctx, keys: u64) -> Result<MemoryFigures, String> {
    let p = primary(&ctx.binary, &ctx.fresh("mem-primary"))?;
    let r = replica(&ctx.binary, &ctx.fresh("mem-replica"), &p, "wal")?;
    wait_caught_up(&r, 0)?;
    let pids = [p.pid(), r.pid()];
    let rss = || -> Result<Rss, String> { Ok((p.rss_bytes()?, r.rss_bytes()?)) };
    let empty = rss()?;
    eprintln!("bench: memory: {keys} live keys x {DOC_BYTES} B, {PASSES} passes of overwrites with one replica");
    let client = p.client(WRITE_CLIENTS as usize)?;
    let (mut pass5, mut ops, mut wall) = (empty, 0, Duration::ZERO);
    for pass in 1..=PASSES {
        let stats = load::run(&ctx.rt, &client, Work::Overwrite { keys, pass_base: pass * keys }, WRITE_CLIENTS, Stop::Ops(keys), &pids)?;
        ops += stats.ops;
        wall += stats.wall;
        if pass == 5 {
            wait_caught_up(&r, primary_commit_id(&p)?)?;
            pass5 = rss()?;
        }
    }
    wait_caught_up(&r, primary_commit_id(&p)?)?;
    let pass10 = rss()?;
    r.stop()?;
    p.stop()?;
    Ok(MemoryFigures { keys, empty, pass5, pass10, ops, wall })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn memory_keys_are_derived_from_rss_and_live_bytes() {
        let m = MemoryFigures {
            keys: 5_000,
            empty: (10 << 20, 8 << 20),
            pass5: (20 << 20, 16 << 20),
            pass10: (22 << 20, 16 << 20),
            ops: 50_000,
            wall: Duration::from_secs(5),
        };
        let mut out = Map::new();
        m.record(&mut out);
        assert_eq!(out["overwrite_live_bytes"], 1_000_000);
        assert_eq!(out["rss_overwrite_primary_mib"], 22.0);
        assert_eq!(out["rss_overwrite_replica_pass5_mib"], 16.0);
        assert_eq!(out["rss_overwrite_primary_pass10_over_pass5"], 1.1);
        assert_eq!(out["rss_overwrite_replica_pass10_over_pass5"], 1.0);
        assert_eq!(out["mem_per_live_byte_primary"], 23.07);
        assert_eq!(out["mem_growth_per_live_byte_replica"], 8.39);
        assert_eq!(out["overwrite_per_s"], 10_000.0);
    }
}
