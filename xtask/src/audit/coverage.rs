//! Check (b): every rule ID is documented and proven by a test, and tests
//! cite only IDs that exist.
//!
//! Convention: a test proves rule `CORE-2` if its function name contains the
//! token `core_2` (ID lowercased, `-` → `_`, delimited by `_` or the ends of
//! the name, so `core_2` never matches `core_21`), or if its doc comment
//! contains the exact ID `CORE-2` (not followed by another digit).

use super::source::{TestFn, Workspace};
use super::Finding;
use std::collections::{BTreeMap, BTreeSet};

/// One `id: "..."` entry of the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RegistryEntry {
    /// The rule ID.
    pub(crate) id: String,
    /// 1-based line in `rules.rs`.
    pub(crate) line: usize,
}

/// Parses the `id: "..."` fields inside `const RULES` of `rules.rs`.
pub(crate) fn parse_registry(src: &str) -> Result<Vec<RegistryEntry>, Finding> {
    let mut entries = Vec::new();
    let mut inside = false;
    let mut found = false;
    for (idx, line) in src.lines().enumerate() {
        let t = line.trim();
        if !inside {
            if t.contains("const RULES") {
                inside = true;
                found = true;
            }
            continue;
        }
        if t == "];" {
            inside = false;
            continue;
        }
        if t.starts_with("//") {
            continue;
        }
        let Some(pos) = t.find("id:") else { continue };
        if t[..pos].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue; // e.g. `rule_id:`
        }
        let rest = t[pos + 3..].trim_start();
        let value = rest.strip_prefix('"').and_then(|r| r.split_once('"')).map(|(v, _)| v);
        match value {
            Some(v) => entries.push(RegistryEntry { id: v.to_string(), line: idx + 1 }),
            None => return Err(Finding::in_file("", Some(idx + 1), "an `id:` field that is not a string literal")),
        }
    }
    if !found {
        return Err(Finding::global("no `const RULES` found"));
    }
    if inside {
        return Err(Finding::global("`const RULES` is not closed by a `];` line"));
    }
    Ok(entries)
}

fn is_id_boundary(c: Option<char>) -> bool {
    !c.is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// Matches an ID-shaped token at the start of `s`; returns its length.
fn match_id_at(s: &str) -> Option<usize> {
    let digits = |t: &str| t.bytes().take_while(u8::is_ascii_digit).count();
    for prefix in ["REPL-", "CORE-", "MVCC-", "P5-I", "RS-", "RES-"] {
        if let Some(rest) = s.strip_prefix(prefix) {
            let n = digits(rest);
            return (n > 0).then_some(prefix.len() + n);
        }
    }
    let rest = s.strip_prefix("F-")?;
    let letters = rest.bytes().take_while(u8::is_ascii_uppercase).count();
    let n = digits(&rest[letters..]);
    (letters > 0 && n > 0).then_some(2 + letters + n)
}

/// Every ID-shaped token (`REPL-n`, `CORE-n`, `MVCC-n`, `P5-In`, `RS-n`,
/// `RES-n`, `F-Xn`) in free text, e.g. a doc comment.
pub(crate) fn ids_in_text(text: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut prev: Option<char> = None;
    for (i, c) in text.char_indices() {
        let starts_clean = !prev.is_some_and(|p| p.is_alphanumeric() || p == '_' || p == '-');
        if starts_clean && (c == 'R' || c == 'C' || c == 'M' || c == 'P' || c == 'F') {
            if let Some(len) = match_id_at(&text[i..]) {
                if is_id_boundary(text[i + len..].chars().next()) {
                    ids.push(text[i..i + len].to_string());
                }
            }
        }
        prev = Some(c);
    }
    ids
}

/// Every ID cited by a snake_case test name (`core_2_x` → `CORE-2`,
/// `p5_i4_x` → `P5-I4`, `f_rc1_x` → `F-RC1`).
pub(crate) fn ids_in_name(name: &str) -> Vec<String> {
    let lower = name.to_ascii_lowercase();
    let segs: Vec<&str> = lower.split('_').collect();
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mut ids = Vec::new();
    for pair in segs.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        match a {
            "repl" | "core" | "mvcc" | "rs" | "res" if all_digits(b) => {
                ids.push(format!("{}-{b}", a.to_ascii_uppercase()));
            }
            "p5" => {
                if let Some(n) = b.strip_prefix('i').filter(|n| all_digits(n)) {
                    ids.push(format!("P5-I{n}"));
                }
            }
            "f" => {
                let letters = b.bytes().take_while(u8::is_ascii_lowercase).count();
                if letters > 0 && all_digits(&b[letters..]) {
                    ids.push(format!("F-{}", b.to_ascii_uppercase()));
                }
            }
            _ => {}
        }
    }
    ids
}

/// Whether `s` is exactly one ID-shaped token.
pub(crate) fn is_id_shaped(s: &str) -> bool {
    match_id_at(s) == Some(s.len())
}

/// IDs a test cites through its name or its doc comment.
pub(crate) fn ids_cited_by(test: &TestFn) -> BTreeSet<String> {
    let mut ids: BTreeSet<String> = ids_in_name(&test.name).into_iter().collect();
    for d in &test.docs {
        ids.extend(ids_in_text(d));
    }
    ids
}

/// One row of a `| ID | rule | tests |` table in `docs/invariants.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DocRow {
    /// The rule ID in the first cell.
    pub(crate) id: String,
    /// 1-based line.
    pub(crate) line: usize,
    /// Test names in the third cell (`—` means none).
    pub(crate) tests: Vec<String>,
}

/// Parses the table rows of `docs/invariants.md` whose first cell is an ID.
pub(crate) fn parse_docs(md: &str) -> Vec<DocRow> {
    let mut rows = Vec::new();
    for (idx, line) in md.lines().enumerate() {
        let t = line.trim();
        if !t.starts_with('|') {
            continue;
        }
        let cells: Vec<&str> = t.trim_matches('|').split('|').map(str::trim).collect();
        let Some(first) = cells.first() else { continue };
        let id = first.trim_matches('`');
        if !is_id_shaped(id) {
            continue;
        }
        let tests = cells
            .get(2)
            .map(|c| {
                c.split([',', ' ', ';'])
                    .map(|s| s.trim().trim_matches('`').trim_end_matches("()"))
                    .map(|s| s.rsplit("::").next().unwrap_or(s))
                    .filter(|s| !s.is_empty() && !matches!(*s, "—" | "–" | "-"))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        rows.push(DocRow { id: id.to_string(), line: idx + 1, tests });
    }
    rows
}

/// For each registered ID, the tests (`name`, file, line) that prove it.
pub(crate) fn proofs(ids: &[RegistryEntry], ws: &Workspace) -> BTreeMap<String, Vec<(String, String, usize)>> {
    let mut map: BTreeMap<String, Vec<(String, String, usize)>> = ids.iter().map(|e| (e.id.clone(), Vec::new())).collect();
    for f in &ws.files {
        for t in &f.tests {
            for id in ids_cited_by(t) {
                if let Some(v) = map.get_mut(&id) {
                    v.push((t.name.clone(), f.path.clone(), t.line));
                }
            }
        }
    }
    map
}

/// Check (b). `rules_path`/`docs_path` are used in findings only.
pub(crate) fn check_rule_coverage(rules_path: &str, rules_src: &str, docs_path: &str, docs_md: &str, ws: &Workspace) -> Vec<Finding> {
    let mut findings = Vec::new();
    let registry = match parse_registry(rules_src) {
        Ok(r) => r,
        Err(mut f) => {
            f.file = rules_path.to_string();
            return vec![f];
        }
    };
    if registry.is_empty() {
        return vec![Finding::in_file(rules_path, None, "the rule registry is empty")];
    }
    let mut known = BTreeSet::new();
    for e in &registry {
        if !is_id_shaped(&e.id) {
            findings.push(Finding::in_file(rules_path, Some(e.line), format!("`{}` is not a well-formed rule ID", e.id)));
        }
        if !known.insert(e.id.as_str()) {
            findings.push(Finding::in_file(rules_path, Some(e.line), format!("duplicate rule ID {}", e.id)));
        }
    }

    // Tests citing IDs that are not in the registry.
    for f in &ws.files {
        for t in &f.tests {
            let unknown: Vec<String> = ids_cited_by(t).into_iter().filter(|id| !known.contains(id.as_str())).collect();
            if !unknown.is_empty() {
                findings.push(Finding::in_file(
                    &f.path,
                    Some(t.line),
                    format!("test `{}` cites unknown rule ID(s) {} (not in {rules_path})", t.name, unknown.join(" ")),
                ));
            }
        }
    }

    let proofs = proofs(&registry, ws);

    // docs/invariants.md: every ID has one row; listed tests exist and prove it.
    let rows = parse_docs(docs_md);
    let mut documented = BTreeSet::new();
    for row in &rows {
        if !known.contains(row.id.as_str()) {
            findings.push(Finding::in_file(docs_path, Some(row.line), format!("{} is not in the rule registry ({rules_path})", row.id)));
            continue;
        }
        if !documented.insert(row.id.clone()) {
            findings.push(Finding::in_file(docs_path, Some(row.line), format!("{} has more than one row", row.id)));
        }
        for name in &row.tests {
            let proving = proofs.get(&row.id).is_some_and(|v| v.iter().any(|(n, _, _)| n == name));
            if proving {
                continue;
            }
            let exists = ws.files.iter().any(|f| f.tests.iter().any(|t| &t.name == name));
            let why = if exists { "which does not cite it in its name or doc comment" } else { "which is not a test function in crates/ or xtask/" };
            findings.push(Finding::in_file(docs_path, Some(row.line), format!("{} lists test `{name}`, {why}", row.id)));
        }
    }
    let undocumented: Vec<&str> = registry.iter().map(|e| e.id.as_str()).filter(|id| !documented.contains(*id)).collect();
    if !undocumented.is_empty() {
        findings.push(Finding::in_file(docs_path, None, format!("{} rule ID(s) have no row: {}", undocumented.len(), undocumented.join(" "))));
    }

    let unproven: Vec<&str> = registry.iter().map(|e| e.id.as_str()).filter(|id| proofs.get(*id).is_none_or(Vec::is_empty)).collect();
    if !unproven.is_empty() {
        findings.push(Finding::in_file(rules_path, None, format!("{} of {} rules have no test: {}", unproven.len(), known.len(), unproven.join(" "))));
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES_SRC: &str = r#"
pub const RULES: &[Rule] = &[
    // comment id: "NOPE-1"
    Rule { id: "CORE-2", family: "CORE", summary: "checksums" },
    Rule {
        id: "F-RC1",
        family: "F",
        summary: "recovery crash",
    },
];

#[cfg(test)]
mod tests {
    const X: Rule = Rule { id: "REPL-99", family: "REPL", summary: "" };
}
"#;

    const DOCS: &str = "\
# Invariants

| ID | rule | tests |
|---|---|---|
| CORE-2 | checksums | `core_2_flip_detected` |
| F-RC1 | recovery crash | — |
";

    fn ws(src: &str) -> Workspace {
        Workspace::single("crates/a/src/lib.rs", src)
    }

    const GOOD_TESTS: &str = r#"
#[cfg(test)]
mod tests {
    #[test]
    fn core_2_flip_detected() {}

    /// Crash during recovery restarts it (F-RC1).
    #[test]
    fn recovery_restarts() {}
}
"#;

    #[test]
    fn registry_is_parsed_from_the_rules_const_only() {
        let ids: Vec<String> = parse_registry(RULES_SRC).unwrap().into_iter().map(|e| e.id).collect();
        assert_eq!(ids, ["CORE-2", "F-RC1"]);
        assert!(parse_registry("fn main() {}").is_err());
    }

    #[test]
    fn name_tokens_are_delimited() {
        assert_eq!(ids_in_name("core_2_every_byte_flip"), ["CORE-2"]);
        assert_eq!(ids_in_name("repl_10_no_clock"), ["REPL-10"]);
        assert_eq!(ids_in_name("p5_i4_and_f_rc1"), ["P5-I4", "F-RC1"]);
        assert!(ids_in_name("core_2x").is_empty());
        assert!(ids_in_name("xcore_2").is_empty());
        assert!(ids_in_name("plain_test_name_1").is_empty());
        assert!(!ids_in_name("core_21_thing").contains(&"CORE-2".to_string()));
    }

    #[test]
    fn text_tokens_are_delimited() {
        assert_eq!(ids_in_text("cites CORE-2/F-V1 (REPL-1)."), ["CORE-2", "F-V1", "REPL-1"]);
        assert_eq!(ids_in_text("CORE-21 is not CORE-2"), ["CORE-21", "CORE-2"]);
        assert!(ids_in_text("XCORE-2, F-, RS-, P5-I, F-1").is_empty());
        assert_eq!(ids_in_text("F-RS1 only"), ["F-RS1"]);
    }

    #[test]
    fn audit_coverage_passes_when_every_rule_is_documented_and_proven() {
        let f = check_rule_coverage("rules.rs", RULES_SRC, "inv.md", DOCS, &ws(GOOD_TESTS));
        assert_eq!(f, vec![]);
    }

    #[test]
    fn audit_flags_rule_without_test() {
        let src = "#[test]\nfn core_2_flip_detected() {}\n#[test]\nfn f_rc10_is_another_rule() {}\n";
        let f = check_rule_coverage("rules.rs", RULES_SRC, "inv.md", DOCS, &ws(src));
        let last = f.last().unwrap();
        assert_eq!(last.message, "1 of 2 rules have no test: F-RC1");
        assert_eq!(last.file, "rules.rs");
    }

    #[test]
    fn audit_flags_unknown_rule_id() {
        let src = r#"
/// Cites REPL-99 which does not exist.
#[test]
fn core_2_flip_detected() {}
#[tokio::test]
async fn f_rc1_and_f_zz9_named() {}
"#;
        let f = check_rule_coverage("rules.rs", RULES_SRC, "inv.md", DOCS, &ws(src));
        let msgs: Vec<String> = f.iter().map(ToString::to_string).collect();
        assert_eq!(
            msgs,
            [
                "crates/a/src/lib.rs:4: test `core_2_flip_detected` cites unknown rule ID(s) REPL-99 (not in rules.rs)",
                "crates/a/src/lib.rs:6: test `f_rc1_and_f_zz9_named` cites unknown rule ID(s) F-ZZ9 (not in rules.rs)",
            ]
        );
    }

    #[test]
    fn audit_flags_rule_missing_from_docs_and_stale_doc_rows() {
        let docs = "| ID | rule | tests |\n|---|---|---|\n| CORE-2 | x | `gone_test`, `recovery_restarts` |\n| RS-9 | x | — |\n";
        let f = check_rule_coverage("rules.rs", RULES_SRC, "inv.md", docs, &ws(GOOD_TESTS));
        let msgs: Vec<String> = f.iter().map(ToString::to_string).collect();
        assert_eq!(
            msgs,
            [
                "inv.md:3: CORE-2 lists test `gone_test`, which is not a test function in crates/ or xtask/",
                "inv.md:3: CORE-2 lists test `recovery_restarts`, which does not cite it in its name or doc comment",
                "inv.md:4: RS-9 is not in the rule registry (rules.rs)",
                "inv.md: 1 rule ID(s) have no row: F-RC1",
            ]
        );
    }

    #[test]
    fn audit_flags_duplicate_registry_ids() {
        let src = "const RULES: &[Rule] = &[\n Rule { id: \"CORE-2\" },\n Rule { id: \"CORE-2\" },\n];\n";
        let f = check_rule_coverage("rules.rs", src, "inv.md", DOCS, &ws(GOOD_TESTS));
        assert!(f.iter().any(|f| f.to_string() == "rules.rs:3: duplicate rule ID CORE-2"), "{f:?}");
    }
}
