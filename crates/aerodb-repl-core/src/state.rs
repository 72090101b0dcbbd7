//! The replica runtime state machine: enumerated states, one validated
//! transition function, a `tracing` event per transition.

use serde::Serialize;
use thiserror::Error;

/// Replica runtime states (exact names from REPLICATION.md §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ReplicaState {
    /// Process started; nothing read yet.
    Initializing,
    /// Verifying metadata, loading the snapshot, replaying the local WAL.
    Recovering,
    /// Transferring and installing a snapshot (no reads, P5-I8).
    Bootstrapping,
    /// Connecting to the primary and proving the resume point.
    Connecting,
    /// Handshake accepted; receiving, validating and applying WAL.
    Streaming,
    /// Connection lost; serving only safe reads at C_replica.
    Disconnected,
    /// An integrity failure; nothing served until an operator acts.
    Halted,
}

impl ReplicaState {
    /// The exact state name.
    pub fn name(self) -> &'static str {
        match self {
            ReplicaState::Initializing => "Initializing",
            ReplicaState::Recovering => "Recovering",
            ReplicaState::Bootstrapping => "Bootstrapping",
            ReplicaState::Connecting => "Connecting",
            ReplicaState::Streaming => "Streaming",
            ReplicaState::Disconnected => "Disconnected",
            ReplicaState::Halted => "Halted",
        }
    }
}

/// A transition the state machine does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[error("invalid replica state transition {} -> {}", from.name(), to.name())]
pub struct InvalidTransition {
    /// Current state.
    pub from: ReplicaState,
    /// Requested state.
    pub to: ReplicaState,
}

/// Whether `from -> to` is a legal transition. Halted is terminal: it is
/// never left automatically (only a restart with `--rebootstrap`, which
/// starts a new machine, clears it).
pub fn allowed(from: ReplicaState, to: ReplicaState) -> bool {
    use ReplicaState::*;
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

/// The machine: current state plus the counters its transitions maintain.
#[derive(Clone, Debug, Serialize)]
pub struct StateMachine {
    state: ReplicaState,
    /// Successful handshakes since this process started (RS-1 needs ≥ 1
    /// before reads are served while Disconnected).
    handshakes: u64,
    /// Reconnections (Disconnected -> Connecting).
    reconnects: u64,
}

impl Default for StateMachine {
    fn default() -> Self {
        StateMachine::new()
    }
}

impl StateMachine {
    /// A machine in `Initializing`.
    pub fn new() -> Self {
        StateMachine { state: ReplicaState::Initializing, handshakes: 0, reconnects: 0 }
    }
    /// Current state.
    pub fn state(&self) -> ReplicaState {
        self.state
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
        let from = self.state;
        if !allowed(from, to) {
            return Err(InvalidTransition { from, to });
        }
        if from == ReplicaState::Disconnected && to == ReplicaState::Connecting {
            self.reconnects += 1;
        }
        if to == ReplicaState::Streaming {
            self.handshakes += 1;
        }
        self.state = to;
        tracing::info!(from = from.name(), to = to.name(), reason = why, "replica state transition");
        self.check_invariants();
        Ok(())
    }

    fn check_invariants(&self) {
        debug_assert!(self.state != ReplicaState::Streaming || self.handshakes > 0, "Streaming without a handshake");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReplicaState::*;

    const ALL: [ReplicaState; 7] = [Initializing, Recovering, Bootstrapping, Connecting, Streaming, Disconnected, Halted];

    /// REPL-5: Halted is never left automatically; every state can halt.
    #[test]
    fn repl_5_halted_is_terminal_and_reachable_from_everywhere() {
        for s in ALL {
            assert!(!allowed(Halted, s), "Halted -> {s:?} must be refused");
            if s != Halted {
                assert!(allowed(s, Halted));
            }
        }
    }

    /// RS-1: Streaming is reachable only through Connecting (a handshake).
    #[test]
    fn rs_1_streaming_only_after_connecting() {
        for s in ALL {
            assert_eq!(allowed(s, Streaming), s == Connecting, "{s:?} -> Streaming");
        }
        let mut m = StateMachine::new();
        assert!(m.transition(Streaming, "t").is_err());
        m.transition(Recovering, "t").unwrap();
        m.transition(Connecting, "t").unwrap();
        m.transition(Streaming, "t").unwrap();
        assert_eq!(m.handshakes(), 1);
        m.transition(Disconnected, "t").unwrap();
        m.transition(Connecting, "t").unwrap();
        assert_eq!(m.reconnects(), 1);
        let err = m.transition(Recovering, "t").unwrap_err();
        assert_eq!(err, InvalidTransition { from: Connecting, to: Recovering });
    }
}
