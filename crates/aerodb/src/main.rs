//! The `aerodb` node binary.
//!
//! This crate owns the process edges: command-line parsing, the data
//! directory's identity and lock, the client HTTP API, the DX server, the
//! CLI client commands, offline tools and the demo. It wires the library
//! crates together and must never decide what is true about replication
//! itself: every correctness decision lives in the library crates.

/// `println!` that never panics: output to a closed pipe (`aerodb wal-dump | head`)
/// is ignored instead of aborting the process.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `print!` that never panics (see [`outln`]).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        let _ = write!(stdout, $($arg)*);
        let _ = stdout.flush();
    }};
}

mod cli;
mod client;
mod client_api;
mod datadir;
#[cfg(feature = "replication")]
mod demo;
mod durability;
#[cfg(feature = "replication")]
mod dx;
mod dx_client;
mod error;
mod http;
mod node;
#[cfg(feature = "replication")]
mod primary_repl;
#[cfg(feature = "replication")]
mod repair;
#[cfg(feature = "replication")]
mod replica_node;
mod scrub_task;
mod service;
mod serving;
mod tools;
mod verify_ext;
mod waiting;

// The pure parsers of client input live in the library target (so the
// fuzz targets run the same code); `crate::api_error` etc. resolve to them.
use aerodb::{api_error, request};

use clap::Parser;
use serde_json::Value;

use crate::cli::{Cli, Command, ScrubFlags, WalRetention, WriterFlags};
use crate::datadir::Role;
use crate::node::PrimaryOptions;

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}

fn primary_options(flags: WriterFlags, repl_listen: Option<String>) -> PrimaryOptions {
    let mut opts = PrimaryOptions::new(flags.data_dir);
    opts.listen = flags.listen;
    opts.dx_listen = (flags.dx_listen != "off").then_some(flags.dx_listen);
    opts.repl_listen = repl_listen;
    opts.snapshot_every_bytes = flags.snapshot_every_bytes;
    opts.wal_retention_after_snapshot = flags.wal_retention == WalRetention::AfterOldestSnapshot;
    opts.http = flags.http.limits();
    opts.segment_target_bytes = flags.wal_segment_bytes;
    let d = &flags.durability;
    opts.durability = durability::DurabilityOptions {
        mark: aerodb_wal::mark_writer::MarkPolicy { every_ms: d.durable_mark_every_ms, every_bytes: d.durable_mark_every_bytes },
        accept_lost_history: d.accept_lost_history,
        lift_fence: d.lift_fence,
    };
    opts.scrub = scrub_policy(&flags.scrub);
    opts.gc = aerodb_mvcc::GcPolicy::new(flags.history_retain_commits);
    opts
}

fn scrub_policy(flags: &ScrubFlags) -> aerodb_snapshot::scrub::ScrubPolicy {
    aerodb_snapshot::scrub::ScrubPolicy { bytes_per_second: flags.scrub_bytes_per_second, pass_interval_ms: flags.scrub_pass_interval_ms }
}

fn run_node(result: Result<(), error::StartupError>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(code = e.code(), "{e}");
            eprintln!("aerodb: refusing to start: {e} [{}]", e.code());
            1
        }
    }
}

fn main() {
    let _failpoints = fail::FailScenario::setup();
    let cli = Cli::parse();
    init_tracing();
    let code = match cli.command {
        Command::Primary { node, repl_listen } => run_node(node::run_primary(primary_options(node, Some(repl_listen)), Role::Primary)),
        Command::Standalone { node } => run_node(node::run_primary(primary_options(node, None), Role::Standalone)),
        #[cfg(feature = "replication")]
        Command::Replica { data_dir, primary, listen, dx_listen, bootstrap, rebootstrap, http, scrub } => {
            let method = match bootstrap {
                cli::BootstrapMode::Snapshot => aerodb_repl_core::metadata::BootstrapMethod::Snapshot,
                cli::BootstrapMode::Wal => aerodb_repl_core::metadata::BootstrapMethod::Wal,
            };
            let dx_listen = (dx_listen != "off").then_some(dx_listen);
            run_node(replica_node::run_replica(replica_node::ReplicaOptions {
                data_dir,
                primary,
                listen,
                dx_listen,
                bootstrap: method,
                rebootstrap,
                http: http.limits(),
                scrub: scrub_policy(&scrub),
            }))
        }
        #[cfg(not(feature = "replication"))]
        Command::Replica { .. } => {
            eprintln!("aerodb: this build has no replication (built without the `replication` feature, P5-I16)");
            2
        }
        Command::Put { node, collection, key, json } => match serde_json::from_str::<Value>(&json) {
            Ok(doc) => client::write("PUT", &client::doc_url(&node, &collection, &key), Some(&doc)),
            Err(e) => {
                eprintln!("aerodb: JSON argument is not valid JSON: {e}");
                2
            }
        },
        Command::Delete { node, collection, key } => client::write("DELETE", &client::doc_url(&node, &collection, &key), None),
        Command::Get { node, collection, key, at, min_commit } => {
            let mut url = client::doc_url(&node, &collection, &key);
            let mut sep = '?';
            for (name, value) in [("at", at), ("min_commit", min_commit)] {
                if let Some(v) = value {
                    url.push_str(&format!("{sep}{name}={v}"));
                    sep = '&';
                }
            }
            client::get(&url)
        }
        #[cfg(feature = "replication")]
        Command::Demo(args) => demo::run(args),
        #[cfg(not(feature = "replication"))]
        Command::Demo(_) => {
            eprintln!("aerodb: the demo needs replication (built without the `replication` feature, P5-I16)");
            2
        }
        Command::Status { dx } => dx_client::status(&dx),
        Command::Explain { what, collection, key, at, dx } => dx_client::explain(&dx, &what, collection.as_deref(), key.as_deref(), at),
        Command::Verify { data_dir } => tools::verify(&data_dir),
        Command::WalDump { data_dir, from, limit } => tools::wal_dump(&data_dir, from, limit),
        #[cfg(feature = "replication")]
        Command::RepairWal { data_dir, from } => repair::run(&data_dir, &from),
        #[cfg(not(feature = "replication"))]
        Command::RepairWal { .. } => {
            eprintln!("aerodb: repair-wal needs replication (built without the `replication` feature, P5-I16)");
            2
        }
    };
    std::process::exit(code);
}
