//! `cargo xtask bench`: benchmarks (placeholder, owned by another engineer).

/// Runs `cargo xtask bench`; returns the process exit code.
pub fn run(args: &[String]) -> i32 {
    let _ = args;
    eprintln!("cargo xtask bench: not implemented yet");
    2
}
