//! Connecting to a primary. A transport yields a reader and a writer for
//! one connection; the replica runtime reads on one thread and writes from
//! its engine thread. [`TcpTransport`] is plain TCP; `crate::tls::TlsTransport`
//! adds TLS (rustls) on top of the same socket setup.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// One connection's halves and a way to close both.
pub struct Connection {
    /// Read half.
    pub reader: Box<dyn Read + Send>,
    /// Write half.
    pub writer: Box<dyn Write + Send>,
    /// Closes the connection (unblocks the reader).
    pub closer: Box<dyn Fn() + Send + Sync>,
}

/// Opens connections to the primary.
pub trait Transport: Send + Sync {
    /// Connects to `addr` within `timeout`.
    fn connect(&self, addr: &str, timeout: Duration) -> io::Result<Connection>;
}

/// Plain TCP.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpTransport;

/// How long one write may block before the connection is considered dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

impl TcpTransport {
    /// A connected socket to `addr` (the first address that answers within
    /// `timeout`), with Nagle off and the write timeout set.
    pub fn connect_socket(addr: &str, timeout: Duration) -> io::Result<TcpStream> {
        let mut last = None;
        for a in addr.to_socket_addrs()? {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
                    return Ok(stream);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::AddrNotAvailable, format!("{addr} resolves to no address"))))
    }
}

/// Splits a plain TCP stream into the runtime's halves.
pub fn plain_connection(stream: TcpStream) -> io::Result<Connection> {
    let writer = stream.try_clone()?;
    let closer = stream.try_clone()?;
    Ok(Connection {
        reader: Box::new(stream),
        writer: Box::new(writer),
        closer: Box::new(move || {
            let _ = closer.shutdown(Shutdown::Both);
        }),
    })
}

impl Transport for TcpTransport {
    fn connect(&self, addr: &str, timeout: Duration) -> io::Result<Connection> {
        plain_connection(TcpTransport::connect_socket(addr, timeout)?)
    }
}
