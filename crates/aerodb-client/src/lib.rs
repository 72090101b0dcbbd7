//! Typed HTTP client for an AeroDB node: the client API (documents, write
//! sets, reads at a read view) and the read-only DX API (status,
//! replication, WAL, MVCC, snapshots, scrub, explanations, metrics).
//!
//! This crate owns the client side of INTERFACE.md's HTTP surfaces and is
//! shared by the `aerodb` CLI, the demo and `cargo xtask bench`. It owns
//! request building (percent-encoded path segments, dot segments kept), node
//! URL validation (no DNS lookup for malformed input), bounded timeouts, a
//! keep-alive connection pool, and typed answers and errors.
//!
//! It must never decide anything about correctness (which reads are safe,
//! what a CommitId means): it only carries the node's answers, and refusals
//! arrive as the node's own [`ApiError`] (code, rule ID, message,
//! evidence). It depends on no other AeroDB crate.
//!
//! - [`Client`] / [`DxClient`]: async (tokio + hyper 1, HTTP/1.1 keep-alive);
//!   cheap to clone, usable from many tasks, lean enough to be a load
//!   generator.
//! - [`blocking::Client`] / [`blocking::DxClient`]: the same calls for
//!   programs without a runtime (the CLI).
//! - [`ClientError`]: [`ClientError::Api`] for the node's error envelope,
//!   and distinct variants for a bad URL, an unreachable node, a timeout and
//!   protocol errors. [`ClientError::code`] is a stable string for each.
//!
//! `https://` nodes are reached over TLS (rustls), verified against the CA
//! in [`ClientConfig::tls`] ([`TlsConfig::from_ca_file`], the CLI's
//! `--tls-ca`); a TLS failure is [`ClientError::Tls`].
//!
//! # Example
//!
//! Validate addresses up front, build a write set, and handle a refusal by
//! its typed code:
//!
//! ```
//! use aerodb_client::{blocking, ClientError, ErrorKind, NodeUrl, ReadOptions, WriteSet};
//! use serde_json::json;
//!
//! // Malformed addresses are refused before any network IO.
//! assert_eq!(NodeUrl::parse("unix://x").unwrap_err().code(), "BAD_URL");
//! assert!(NodeUrl::parse("localhost").is_err()); // the port is required
//! let url = NodeUrl::parse("127.0.0.1:7700")?;
//! assert_eq!(url.to_string(), "http://127.0.0.1:7700");
//!
//! let client = blocking::Client::new("http://127.0.0.1:7700")?;
//! let writes = WriteSet::new().put("users", "alice", json!({"age": 30})).delete("users", "bob");
//! # if false {
//! let receipt = client.commit(&writes)?; // durable on the primary when Ok
//! match client.get("users", "alice", &ReadOptions { min_commit: Some(receipt.commit_id), ..Default::default() }) {
//!     Ok(doc) => println!("{} at view {}", doc.doc, doc.read_view),
//!     Err(e) if e.kind() == Some(ErrorKind::ReadRefused) => println!("refused by {:?}", e.rule_id()),
//!     Err(e) => return Err(e),
//! }
//! # }
//! # Ok::<(), ClientError>(())
//! ```
//!
//! The async client, as a load generator would use it:
//!
//! ```no_run
//! # async fn demo() -> Result<(), aerodb_client::ClientError> {
//! use aerodb_client::{Client, DxClient, ReplicationView};
//!
//! let client = Client::new("http://127.0.0.1:7700")?;
//! let receipt = client.put_json("bench", "k1", r#"{"n":1}"#.into()).await?;
//! let dx = DxClient::new("http://127.0.0.1:7702")?;
//! if let ReplicationView::Primary(p) = dx.replication().await?.data {
//!     println!("commit {} of {}; {} replicas", receipt.commit_id, p.commit_id, p.replicas.len());
//! }
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

pub mod blocking;
mod client;
pub mod dx;
mod error;
pub mod node_url;
pub mod path;
pub mod tls;
mod transport;
mod types;

pub use client::{Client, DxClient};
pub use dx::{Envelope, ExplainTarget, Explanation, ReplicationView};
pub use error::{ApiError, ClientError, ErrorKind};
pub use node_url::{NodeUrl, Scheme};
pub use tls::TlsConfig;
pub use transport::ClientConfig;
pub use types::{CommitReceipt, Document, ReadOptions, ScanItem, ScanOptions, ScanPage, WriteOp, WriteSet};
