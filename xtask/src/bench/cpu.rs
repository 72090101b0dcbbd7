//! CPU and memory of the processes in a measurement: the bench's own CPU
//! time (getrusage) and each node's CPU time and RSS (from /proc), so the
//! client's share of the two cores is reported apart from the server's.

use std::collections::BTreeMap;
use std::time::Instant;

use nix::sys::resource::{getrusage, UsageWho};

/// CPU seconds (user + system) this process has used so far.
pub(crate) fn self_cpu_s() -> f64 {
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let (user, sys) = (u.user_time(), u.system_time());
            user.tv_sec() as f64 + user.tv_usec() as f64 / 1e6 + sys.tv_sec() as f64 + sys.tv_usec() as f64 / 1e6
        }
        Err(_) => 0.0,
    }
}

fn clock_ticks_per_s() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as f64,
        _ => 100.0,
    }
}

/// utime + stime of `/proc/<pid>/stat` in seconds (None if unreadable).
pub(crate) fn proc_cpu_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_ticks(&stat).map(|ticks| ticks as f64 / clock_ticks_per_s())
}

/// utime + stime in clock ticks from a `/proc/<pid>/stat` line (fields 14
/// and 15; the command name in parentheses may contain spaces).
fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Resident set size of `pid` in bytes (VmRSS of `/proc/<pid>/status`).
pub(crate) fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU used during one measured run, as % of one core over its wall time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct CpuUse {
    /// The bench process (the load generator).
    pub client_pct: f64,
    /// The node processes together.
    pub server_pct: f64,
}

/// CPU counters at the start of a run.
pub(crate) struct CpuMeter {
    start: Instant,
    client: f64,
    servers: Vec<(u32, f64)>,
}

impl CpuMeter {
    /// Starts measuring the bench and the node processes `pids`.
    pub(crate) fn start(pids: &[u32]) -> CpuMeter {
        CpuMeter { start: Instant::now(), client: self_cpu_s(), servers: pids.iter().map(|p| (*p, proc_cpu_s(*p).unwrap_or(0.0))).collect() }
    }

    /// CPU used since [`CpuMeter::start`].
    pub(crate) fn finish(&self) -> CpuUse {
        let wall = self.start.elapsed().as_secs_f64().max(1e-9);
        let client = self_cpu_s() - self.client;
        let server: f64 = self.servers.iter().map(|(pid, t0)| proc_cpu_s(*pid).map_or(0.0, |t| t - t0)).sum();
        CpuUse { client_pct: 100.0 * client / wall, server_pct: 100.0 * server / wall }
    }
}

/// CPU time of each thread of `pid` (by thread id: its name and CPU
/// nanoseconds), from `/proc/<pid>/task/*/schedstat` (nanoseconds) or, where
/// the kernel has no schedstat, `stat` (clock ticks). Empty if unreadable.
pub(crate) fn thread_cpu(pid: u32) -> BTreeMap<u32, (String, u64)> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return out };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else { continue };
        let dir = task.path();
        let Ok(name) = std::fs::read_to_string(dir.join("comm")) else { continue };
        let ns = std::fs::read_to_string(dir.join("schedstat")).ok().and_then(|s| parse_schedstat_ns(&s)).or_else(|| {
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            parse_stat_ticks(&stat).map(|ticks| (ticks as f64 / clock_ticks_per_s() * 1e9) as u64)
        });
        if let Some(ns) = ns {
            out.insert(tid, (name.trim().to_string(), ns));
        }
    }
    out
}

/// Time on CPU in nanoseconds: the first field of a `schedstat` line.
fn parse_schedstat_ns(schedstat: &str) -> Option<u64> {
    schedstat.split_whitespace().next()?.parse().ok()
}

/// CPU milliseconds per thread name between two [`thread_cpu`] readings of
/// one process (threads of one name summed; a thread that started in
/// between counts from zero, one that ended in between is not counted).
pub(crate) fn thread_cpu_ms_between(before: &BTreeMap<u32, (String, u64)>, after: &BTreeMap<u32, (String, u64)>) -> BTreeMap<String, f64> {
    let mut by_name = BTreeMap::new();
    for (tid, (name, ns)) in after {
        let start = before.get(tid).map_or(0, |(_, ns)| *ns);
        *by_name.entry(name.clone()).or_insert(0.0) += ns.saturating_sub(start) as f64 / 1e6;
    }
    by_name
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn proc_stat_and_status_parse() {
        let stat = "1234 (aero db (x)) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0 8 0 100 1000 50";
        assert_eq!(parse_stat_ticks(stat), Some(175));
        assert_eq!(parse_vm_rss("Name:\tx\nVmRSS:\t  2048 kB\n"), Some(2 * 1024 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert!(proc_cpu_s(std::process::id()).is_some());
        assert!(rss_bytes(std::process::id()).unwrap() > 0);
        assert!(self_cpu_s() > 0.0);
    }

    #[test]
    fn thread_cpu_reads_this_process_and_differences_by_name() {
        assert_eq!(parse_schedstat_ns("123456 789 10\n"), Some(123456));
        assert_eq!(parse_schedstat_ns(""), None);
        let now = thread_cpu(std::process::id());
        assert!(!now.is_empty());
        let mut before = BTreeMap::new();
        before.insert(1, ("apply".to_string(), 1_000_000));
        let mut after = BTreeMap::new();
        after.insert(1, ("apply".to_string(), 4_000_000));
        after.insert(2, ("http".to_string(), 2_000_000));
        after.insert(3, ("http".to_string(), 500_000));
        let ms = thread_cpu_ms_between(&before, &after);
        assert_eq!(ms.get("apply"), Some(&3.0));
        assert_eq!(ms.get("http"), Some(&2.5));
    }
}
