//! Memory under overwrites (issue 12, RES-1): a primary and a replica,
//! `keys` live 200-byte documents overwritten pass after pass until 10× the
//! live data has been written; RSS of both nodes empty, after pass 5 and
//! after pass 10 (flat from pass 5 to 10 is the target: memory follows live
//! data and the retention window, not history). The retention window is
//! read from the primary after pass 10: the superseded versions it holds
//! (`gc.versions_held` of `/v1/mvcc` minus the live keys; the workload
//! never deletes), each a 200-byte document. The target is growth <= 2x the
//! live bytes plus those window bytes.
//!
//! Growth is reported over two baselines: the empty node (`rss_empty_*`,
//! replica connected, nothing written) and the warm node (`rss_warm_*`,
//! after a warm-up of [`WARM_FRACTION`]-th of the keys through the same
//! client, so connections, stream buffers and threads exist). The second
//! is memory that follows the data; the difference between the two is the
//! node's fixed cost of serving writes and a replica, which does not grow
//! with data.

use std::time::Duration;

use serde_json::{Map, Value};

use aerodb_client::blocking;

use super::load::{self, Stop, Work};
use super::node::Node;
use super::replication::{primary, primary_commit_id, replica, wait_caught_up, WRITE_CLIENTS};
use super::{round, Ctx, DOC_BYTES};

/// Passes over the live keys (the first writes them, the rest overwrite).
pub(crate) const PASSES: u64 = 10;
const MIB: f64 = 1024.0 * 1024.0;
/// The warm-up writes this fraction (1/n) of the live keys before the warm baseline.
pub(crate) const WARM_FRACTION: u64 = 50;

/// RSS in bytes of (primary, replica).
type Rss = (u64, u64);

/// The memory figures.
pub(crate) struct MemoryFigures {
    keys: u64,
    empty: Rss,
    /// After the warm-up: connections, stream buffers and threads exist.
    warm: Rss,
    pass5: Rss,
    pass10: Rss,
    /// Versions the primary held after pass 10 (live plus superseded).
    versions_held: u64,
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
        let window_versions = self.versions_held.saturating_sub(self.keys);
        let window = window_versions * DOC_BYTES as u64;
        out.insert("retention_window_versions".into(), Value::from(window_versions));
        out.insert("retention_window_bytes".into(), Value::from(window));
        for (role, empty, warm, p5, p10) in
            [("primary", self.empty.0, self.warm.0, self.pass5.0, self.pass10.0), ("replica", self.empty.1, self.warm.1, self.pass5.1, self.pass10.1)]
        {
            out.insert(format!("rss_overwrite_{role}_mib"), round(p10 as f64 / MIB, 1));
            out.insert(format!("rss_overwrite_{role}_pass5_mib"), round(p5 as f64 / MIB, 1));
            out.insert(format!("rss_overwrite_{role}_pass10_mib"), round(p10 as f64 / MIB, 1));
            out.insert(format!("rss_overwrite_{role}_pass10_over_pass5"), round(p10 as f64 / (p5 as f64).max(1.0), 3));
            out.insert(format!("rss_empty_{role}_mib"), round(empty as f64 / MIB, 1));
            out.insert(format!("mem_per_live_byte_{role}"), round(p10 as f64 / live.max(1.0), 2));
            out.insert(format!("mem_growth_per_live_byte_{role}"), round(p10.saturating_sub(empty) as f64 / live.max(1.0), 2));
            let beyond_window = p10.saturating_sub(empty).saturating_sub(window);
            out.insert(format!("mem_growth_beyond_window_per_live_byte_{role}"), round(beyond_window as f64 / live.max(1.0), 2));
            out.insert(format!("rss_warm_{role}_mib"), round(warm as f64 / MIB, 1));
            let from_warm = p10.saturating_sub(warm).saturating_sub(window);
            out.insert(format!("mem_growth_from_warm_beyond_window_per_live_byte_{role}"), round(from_warm as f64 / live.max(1.0), 2));
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
    let warm_keys = (keys / WARM_FRACTION).max(1);
    load::run(&ctx.rt, &client, Work::Overwrite { keys: warm_keys, pass_base: 0 }, WRITE_CLIENTS, Stop::Ops(warm_keys), &pids)?;
    wait_caught_up(&r, primary_commit_id(&p)?)?;
    let warm = rss()?;
    let (mut pass5, mut ops, mut wall) = (warm, 0, Duration::ZERO);
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
    let versions_held = versions_held(&p)?;
    r.stop()?;
    p.stop()?;
    Ok(MemoryFigures { keys, empty, warm, pass5, pass10, versions_held, ops, wall })
}

/// `gc.versions_held` of the node's `/v1/mvcc`: every version in memory.
fn versions_held(node: &Node) -> Result<u64, String> {
    let dx = blocking::DxClient::new(node.addr("dx")?).map_err(|e| e.to_string())?;
    let mvcc = dx.mvcc().map_err(|e| e.to_string())?.data;
    mvcc["gc"]["versions_held"].as_u64().ok_or_else(|| format!("no gc.versions_held in /v1/mvcc: {mvcc}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// RES-1: the memory figures, the retention window included, are
    /// derived from RSS, live bytes and the versions the primary holds.
    #[test]
    fn memory_keys_are_derived_from_rss_and_live_bytes() {
        let m = MemoryFigures {
            keys: 5_000,
            empty: (10 << 20, 8 << 20),
            warm: (11 << 20, 8 << 20),
            pass5: (20 << 20, 16 << 20),
            pass10: (22 << 20, 16 << 20),
            versions_held: 6_000,
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
        assert_eq!(out["retention_window_versions"], 1_000);
        assert_eq!(out["retention_window_bytes"], 200_000);
        // (22 MiB - 10 MiB - 200,000 B) / 1,000,000 B
        assert_eq!(out["mem_growth_beyond_window_per_live_byte_primary"], 12.38);
        assert_eq!(out["mem_growth_beyond_window_per_live_byte_replica"], 8.19);
        assert_eq!(out["rss_warm_primary_mib"], 11.0);
        // (22 MiB - 11 MiB - 200,000 B) / 1,000,000 B
        assert_eq!(out["mem_growth_from_warm_beyond_window_per_live_byte_primary"], 11.33);
        assert_eq!(out["mem_growth_from_warm_beyond_window_per_live_byte_replica"], 8.19);
    }
}
