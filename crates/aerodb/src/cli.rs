//! Command-line definitions (INTERFACE.md "Binary").

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// AeroDB: one primary, WAL-shipping read replicas, correctness first.
#[derive(Parser, Debug)]
#[command(name = "aerodb", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// WAL retention policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WalRetention {
    /// Keep every WAL segment (default).
    All,
    /// Remove segments wholly before the oldest retained snapshot.
    AfterOldestSnapshot,
}

/// Replica bootstrap path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BootstrapMode {
    /// Install the primary's snapshot, then stream WAL after it.
    Snapshot,
    /// Stream the WAL from genesis.
    Wal,
}

/// Flags common to nodes that own a WAL they write.
#[derive(Args, Debug, Clone)]
pub struct WriterFlags {
    /// Data directory (created and initialised if empty).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Client API address (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:7700")]
    pub listen: String,
    /// DX API address, or `off` to disable it.
    #[arg(long, default_value = "127.0.0.1:7702")]
    pub dx_listen: String,
    /// Take a snapshot each time this many WAL bytes were written since the last one (0 = never).
    #[arg(long, default_value_t = 256 * 1024 * 1024)]
    pub snapshot_every_bytes: u64,
    /// Whether WAL wholly before the oldest retained snapshot may be removed.
    #[arg(long, value_enum, default_value_t = WalRetention::All)]
    pub wal_retention: WalRetention,
    /// MVCC history kept behind the newest commit: reads at C - N and later stay answerable;
    /// older versions are removed by GC records in the WAL (horizon = C - N, written every N/10
    /// commits). Replicas follow the primary's GC records.
    #[arg(long, default_value_t = aerodb_mvcc::GcPolicy::DEFAULT_RETAIN_COMMITS)]
    pub history_retain_commits: u64,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a primary: accepts writes, serves replicas.
    Primary {
        /// Common flags.
        #[command(flatten)]
        node: WriterFlags,
        /// Replication address replicas connect to.
        #[arg(long, default_value = "127.0.0.1:7701")]
        repl_listen: String,
    },
    /// Run a node with replication disabled.
    Standalone {
        /// Common flags.
        #[command(flatten)]
        node: WriterFlags,
    },
    /// Run a read replica of a primary.
    Replica {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The primary's replication address.
        #[arg(long)]
        primary: String,
        /// Client API address.
        #[arg(long, default_value = "127.0.0.1:7710")]
        listen: String,
        /// DX API address, or `off`.
        #[arg(long, default_value = "127.0.0.1:7712")]
        dx_listen: String,
        /// How an empty replica bootstraps.
        #[arg(long, value_enum, default_value_t = BootstrapMode::Snapshot)]
        bootstrap: BootstrapMode,
        /// Discard this replica's state (even if halted) and bootstrap again.
        #[arg(long)]
        rebootstrap: bool,
    },
    /// Put a document; prints the CommitId.
    Put {
        /// Node client URL, e.g. http://127.0.0.1:7700
        #[arg(long)]
        node: String,
        /// Collection.
        collection: String,
        /// Key.
        key: String,
        /// Document (JSON).
        json: String,
    },
    /// Delete a document; prints the CommitId.
    Delete {
        /// Node client URL.
        #[arg(long)]
        node: String,
        /// Collection.
        collection: String,
        /// Key.
        key: String,
    },
    /// Read a document; prints the response JSON.
    Get {
        /// Node client URL.
        #[arg(long)]
        node: String,
        /// Collection.
        collection: String,
        /// Key.
        key: String,
        /// Read view R.
        #[arg(long)]
        at: Option<u64>,
        /// Require the node to have applied at least this CommitId.
        #[arg(long)]
        min_commit: Option<u64>,
    },
    /// Print a node's replication view as a table.
    Status {
        /// Node DX URL.
        #[arg(long)]
        dx: String,
    },
    /// Print an explanation as JSON.
    Explain {
        /// replication | recovery | read
        what: String,
        /// Collection (for `read`).
        collection: Option<String>,
        /// Key (for `read`).
        key: Option<String>,
        /// Read view (for `read`).
        #[arg(long)]
        at: Option<u64>,
        /// Node DX URL.
        #[arg(long)]
        dx: String,
    },
    /// Offline check of WAL, snapshots and metadata.
    Verify {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// One line per WAL record: LSN, CommitId, ops, fingerprint.
    WalDump {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// First LSN to print.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Most records to print.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Run the local walkthrough: a primary and two replicas.
    Demo(DemoArgs),
}

/// Demo flags.
#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Documents in the workload.
    #[arg(long, default_value_t = 3000)]
    pub docs: u64,
    /// Keep the temporary directory for inspection.
    #[arg(long)]
    pub keep: bool,
}
