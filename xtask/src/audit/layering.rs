//! Check (a): crate layering, from `cargo metadata` JSON.
//!
//! Each workspace crate's normal dependencies on other workspace crates must
//! follow the direction in `ARCHITECTURE.md`. Dev-dependencies are exempt
//! (tests may use any crate); build-dependencies are not checked.

use super::Finding;
use serde_json::Value;

/// Allowed normal dependencies on workspace crates; `None` = any.
const LAYERS: &[(&str, Option<&[&str]>)] = &[
    ("aerodb-wal", Some(&[])),
    ("aerodb-mvcc", Some(&["aerodb-wal"])),
    ("aerodb-snapshot", Some(&["aerodb-wal", "aerodb-mvcc"])),
    ("aerodb-repl-core", Some(&["aerodb-wal", "aerodb-mvcc", "aerodb-snapshot"])),
    ("aerodb-repl-net", Some(&["aerodb-wal", "aerodb-mvcc", "aerodb-snapshot", "aerodb-repl-core"])),
    ("aerodb-repl-explain", Some(&["aerodb-wal", "aerodb-mvcc", "aerodb-snapshot", "aerodb-repl-core"])),
    // The typed HTTP client: a leaf (no workspace crate) that the binary
    // (CLI, demo) and xtask (bench) may depend on.
    ("aerodb-client", Some(&[])),
    ("aerodb-sim", Some(&["aerodb-wal", "aerodb-mvcc", "aerodb-snapshot", "aerodb-repl-core", "aerodb-repl-net", "aerodb-repl-explain"])),
    ("aerodb", None),
    ("xtask", None),
];

fn allowed_for(krate: &str) -> Option<Option<&'static [&'static str]>> {
    LAYERS.iter().find(|(n, _)| *n == krate).map(|(_, a)| *a)
}

/// 1-based line of `dep` in a normal `[dependencies]` (or
/// `[target.*.dependencies]`) table of `manifest`.
pub(crate) fn locate_dependency_line(manifest: &str, dep: &str) -> Option<usize> {
    let mut in_deps = false;
    for (idx, line) in manifest.lines().enumerate() {
        let t = line.trim();
        if let Some(header) = t.strip_prefix('[') {
            let header = header.trim_end_matches(']').trim();
            if header == format!("dependencies.{dep}") {
                return Some(idx + 1);
            }
            in_deps = header == "dependencies" || (header.starts_with("target.") && header.ends_with(".dependencies"));
            continue;
        }
        if in_deps {
            if let Some(rest) = t.strip_prefix(dep) {
                if rest.starts_with([' ', '=', '.']) {
                    return Some(idx + 1);
                }
            }
        }
    }
    None
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Checks the layering. `metadata_json` is the output of
/// `cargo metadata --format-version 1 --no-deps`; `read_manifest` returns
/// the text of a manifest given its absolute path (used only to report
/// line numbers).
pub(crate) fn check_layering(metadata_json: &str, read_manifest: &dyn Fn(&str) -> Option<String>) -> Vec<Finding> {
    let meta: Value = match serde_json::from_str(metadata_json) {
        Ok(v) => v,
        Err(e) => return vec![Finding::global(format!("cargo metadata output is not JSON: {e}"))],
    };
    let Some(packages) = meta.get("packages").and_then(Value::as_array) else {
        return vec![Finding::global("cargo metadata output has no `packages` array")];
    };
    let root = str_field(&meta, "workspace_root").unwrap_or("");
    let names: Vec<&str> = packages.iter().filter_map(|p| str_field(p, "name")).collect();
    let mut findings = Vec::new();
    for pkg in packages {
        let Some(name) = str_field(pkg, "name") else {
            findings.push(Finding::global("a package in cargo metadata has no name"));
            continue;
        };
        let manifest_abs = str_field(pkg, "manifest_path").unwrap_or("");
        let manifest_rel = manifest_abs.strip_prefix(root).map(|p| p.trim_start_matches(['/', '\\'])).unwrap_or(manifest_abs).replace('\\', "/");
        let Some(allowed) = allowed_for(name) else {
            findings.push(Finding::in_file(
                &manifest_rel,
                None,
                format!(
                    "workspace crate `{name}` has no entry in the layering table \
                     (xtask/src/audit/layering.rs, ARCHITECTURE.md)"
                ),
            ));
            continue;
        };
        let Some(allowed) = allowed else { continue };
        let deps = pkg.get("dependencies").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let mut manifest_text: Option<Option<String>> = None;
        for dep in deps {
            let Some(dep_name) = str_field(dep, "name") else {
                continue;
            };
            let normal = dep.get("kind").is_none_or(Value::is_null);
            if !normal || !names.contains(&dep_name) || allowed.contains(&dep_name) {
                continue;
            }
            let text = manifest_text.get_or_insert_with(|| read_manifest(manifest_abs));
            let line = text.as_deref().and_then(|t| locate_dependency_line(t, dep_name));
            let may = if allowed.is_empty() { "no workspace crate".to_string() } else { allowed.join(", ") };
            findings.push(Finding::in_file(&manifest_rel, line, format!("`{name}` depends on `{dep_name}`, but it may depend only on: {may}")));
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A crate name and its dependencies (name, kind).
    type Pkg = (&'static str, &'static [(&'static str, Option<&'static str>)]);

    fn metadata(packages: &[Pkg]) -> String {
        let pkgs: Vec<Value> = packages
            .iter()
            .map(|(name, deps)| {
                serde_json::json!({
                    "name": name,
                    "manifest_path": format!("/ws/crates/{name}/Cargo.toml"),
                    "dependencies": deps.iter().map(|(d, kind)| serde_json::json!({
                        "name": d, "kind": kind, "req": "*"
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::json!({"packages": pkgs, "workspace_root": "/ws"}).to_string()
    }

    fn good_workspace() -> Vec<Pkg> {
        vec![
            ("aerodb-wal", &[("thiserror", None), ("aerodb-mvcc", Some("dev"))]),
            ("aerodb-mvcc", &[("aerodb-wal", None)]),
            ("aerodb-snapshot", &[("aerodb-wal", None), ("aerodb-mvcc", None)]),
            ("aerodb-repl-core", &[("aerodb-snapshot", None)]),
            ("aerodb-repl-net", &[("aerodb-repl-core", None)]),
            ("aerodb-repl-explain", &[("aerodb-repl-core", None)]),
            ("aerodb-client", &[("hyper", None)]),
            ("aerodb", &[("aerodb-repl-net", None), ("aerodb-repl-explain", None), ("aerodb-client", None)]),
            ("xtask", &[("aerodb-wal", None), ("aerodb-client", None)]),
        ]
    }

    #[test]
    fn audit_layering_passes_on_allowed_direction() {
        let json = metadata(&good_workspace());
        assert_eq!(check_layering(&json, &|_| None), vec![]);
    }

    #[test]
    fn audit_layering_flags_upward_dependency() {
        let mut ws = good_workspace();
        ws[1] = ("aerodb-mvcc", &[("aerodb-wal", None), ("aerodb-repl-core", None)]);
        let json = metadata(&ws);
        let manifest = "[package]\nname = \"aerodb-mvcc\"\n\n[dependencies]\naerodb-wal.workspace = true\naerodb-repl-core = { workspace = true }\n";
        let findings = check_layering(&json, &|p| (p == "/ws/crates/aerodb-mvcc/Cargo.toml").then(|| manifest.to_string()));
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].file, "crates/aerodb-mvcc/Cargo.toml");
        assert_eq!(findings[0].line, Some(6));
        assert!(findings[0].message.contains("`aerodb-mvcc` depends on `aerodb-repl-core`"));
    }

    #[test]
    fn audit_layering_flags_net_dependency_from_explain_and_unknown_crates() {
        let mut ws = good_workspace();
        ws[5] = ("aerodb-repl-explain", &[("aerodb-repl-net", None)]);
        ws.push(("aerodb-new", &[]));
        let findings = check_layering(&metadata(&ws), &|_| None);
        assert_eq!(findings.len(), 2, "{findings:?}");
        assert!(findings[0].message.contains("`aerodb-repl-explain` depends on `aerodb-repl-net`"));
        assert!(findings[1].message.contains("`aerodb-new` has no entry"));
    }

    #[test]
    fn audit_layering_keeps_the_client_crate_a_leaf() {
        let mut ws = good_workspace();
        ws[6] = ("aerodb-client", &[("aerodb-wal", None), ("aerodb-mvcc", Some("dev"))]);
        let findings = check_layering(&metadata(&ws), &|_| None);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(findings[0].message.contains("`aerodb-client` depends on `aerodb-wal`, but it may depend only on: no workspace crate"), "{findings:?}");
    }

    #[test]
    fn audit_layering_reports_bad_metadata_instead_of_panicking() {
        assert_eq!(check_layering("not json", &|_| None).len(), 1);
        assert_eq!(check_layering("{}", &|_| None).len(), 1);
    }

    #[test]
    fn dependency_lines_are_found_only_in_normal_tables() {
        let m = "[dev-dependencies]\nfoo = \"1\"\n[dependencies]\nfoo-bar = \"1\"\nfoo = \"1\"\n[dependencies.baz]\npath = \"x\"\n";
        assert_eq!(locate_dependency_line(m, "foo"), Some(5));
        assert_eq!(locate_dependency_line(m, "baz"), Some(6));
        assert_eq!(locate_dependency_line(m, "qux"), None);
    }
}
