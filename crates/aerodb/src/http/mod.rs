//! The node's HTTP serving loop, shared by the client API and the DX API
//! (RES-3): every connection and request is bounded in count, size and time
//! to send its head and body, refusals carry the JSON error body with a
//! stable code, and shutdown finishes in bounded time whatever clients do.
//!
//! - [`limits`]: every bound and its default (flags and constants);
//! - [`framer`]: sans-IO request framing and head checks;
//! - `guarded`: the IO wrapper that applies the framer and answers refusals;
//! - [`server`]: accept loop, connection cap, graceful bounded shutdown;
//! - [`body`]: body size before reading, node-wide body budget, body timeout;
//! - [`refusal`]: the typed refusals; [`stats`]: counters for `/metrics`;
//! - [`shutdown`]: the node-wide shutdown signal.

pub mod body;
mod guarded;
pub mod server;
pub mod shutdown;
pub mod stats;

// The pure parts are in the library target (`aerodb::http`), shared with the fuzz targets.
pub use aerodb::http::{framer, limits, refusal};
