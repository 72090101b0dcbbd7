//! The replica runtime state machine: an enum whose variants carry their
//! own data (the halt, the blocking reason, bootstrap progress, the live
//! connection), one validated transition function, a `tracing` event per
//! transition, and `check_invariants` after every step in debug and test
//! builds. There are no side fields that could disagree with the state.

use serde::Serialize;
use thiserror::Error;

use crate::halt::{Blocked, Halt, Reason};

/// Simulated or real milliseconds on a monotonic clock the runtime owns.
pub type Millis = u64;

/// Identifies one connection attempt; events of older connections are ignored.
pub type ConnId = u64;

/// What phase a snapshot bootstrap is in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BootstrapPhase {
    /// Waiting for the primary to accept the snapshot request.
    #[default]
    Requesting,
    /// Receiving snapshot files.
    Transferring,
    /// Validating and installing what was received.
    Installing,
    /// The connection ended mid-transfer; the bytes received are kept to
    /// resume from (F-S1).
    Interrupted,
}

impl BootstrapPhase {
    /// The exact name.
    pub fn name(self) -> &'static str {
        match self {
            BootstrapPhase::Requesting => "requesting",
            BootstrapPhase::Transferring => "transferring",
            BootstrapPhase::Installing => "installing",
            BootstrapPhase::Interrupted => "interrupted",
        }
    }
}

/// Bootstrap progress (observability only: nothing is decided on it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BootstrapProgress {
    /// Phase.
    pub phase: BootstrapPhase,
    /// Snapshot bytes received so far (over every connection of this transfer).
    pub bytes_done: u64,
    /// Snapshot bytes the manifest promises (0 until the manifest arrived).
    pub bytes_total: u64,
    /// Bytes this transfer already held when the current connection
    /// resumed it (0: not resumed).
    pub resumed_from: u64,
    /// Times this transfer was resumed after an interruption.
    pub resumes: u64,
    /// Transfer rate of the current connection, bytes per second (0 until
    /// measurable).
    pub rate_bytes_per_s: u64,
    /// Estimated seconds until every byte arrived at that rate (None until
    /// a rate and the total are known).
    pub eta_s: Option<u64>,
}

/// Replica runtime states (names from REPLICATION.md §5), each with its data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state")]
pub enum ReplicaState {
    /// Process started; nothing read yet.
    Initializing,
    /// Verifying metadata, loading the snapshot, replaying the local WAL.
    Recovering,
    /// Transferring and installing a snapshot (no reads, P5-I8).
    Bootstrapping {
        /// The connection carrying the transfer.
        conn: ConnId,
        /// Progress.
        progress: BootstrapProgress,
    },
    /// Connecting to the primary and proving the resume point.
    Connecting {
        /// The connection being established.
        conn: ConnId,
        /// Why the previous connection ended, if this is a reconnect.
        after: Option<Blocked>,
    },
    /// Handshake accepted; receiving, validating and applying WAL.
    Streaming {
        /// The live connection.
        conn: ConnId,
    },
    /// No connection; serving only safe reads at C_replica; retrying.
    Disconnected {
        /// Why progress is blocked.
        blocked: Blocked,
        /// When the next attempt starts.
        retry_at: Millis,
    },
    /// An integrity failure; nothing served until an operator acts.
    Halted {
        /// Why (persisted).
        halt: Halt,
    },
}

/// The state names alone (for transition rules, gates and display).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum StateKind {
    /// See [`ReplicaState::Initializing`].
    Initializing,
    /// See [`ReplicaState::Recovering`].
    Recovering,
    /// See [`ReplicaState::Bootstrapping`].
    Bootstrapping,
    /// See [`ReplicaState::Connecting`].
    Connecting,
    /// See [`ReplicaState::Streaming`].
    Streaming,
    /// See [`ReplicaState::Disconnected`].
    Disconnected,
    /// See [`ReplicaState::Halted`].
    Halted,
}

impl StateKind {
    /// Every state, in lifecycle order.
    pub const ALL: [StateKind; 7] = [
        StateKind::Initializing,
        StateKind::Recovering,
        StateKind::Bootstrapping,
        StateKind::Connecting,
        StateKind::Streaming,
        StateKind::Disconnected,
        StateKind::Halted,
    ];

    /// The exact state name.
    pub fn name(self) -> &'static str {
        match self {
            StateKind::Initializing => "Initializing",
            StateKind::Recovering => "Recovering",
            StateKind::Bootstrapping => "Bootstrapping",
            StateKind::Connecting => "Connecting",
            StateKind::Streaming => "Streaming",
            StateKind::Disconnected => "Disconnected",
            StateKind::Halted => "Halted",
        }
    }
}

impl ReplicaState {
    /// The state's name.
    pub fn kind(&self) -> StateKind {
        match self {
            ReplicaState::Initializing => StateKind::Initializing,
            ReplicaState::Recovering => StateKind::Recovering,
            ReplicaState::Bootstrapping { .. } => StateKind::Bootstrapping,
            ReplicaState::Connecting { .. } => StateKind::Connecting,
            ReplicaState::Streaming { .. } => StateKind::Streaming,
            ReplicaState::Disconnected { .. } => StateKind::Disconnected,
            ReplicaState::Halted { .. } => StateKind::Halted,
        }
    }
    /// The exact state name.
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }
    /// The live connection, if the state has one.
    pub fn conn(&self) -> Option<ConnId> {
        match self {
            ReplicaState::Bootstrapping { conn, .. } | ReplicaState::Connecting { conn, .. } | ReplicaState::Streaming { conn } => Some(*conn),
            _ => None,
        }
    }
    /// The halt, when halted.
    pub fn halt(&self) -> Option<&Halt> {
        match self {
            ReplicaState::Halted { halt } => Some(halt),
            _ => None,
        }
    }
    /// Why progress is blocked without a halt: while disconnected, and
    /// while reconnecting after a failure.
    pub fn blocked(&self) -> Option<&Blocked> {
        match self {
            ReplicaState::Disconnected { blocked, .. } => Some(blocked),
            ReplicaState::Connecting { after, .. } => after.as_ref(),
            _ => None,
        }
    }
}

/// A transition the state machine does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[error("invalid replica state transition {} -> {}", from.name(), to.name())]
pub struct InvalidTransition {
    /// Current state.
    pub from: StateKind,
    /// Requested state.
    pub to: StateKind,
}

/// Whether `from -> to` is a legal transition. Halted is terminal: it is
/// never left automatically (only a restart with `--rebootstrap`, which
/// starts a new machine, clears it).
pub fn allowed(from: StateKind, to: StateKind) -> bool {
    use StateKind::*;
    match (from, to) {
        (Halted, _) => false,
        (_, Halted) => true,
        (Initializing, Recovering) => true,
        (Recovering, Bootstrapping | Connecting) => true,
        (Bootstrapping, Connecting | Disconnected) => true,
        (Connecting, Streaming | Disconnected | Bootstrapping) => true,
        (Streaming, Disconnected) => true,
        (Disconnected, Connecting | Bootstrapping) => true,
        _ => false,
    }
}

/// The machine: the current state plus the counters its transitions maintain.
#[derive(Clone, Debug, Serialize)]
pub struct StateMachine {
    state: ReplicaState,
    /// Successful handshakes since this process started (RS-1 needs >= 1
    /// before reads are served while Disconnected).
    handshakes: u64,
    /// Reconnections (Disconnected -> Connecting or Bootstrapping).
    reconnects: u64,
    /// Log rate limit for a retry loop (logging only; decides nothing).
    #[serde(skip)]
    retry_log: RetryLog,
}

/// Rate-limits the log lines of a replica that keeps failing to connect
/// (issue 14, item 6): every transition is logged at `info` until the same
/// blocking code repeats; from then on only the attempts numbered 2, 4, 8,
/// 16, ... (and every 64th) are logged, the others at `debug`. Counting, not
/// a clock: the engine stays deterministic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetryLog {
    /// Consecutive failed sessions with `code` (reset by Streaming or another code).
    failures: u64,
    /// Blocking code of the last failure.
    code: Option<&'static str>,
}

impl RetryLog {
    /// Counts a failure with `code`; whether its lines are logged at `info`.
    pub fn failed(&mut self, code: &'static str) -> bool {
        if self.code == Some(code) {
            self.failures += 1;
        } else {
            self.code = Some(code);
            self.failures = 1;
        }
        self.loud()
    }

    /// Whether the current attempt's lines are logged at `info`.
    pub fn loud(&self) -> bool {
        let k = self.failures;
        k <= 1 || k.is_power_of_two() || k.is_multiple_of(64)
    }

    /// Consecutive failures with the same code.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// A session succeeded.
    pub fn reset(&mut self) {
        *self = RetryLog::default();
    }
}

impl Default for StateMachine {
    fn default() -> Self {
        StateMachine::new()
    }
}

impl StateMachine {
    /// A machine in `Initializing`.
    pub fn new() -> Self {
        StateMachine { state: ReplicaState::Initializing, handshakes: 0, reconnects: 0, retry_log: RetryLog::default() }
    }
    /// Current state.
    pub fn state(&self) -> &ReplicaState {
        &self.state
    }
    /// Mutable access to the current state's data (never its kind).
    pub fn data_mut(&mut self) -> &mut ReplicaState {
        &mut self.state
    }
    /// Successful handshakes since start.
    pub fn handshakes(&self) -> u64 {
        self.handshakes
    }
    /// Reconnect count.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// Moves to `to` if allowed, logging the transition with `why`.
    pub fn transition(&mut self, to: ReplicaState, why: &str) -> Result<(), InvalidTransition> {
        let (from, to_kind) = (self.state.kind(), to.kind());
        if !allowed(from, to_kind) {
            return Err(InvalidTransition { from, to: to_kind });
        }
        if from == StateKind::Disconnected && matches!(to_kind, StateKind::Connecting | StateKind::Bootstrapping) {
            self.reconnects += 1;
        }
        if to_kind == StateKind::Streaming {
            self.handshakes += 1;
            self.retry_log.reset();
        }
        match &to {
            ReplicaState::Halted { halt } => {
                tracing::error!(from = from.name(), code = halt.code(), rule_id = halt.rule_id(), detail = %halt.detail(), "replica halted");
            }
            ReplicaState::Disconnected { blocked, .. } => {
                let failures = self.retry_log.failures() + 1;
                if self.retry_log.failed(blocked.code()) {
                    let detail = blocked.detail();
                    if failures > 1 {
                        tracing::info!(
                            from = from.name(),
                            to = to_kind.name(),
                            code = blocked.code(),
                            %detail,
                            consecutive_failures = self.retry_log.failures(),
                            "replica state transition (still failing; retries back off with jitter up to 10 s; the lines of other attempts are at debug level)"
                        );
                    } else {
                        tracing::info!(from = from.name(), to = to_kind.name(), code = blocked.code(), %detail, reason = why, "replica state transition");
                    }
                } else {
                    tracing::debug!(
                        from = from.name(),
                        to = to_kind.name(),
                        code = blocked.code(),
                        consecutive_failures = self.retry_log.failures(),
                        "replica state transition"
                    );
                }
            }
            _ if from == StateKind::Disconnected && !self.retry_log.loud() => {
                tracing::debug!(from = from.name(), to = to_kind.name(), reason = why, "replica state transition");
            }
            _ => tracing::info!(from = from.name(), to = to_kind.name(), reason = why, "replica state transition"),
        }
        self.state = to;
        self.check_invariants();
        Ok(())
    }

    /// What must hold in every state (checked after every step in debug and
    /// test builds).
    pub fn check_invariants(&self) {
        debug_assert!(self.state.kind() != StateKind::Streaming || self.handshakes > 0, "Streaming without a handshake");
        debug_assert!(self.reconnects <= self.handshakes + self.reconnects, "counter overflow");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use StateKind::*;

    /// F-N1: a replica that keeps failing to reach its primary logs the
    /// first failures, then only attempts 2, 4, 8, ... (and every 64th): the
    /// log does not grow by lines per retry while the primary is down.
    #[test]
    fn f_n1_retry_logging_is_rate_limited_by_attempt_count() {
        let mut log = RetryLog::default();
        let mut loud = Vec::new();
        for k in 1..=200u64 {
            if log.failed("CONNECT_FAILED") {
                loud.push(k);
            }
        }
        assert_eq!(loud, vec![1, 2, 4, 8, 16, 32, 64, 128, 192]);
        assert!(log.failed("PROTOCOL_ERROR"), "another code is logged at once");
        assert_eq!(log.failures(), 1);
        log.reset();
        assert!(log.failed("CONNECT_FAILED"));
    }

    /// REPL-5: Halted is never left automatically; every state can halt.
    #[test]
    fn repl_5_halted_is_terminal_and_reachable_from_everywhere() {
        for s in StateKind::ALL {
            assert!(!allowed(Halted, s), "Halted -> {s:?} must be refused");
            if s != Halted {
                assert!(allowed(s, Halted));
            }
        }
    }

    /// RS-1: Streaming is reachable only through Connecting (a handshake).
    #[test]
    fn rs_1_streaming_only_after_connecting() {
        for s in StateKind::ALL {
            assert_eq!(allowed(s, Streaming), s == Connecting, "{s:?} -> Streaming");
        }
        let mut m = StateMachine::new();
        assert!(m.transition(ReplicaState::Streaming { conn: 1 }, "t").is_err());
        m.transition(ReplicaState::Recovering, "t").unwrap();
        m.transition(ReplicaState::Connecting { conn: 1, after: None }, "t").unwrap();
        m.transition(ReplicaState::Streaming { conn: 1 }, "t").unwrap();
        assert_eq!(m.handshakes(), 1);
        let blocked = Blocked::ConnectionLost { detail: "reset".into() };
        m.transition(ReplicaState::Disconnected { blocked: blocked.clone(), retry_at: 10 }, "t").unwrap();
        assert_eq!(m.state().blocked(), Some(&blocked));
        m.transition(ReplicaState::Connecting { conn: 2, after: Some(blocked) }, "t").unwrap();
        assert_eq!(m.reconnects(), 1);
        let err = m.transition(ReplicaState::Recovering, "t").unwrap_err();
        assert_eq!(err, InvalidTransition { from: Connecting, to: Recovering });
    }
}
