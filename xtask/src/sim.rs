//! `cargo xtask sim ...`: runs the deterministic simulator.
//!
//! This is the only place the `planted-bugs` feature is enabled: it builds
//! and runs `cargo run --release -p aerodb-sim --features planted-bugs --
//! <args>`, passing the simulator's output and exit code through. No other
//! build (the node, `cargo test --workspace`) contains the planted bugs.

use std::process::Command;

/// Runs the simulator with `args`; returns its exit code.
pub(crate) fn run(args: &[String]) -> i32 {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let status = Command::new(cargo).args(["run", "--quiet", "--release", "-p", "aerodb-sim", "--features", "planted-bugs", "--"]).args(args).status();
    match status {
        Ok(s) => s.code().unwrap_or(1),
        Err(e) => {
            eprintln!("cargo xtask sim: cannot run cargo: {e}");
            2
        }
    }
}
