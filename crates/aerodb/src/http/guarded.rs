//! The IO wrapper between a TCP connection and hyper (RES-3). Reads go
//! through the [`RequestFramer`]: a request head reaches hyper only once it
//! is complete and within the limits, so hyper never sees a refused or
//! half-sent head. A refused head makes the connection close gracefully
//! (after any earlier responses); when hyper then shuts the connection down,
//! this wrapper writes the refusal with the surface's JSON body, closes its
//! write side and lingers briefly (reading and discarding) so the answer is
//! not destroyed by a TCP reset. A half-sent head interrupted by the header
//! timeout or by node shutdown is answered the same way (when hyper drops
//! the connection without shutting it down, the answer is written on drop). Writes that stall
//! (a client that stopped reading) are cut after [`WRITE_STALL_TIMEOUT`].

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Sleep;

use crate::http::framer::{Refused, RequestFramer};
use crate::http::limits::{millis, LINGER_MAX_BYTES, LINGER_TIMEOUT, SHUTDOWN_LINGER_TIMEOUT, WRITE_STALL_TIMEOUT};
use crate::http::refusal::LimitRefusal;
use crate::http::server::Surface;

/// How the wrapper closes the connection, step by step.
enum Closing {
    /// Not closing yet.
    Open,
    /// Writing the refusal answer.
    Answer { bytes: Vec<u8>, written: usize },
    /// Flushing it.
    Flush,
    /// Closing the write side.
    ShutdownWrite,
    /// Reading and discarding what the client still sends (until the
    /// deadline, or at once when the node starts shutting down).
    Linger { deadline: Pin<Box<Sleep>>, stopping: Pin<Box<dyn std::future::Future<Output = ()> + Send>>, drained: u64 },
    /// Closed.
    Done,
}

/// A TCP (or TLS over TCP) stream guarded by the request framer.
pub struct Guarded<S: AsyncRead + AsyncWrite + Unpin = TcpStream> {
    inner: S,
    framer: RequestFramer,
    /// Bytes read but not yet handed to hyper: a head in progress, or an
    /// approved prefix (`release`) followed by one.
    held: Vec<u8>,
    release: usize,
    /// The head refusal to answer when the connection closes.
    refusal: Option<LimitRefusal>,
    /// Broken body framing: reads fail (the connection is cut).
    cut: Option<String>,
    client_eof: bool,
    answered: bool,
    closing: Closing,
    stall: Option<Pin<Box<Sleep>>>,
    surface: Arc<Surface>,
    refused: Arc<Notify>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Guarded<S> {
    /// Wraps `inner`; `refused` is notified when a head is refused (the
    /// connection task then shuts the connection down gracefully).
    pub fn new(inner: S, surface: Arc<Surface>, refused: Arc<Notify>) -> Self {
        Guarded {
            inner,
            framer: RequestFramer::new(surface.head_limits()),
            held: Vec::new(),
            release: 0,
            refusal: None,
            cut: None,
            client_eof: false,
            answered: false,
            closing: Closing::Open,
            stall: None,
            surface,
            refused,
        }
    }

    fn on_refused(&mut self, refused: Refused) {
        self.held.truncate(self.release);
        match refused {
            Refused::Head(refusal) => {
                tracing::debug!(surface = self.surface.name(), code = refusal.code(), "request head refused: {refusal}");
                self.surface.stats.reject(&refusal);
                self.refusal = Some(refusal);
                self.refused.notify_one();
            }
            Refused::Body(detail) => {
                let refusal = LimitRefusal::BadHttp { detail: detail.clone() };
                tracing::debug!(surface = self.surface.name(), "request body framing broken, cutting the connection: {detail}");
                self.surface.stats.reject(&refusal);
                self.cut = Some(detail);
            }
        }
    }

    /// What to answer when the connection closes, if anything.
    fn closing_answer(&mut self) -> Option<LimitRefusal> {
        if let Some(r) = self.refusal.take() {
            return Some(r);
        }
        if self.framer.mid_head() && !self.client_eof {
            // Hyper closed an idle connection whose head had only partly
            // arrived: node shutdown, or the header timeout.
            let r = if self.surface.shutdown.is_triggered() {
                LimitRefusal::ShuttingDown
            } else {
                LimitRefusal::HeaderTimeout { timeout_ms: millis(self.surface.limits.header_timeout) }
            };
            self.surface.stats.reject(&r);
            return Some(r);
        }
        None
    }
}

/// Passes a write result through, cutting a write that made no progress
/// for [`WRITE_STALL_TIMEOUT`] (the timer runs while writes are pending).
fn write_progress<T>(stall: &mut Option<Pin<Box<Sleep>>>, cx: &mut Context<'_>, result: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
    match result {
        Poll::Ready(r) => {
            *stall = None;
            Poll::Ready(r)
        }
        Poll::Pending => {
            let timer = stall.get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_STALL_TIMEOUT)));
            match timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading the response"))),
                Poll::Pending => Poll::Pending,
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.release > 0 {
                let n = this.release.min(out.remaining());
                out.put_slice(&this.held[..n]);
                this.held.drain(..n);
                this.release -= n;
                return Poll::Ready(Ok(()));
            }
            if let Some(detail) = &this.cut {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, detail.clone())));
            }
            if this.refusal.is_some() || this.answered {
                // Nothing more reaches hyper; the connection task closes it.
                return Poll::Pending;
            }
            if this.client_eof {
                return Poll::Ready(Ok(()));
            }
            if this.held.is_empty() {
                // Read straight into hyper's buffer; keep back a head in progress.
                let before = out.filled().len();
                ready!(Pin::new(&mut this.inner).poll_read(cx, out))?;
                let n = out.filled().len() - before;
                if n == 0 {
                    this.client_eof = true;
                    return Poll::Ready(Ok(()));
                }
                let fed = this.framer.feed(&out.filled()[before..]);
                if fed.approved < n {
                    this.held.extend_from_slice(&out.filled()[before + fed.approved..]);
                    out.set_filled(before + fed.approved);
                }
                if let Some(r) = fed.refusal {
                    this.held.clear();
                    this.on_refused(r);
                }
                if fed.approved > 0 {
                    return Poll::Ready(Ok(()));
                }
            } else {
                // A head is in progress: read more of it.
                let mut scratch = [0u8; 4096];
                let mut buf = ReadBuf::new(&mut scratch);
                ready!(Pin::new(&mut this.inner).poll_read(cx, &mut buf))?;
                let got = buf.filled();
                if got.is_empty() {
                    // The client closed with half a head: it never reaches hyper.
                    this.client_eof = true;
                    this.held.clear();
                    return Poll::Ready(Ok(()));
                }
                let held_before = this.held.len();
                let fed = this.framer.feed(got);
                this.held.extend_from_slice(got);
                this.release = if fed.approved > 0 { held_before + fed.approved } else { 0 };
                if let Some(r) = fed.refusal {
                    this.on_refused(r);
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        write_progress(&mut this.stall, cx, result)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        write_progress(&mut this.stall, cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        write_progress(&mut this.stall, cx, result)
    }

    /// Hyper is done with the connection: answer a refused or interrupted
    /// head, close the write side, and linger if the client may still be
    /// sending (so it reads the answer instead of a reset).
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match &mut this.closing {
                Closing::Open => {
                    this.closing = match this.closing_answer() {
                        Some(r) => {
                            this.answered = true;
                            Closing::Answer { bytes: this.surface.response_bytes(&r), written: 0 }
                        }
                        None => Closing::ShutdownWrite,
                    };
                }
                Closing::Answer { bytes, written } => {
                    if *written < bytes.len() {
                        let result = Pin::new(&mut this.inner).poll_write(cx, &bytes[*written..]);
                        match ready!(write_progress(&mut this.stall, cx, result)) {
                            Ok(n) if n > 0 => *written += n,
                            // The client is gone: nothing more to do.
                            _ => this.closing = Closing::Done,
                        }
                    } else {
                        this.closing = Closing::Flush;
                    }
                }
                Closing::Flush => {
                    let result = Pin::new(&mut this.inner).poll_flush(cx);
                    let _ = ready!(write_progress(&mut this.stall, cx, result));
                    this.closing = Closing::ShutdownWrite;
                }
                Closing::ShutdownWrite => {
                    let result = Pin::new(&mut this.inner).poll_shutdown(cx);
                    let shut = ready!(write_progress(&mut this.stall, cx, result));
                    let unread = this.answered || !this.framer.at_boundary() || !this.held.is_empty();
                    this.closing = if shut.is_ok() && unread && !this.client_eof {
                        let linger = if this.surface.shutdown.is_triggered() { SHUTDOWN_LINGER_TIMEOUT } else { LINGER_TIMEOUT };
                        let shutdown = this.surface.shutdown.clone();
                        let stopping = if shutdown.is_triggered() {
                            Box::pin(std::future::pending()) as Pin<Box<dyn std::future::Future<Output = ()> + Send>>
                        } else {
                            Box::pin(async move { shutdown.triggered().await })
                        };
                        Closing::Linger { deadline: Box::pin(tokio::time::sleep(linger)), stopping, drained: 0 }
                    } else {
                        Closing::Done
                    };
                }
                Closing::Linger { deadline, stopping, drained } => {
                    if stopping.as_mut().poll(cx).is_ready() {
                        // The node is stopping: linger only briefly from now on.
                        *deadline = Box::pin(tokio::time::sleep(SHUTDOWN_LINGER_TIMEOUT));
                        *stopping = Box::pin(std::future::pending());
                    }
                    if deadline.as_mut().poll(cx).is_ready() || *drained > LINGER_MAX_BYTES {
                        this.closing = Closing::Done;
                        continue;
                    }
                    let mut scratch = [0u8; 8192];
                    let mut buf = ReadBuf::new(&mut scratch);
                    match ready!(Pin::new(&mut this.inner).poll_read(cx, &mut buf)) {
                        Ok(()) if !buf.filled().is_empty() => *drained += buf.filled().len() as u64,
                        _ => this.closing = Closing::Done,
                    }
                }
                Closing::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}

/// Hyper drops the connection without shutting it down when its header
/// timeout fires (and the server drops it when the shutdown timeout cuts
/// it): a half-sent head still gets its answer, written without waiting
/// (it fits the socket buffer; if not, the connection is cut as it is).
impl<S: AsyncRead + AsyncWrite + Unpin> Drop for Guarded<S> {
    fn drop(&mut self) {
        if matches!(self.closing, Closing::Open) {
            if let Some(r) = self.closing_answer() {
                // Written without waiting, whatever the stream (TCP or TLS).
                let bytes = self.surface.response_bytes(&r);
                let mut cx = Context::from_waker(std::task::Waker::noop());
                let _ = Pin::new(&mut self.inner).poll_write(&mut cx, &bytes);
                let _ = Pin::new(&mut self.inner).poll_flush(&mut cx);
            }
        }
    }
}
