//! AeroDB developer tasks: `cargo xtask audit | bench | sim | fuzz | fuzz-corpus`.
//!
//! `audit` checks the workspace's invariants (crate layering, rule-ID test
//! coverage, test hygiene, no wall clock in repl-core, no pending golden
//! files); `bench` and `sim` run benchmarks and the deterministic simulator;
//! `fuzz` runs the cargo-fuzz targets of `fuzz/` and `fuzz-corpus` seeds them.

mod audit;
mod bench;
mod fuzz;
mod sim;

const USAGE: &str = "usage: cargo xtask <command> [args]

commands:
  audit   check layering, rule coverage and test hygiene (see `audit --help`)
  bench   run the benchmarks and print JSON
  sim     run the deterministic simulator: --seeds N [--start-seed S] [--plant NAME] | --seed S [--plant NAME]
  fuzz    run every cargo-fuzz target of fuzz/ for a bounded time: [--seconds N] [TARGET...]
  fuzz-corpus  regenerate fuzz/corpus/ from a real primary and replicas";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    let code = match args.first().map(String::as_str) {
        Some("audit") => audit::run(rest),
        Some("bench") => bench::run(rest),
        Some("sim") => sim::run(rest),
        Some("fuzz") => fuzz::run(rest),
        Some("fuzz-corpus") => fuzz::run_corpus(rest),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            0
        }
        Some(other) => {
            eprintln!("cargo xtask: unknown command `{other}`\n{USAGE}");
            2
        }
        None => {
            eprintln!("{USAGE}");
            2
        }
    };
    std::process::exit(code);
}
