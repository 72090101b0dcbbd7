//! Every bound of the HTTP surfaces (RES-3), with its default. Each one is a
//! command-line flag or a documented constant (docs/operations.md, "Limits")
//! and is shown on `/metrics` (`aerodb_http_limit`).

use std::time::Duration;

/// Default `--max-connections`: client API connections open at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 2048;
/// Default `--dx-max-connections`: DX API connections open at once.
pub const DEFAULT_DX_MAX_CONNECTIONS: usize = 64;
/// Default `--header-timeout-ms`: time a connection has to deliver a whole
/// request head, from the moment it is opened or its previous response was
/// written (so it is also the keep-alive idle timeout).
pub const DEFAULT_HEADER_TIMEOUT_MS: u64 = 5_000;
/// Default `--body-timeout-ms`: time a request has to deliver its whole
/// body once its head arrived.
pub const DEFAULT_BODY_TIMEOUT_MS: u64 = 30_000;
/// Default `--max-url-bytes`: longest request target (path and query).
pub const DEFAULT_MAX_URL_BYTES: usize = 8 * 1024;
/// Default `--max-header-bytes`: largest header section (all header lines).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// Default `--max-waiting-reads`: reads waiting for `min_commit` at once.
pub const DEFAULT_MAX_WAITING_READS: usize = 1024;
/// Default `--body-budget-bytes`: request body bytes held at once, node-wide.
pub const DEFAULT_BODY_BUDGET_BYTES: usize = 64 * 1024 * 1024;
/// Default `--shutdown-timeout-ms`: how long SIGTERM/SIGINT lets in-flight
/// requests finish before their connections are cut.
pub const DEFAULT_SHUTDOWN_TIMEOUT_MS: u64 = 3_000;

/// Most header lines in one request head (431 above).
pub const MAX_HEADER_COUNT: usize = 100;
/// Bytes a request line may have besides its target (method, spaces, version).
pub const REQUEST_LINE_OVERHEAD: usize = 32;
/// Longest chunk-size line of a chunked body (extensions included).
pub const MAX_CHUNK_LINE_BYTES: usize = 4096;
/// Over-the-cap connections answered at once (each gets the
/// `TOO_MANY_CONNECTIONS` answer); beyond this they are closed unanswered.
pub const MAX_REFUSALS_IN_FLIGHT: usize = 64;
/// After a refusal or an unread body, how long the server keeps reading
/// (and discarding) what the client still sends, so the answer is not lost
/// to a TCP reset, before it closes the connection.
pub const LINGER_TIMEOUT: Duration = Duration::from_secs(2);
/// Lingering once the node is shutting down (the stop stays prompt).
pub const SHUTDOWN_LINGER_TIMEOUT: Duration = Duration::from_millis(250);
/// Most bytes discarded while lingering.
pub const LINGER_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// A response write that makes no progress for this long (a client that
/// stopped reading) cuts the connection.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Time left for the rest of the process (engine, replication, snapshot
/// scheduler) to stop after the HTTP surfaces have: past
/// `--shutdown-timeout-ms` plus this, the process exits anyway.
pub const SHUTDOWN_CLEANUP_BOUND: Duration = Duration::from_secs(2);

/// The bounds of one HTTP surface (client API or DX API).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SurfaceLimits {
    /// Connections open at once; over it: 503 `TOO_MANY_CONNECTIONS`, then close.
    pub max_connections: usize,
    /// Time to deliver a request head (cut; 408 `HEADER_TIMEOUT` if part of it arrived).
    pub header_timeout: Duration,
    /// Time to deliver a request body (408 `BODY_TIMEOUT`).
    pub body_timeout: Duration,
    /// Longest request target (414 `URI_TOO_LONG`).
    pub max_url_bytes: usize,
    /// Largest header section (431 `HEADERS_TOO_LARGE`).
    pub max_header_bytes: usize,
}

// Read by the DX API (`/metrics`), which a build without replication does not have.
#[cfg_attr(not(feature = "replication"), allow(dead_code))]
impl SurfaceLimits {
    /// The limits as `(name, value)` pairs, in a fixed order (for `/metrics`).
    pub fn named(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("max_connections", self.max_connections as u64),
            ("header_timeout_ms", millis(self.header_timeout)),
            ("body_timeout_ms", millis(self.body_timeout)),
            ("max_url_bytes", self.max_url_bytes as u64),
            ("max_header_bytes", self.max_header_bytes as u64),
            ("max_header_count", MAX_HEADER_COUNT as u64),
        ]
    }
}

/// Every HTTP bound of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Client API (`--listen`).
    pub client: SurfaceLimits,
    /// DX API (`--dx-listen`).
    pub dx: SurfaceLimits,
    /// Reads waiting for `min_commit` at once; over it: 503 `TOO_MANY_WAITING_READS`.
    pub max_waiting_reads: usize,
    /// Request body bytes held at once, node-wide; over it: 503 `BODY_BUDGET_EXHAUSTED`.
    pub body_budget_bytes: usize,
    /// Time in-flight requests get at shutdown before their connections are cut.
    pub shutdown_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        let client = SurfaceLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout: Duration::from_millis(DEFAULT_HEADER_TIMEOUT_MS),
            body_timeout: Duration::from_millis(DEFAULT_BODY_TIMEOUT_MS),
            max_url_bytes: DEFAULT_MAX_URL_BYTES,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
        };
        HttpLimits {
            client,
            dx: SurfaceLimits { max_connections: DEFAULT_DX_MAX_CONNECTIONS, ..client },
            max_waiting_reads: DEFAULT_MAX_WAITING_READS,
            body_budget_bytes: DEFAULT_BODY_BUDGET_BYTES,
            shutdown_timeout: Duration::from_millis(DEFAULT_SHUTDOWN_TIMEOUT_MS),
        }
    }
}

impl HttpLimits {
    /// Checks the limits against each other and against `largest_body`
    /// (the largest request body the client API accepts): every bound must
    /// be positive, and the body budget must admit at least one largest body.
    pub fn validate(&self, largest_body: usize) -> Result<(), String> {
        for (name, value) in [
            ("--max-connections", self.client.max_connections as u64),
            ("--dx-max-connections", self.dx.max_connections as u64),
            ("--header-timeout-ms", millis(self.client.header_timeout)),
            ("--body-timeout-ms", millis(self.client.body_timeout)),
            ("--max-url-bytes", self.client.max_url_bytes as u64),
            ("--max-header-bytes", self.client.max_header_bytes as u64),
            ("--max-waiting-reads", self.max_waiting_reads as u64),
            ("--shutdown-timeout-ms", millis(self.shutdown_timeout)),
        ] {
            if value == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        if self.body_budget_bytes < largest_body {
            return Err(format!(
                "--body-budget-bytes {} is below the largest request body the client API accepts ({largest_body} bytes)",
                self.body_budget_bytes
            ));
        }
        Ok(())
    }

    // Read by the DX API (`/metrics`), which a build without replication does not have.
    #[cfg_attr(not(feature = "replication"), allow(dead_code))]
    /// Process-wide limits as `(name, value)` pairs, fixed order (for `/metrics`).
    pub fn node_named(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("max_waiting_reads", self.max_waiting_reads as u64),
            ("body_budget_bytes", self.body_budget_bytes as u64),
            ("shutdown_timeout_ms", millis(self.shutdown_timeout)),
        ]
    }
}

/// A duration in whole milliseconds (saturating).
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RES-3: every default bound is positive and consistent, and a budget
    /// below one largest body is refused.
    #[test]
    fn res_3_default_limits_validate_and_a_too_small_budget_is_refused() {
        let limits = HttpLimits::default();
        assert_eq!(limits.validate(16 * 1024 * 1024 + 64 * 1024), Ok(()));
        let small = HttpLimits { body_budget_bytes: 1024, ..limits };
        assert!(small.validate(4096).is_err());
        let zero = HttpLimits { max_waiting_reads: 0, ..limits };
        assert!(zero.validate(1).unwrap_err().contains("--max-waiting-reads"));
    }
}
