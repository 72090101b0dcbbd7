//! The process's own resource usage for `/metrics` (`process_*` families):
//! a small reader of `/proc/self` (Linux) plus `getrusage`/`getrlimit`.
//! Anything the platform does not provide is left unknown (omitted from
//! the exposition), never guessed.

use std::sync::OnceLock;

use aerodb_repl_explain::facts::ProcessFacts;

/// When `main` started, seconds since the Unix epoch.
static STARTED: OnceLock<f64> = OnceLock::new();

/// Records the process start time (call first thing in `main`).
pub fn mark_start() {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).ok();
    if let Some(now) = now {
        let _ = STARTED.set(now);
    }
}

/// `Key:   123 kB` lines of `/proc/self/status` (pure).
fn status_field(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))?;
    let mut parts = line[key.len() + 1..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    Some(match parts.next() {
        Some("kB") => value * 1024,
        _ => value,
    })
}

/// The process's usage now.
pub fn sample() -> ProcessFacts {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cpu_seconds = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).ok().map(|u| {
        let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
        secs(u.user_time()) + secs(u.system_time())
    });
    ProcessFacts {
        resident_memory_bytes: status_field(&status, "VmRSS"),
        virtual_memory_bytes: status_field(&status, "VmSize"),
        cpu_seconds,
        open_fds: std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64),
        max_fds: nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).ok().map(|(soft, _)| soft),
        start_time_seconds: STARTED.get().copied(),
        threads: status_field(&status, "Threads"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn p5_i14_proc_status_fields_parse_with_units() {
        let status = "Name:\taerodb\nVmSize:\t  2048 kB\nVmRSS:\t    512 kB\nThreads:\t9\n";
        assert_eq!(status_field(status, "VmRSS"), Some(512 * 1024));
        assert_eq!(status_field(status, "VmSize"), Some(2048 * 1024));
        assert_eq!(status_field(status, "Threads"), Some(9));
        assert_eq!(status_field(status, "VmSwap"), None);
        let now = sample();
        if cfg!(target_os = "linux") {
            assert!(now.resident_memory_bytes.unwrap() > 0 && now.open_fds.unwrap() > 0 && now.threads.unwrap() >= 1, "{now:?}");
        }
    }
}
