//! Check: the declared minimum Rust version (`rust-version`) is consistent.
//!
//! From full `cargo metadata` JSON: every workspace member declares the same
//! `rust-version`, and no dependency in the lock file declares a newer one
//! (a dependency that needs a newer compiler would make the claim false).
//! This checks the claim's consistency; building with that exact toolchain
//! is `.ci/run`'s job when the toolchain is installed (see the README).

use super::Finding;
use serde_json::Value;

/// `1.89` / `1.89.0` → (1, 89, 0).
fn parse(v: &str) -> Option<(u64, u64, u64)> {
    let mut parts = v.split('.').map(|p| p.parse::<u64>());
    let major = parts.next()?.ok()?;
    let minor = parts.next().unwrap_or(Ok(0)).ok()?;
    let patch = parts.next().unwrap_or(Ok(0)).ok()?;
    Some((major, minor, patch))
}

/// The workspace's declared rust-version, or findings.
pub(crate) fn check_rust_version(metadata_json: &str) -> (Option<String>, Vec<Finding>) {
    let meta: Value = match serde_json::from_str(metadata_json) {
        Ok(v) => v,
        Err(e) => return (None, vec![Finding::global(format!("cargo metadata output is not JSON: {e}"))]),
    };
    let members: Vec<&str> = meta["workspace_members"].as_array().map(|m| m.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let packages = meta["packages"].as_array().map(Vec::as_slice).unwrap_or_default();
    let mut findings = Vec::new();
    let mut declared: Option<&str> = None;
    for p in packages.iter().filter(|p| p["id"].as_str().is_some_and(|id| members.contains(&id))) {
        let name = p["name"].as_str().unwrap_or("?");
        match (p["rust_version"].as_str(), declared) {
            (None, _) => findings.push(Finding::global(format!("workspace crate `{name}` declares no rust-version (use `rust-version.workspace = true`)"))),
            (Some(v), None) => declared = Some(v),
            (Some(v), Some(d)) if v != d => findings.push(Finding::global(format!("workspace crate `{name}` declares rust-version {v}, the workspace {d}"))),
            _ => {}
        }
    }
    let Some(ours) = declared.and_then(parse) else {
        findings.push(Finding::global("no workspace crate declares a parseable rust-version"));
        return (None, findings);
    };
    for p in packages.iter().filter(|p| !p["id"].as_str().is_some_and(|id| members.contains(&id))) {
        if let Some(v) = p["rust_version"].as_str() {
            if parse(v).is_some_and(|theirs| theirs > ours) {
                findings.push(Finding::global(format!(
                    "dependency `{} {}` needs Rust {v}, newer than the workspace's rust-version {}",
                    p["name"].as_str().unwrap_or("?"),
                    p["version"].as_str().unwrap_or("?"),
                    declared.unwrap_or("?")
                )));
            }
        }
    }
    (declared.map(str::to_string), findings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pkgs: &[(&str, bool, Option<&str>)]) -> String {
        let packages: Vec<Value> = pkgs.iter().map(|(n, _, v)| serde_json::json!({"id": n, "name": n, "version": "1.0.0", "rust_version": v})).collect();
        let members: Vec<&str> = pkgs.iter().filter(|p| p.1).map(|p| p.0).collect();
        serde_json::json!({"packages": packages, "workspace_members": members}).to_string()
    }

    #[test]
    fn audit_rust_version_is_consistent_across_members_and_dependencies() {
        let (v, f) = check_rust_version(&meta(&[("a", true, Some("1.89")), ("b", true, Some("1.89")), ("dep", false, Some("1.88")), ("old", false, None)]));
        assert_eq!((v.as_deref(), f), (Some("1.89"), vec![]));
        let (_, f) = check_rust_version(&meta(&[("a", true, Some("1.89")), ("b", true, Some("1.80")), ("dep", false, Some("1.90.1"))]));
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(f[0].message.contains("`b` declares rust-version 1.80") && f[1].message.contains("`dep 1.0.0` needs Rust 1.90.1"), "{f:?}");
        assert!(!check_rust_version(&meta(&[("a", true, None)])).1.is_empty());
        assert_eq!(parse("1.89"), Some((1, 89, 0)));
    }
}
