//! `cargo xtask audit`: invariant audits over the workspace.
//!
//! Every check is a pure function from file contents (or `cargo metadata`
//! JSON) to a list of [`Finding`]s; this module only gathers the inputs,
//! runs the checks and prints one PASS/FAIL line per check followed by its
//! findings. The exit code is non-zero when any check fails.

mod coverage;
mod hygiene;
mod layering;
mod msrv;
mod source;

use source::{SourceFile, Workspace};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The rule registry, relative to the workspace root.
const RULES_PATH: &str = "crates/aerodb-repl-explain/src/rules.rs";
/// The human-readable rule → tests map, relative to the workspace root.
const DOCS_PATH: &str = "docs/invariants.md";
/// Directories scanned for Rust sources.
const SOURCE_DIRS: &[&str] = &["crates", "xtask"];

/// One problem found by a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    /// Workspace-relative file, or empty when the finding has no file.
    pub(crate) file: String,
    /// 1-based line, when known.
    pub(crate) line: Option<usize>,
    /// Why this is a problem.
    pub(crate) message: String,
}

impl Finding {
    pub(crate) fn in_file(file: &str, line: Option<usize>, message: impl Into<String>) -> Self {
        Finding { file: file.to_string(), line, message: message.into() }
    }

    pub(crate) fn global(message: impl Into<String>) -> Self {
        Self::in_file("", None, message)
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.file.is_empty(), self.line) {
            (true, _) => write!(f, "{}", self.message),
            (false, Some(line)) => write!(f, "{}:{line}: {}", self.file, self.message),
            (false, None) => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Inputs gathered from disk.
struct Inputs {
    sources: Vec<SourceFile>,
    /// Every file path under `crates/` (for the snapshot check).
    crate_files: Vec<String>,
    /// Files that could not be read.
    errors: Vec<Finding>,
}

fn rel_path(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// Recursively lists files under `dir`, skipping `target` and `.git`
/// directories and not following symlinked directories.
fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>, errors: &mut Vec<Finding>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push(Finding::in_file(&rel_path(root, dir), None, format!("cannot list: {e}")));
            return;
        }
    };
    let mut paths: Vec<(PathBuf, bool)> = Vec::new();
    for entry in entries {
        match entry.and_then(|e| Ok((e.path(), e.file_type()?))) {
            Ok((path, ft)) => paths.push((path, ft.is_dir())),
            Err(e) => errors.push(Finding::in_file(&rel_path(root, dir), None, format!("cannot list: {e}"))),
        }
    }
    paths.sort();
    for (path, is_dir) in paths {
        if is_dir {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            if !matches!(name.as_deref(), Some("target" | ".git")) {
                walk(root, &path, out, errors);
            }
        } else {
            out.push(path);
        }
    }
}

fn gather(root: &Path) -> Inputs {
    let mut inputs = Inputs { sources: Vec::new(), crate_files: Vec::new(), errors: Vec::new() };
    for dir in SOURCE_DIRS {
        let mut files = Vec::new();
        let base = root.join(dir);
        if !base.is_dir() {
            continue;
        }
        walk(root, &base, &mut files, &mut inputs.errors);
        for path in files {
            let rel = rel_path(root, &path);
            if *dir == "crates" {
                inputs.crate_files.push(rel.clone());
            }
            if path.extension().is_some_and(|e| e == "rs") {
                match std::fs::read_to_string(&path) {
                    Ok(content) => inputs.sources.push(SourceFile { path: rel, content }),
                    Err(e) => inputs.errors.push(Finding::in_file(&rel, None, format!("cannot read: {e}"))),
                }
            }
        }
    }
    inputs
}

fn cargo_metadata(root: &Path, no_deps: bool) -> Result<String, Finding> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["metadata", "--format-version", "1"]);
    if no_deps {
        cmd.arg("--no-deps");
    } else {
        cmd.arg("--locked");
    }
    let output = cmd
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .current_dir(root)
        .output()
        .map_err(|e| Finding::global(format!("cannot run cargo metadata: {e}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(Finding::global(format!("cargo metadata failed ({}): {first}", output.status)));
    }
    String::from_utf8(output.stdout).map_err(|e| Finding::global(format!("cargo metadata output is not UTF-8: {e}")))
}

fn read_text(root: &Path, rel: &str) -> Result<String, Finding> {
    std::fs::read_to_string(root.join(rel)).map_err(|e| Finding::in_file(rel, None, format!("cannot read: {e}")))
}

fn coverage(root: &Path, ws: &Workspace) -> Vec<Finding> {
    let rules = read_text(root, RULES_PATH);
    let docs = read_text(root, DOCS_PATH);
    match (rules, docs) {
        (Ok(rules), Ok(docs)) => coverage::check_rule_coverage(RULES_PATH, &rules, DOCS_PATH, &docs, ws),
        (rules, docs) => [rules.err(), docs.err()].into_iter().flatten().collect(),
    }
}

/// Prints, for every rule, the tests that prove it (`--map`).
fn print_map(root: &Path, ws: &Workspace) -> i32 {
    let registry = match read_text(root, RULES_PATH).and_then(|s| {
        coverage::parse_registry(&s).map_err(|mut f| {
            f.file = RULES_PATH.to_string();
            f
        })
    }) {
        Ok(r) => r,
        Err(f) => {
            eprintln!("audit: {f}");
            return 1;
        }
    };
    let proofs = coverage::proofs(&registry, ws);
    for e in &registry {
        let tests: Vec<String> = proofs.get(&e.id).map(|v| v.iter().map(|(n, p, l)| format!("{n} ({p}:{l})")).collect()).unwrap_or_default();
        let tests = if tests.is_empty() { "—".to_string() } else { tests.join(", ") };
        println!("{}\t{tests}", e.id);
    }
    0
}

const USAGE: &str = "usage: cargo xtask audit [--root DIR] [--map]

Checks: layering, rust-version, rule-coverage, no-ignored-tests, no-fixed-sleeps,
no-wall-clock-in-repl-core, insta-snapshots. Exit code 0 when all pass; progress
goes to stderr as each check runs.
--map prints each rule ID with the tests that prove it, and runs no checks.";

/// Runs `cargo xtask audit`; returns the process exit code.
pub fn run(args: &[String]) -> i32 {
    let mut root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let mut map = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--root" => match it.next() {
                Some(dir) => root = PathBuf::from(dir),
                None => {
                    eprintln!("{USAGE}");
                    return 2;
                }
            },
            "--map" => map = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return 0;
            }
            other => {
                eprintln!("audit: unknown argument `{other}`\n{USAGE}");
                return 2;
            }
        }
    }

    let started = std::time::Instant::now();
    let progress = |what: &str| {
        use std::io::Write as _;
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "audit: {what} ({:.1} s)", started.elapsed().as_secs_f64());
    };
    progress("reading sources under crates/ and xtask/");
    let inputs = gather(&root);
    let ws = Workspace::parse(&inputs.sources);
    if map {
        return print_map(&root, &ws);
    }
    println!("audit: {} ({} Rust files)", root.display(), ws.files.len());

    type Check<'a> = (&'static str, &'static str, Box<dyn FnOnce() -> Vec<Finding> + 'a>);
    let checks: Vec<Check> = vec![
        (
            "layering",
            "workspace crates depend only downwards (docs/architecture.md)",
            Box::new(|| match cargo_metadata(&root, true) {
                Ok(json) => layering::check_layering(&json, &|p| std::fs::read_to_string(p).ok()),
                Err(f) => vec![f],
            }),
        ),
        (
            "rust-version",
            "every crate declares the workspace rust-version and no dependency needs a newer Rust",
            Box::new(|| match cargo_metadata(&root, false) {
                Ok(json) => msrv::check_rust_version(&json).1,
                Err(f) => vec![f],
            }),
        ),
        ("rule-coverage", "every rule ID is in docs/invariants.md and proven by a test; tests cite only known IDs", Box::new(|| coverage(&root, &ws))),
        ("no-ignored-tests", "no #[ignore] on any test", Box::new(|| hygiene::check_ignored(&ws))),
        ("no-fixed-sleeps", "tests never sleep a fixed time", Box::new(|| hygiene::check_fixed_sleeps(&ws))),
        ("no-wall-clock-in-repl-core", "repl-core decisions never read the wall clock", Box::new(|| hygiene::check_wall_clock(&ws))),
        ("insta-snapshots", "no pending .snap.new / .pending-snap files", Box::new(|| hygiene::check_pending_snapshots(&inputs.crate_files))),
    ];
    let total = checks.len() + usize::from(!inputs.errors.is_empty());
    let mut failed = 0;
    let mut report = |name: &str, what: &str, findings: Vec<Finding>| {
        if findings.is_empty() {
            println!("PASS {name}: {what}");
        } else {
            failed += 1;
            let n = findings.len();
            let s = if n == 1 { "" } else { "s" };
            println!("FAIL {name}: {what} ({n} finding{s})");
            for f in &findings {
                println!("    {f}");
            }
        }
    };
    for (i, (name, what, check)) in checks.into_iter().enumerate() {
        progress(&format!("[{}/{total}] {name}", i + 1));
        report(name, what, check());
    }
    if !inputs.errors.is_empty() {
        report("read-sources", "every source file is readable", inputs.errors.clone());
    }
    if failed == 0 {
        println!("audit: all {total} checks passed ({:.1} s)", started.elapsed().as_secs_f64());
        0
    } else {
        println!("audit: {failed} of {total} checks failed ({:.1} s)", started.elapsed().as_secs_f64());
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_render_as_file_line_message() {
        assert_eq!(Finding::in_file("a.rs", Some(3), "bad").to_string(), "a.rs:3: bad");
        assert_eq!(Finding::in_file("a.rs", None, "bad").to_string(), "a.rs: bad");
        assert_eq!(Finding::global("bad").to_string(), "bad");
    }

    #[test]
    fn gather_walks_sources_and_skips_target_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (p, c) in [
            ("crates/a/src/lib.rs", "fn x() {}"),
            ("crates/a/src/snapshots/a__t.snap.new", "x"),
            ("crates/a/target/debug/gen.rs", "fn y() {}"),
            ("xtask/src/main.rs", "fn main() {}"),
            ("other/skip.rs", "fn z() {}"),
        ] {
            let path = root.join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, c).unwrap();
        }
        let inputs = gather(root);
        let paths: Vec<&str> = inputs.sources.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(paths, ["crates/a/src/lib.rs", "xtask/src/main.rs"]);
        assert_eq!(inputs.crate_files, ["crates/a/src/lib.rs", "crates/a/src/snapshots/a__t.snap.new"]);
        assert!(inputs.errors.is_empty());
    }
}
