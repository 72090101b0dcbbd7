//! `cargo xtask fuzz`: runs every cargo-fuzz target of `fuzz/` for a
//! bounded time; `cargo xtask fuzz-corpus` regenerates the seed corpora
//! from a real cluster ([`corpus`]).
//!
//! The runner builds all targets once (`cargo fuzz build --sanitizer none`,
//! which works on the stable toolchain), then runs each for `--seconds`
//! (default 30) from its committed seeds in `fuzz/corpus/<target>/`. New
//! inputs the fuzzer finds go to a temporary directory, so a run never
//! changes the committed corpus. A crash leaves its input under
//! `fuzz/artifacts/<target>/` and fails the run; turn it into a rule-named
//! regression test in the owning crate, fix it, and rerun.

mod corpus;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const USAGE: &str = "usage: cargo xtask fuzz [--seconds N] [TARGET...]

Builds every fuzz target of fuzz/ once (cargo fuzz build --sanitizer none)
and runs each (or only the TARGETs named) for N seconds (default 30) from
its seeds in fuzz/corpus/<target>/. Needs cargo-fuzz
(`cargo install cargo-fuzz --locked`). Exits non-zero if any target crashes.

cargo xtask fuzz-corpus regenerates fuzz/corpus/ from a real primary and
replicas (see xtask/src/fuzz/corpus.rs).";

/// Parsed `cargo xtask fuzz` arguments.
#[derive(Debug, PartialEq, Eq)]
struct Options {
    seconds: u64,
    targets: Vec<String>,
}

fn parse_args(args: &[String]) -> Result<Option<Options>, String> {
    let mut opts = Options { seconds: 30, targets: Vec::new() };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => return Ok(None),
            "--seconds" => {
                let v = it.next().ok_or("--seconds needs a value")?;
                opts.seconds = v.parse().ok().filter(|s| *s > 0).ok_or_else(|| format!("--seconds must be a positive integer, not {v:?}"))?;
            }
            flag if flag.starts_with('-') => return Err(format!("unknown flag {flag}")),
            target => opts.targets.push(target.to_string()),
        }
    }
    Ok(Some(opts))
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// `cargo fuzz <args>` in `fuzz/`.
fn cargo_fuzz(fuzz_dir: &Path) -> Command {
    let mut c = Command::new(cargo());
    c.current_dir(fuzz_dir).arg("fuzz");
    c
}

/// The targets `cargo fuzz list` reports.
fn list_targets(fuzz_dir: &Path) -> Result<Vec<String>, String> {
    let out = cargo_fuzz(fuzz_dir).arg("list").output().map_err(|e| format!("cannot run cargo fuzz: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`cargo fuzz list` failed ({}): {}\ninstall cargo-fuzz with `cargo install cargo-fuzz --locked`",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect())
}

/// One target's run.
struct Outcome {
    target: String,
    seconds: f64,
    runs: Option<u64>,
    seeds: usize,
    ok: bool,
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.filter_map(Result::ok).filter(|e| e.path().is_file()).count()).unwrap_or(0)
}

/// libFuzzer's `stat::number_of_executed_units` from its final stats.
fn executed_units(stderr: &str) -> Option<u64> {
    stderr.lines().find_map(|l| l.strip_prefix("stat::number_of_executed_units:").and_then(|v| v.trim().parse().ok()))
}

fn run_target(fuzz_dir: &Path, target: &str, seconds: u64) -> Result<Outcome, String> {
    let seeds_dir = fuzz_dir.join("corpus").join(target);
    let scratch = tempfile::tempdir().map_err(|e| format!("cannot create a temporary corpus directory: {e}"))?;
    let started = Instant::now();
    let out = cargo_fuzz(fuzz_dir)
        .args(["run", "--sanitizer", "none", target])
        .arg(scratch.path())
        .arg(&seeds_dir)
        .args(["--", &format!("-max_total_time={seconds}"), "-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1"])
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run cargo fuzz: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        // Show what libFuzzer said about the crash (and where it left the input).
        let tail: Vec<&str> = stderr.lines().rev().take(60).collect();
        for l in tail.into_iter().rev() {
            eprintln!("{l}");
        }
    }
    Ok(Outcome {
        target: target.to_string(),
        seconds: started.elapsed().as_secs_f64(),
        runs: executed_units(&stderr),
        seeds: count_files(&seeds_dir),
        ok: out.status.success(),
    })
}

/// Runs `cargo xtask fuzz`; returns the exit code.
pub(crate) fn run(args: &[String]) -> i32 {
    let opts = match parse_args(args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return 0;
        }
        Err(e) => {
            eprintln!("cargo xtask fuzz: {e}\n{USAGE}");
            return 2;
        }
    };
    let fuzz_dir = root().join("fuzz");
    let all = match list_targets(&fuzz_dir) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cargo xtask fuzz: {e}");
            return 2;
        }
    };
    if let Some(unknown) = opts.targets.iter().find(|t| !all.contains(t)) {
        eprintln!("cargo xtask fuzz: no target {unknown}; targets: {}", all.join(", "));
        return 2;
    }
    let targets = if opts.targets.is_empty() { all } else { opts.targets.clone() };
    let started = Instant::now();
    eprintln!("fuzz: building {} targets (cargo fuzz build --sanitizer none)", targets.len());
    match cargo_fuzz(&fuzz_dir).args(["build", "--sanitizer", "none"]).status() {
        Ok(s) if s.success() => {}
        Ok(s) => {
            eprintln!("cargo xtask fuzz: cargo fuzz build failed ({s})");
            return 1;
        }
        Err(e) => {
            eprintln!("cargo xtask fuzz: cannot run cargo fuzz: {e}");
            return 2;
        }
    }
    let built = started.elapsed().as_secs_f64();
    let mut outcomes = Vec::new();
    for t in &targets {
        eprintln!("fuzz: {t} for {} s", opts.seconds);
        match run_target(&fuzz_dir, t, opts.seconds) {
            Ok(o) => outcomes.push(o),
            Err(e) => {
                eprintln!("cargo xtask fuzz: {t}: {e}");
                return 2;
            }
        }
    }
    println!("{:<20} {:>8} {:>12} {:>6}  result", "target", "seconds", "executions", "seeds");
    for o in &outcomes {
        let runs = o.runs.map_or_else(|| "?".to_string(), |r| r.to_string());
        println!("{:<20} {:>8.0} {:>12} {:>6}  {}", o.target, o.seconds, runs, o.seeds, if o.ok { "ok" } else { "CRASH (see fuzz/artifacts/)" });
    }
    println!("build {built:.0} s, total {:.0} s", started.elapsed().as_secs_f64());
    if outcomes.iter().all(|o| o.ok) {
        0
    } else {
        1
    }
}

/// Runs `cargo xtask fuzz-corpus`; returns the exit code.
pub(crate) fn run_corpus(args: &[String]) -> i32 {
    if !args.is_empty() {
        eprintln!("cargo xtask fuzz-corpus takes no arguments\n{USAGE}");
        return 2;
    }
    match corpus::generate(&root().join("fuzz").join("corpus")) {
        Ok(summary) => {
            for (target, files, bytes) in summary {
                println!("{target:<20} {files:>4} seeds {bytes:>8} bytes");
            }
            0
        }
        Err(e) => {
            eprintln!("cargo xtask fuzz-corpus: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn fuzz_arguments_parse() {
        assert_eq!(parse_args(&[]).unwrap(), Some(Options { seconds: 30, targets: vec![] }));
        assert_eq!(parse_args(&s(&["--seconds", "5", "wal_record"])).unwrap(), Some(Options { seconds: 5, targets: s(&["wal_record"]) }));
        assert_eq!(parse_args(&s(&["--help"])).unwrap(), None);
        assert!(parse_args(&s(&["--seconds", "0"])).is_err());
        assert!(parse_args(&s(&["--seconds"])).is_err());
        assert!(parse_args(&s(&["--jobs", "2"])).is_err());
        assert_eq!(executed_units("x\nstat::number_of_executed_units: 1234\nstat::y: 1\n"), Some(1234));
    }
}
