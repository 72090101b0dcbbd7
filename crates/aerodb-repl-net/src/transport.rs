//! Connecting to a primary. A transport yields a reader and a writer for
//! one connection; the replica runtime reads on one thread and writes from
//! its engine thread.

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

impl Transport for TcpTransport {
    fn connect(&self, addr: &str, timeout: Duration) -> io::Result<Connection> {
        let mut last = None;
        for a in addr.to_socket_addrs()? {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
                    let writer = stream.try_clone()?;
                    let closer = stream.try_clone()?;
                    return Ok(Connection {
                        reader: Box::new(stream),
                        writer: Box::new(writer),
                        closer: Box::new(move || {
                            let _ = closer.shutdown(Shutdown::Both);
                        }),
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::AddrNotAvailable, format!("{addr} resolves to no address"))))
    }
}
