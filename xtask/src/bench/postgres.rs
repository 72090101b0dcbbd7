//! The PostgreSQL 15 reference scripts (`../shared/bench/postgres`, README
//! there): installing PostgreSQL 15 when it is missing, running one script
//! with its documented environment knobs into a fresh results directory,
//! and parsing the `measurements.tsv` it writes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where the scripts expect the server binaries (`PGBIN` in common.sh).
const PGBIN: &str = "/usr/lib/postgresql/15/bin";

/// One row of `measurements.tsv`: time, phase, name, value, unit, note.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Measurement {
    /// Phase (`commit`, `catchup`, `bootstrap`, `lag`, `reads`).
    pub phase: String,
    /// Measurement name.
    pub name: String,
    /// Value (None when the script recorded an empty value).
    pub value: Option<f64>,
    /// Unit.
    pub unit: String,
}

/// Parses `measurements.tsv` (rows with fewer than 5 columns are skipped).
pub(crate) fn parse_tsv(text: &str) -> Vec<Measurement> {
    text.lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            if cols.len() < 5 {
                return None;
            }
            Some(Measurement { phase: cols[1].to_string(), name: cols[2].to_string(), value: cols[3].trim().parse().ok(), unit: cols[4].to_string() })
        })
        .collect()
}

/// The values of `phase`/`name`, in the order recorded.
pub(crate) fn values(ms: &[Measurement], phase: &str, name: &str) -> Vec<f64> {
    ms.iter().filter(|m| m.phase == phase && m.name == name).filter_map(|m| m.value).collect()
}

/// The single value of `phase`/`name` (the last one if repeated).
pub(crate) fn value(ms: &[Measurement], phase: &str, name: &str) -> Result<f64, String> {
    values(ms, phase, name).last().copied().ok_or_else(|| format!("the PostgreSQL scripts recorded no {phase}/{name}"))
}

/// The reference scripts directory.
pub(crate) struct Scripts {
    dir: PathBuf,
}

impl Scripts {
    /// `dir`, or `../shared/bench/postgres` beside the workspace.
    pub(crate) fn locate(dir: Option<&Path>) -> Result<Scripts, String> {
        let dir = match dir {
            Some(d) => d.to_path_buf(),
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/bench/postgres"),
        };
        if !dir.join("common.sh").is_file() {
            return Err(format!("no PostgreSQL reference scripts in {} (use --pg-scripts DIR)", dir.display()));
        }
        Ok(Scripts { dir })
    }

    /// Installs PostgreSQL 15 with apt when its server binaries are missing
    /// (as the scripts' README says; needs root).
    pub(crate) fn ensure_postgres() -> Result<(), String> {
        if Path::new(PGBIN).join("postgres").is_file() && which("pgbench") {
            return Ok(());
        }
        eprintln!("bench: PostgreSQL 15 is missing; apt-get install -y postgresql-15");
        for args in [&["update"][..], &["install", "-y", "postgresql-15"][..]] {
            let status = Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(Stdio::from(std::io::stderr()))
                .status()
                .map_err(|e| format!("cannot run apt-get: {e}"))?;
            if !status.success() {
                return Err(format!("apt-get {} failed ({status}); install PostgreSQL 15 as root", args.join(" ")));
            }
        }
        Ok(())
    }

    /// Runs `script` (e.g. `02_commit_throughput.sh`) with `env` set and a
    /// fresh `RES` directory under `res_root`; returns its measurements.
    /// The script's output goes to stderr (stdout carries only the JSON).
    pub(crate) fn run(&self, script: &str, env: &[(&str, String)], res_root: &Path) -> Result<Vec<Measurement>, String> {
        let res = res_root.join(format!("pg-{}", script.trim_end_matches(".sh")));
        let res = (0..).map(|i| res.with_extension(i.to_string())).find(|p| !p.exists()).ok_or("no free results directory")?;
        std::fs::create_dir_all(&res).map_err(|e| format!("cannot create {}: {e}", res.display()))?;
        let shown: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        eprintln!("bench: postgres: {} {script}", shown.join(" "));
        let status = Command::new("bash")
            .arg(self.dir.join(script))
            .current_dir(&self.dir)
            .env("RES", &res)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::io::stderr()))
            .status()
            .map_err(|e| format!("cannot run {script}: {e}"))?;
        if !status.success() {
            return Err(format!("{script} failed ({status}); its log is above, results in {}", res.display()));
        }
        let tsv = std::fs::read_to_string(res.join("measurements.tsv")).map_err(|e| format!("{script} wrote no measurements.tsv: {e}"))?;
        Ok(parse_tsv(&tsv))
    }
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn measurements_tsv_parses_with_empty_values_and_short_rows() {
        let tsv = "2026-11-30T03:00:00+00:00\tcommit\tinsert_noreplica_c1_tps\t3768.1\ttx/s\tclients=1 T=5s\n\
                   2026-11-30T03:00:01+00:00\tlag\twrite_lag_ms_median\t\tms\tno non-null samples\n\
                   garbage\n\
                   2026-11-30T03:00:02+00:00\tcommit\tinsert_noreplica_c1_tps\t3800\ttx/s\n";
        let ms = parse_tsv(tsv);
        assert_eq!(ms.len(), 3);
        assert_eq!(values(&ms, "commit", "insert_noreplica_c1_tps"), vec![3768.1, 3800.0]);
        assert_eq!(value(&ms, "commit", "insert_noreplica_c1_tps").unwrap(), 3800.0);
        assert_eq!(ms[1].value, None);
        assert_eq!(ms[1].unit, "ms");
        assert!(value(&ms, "lag", "write_lag_ms_median").is_err());
    }

    #[test]
    fn a_directory_without_the_scripts_is_refused() {
        let e = Scripts::locate(Some(Path::new("/nonexistent"))).err().unwrap();
        assert!(e.contains("--pg-scripts"), "{e}");
    }
}
