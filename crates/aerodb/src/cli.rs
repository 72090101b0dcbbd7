//! Command-line definitions (INTERFACE.md "Binary").

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::exit::EXIT_CODES_HELP;
use crate::http::limits::{self, HttpLimits, SurfaceLimits};

/// AeroDB: one primary, WAL-shipping read replicas, correctness first.
#[derive(Parser, Debug)]
#[command(name = "aerodb", version, about, long_about = None, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// WAL retention policy (RES-2): what is kept before the oldest retained
/// snapshot, always within `--wal-keep-bytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WalRetention {
    /// Keep every WAL segment within --wal-keep-bytes of the end (default).
    All,
    /// Before the oldest retained snapshot, keep only what known replicas still need (within --wal-keep-bytes).
    AfterOldestSnapshot,
}

/// What `aerodb explain` explains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExplainWhat {
    /// replication.safety (and replication.halt when halted): may a read be served now?
    Replication,
    /// recovery.process: what startup recovery did.
    Recovery,
    /// mvcc.read_visibility of COLLECTION KEY [--at N]: which version a read sees.
    Read,
}

impl ExplainWhat {
    /// The word on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ExplainWhat::Replication => "replication",
            ExplainWhat::Recovery => "recovery",
            ExplainWhat::Read => "read",
        }
    }
}

/// `--interval`: positive seconds, at most a day.
fn parse_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.05..=86_400.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not an interval in seconds between 0.05 and 86400")),
    }
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
    /// Client API address, HOST:PORT (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:7700", value_parser = crate::addr::listen)]
    pub listen: String,
    /// DX API address, HOST:PORT, or `off` to disable it.
    #[arg(long, default_value = "127.0.0.1:7702", value_parser = crate::addr::dx_listen)]
    pub dx_listen: String,
    /// Take a snapshot each time this many WAL bytes were written since the last one (0 = never).
    #[arg(long, default_value_t = 256 * 1024 * 1024)]
    pub snapshot_every_bytes: u64,
    /// What WAL before the oldest retained snapshot is kept: `all` (everything within --wal-keep-bytes) or
    /// `after-oldest-snapshot` (only what known replicas still need, within --wal-keep-bytes). WAL a snapshot
    /// needs for recovery is always kept.
    #[arg(long, value_enum, default_value_t = WalRetention::All)]
    pub wal_retention: WalRetention,
    /// Cap on WAL kept for replicas beyond what snapshots need, counted back from the durable end (RES-2). A
    /// replica further behind loses its WAL at the next retention pass (after a snapshot) and is answered
    /// WAL_UNAVAILABLE; /v1/replication shows per replica how many bytes and commits remain before that.
    #[arg(long, default_value_t = aerodb_snapshot::DEFAULT_WAL_KEEP_BYTES)]
    pub wal_keep_bytes: u64,
    /// Bounds of the HTTP surfaces.
    #[command(flatten)]
    pub http: HttpFlags,
    /// Target size of one WAL segment file in bytes (a new segment starts when the next record would pass it).
    #[arg(long, default_value_t = 64 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(4096..=(1u64 << 40)))]
    pub wal_segment_bytes: u64,
    /// Grow the last WAL segment with zeros this many bytes at a time ahead of the records (0 = never, the
    /// default). A commit's fdatasync then flushes data only, not the file's new length (faster commits at one
    /// client on ext4). The cost: after a crash the last segment ends with zeros after its last record, which
    /// recovery and verify report as preallocated space and startup cuts off (docs/formats.md).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=(1u64 << 30)))]
    pub wal_preallocate_bytes: u64,
    /// Durability flags (CORE-5, REPL-11).
    #[command(flatten)]
    pub durability: DurabilityFlags,
    /// Background re-verification (CORE-6).
    #[command(flatten)]
    pub scrub: ScrubFlags,
    /// TLS on the client API, the DX API (and, on a primary, the replication port).
    #[command(flatten)]
    pub tls: TlsServerFlags,
    /// MVCC history kept behind the newest commit: reads at C - N and later stay answerable;
    /// older versions are removed by GC records in the WAL (horizon = C - N, written every N/10
    /// commits). Replicas follow the primary's GC records.
    #[arg(long, default_value_t = aerodb_mvcc::GcPolicy::DEFAULT_RETAIN_COMMITS)]
    pub history_retain_commits: u64,
}

/// `--tls-cert/--tls-key` (docs/operations.md, "Securing replication").
#[derive(Args, Debug, Clone, Default)]
pub struct TlsServerFlags {
    /// PEM certificate chain: serve TLS (rustls) on the client API, the DX API and the replication port.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl TlsServerFlags {
    /// The files these flags name.
    pub fn files(&self) -> crate::security::TlsServerFiles {
        crate::security::TlsServerFiles { cert: self.tls_cert.clone(), key: self.tls_key.clone() }
    }
}

/// A replica's replication security flags.
#[derive(Args, Debug, Clone, Default)]
pub struct ReplicaSecurityFlags {
    /// Shared secret of the replication port (one line, owner-only permissions): the replica and the
    /// primary prove to each other that they hold it (challenge-response; it never crosses the wire).
    #[arg(long)]
    pub repl_token_file: Option<PathBuf>,
    /// PEM CA certificate(s): connect to the primary over TLS and verify it against this CA.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// TLS on this replica's own client and DX APIs.
    #[command(flatten)]
    pub tls: TlsServerFlags,
}

/// Bounds of the client and DX HTTP surfaces (RES-3; docs/operations.md, "Limits").
#[derive(Args, Debug, Clone)]
pub struct HttpFlags {
    /// Client API connections open at once; over it a connection gets 503 TOO_MANY_CONNECTIONS and is closed.
    #[arg(long, default_value_t = limits::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// DX API connections open at once (503 TOO_MANY_CONNECTIONS over it).
    #[arg(long, default_value_t = limits::DEFAULT_DX_MAX_CONNECTIONS)]
    pub dx_max_connections: usize,
    /// Milliseconds a connection has to send a whole request head, counted from when it opened or its previous
    /// response was sent (also the keep-alive idle timeout); a half-sent head gets 408 HEADER_TIMEOUT.
    #[arg(long, default_value_t = limits::DEFAULT_HEADER_TIMEOUT_MS)]
    pub header_timeout_ms: u64,
    /// Milliseconds a request has to send its whole body (408 BODY_TIMEOUT).
    #[arg(long, default_value_t = limits::DEFAULT_BODY_TIMEOUT_MS)]
    pub body_timeout_ms: u64,
    /// Longest request target, path and query (414 URI_TOO_LONG).
    #[arg(long, default_value_t = limits::DEFAULT_MAX_URL_BYTES)]
    pub max_url_bytes: usize,
    /// Largest request header section (431 HEADERS_TOO_LARGE).
    #[arg(long, default_value_t = limits::DEFAULT_MAX_HEADER_BYTES)]
    pub max_header_bytes: usize,
    /// Reads waiting for min_commit at once (503 TOO_MANY_WAITING_READS over it); a waiting read holds no thread.
    #[arg(long, default_value_t = limits::DEFAULT_MAX_WAITING_READS)]
    pub max_waiting_reads: usize,
    /// Request body bytes held at once, node-wide (503 BODY_BUDGET_EXHAUSTED over it).
    #[arg(long, default_value_t = limits::DEFAULT_BODY_BUDGET_BYTES)]
    pub body_budget_bytes: usize,
    /// On SIGTERM/SIGINT, milliseconds in-flight requests get before their connections are cut
    /// (waiting reads are answered 503 SHUTTING_DOWN at once); the process exits at most 2 s later.
    #[arg(long, default_value_t = limits::DEFAULT_SHUTDOWN_TIMEOUT_MS)]
    pub shutdown_timeout_ms: u64,
}

impl HttpFlags {
    /// The limits these flags set.
    pub fn limits(&self) -> HttpLimits {
        let client = SurfaceLimits {
            max_connections: self.max_connections,
            header_timeout: Duration::from_millis(self.header_timeout_ms),
            body_timeout: Duration::from_millis(self.body_timeout_ms),
            max_url_bytes: self.max_url_bytes,
            max_header_bytes: self.max_header_bytes,
        };
        HttpLimits {
            client,
            dx: SurfaceLimits { max_connections: self.dx_max_connections, ..client },
            max_waiting_reads: self.max_waiting_reads,
            body_budget_bytes: self.body_budget_bytes,
            shutdown_timeout: Duration::from_millis(self.shutdown_timeout_ms),
        }
    }
}

/// The durable high-water mark and the explicit operator actions around
/// lost history (CORE-5, REPL-11).
#[derive(Args, Debug, Clone)]
pub struct DurabilityFlags {
    /// Write the durable high-water mark at least this often while writing (ms; CORE-5).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub durable_mark_every_ms: u64,
    /// Write the durable high-water mark at least every this many WAL bytes; the crash window is twice this (CORE-5).
    #[arg(long, default_value_t = 4 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(4096..=(1u64 << 32)))]
    pub durable_mark_every_bytes: u64,
    /// Explicit operator action: start although the WAL ends before its durable high-water mark,
    /// truncating to the last valid record; the loss is recorded and explained (CORE-5).
    #[arg(long)]
    pub accept_lost_history: bool,
    /// Explicit operator action: lift a persisted fence (REPL-11); recorded in the recovery explanation.
    #[arg(long)]
    pub lift_fence: bool,
}

/// Scrub flags (CORE-6).
#[derive(Args, Debug, Clone)]
pub struct ScrubFlags {
    /// Re-verify retained snapshots and sealed WAL segments at most this fast (bytes/s; 0 disables the scrub).
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    pub scrub_bytes_per_second: u64,
    /// Pause between the end of one scrub pass and the start of the next (ms).
    #[arg(long, default_value_t = 60_000)]
    pub scrub_pass_interval_ms: u64,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a primary: accepts writes, serves replicas.
    Primary {
        /// Common flags.
        #[command(flatten)]
        node: WriterFlags,
        /// Replication address replicas connect to, HOST:PORT (their --primary).
        #[arg(long, default_value = "127.0.0.1:7701", value_parser = crate::addr::listen)]
        repl_listen: String,
        /// Explicit operator action: forget a replica the primary remembers (by replica id or --name; repeatable).
        /// Its WAL is no longer held and it leaves /v1/replication; it is remembered again if it reconnects.
        #[arg(long, value_name = "ID_OR_NAME")]
        forget_replica: Vec<String>,
        /// Shared secret of the replication port (one line, owner-only permissions): every replica must
        /// prove it holds it, and the primary proves it back (challenge-response; it never crosses the wire).
        #[arg(long)]
        repl_token_file: Option<PathBuf>,
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
        /// The primary's replication address (its --repl-listen), HOST:PORT, e.g. primary-host:7701.
        #[arg(long, value_parser = crate::addr::primary)]
        primary: String,
        /// This replica's name, shown by the primary (like PostgreSQL's application_name): 1-64 ASCII letters,
        /// digits, '.', '_' or '-'. Default: the replica id.
        #[arg(long)]
        name: Option<String>,
        /// Client API address, HOST:PORT (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:7710", value_parser = crate::addr::listen)]
        listen: String,
        /// DX API address, HOST:PORT, or `off`.
        #[arg(long, default_value = "127.0.0.1:7712", value_parser = crate::addr::dx_listen)]
        dx_listen: String,
        /// How an empty replica bootstraps.
        #[arg(long, value_enum, default_value_t = BootstrapMode::Snapshot)]
        bootstrap: BootstrapMode,
        /// Discard this replica's state (even if halted) and bootstrap again.
        #[arg(long)]
        rebootstrap: bool,
        /// Bounds of the HTTP surfaces.
        #[command(flatten)]
        http: HttpFlags,
        /// Background re-verification (CORE-6).
        #[command(flatten)]
        scrub: ScrubFlags,
        /// Token authentication and TLS.
        #[command(flatten)]
        security: ReplicaSecurityFlags,
    },
    /// Put a document; prints the CommitId.
    #[command(after_help = EXIT_CODES_HELP)]
    Put {
        /// Node client API URL, e.g. http://127.0.0.1:7700 (the primary's --listen).
        #[arg(long)]
        node: String,
        /// Collection.
        collection: String,
        /// Key.
        key: String,
        /// Document (JSON).
        json: String,
        /// Print the node's full JSON answer (errors too, on stdout).
        #[arg(long = "json")]
        json_output: bool,
    },
    /// Delete a document; prints the CommitId.
    #[command(after_help = EXIT_CODES_HELP)]
    Delete {
        /// Node client API URL, e.g. http://127.0.0.1:7700.
        #[arg(long)]
        node: String,
        /// Collection.
        collection: String,
        /// Key.
        key: String,
        /// Print the node's full JSON answer (errors too, on stdout).
        #[arg(long = "json")]
        json_output: bool,
    },
    /// Read a document; prints it with its CommitId and read view.
    #[command(after_help = EXIT_CODES_HELP)]
    Get {
        /// Node client API URL, e.g. http://127.0.0.1:7710 (a replica's --listen).
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
        /// Wait up to this many milliseconds for --min-commit (at most 30000).
        #[arg(long)]
        wait_ms: Option<u64>,
        /// Print the node's full JSON answer (errors too, on stdout).
        #[arg(long = "json")]
        json_output: bool,
    },
    /// Read one page of a collection in key order.
    #[command(after_help = EXIT_CODES_HELP)]
    Scan {
        /// Node client API URL, e.g. http://127.0.0.1:7700.
        #[arg(long)]
        node: String,
        /// Collection.
        collection: String,
        /// First key (inclusive).
        #[arg(long)]
        start: Option<String>,
        /// End key (exclusive).
        #[arg(long)]
        end: Option<String>,
        /// Page size (1-1000; the node's default is 100).
        #[arg(long)]
        limit: Option<u64>,
        /// Read view R (pass the previous page's read view to page at one view).
        #[arg(long)]
        at: Option<u64>,
        /// Require the node to have applied at least this CommitId.
        #[arg(long)]
        min_commit: Option<u64>,
        /// Print the node's full JSON answer (errors too, on stdout).
        #[arg(long = "json")]
        json_output: bool,
    },
    /// Print a node's replication view as tables.
    #[command(after_help = EXIT_CODES_HELP)]
    Status {
        /// Node DX URL, e.g. http://127.0.0.1:7702 (the node's --dx-listen).
        #[arg(long)]
        dx: String,
        /// Print the whole /v1/replication answer as JSON.
        #[arg(long)]
        json: bool,
        /// Refresh every --interval: redrawn in place on a terminal, one snapshot per interval otherwise.
        #[arg(long)]
        watch: bool,
        /// Seconds between refreshes with --watch.
        #[arg(long, default_value_t = 2.0, value_parser = parse_interval)]
        interval: f64,
        /// With --watch: stop after this many snapshots (default: until interrupted).
        #[arg(long, requires = "watch")]
        count: Option<u64>,
    },
    /// Print an explanation as JSON.
    #[command(after_help = EXIT_CODES_HELP)]
    Explain {
        /// What to explain.
        #[arg(value_enum)]
        what: ExplainWhat,
        /// Collection (for `read`).
        collection: Option<String>,
        /// Key (for `read`).
        key: Option<String>,
        /// Read view (for `read`).
        #[arg(long)]
        at: Option<u64>,
        /// Node DX URL, e.g. http://127.0.0.1:7702.
        #[arg(long)]
        dx: String,
        /// Print the whole DX envelope (observed_at, data, notes) on one line.
        #[arg(long)]
        json: bool,
    },
    /// Offline check of WAL, snapshots and metadata.
    Verify {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Restore a primary's missing or damaged WAL tail from a stopped replica's verified copy (CORE-5).
    ///
    /// Exit codes: 0 repaired (or nothing to repair), 1 refused (nothing changed), 3 partial:
    /// the replica's copy ends before the durable mark (what it holds was restored; startup still refuses).
    RepairWal {
        /// The primary's data directory (stopped).
        #[arg(long)]
        data_dir: PathBuf,
        /// The replica's data directory (stopped).
        #[arg(long)]
        from: PathBuf,
    },
    /// One line per WAL record: LSN, CommitId, ops, fingerprint (or JSON lines, or statistics).
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
        /// Only records whose CommitId is in this range: N..M (inclusive), N.., ..M or N.
        #[arg(long, value_parser = crate::wal_dump::parse_commit_range)]
        commit: Option<crate::wal_dump::CommitRange>,
        /// One JSON object per line (field names in docs/operations.md, "wal-dump").
        #[arg(long)]
        json: bool,
        /// Print statistics of the selected records (records, commits, GC records, bytes, ops, per segment) instead of the records.
        #[arg(long)]
        stats: bool,
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
