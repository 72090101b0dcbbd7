//! The runtime's monotonic clock: milliseconds since the runtime started,
//! the time the engines are given. It never decides anything (REPL-10).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aerodb_repl_core::engine::Millis;

/// A monotonic millisecond clock.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    /// A clock starting now.
    pub fn new() -> Self {
        Clock { start: Instant::now() }
    }
    /// Milliseconds since the clock started.
    pub fn now(&self) -> Millis {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
    /// How long to wait until `deadline` (at most `cap`).
    pub fn until(&self, deadline: Option<Millis>, cap: Duration) -> Duration {
        match deadline {
            Some(d) => Duration::from_millis(d.saturating_sub(self.now())).min(cap),
            None => cap,
        }
    }
}

/// The wall clock in Unix milliseconds (0 if it is before 1970): commit
/// times, lag in seconds and "last seen" are observability only; nothing
/// is decided by them (REPL-10).
pub fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
