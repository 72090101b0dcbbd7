//! Checks (c)–(f): no ignored tests, no fixed sleeps in tests, no wall clock
//! in repl-core decisions, no pending insta snapshots.

use super::source::{ParsedFile, Tok, Workspace};
use super::Finding;

/// Where repl-core's non-test sources live (check e).
pub(crate) const REPL_CORE_SRC: &str = "crates/aerodb-repl-core/src/";
/// The simulator's sources: simulated time only, or seeds would not replay.
pub(crate) const SIM_SRC: &str = "crates/aerodb-sim/src/";

/// Check (c): no `#[ignore]` on any test.
pub(crate) fn check_ignored(ws: &Workspace) -> Vec<Finding> {
    let mut findings = Vec::new();
    for f in &ws.files {
        for ig in &f.ignores {
            let what = match &ig.item {
                Some(name) => format!("test `{name}` is #[ignore]d"),
                None => "#[ignore] attribute".to_string(),
            };
            findings.push(Finding::in_file(&f.path, Some(ig.line), format!("{what}: a skipped test proves nothing; fix it or delete it")));
        }
    }
    findings
}

/// State of an `// audit: allow-<kind>(<reason>)` marker on a line or the
/// line above it.
#[derive(Debug, PartialEq, Eq)]
enum Marker {
    Absent,
    NoReason,
    Present,
}

fn marker_in(raw: &str, kind: &str) -> Marker {
    let needle = format!("audit: allow-{kind}(");
    let Some(comment) = raw.find("//").map(|p| &raw[p..]) else {
        return Marker::Absent;
    };
    let Some(pos) = comment.find(&needle) else {
        return Marker::Absent;
    };
    let rest = &comment[pos + needle.len()..];
    match rest.rfind(')') {
        Some(end) if !rest[..end].trim().is_empty() => Marker::Present,
        _ => Marker::NoReason,
    }
}

fn marker(f: &ParsedFile, line: usize, kind: &str) -> Marker {
    let here = f.raw_lines.get(line - 1).map_or(Marker::Absent, |r| marker_in(r, kind));
    let above = if line >= 2 { f.raw_lines.get(line - 2).map_or(Marker::Absent, |r| marker_in(r, kind)) } else { Marker::Absent };
    match (here, above) {
        (Marker::Present, _) | (_, Marker::Present) => Marker::Present,
        (Marker::NoReason, _) | (_, Marker::NoReason) => Marker::NoReason,
        _ => Marker::Absent,
    }
}

/// Start offsets of identifier `word` in `code` (identifier boundaries).
fn ident_positions<'a>(code: &'a str, word: &'a str) -> impl Iterator<Item = usize> + 'a {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    code.match_indices(word).filter_map(move |(p, _)| {
        let before = code[..p].chars().next_back();
        let after = code[p + word.len()..].chars().next();
        (!before.is_some_and(is_ident) && !after.is_some_and(is_ident)).then_some(p)
    })
}

/// Whether the file imports `sleep`/`sleep_until` from a `thread`/`time`
/// module (so that a bare `sleep(..)` call is a fixed sleep).
fn imports_sleep(f: &ParsedFile) -> bool {
    let toks = &f.tokens;
    let mut i = 0;
    while i < toks.len() {
        if matches!(&toks[i].tok, Tok::Ident(s) if s == "use") {
            let mut has_sleep = false;
            let mut has_mod = false;
            let mut j = i + 1;
            while let Some(t) = toks.get(j) {
                match &t.tok {
                    Tok::Punct(';') => break,
                    Tok::Ident(s) if s == "sleep" || s == "sleep_until" => has_sleep = true,
                    Tok::Ident(s) if s == "thread" || s == "time" || s == "task" => {
                        has_mod = true;
                    }
                    _ => {}
                }
                j += 1;
            }
            if has_sleep && has_mod {
                return true;
            }
            i = j;
        }
        i += 1;
    }
    false
}

/// Fixed-sleep calls on one line of code.
fn sleep_calls(code: &str, bare_is_sleep: bool) -> Vec<String> {
    let mut calls = Vec::new();
    for word in ["sleep", "sleep_until"] {
        for p in ident_positions(code, word) {
            if !code[p + word.len()..].trim_start().starts_with('(') {
                continue;
            }
            let before = code[..p].trim_end();
            let qualified = ["thread::", "time::", "task::"].iter().find(|q| before.ends_with(*q));
            match qualified {
                Some(q) => calls.push(format!("{q}{word}(")),
                None if bare_is_sleep && !before.ends_with("::") && !before.ends_with('.') => {
                    calls.push(format!("{word}("));
                }
                None => {}
            }
        }
    }
    calls
}

/// Check (d): no fixed sleeps in test code (files under `tests/`,
/// `cfg(test)` modules, test functions, `proptest!` blocks), unless marked
/// `// audit: allow-sleep(<reason>)` on the same or the previous line.
pub(crate) fn check_fixed_sleeps(ws: &Workspace) -> Vec<Finding> {
    let mut findings = Vec::new();
    for f in &ws.files {
        let bare = imports_sleep(f);
        for (idx, code) in f.code_lines.iter().enumerate() {
            let line = idx + 1;
            if !code.contains("sleep") || !f.is_test_line(line) {
                continue;
            }
            let calls = sleep_calls(code, bare);
            if calls.is_empty() {
                continue;
            }
            let why = match marker(f, line, "sleep") {
                Marker::Present => continue,
                Marker::NoReason => "its `// audit: allow-sleep(..)` marker gives no reason",
                Marker::Absent => {
                    "tests wait for a condition with a deadline, never a fixed time \
                     (mark deliberate stalls `// audit: allow-sleep(<reason>)`)"
                }
            };
            findings.push(Finding::in_file(&f.path, Some(line), format!("fixed sleep `{}` in test code: {why}", calls.join("`, `"))));
        }
    }
    findings
}

/// Wall-clock uses on one line of code.
fn clock_uses(code: &str) -> Vec<&'static str> {
    let mut uses = Vec::new();
    if ident_positions(code, "SystemTime").next().is_some() {
        uses.push("SystemTime");
    }
    if ident_positions(code, "UNIX_EPOCH").next().is_some() {
        uses.push("UNIX_EPOCH");
    }
    let instant_now = ident_positions(code, "Instant").any(|p| {
        let rest = code[p + "Instant".len()..].trim_start();
        rest.strip_prefix("::").is_some_and(|r| ident_positions(r.trim_start(), "now").next() == Some(0))
    });
    if instant_now {
        uses.push("Instant::now");
    }
    let time_instant = ident_positions(code, "Instant").any(|p| code[..p].trim_end().ends_with("time::"));
    if time_instant && !instant_now {
        uses.push("std::time::Instant");
    }
    if ident_positions(code, "chrono").next().is_some() {
        uses.push("chrono");
    }
    uses
}

/// Check (e): no wall clock in repl-core's or the simulator's non-test code, unless marked
/// `// audit: allow-clock(<reason>)` on the same or the previous line.
pub(crate) fn check_wall_clock(ws: &Workspace) -> Vec<Finding> {
    let mut findings = Vec::new();
    for f in ws.files.iter().filter(|f| f.path.starts_with(REPL_CORE_SRC) || f.path.starts_with(SIM_SRC)) {
        if f.is_test_file {
            continue;
        }
        for (idx, code) in f.code_lines.iter().enumerate() {
            let line = idx + 1;
            if f.is_test_line(line) {
                continue;
            }
            let uses = clock_uses(code);
            if uses.is_empty() {
                continue;
            }
            let why = match marker(f, line, "clock") {
                Marker::Present => continue,
                Marker::NoReason => "its `// audit: allow-clock(..)` marker gives no reason",
                Marker::Absent => {
                    "repl-core is sans-IO and no correctness decision may depend on \
                     wall-clock time (REPL-10); pass time in, or mark \
                     `// audit: allow-clock(<reason>)`"
                }
            };
            findings.push(Finding::in_file(&f.path, Some(line), format!("wall clock `{}`: {why}", uses.join("`, `"))));
        }
    }
    findings
}

/// Check (f): no pending insta snapshots (`*.snap.new`, `*.pending-snap`).
/// `paths` are workspace-relative file paths under `crates/`.
pub(crate) fn check_pending_snapshots(paths: &[String]) -> Vec<Finding> {
    paths
        .iter()
        .filter(|p| p.ends_with(".snap.new") || p.ends_with(".pending-snap"))
        .map(|p| {
            Finding::in_file(
                p,
                None,
                "pending insta snapshot: golden files are stale; review with \
                 `cargo insta review` (or delete it) and commit the accepted .snap",
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws(path: &str, src: &str) -> Workspace {
        Workspace::single(path, src)
    }

    #[test]
    fn audit_flags_ignored_test() {
        let bad = "#[cfg(test)]\nmod tests {\n    #[test]\n    #[ignore]\n    fn slow() {}\n    #[tokio::test]\n    #[cfg_attr(miri, ignore)]\n    async fn other() {}\n}\n";
        let f = check_ignored(&ws("crates/a/src/lib.rs", bad));
        let msgs: Vec<String> = f.iter().map(ToString::to_string).collect();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(msgs[0].starts_with("crates/a/src/lib.rs:4: test `slow` is #[ignore]d"));
        assert!(msgs[1].starts_with("crates/a/src/lib.rs:7: test `other` is #[ignore]d"));

        let good = "#[test]\nfn fine() { let s = \"#[ignore]\"; }\n// #[ignore]\n";
        assert_eq!(check_ignored(&ws("crates/a/tests/t.rs", good)), vec![]);
    }

    #[test]
    fn audit_flags_fixed_sleep_in_test() {
        let bad = r#"
fn production() { std::thread::sleep(Duration::from_millis(5)); }

#[cfg(test)]
mod tests {
    #[test]
    fn waits() {
        std::thread::sleep(Duration::from_millis(50));
    }
    #[tokio::test]
    async fn waits_async() {
        tokio::time::sleep(Duration::from_millis(50)).await;
        thread::sleep(D);
    }
}
"#;
        let f = check_fixed_sleeps(&ws("crates/a/src/lib.rs", bad));
        let lines: Vec<Option<usize>> = f.iter().map(|f| f.line).collect();
        assert_eq!(lines, [Some(8), Some(12), Some(13)], "{f:?}");
        assert!(f[1].message.contains("`time::sleep(`"));

        let bare = "use tokio::time::{sleep, Duration};\n#[tokio::test]\nasync fn t() { sleep(D).await; }\n";
        assert_eq!(check_fixed_sleeps(&ws("crates/a/tests/t.rs", bare)).len(), 1);
    }

    #[test]
    fn audit_allows_marked_sleeps_and_non_test_sleeps() {
        let good = r#"
fn production() { std::thread::sleep(D); }
#[cfg(test)]
mod tests {
    fn proxy() {
        // audit: allow-sleep(fault proxy stalls a frame on purpose)
        std::thread::sleep(D);
        std::thread::sleep(D); // audit: allow-sleep(second stall)
        clock.sleep(D); // simulated clock, not a fixed sleep
        let s = "thread::sleep(D)";
    }
}
"#;
        assert_eq!(check_fixed_sleeps(&ws("crates/a/src/lib.rs", good)), vec![]);
        let no_reason = "#[test]\nfn t() {\n    // audit: allow-sleep()\n    std::thread::sleep(D);\n}\n";
        let f = check_fixed_sleeps(&ws("crates/a/tests/t.rs", no_reason));
        assert_eq!(f.len(), 1);
        assert!(f[0].message.contains("gives no reason"));
    }

    #[test]
    fn audit_flags_wall_clock_in_repl_core() {
        let bad = r#"use std::time::SystemTime;
fn decide(x: u64) -> bool {
    let t = std::time::Instant::now();
    let y: std::time::Instant = todo();
    let z = chrono::Utc::now();
    x > 3
}
"#;
        let f = check_wall_clock(&ws("crates/aerodb-repl-core/src/gate.rs", bad));
        let got: Vec<(Option<usize>, bool)> = f.iter().map(|f| (f.line, f.message.starts_with("wall clock"))).collect();
        assert_eq!(got, [(Some(1), true), (Some(3), true), (Some(4), true), (Some(5), true)]);
        assert!(f[1].message.contains("`Instant::now`"));

        // Same code elsewhere, in tests, or marked is fine.
        assert_eq!(check_wall_clock(&ws("crates/aerodb-repl-net/src/x.rs", bad)), vec![]);
        assert_eq!(check_wall_clock(&ws("crates/aerodb-sim/src/world.rs", bad)).len(), 4, "the simulator runs on simulated time only");
        assert_eq!(check_wall_clock(&ws("crates/aerodb-repl-core/tests/x.rs", bad)), vec![]);
        let good = r#"
/// Time is an input: `now` comes from the caller.
fn decide(now: Instant, deadline: Instant) -> bool { now >= deadline }
fn idle_timer() -> Instant {
    // audit: allow-clock(idle-connection timer only; never decides correctness)
    Instant::now()
}
const DOC: &str = "SystemTime";
#[cfg(test)]
mod tests {
    fn t() { let _ = std::time::SystemTime::now(); }
}
"#;
        assert_eq!(check_wall_clock(&ws("crates/aerodb-repl-core/src/gate.rs", good)), vec![]);
    }

    #[test]
    fn audit_flags_pending_snapshot() {
        let paths: Vec<String> =
            ["crates/x/src/snapshots/x__a.snap", "crates/x/src/snapshots/x__b.snap.new", "crates/x/tests/.t__c.pending-snap"].map(String::from).to_vec();
        let f = check_pending_snapshots(&paths);
        let files: Vec<&str> = f.iter().map(|f| f.file.as_str()).collect();
        assert_eq!(files, ["crates/x/src/snapshots/x__b.snap.new", "crates/x/tests/.t__c.pending-snap"]);
        assert_eq!(check_pending_snapshots(&paths[..1]), vec![]);
    }
}
