//! TLS (rustls) on the replication port, for the blocking runtimes.
//!
//! The runtimes read a connection on one thread and write it from another,
//! so a TLS session is shared by a reader and a writer half: the rustls
//! state sits behind one lock, socket writes behind another (taken first,
//! so TLS records go out in the order they were sealed), and the reader
//! blocks on the socket without holding either. The handshake runs to
//! completion before the halves are handed out, within a deadline (RES-3).
//!
//! Neither side decides anything here: a failed handshake is a failed
//! connection (the replica retries; the primary counts and logs it).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};

use crate::transport::{Connection, TcpTransport, Transport};

/// The first byte of every TLS handshake (a TLS record of type handshake).
pub const TLS_HANDSHAKE_BYTE: u8 = 0x16;

struct Shared {
    conn: Mutex<rustls::Connection>,
    write_sock: Mutex<TcpStream>,
}

impl Shared {
    /// Seals what rustls has queued and writes it, in order. The caller
    /// holds `write_sock` (passed in) so records cannot be reordered.
    fn flush_tls(&self, sock: &mut TcpStream) -> io::Result<()> {
        let mut out = Vec::new();
        {
            let mut conn = self.conn.lock();
            while conn.wants_write() {
                conn.write_tls(&mut out)?;
            }
        }
        if !out.is_empty() {
            sock.write_all(&out)?;
        }
        Ok(())
    }
}

struct TlsReader {
    shared: Arc<Shared>,
    sock: TcpStream,
    raw: Vec<u8>,
    at: usize,
}

impl Read for TlsReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut wants_write = false;
            let mut fed = false;
            {
                let mut conn = self.shared.conn.lock();
                match conn.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // The peer closed TCP without close_notify: frames are
                    // length-prefixed and checked, so this is just an EOF.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                    Err(e) => return Err(e),
                }
                if self.at < self.raw.len() {
                    if !conn.wants_read() {
                        return Ok(0);
                    }
                    let mut pending = &self.raw[self.at..];
                    let n = conn.read_tls(&mut pending)?;
                    self.at += n;
                    conn.process_new_packets().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    wants_write = conn.wants_write();
                    fed = true;
                }
            }
            if wants_write {
                let mut sock = self.shared.write_sock.lock();
                self.shared.flush_tls(&mut sock)?;
            }
            if fed {
                // What was fed may have produced plaintext: look again before blocking.
                continue;
            }
            self.raw.resize(64 * 1024, 0);
            self.at = 0;
            let n = self.sock.read(&mut self.raw)?;
            self.raw.truncate(n);
            if n == 0 {
                return Ok(0);
            }
        }
    }
}

struct TlsWriter {
    shared: Arc<Shared>,
}

impl Write for TlsWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        let mut sock = self.shared.write_sock.lock();
        while !buf.is_empty() {
            // rustls buffers at most 64 KiB of plaintext: seal and send piece by piece.
            let n = self.shared.conn.lock().writer().write(buf)?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "TLS session does not take more data"));
            }
            self.shared.flush_tls(&mut sock)?;
            buf = &buf[n..];
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs a handshake on a blocking socket to completion within `timeout`.
fn handshake(conn: &mut rustls::Connection, sock: &mut TcpStream, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    while conn.is_handshaking() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, format!("TLS handshake not finished within {} ms", timeout.as_millis())));
        }
        sock.set_read_timeout(Some(left))?;
        sock.set_write_timeout(Some(left))?;
        conn.complete_io(sock)?;
    }
    while conn.wants_write() {
        conn.write_tls(sock)?;
    }
    sock.set_read_timeout(None)?;
    Ok(())
}

/// Splits an established TLS session into the runtime's halves.
fn split(conn: rustls::Connection, sock: TcpStream, write_timeout: Duration) -> io::Result<Connection> {
    sock.set_write_timeout(Some(write_timeout))?;
    let reader_sock = sock.try_clone()?;
    let closer_sock = sock.try_clone()?;
    let shared = Arc::new(Shared { conn: Mutex::new(conn), write_sock: Mutex::new(sock) });
    Ok(Connection {
        reader: Box::new(TlsReader { shared: shared.clone(), sock: reader_sock, raw: Vec::new(), at: 0 }),
        writer: Box::new(TlsWriter { shared }),
        closer: Box::new(move || {
            let _ = closer_sock.shutdown(Shutdown::Both);
        }),
    })
}

/// What arrived on a TLS port.
pub enum Accepted {
    /// An established TLS session.
    Tls(Connection),
    /// A peer speaking plain TCP (its first byte is not a TLS handshake):
    /// the socket, for an answer in the port's own protocol
    /// (`TLS_REQUIRED`).
    Plain(TcpStream, u8),
}

/// Accepts a TLS session on an accepted socket within `timeout` (RES-3).
/// A plain peer is detected from its first byte before any TLS is sent,
/// so the caller can answer it in its own protocol. An error is a failed
/// or timed-out handshake (`TLS_HANDSHAKE_FAILED`).
pub fn accept(mut sock: TcpStream, config: Arc<ServerConfig>, timeout: Duration, write_timeout: Duration) -> io::Result<Accepted> {
    let deadline = Instant::now() + timeout;
    let mut first = [0u8; 1];
    sock.set_read_timeout(Some(timeout))?;
    match sock.peek(&mut first)? {
        1 if first[0] != TLS_HANDSHAKE_BYTE => return Ok(Accepted::Plain(sock, first[0])),
        1 => {}
        _ => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before the TLS handshake")),
    }
    let mut conn = rustls::Connection::Server(ServerConnection::new(config).map_err(io::Error::other)?);
    // One deadline for the first byte and the whole handshake.
    handshake(&mut conn, &mut sock, deadline.saturating_duration_since(Instant::now()))?;
    split(conn, sock, write_timeout).map(Accepted::Tls)
}

/// Connects with TLS to the primary, verifying its certificate against the
/// configured CA and the host part of the address (RES-3: TCP connect and
/// handshake each within `timeout`).
pub struct TlsTransport {
    config: Arc<ClientConfig>,
}

impl TlsTransport {
    /// A transport verifying servers with `config`.
    pub fn new(config: Arc<ClientConfig>) -> Self {
        TlsTransport { config }
    }
}

/// The host part of `host:port` (IPv6 literals lose their brackets).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host)
}

/// How long one write may block before the connection is considered dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

impl Transport for TlsTransport {
    fn connect(&self, addr: &str, timeout: Duration) -> io::Result<Connection> {
        let name = ServerName::try_from(host_of(addr).to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: not a host name TLS can verify: {e}")))?;
        let mut sock = TcpTransport::connect_socket(addr, timeout)?;
        let client = ClientConnection::new(self.config.clone(), name).map_err(io::Error::other)?;
        let mut conn = rustls::Connection::Client(client);
        handshake(&mut conn, &mut sock, timeout).map_err(|e| io::Error::new(e.kind(), format!("TLS handshake with {addr} failed: {e}")))?;
        split(conn, sock, WRITE_TIMEOUT)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::time::Duration;

    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    use super::*;

    fn configs() -> (Arc<ServerConfig>, Arc<ClientConfig>) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        let der = CertificateDer::from(ck.cert.der().to_vec());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()));
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).unwrap();
        let client =
            ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().unwrap().with_root_certificates(roots).with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    /// RES-3: a TLS session carries bytes both ways through the split
    /// halves (large writes in pieces, reads while the other side writes),
    /// and a plain peer is recognised before any TLS is sent.
    #[test]
    fn res_3_tls_halves_carry_bytes_both_ways() {
        let (server, client) = configs();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let t = std::thread::spawn(move || {
            let (sock, _) = listener.accept().unwrap();
            let Accepted::Tls(conn) = accept(sock, server.clone(), Duration::from_secs(10), Duration::from_secs(10)).unwrap() else { panic!("plain") };
            let (mut r, mut w) = (conn.reader, conn.writer);
            let mut hello = [0u8; 5];
            r.read_exact(&mut hello).unwrap();
            assert_eq!(&hello, b"hello");
            w.write_all(&vec![7u8; 300_000]).unwrap();
            let mut bye = [0u8; 3];
            r.read_exact(&mut bye).unwrap();
            assert_eq!(&bye, b"bye");
            let (plain, _) = listener.accept().unwrap();
            assert!(matches!(accept(plain, server, Duration::from_secs(10), Duration::from_secs(10)).unwrap(), Accepted::Plain(_, b'x')));
        });
        let conn = TlsTransport::new(client).connect(&addr, Duration::from_secs(10)).unwrap();
        let (mut r, mut w) = (conn.reader, conn.writer);
        w.write_all(b"hello").unwrap();
        let mut big = vec![0u8; 300_000];
        r.read_exact(&mut big).unwrap();
        assert!(big.iter().all(|b| *b == 7));
        w.write_all(b"bye").unwrap();
        let mut plain = std::net::TcpStream::connect(&addr).unwrap();
        plain.write_all(b"x").unwrap();
        t.join().unwrap();
    }

    #[test]
    fn res_4_tls_server_name_is_the_host_of_the_primary_address() {
        assert_eq!(host_of("127.0.0.1:7701"), "127.0.0.1");
        assert_eq!(host_of("db.example:7701"), "db.example");
        assert_eq!(host_of("[::1]:7701"), "::1");
    }
}
