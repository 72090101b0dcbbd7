//! The library half of the `aerodb` package: the pure parsers of what the
//! client HTTP API receives from outside the process, so that the node
//! binary and the fuzz targets (`fuzz/`) run exactly the same code.
//!
//! It owns: the client error body ([`api_error`]), canonical document
//! bytes ([`canonical`]), the parsing of request bodies and query
//! parameters ([`request`]), and the sans-IO HTTP/1 request framing with
//! its bounds and refusals ([`http`]). Everything here is a pure function
//! of its input: no IO, no clock, no process state. It must never own a
//! socket, a thread or a node's state; the binary (`src/main.rs`) does.

pub mod api_error;
pub mod canonical;
pub mod request;

/// The pure parts of the node's HTTP serving loop (RES-3); the IO parts
/// (accept loop, guarded streams, body reading) live in the binary.
pub mod http {
    pub mod framer;
    pub mod limits;
    pub mod refusal;
}
