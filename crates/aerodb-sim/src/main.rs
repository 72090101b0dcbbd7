//! `aerodb-sim`: runs the deterministic simulation.
//!
//! ```text
//! aerodb-sim --seeds N [--start-seed S] [--plant NAME] [--threads T]
//! aerodb-sim --seed S [--plant NAME]
//! ```
//!
//! Prints one line per failing seed (with the command that replays it),
//! then, as the last line, one JSON object: `seeds`, `violations`,
//! `faults` (class → injections), `simulated_seconds`, and for a single
//! seed `trace_hash`. Exits 0 iff no invariant was violated, 2 on bad usage.

use std::io::Write;
use std::process::ExitCode;

use aerodb_sim::run::{failure_lines, run_seed, run_seeds, summary};
use aerodb_sim::world::RunOptions;
use aerodb_wal::plant::{self, Plant};

const USAGE: &str = "usage: aerodb-sim --seeds N [--start-seed S] [--plant NAME] [--threads T]
       aerodb-sim --seed S [--plant NAME] [--verbose]
plants: ack-before-fsync, reuse-commit-id, skip-record-checksum, gate-on-received, skip-digest-check";

struct Args {
    seeds: Option<u64>,
    start: u64,
    seed: Option<u64>,
    plant: Option<Plant>,
    threads: Option<usize>,
    verbose: bool,
}

fn parse(argv: &[String]) -> Result<Args, String> {
    let mut a = Args { seeds: None, start: 0, seed: None, plant: None, threads: None, verbose: false };
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value"));
        let number = |name: &str, v: String| v.parse::<u64>().map_err(|_| format!("{name} takes a non-negative integer, got {v:?}"));
        match flag.as_str() {
            "--seeds" => a.seeds = Some(number("--seeds", value("--seeds")?)?),
            "--start-seed" => a.start = number("--start-seed", value("--start-seed")?)?,
            "--seed" => a.seed = Some(number("--seed", value("--seed")?)?),
            "--threads" => a.threads = Some(number("--threads", value("--threads")?)?.max(1) as usize),
            "--verbose" => a.verbose = true,
            "--plant" => {
                let name = value("--plant")?;
                let p = Plant::from_name(&name).ok_or_else(|| format!("unknown plant {name:?}"))?;
                a.plant = Some(p);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    match (a.seeds, a.seed) {
        (Some(_), Some(_)) => Err("give either --seeds or --seed, not both".into()),
        (None, None) => Err("give --seeds N or --seed S".into()),
        _ => Ok(a),
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let args = match parse(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("aerodb-sim: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Some(p) = args.plant {
        if !plant::COMPILED {
            eprintln!(
                "aerodb-sim: --plant {} needs a build with planted bugs; run it through `cargo xtask sim`, which enables the planted-bugs feature",
                p.name()
            );
            return ExitCode::from(2);
        }
    }
    let options = RunOptions { verbose: args.verbose, ..RunOptions::default() };
    let (reports, single) = match (args.seed, args.seeds) {
        (Some(seed), _) => (vec![run_seed(seed, args.plant, &options)], true),
        (None, Some(n)) => {
            let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
            (run_seeds(args.start, n, args.plant, threads, &options), false)
        }
        (None, None) => return ExitCode::from(2),
    };
    let mut out = std::io::stdout().lock();
    for line in failure_lines(&reports, args.plant) {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out, "{}", summary(&reports, args.plant, single));
    let _ = out.flush();
    if reports.iter().all(|r| r.violations.is_empty()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
