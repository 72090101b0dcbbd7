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

mod addr;
#[cfg(feature = "replication")]
mod bootstrap_progress;
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
mod exit;
mod heap;
mod http;
mod node;
#[cfg(feature = "replication")]
mod primary_repl;
#[cfg(feature = "replication")]
mod process_stats;
mod render;
#[cfg(feature = "replication")]
mod repair;
#[cfg(feature = "replication")]
mod replica_node;
mod scrub_task;
mod security;
mod service;
mod serving;
mod tools;
mod verify_ext;
mod waiting;
mod wal_dump;

use std::io::IsTerminal;

// The pure parsers of client input live in the library target (so the
// fuzz targets run the same code); `crate::api_error` etc. resolve to them.
use aerodb::{api_error, request};

use clap::Parser;

use crate::cli::{Cli, Command, ScrubFlags, WalRetention, WriterFlags};
use crate::datadir::Role;
use crate::node::PrimaryOptions;

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: redirected logs stay plain text.
    let ansi = std::io::stderr().is_terminal();
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).with_target(false).try_init();
}

fn primary_options(
    flags: WriterFlags,
    repl_listen: Option<String>,
    forget_replicas: Vec<String>,
    repl_token_file: Option<std::path::PathBuf>,
) -> PrimaryOptions {
    let mut opts = PrimaryOptions::new(flags.data_dir);
    opts.tls = flags.tls.files();
    opts.repl_token_file = repl_token_file;
    opts.listen = flags.listen;
    opts.dx_listen = (flags.dx_listen != "off").then_some(flags.dx_listen);
    opts.repl_listen = repl_listen;
    opts.snapshot_every_bytes = flags.snapshot_every_bytes;
    opts.wal_retention_after_snapshot = flags.wal_retention == WalRetention::AfterOldestSnapshot;
    opts.wal_keep_bytes = flags.wal_keep_bytes;
    opts.forget_replicas = forget_replicas;
    opts.http = flags.http.limits();
    opts.segment_target_bytes = flags.wal_segment_bytes;
    opts.wal_preallocate_bytes = flags.wal_preallocate_bytes;
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
            // Printed once: the one-line reason is the last line on stderr
            // (logs go to stderr too, so a log line would repeat it).
            eprintln!("aerodb: refusing to start: {e} [{}]", e.code());
            if matches!(e, error::StartupError::BadFlags(_)) {
                exit::Exit::BadArguments.code()
            } else {
                exit::Exit::Failure.code()
            }
        }
    }
}

fn main() {
    let heap_growth = heap::set_growth_step();
    #[cfg(feature = "replication")]
    process_stats::mark_start();
    let _failpoints = fail::FailScenario::setup();
    let cli = Cli::parse();
    init_tracing();
    match heap_growth {
        heap::GrowthStep::Refused => tracing::warn!(step_bytes = heap::HEAP_GROWTH_STEP, "the allocator refused the heap growth step; it keeps its default"),
        other => tracing::debug!(?other, step_bytes = heap::HEAP_GROWTH_STEP, "heap growth step"),
    }
    let code = match cli.command {
        Command::Primary { node, repl_listen, forget_replica, repl_token_file } => {
            run_node(node::run_primary(primary_options(node, Some(repl_listen), forget_replica, repl_token_file), Role::Primary))
        }
        Command::Standalone { node } => run_node(node::run_primary(primary_options(node, None, Vec::new(), None), Role::Standalone)),
        #[cfg(feature = "replication")]
        Command::Replica { data_dir, primary, name, listen, dx_listen, bootstrap, rebootstrap, http, scrub, security } => {
            let method = match bootstrap {
                cli::BootstrapMode::Snapshot => aerodb_repl_core::metadata::BootstrapMethod::Snapshot,
                cli::BootstrapMode::Wal => aerodb_repl_core::metadata::BootstrapMethod::Wal,
            };
            let dx_listen = (dx_listen != "off").then_some(dx_listen);
            run_node(replica_node::run_replica(replica_node::ReplicaOptions {
                data_dir,
                primary,
                name,
                listen,
                dx_listen,
                bootstrap: method,
                rebootstrap,
                http: http.limits(),
                scrub: scrub_policy(&scrub),
                repl_token_file: security.repl_token_file,
                tls_ca: security.tls_ca,
                tls: security.tls.files(),
            }))
        }
        #[cfg(not(feature = "replication"))]
        Command::Replica { .. } => {
            eprintln!("aerodb: this build has no replication (built without the `replication` feature, P5-I16)");
            2
        }
        Command::Put { node, collection, key, json, json_output } => client::put(&node, &collection, &key, &json, client::Output { json: json_output }),
        Command::Delete { node, collection, key, json_output } => client::delete(&node, &collection, &key, client::Output { json: json_output }),
        Command::Get { node, collection, key, at, min_commit, wait_ms, json_output } => {
            client::get(&node, &collection, &key, aerodb_client::ReadOptions { at, min_commit, wait_ms }, client::Output { json: json_output })
        }
        Command::Scan { node, collection, start, end, limit, at, min_commit, json_output } => {
            let read = aerodb_client::ReadOptions { at, min_commit, wait_ms: None };
            client::scan(&node, &collection, aerodb_client::ScanOptions { start, end, limit, read }, client::Output { json: json_output })
        }
        #[cfg(feature = "replication")]
        Command::Demo(args) => demo::run(args),
        #[cfg(not(feature = "replication"))]
        Command::Demo(_) => {
            eprintln!("aerodb: the demo needs replication (built without the `replication` feature, P5-I16)");
            2
        }
        Command::Status { dx, json, watch, interval, count } => {
            dx_client::status(&dx, dx_client::StatusOptions { json, watch, interval: std::time::Duration::from_secs_f64(interval), count })
        }
        Command::Explain { what, collection, key, at, dx, json } => dx_client::explain(&dx, what, collection.as_deref(), key.as_deref(), at, json),
        Command::Verify { data_dir } => tools::verify(&data_dir),
        Command::WalDump { data_dir, from, limit, commit, json, stats } => wal_dump::run(&data_dir, wal_dump::DumpOptions { from, limit, commit, json, stats }),
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
