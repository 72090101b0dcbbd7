//! Sans-IO HTTP/1 request framing (RES-3): follows the byte stream a client
//! sends, finds where each request head ends and how long its body is (the
//! same rules hyper applies), and checks every head against the limits
//! *before* the HTTP library sees it. Bytes of a head are held back until
//! the whole head has arrived and passed, so a refused or half-sent head
//! never reaches the library: the server can answer it with its own JSON
//! body (414, 431, 400), or cut it, and keep everything before it intact.
//!
//! No IO, no clock: [`RequestFramer::feed`] takes bytes and says how many of
//! them may be released.

use crate::http::limits::{MAX_CHUNK_LINE_BYTES, MAX_HEADER_COUNT, REQUEST_LINE_OVERHEAD};
use crate::http::refusal::LimitRefusal;

/// Limits a head is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadLimits {
    /// Longest request target.
    pub max_url_bytes: usize,
    /// Largest header section (the lines after the request line).
    pub max_header_bytes: usize,
}

/// What [`RequestFramer::feed`] decided about a slice of bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fed {
    /// Bytes from the start of the slice that may be released now (together
    /// with any held bytes before them). The rest is part of a head that has
    /// not fully arrived yet, or follows a refusal.
    pub approved: usize,
    /// A refusal, when the stream broke a rule. Nothing after `approved` may
    /// be released, ever.
    pub refusal: Option<Refused>,
}

/// Where the stream broke a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// In a request head: the server can still answer it (after any earlier
    /// responses) and close.
    Head(LimitRefusal),
    /// Inside a body (bad chunked framing): the connection can only be cut.
    Body(String),
}

/// Body framing of the current request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// Reading a chunk-size line: its value so far, whether digits ended, its length.
    Size { value: u64, digits: usize, ext: bool, len: usize },
    /// Inside chunk data: bytes left.
    Data(u64),
    /// After chunk data: expecting CRLF (`true` once CR was seen).
    DataEnd(bool),
    /// Trailer section: bytes so far, whether the current line is empty.
    Trailer { bytes: usize, line_empty: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting for (or inside) a request head.
    Head,
    /// Inside a body of known length: bytes left.
    Length(u64),
    /// Inside a chunked body.
    Chunked(Chunk),
    /// A rule was broken; nothing more is examined.
    Refused,
}

/// Follows one connection's request stream.
#[derive(Clone, Debug)]
pub struct RequestFramer {
    limits: HeadLimits,
    state: State,
    /// The current head's bytes (bounded by the limits).
    head: Vec<u8>,
    /// Whether the current line has had a byte other than CR.
    line_nonempty: bool,
    /// Bytes in the current line.
    line_len: usize,
    /// Whether the request line was seen (leading empty lines are skipped).
    request_line_seen: bool,
    /// Head offset just after the request line.
    request_line_end: usize,
    /// Whether the request line's method ended (its first space was seen).
    method_done: bool,
    /// Header lines so far.
    headers: usize,
    /// Requests whose head passed.
    requests: u64,
}

impl RequestFramer {
    /// A framer at the start of a connection.
    pub fn new(limits: HeadLimits) -> Self {
        RequestFramer {
            limits,
            state: State::Head,
            head: Vec::new(),
            line_nonempty: false,
            line_len: 0,
            request_line_seen: false,
            request_line_end: 0,
            method_done: false,
            headers: 0,
            requests: 0,
        }
    }

    /// Whether part of a request head has arrived but not all of it (what a
    /// header timeout or a shutdown interrupts).
    pub fn mid_head(&self) -> bool {
        self.state == State::Head && !self.head.is_empty()
    }

    /// Whether the stream is between requests (no head or body partly read).
    pub fn at_boundary(&self) -> bool {
        self.state == State::Head && self.head.is_empty()
    }

    /// Requests whose head passed so far.
    #[cfg(test)]
    pub fn requests(&self) -> u64 {
        self.requests
    }

    fn refuse(&mut self, approved: usize, refusal: Refused) -> Fed {
        self.state = State::Refused;
        self.head = Vec::new();
        Fed { approved, refusal: Some(refusal) }
    }

    /// Follows `bytes`, the next bytes the client sent.
    pub fn feed(&mut self, bytes: &[u8]) -> Fed {
        let mut i = 0;
        let mut approved = 0;
        while i < bytes.len() {
            match self.state {
                State::Refused => return Fed { approved, refusal: None },
                State::Head => {
                    let start = i;
                    match self.scan_head(bytes, &mut i) {
                        Ok(false) => {
                            self.head.extend_from_slice(&bytes[start..i]);
                            return Fed { approved, refusal: None };
                        }
                        Ok(true) => {
                            self.head.extend_from_slice(&bytes[start..i]);
                            match self.finish_head() {
                                Ok(next) => {
                                    self.state = next;
                                    self.requests += 1;
                                    approved = i;
                                }
                                Err(r) => return self.refuse(approved, Refused::Head(r)),
                            }
                        }
                        Err(r) => return self.refuse(approved, Refused::Head(r)),
                    }
                }
                State::Length(left) => {
                    let take = left.min((bytes.len() - i) as u64);
                    i += take as usize;
                    self.state = if take == left { State::Head } else { State::Length(left - take) };
                    approved = i;
                }
                State::Chunked(chunk) => match self.step_chunked(chunk, bytes, &mut i) {
                    Ok(next) => {
                        self.state = next;
                        approved = i;
                    }
                    // Every body error is found on the byte just consumed: what precedes it was body.
                    Err(detail) => return self.refuse(i.saturating_sub(1), Refused::Body(detail)),
                },
            }
        }
        Fed { approved, refusal: None }
    }

    /// Scans head bytes from `*i`; true when the head's final empty line ended.
    fn scan_head(&mut self, bytes: &[u8], i: &mut usize) -> Result<bool, LimitRefusal> {
        let max_request_line = self.limits.max_url_bytes + REQUEST_LINE_OVERHEAD;
        let start = *i;
        while *i < bytes.len() {
            let b = bytes[*i];
            *i += 1;
            if b == b'\n' {
                if !self.line_nonempty {
                    if self.request_line_seen {
                        return Ok(true);
                    }
                    // Empty lines before the request line are allowed (and skipped by the parser).
                } else if !self.request_line_seen {
                    self.request_line_seen = true;
                    self.request_line_end = self.head.len() + (*i - start);
                } else {
                    self.headers += 1;
                    if self.headers > MAX_HEADER_COUNT {
                        return Err(LimitRefusal::TooManyHeaders { max: MAX_HEADER_COUNT });
                    }
                }
                self.line_nonempty = false;
                self.line_len = 0;
                continue;
            }
            self.line_len += 1;
            if b != b'\r' {
                self.line_nonempty = true;
            }
            if !self.request_line_seen && !self.method_done && self.line_nonempty {
                // Check the method as it arrives, like the HTTP parser does:
                // a peer that does not speak HTTP is refused at its first bytes.
                match b {
                    b' ' if self.line_len > 1 => self.method_done = true,
                    _ if is_tchar(b) => {}
                    _ => return Err(LimitRefusal::BadHttp { detail: "the request does not start with an HTTP method".into() }),
                }
            }
            if !self.request_line_seen {
                if self.line_nonempty && self.line_len > max_request_line {
                    return Err(LimitRefusal::UriTooLong { bytes: self.line_len, max: self.limits.max_url_bytes });
                }
                if !self.line_nonempty && self.head.len() + (*i - start) > max_request_line + self.limits.max_header_bytes {
                    return Err(LimitRefusal::BadHttp { detail: "too many empty lines before the request line".into() });
                }
            } else {
                let header_bytes = self.head.len() + (*i - start) - self.request_line_end;
                if header_bytes > self.limits.max_header_bytes {
                    return Err(LimitRefusal::HeadersTooLarge { bytes: header_bytes, max: self.limits.max_header_bytes });
                }
            }
        }
        Ok(false)
    }

    /// Parses the complete head in `self.head` and decides the body framing.
    fn finish_head(&mut self) -> Result<State, LimitRefusal> {
        let head = std::mem::take(&mut self.head);
        self.line_nonempty = false;
        self.line_len = 0;
        self.request_line_seen = false;
        self.request_line_end = 0;
        self.method_done = false;
        self.headers = 0;
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADER_COUNT];
        let mut req = httparse::Request::new(&mut fields);
        match req.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err(LimitRefusal::BadHttp { detail: "incomplete request head".into() }),
            Err(e) => return Err(LimitRefusal::BadHttp { detail: e.to_string() }),
        }
        let path = req.path.unwrap_or_default();
        if path.len() > self.limits.max_url_bytes {
            return Err(LimitRefusal::UriTooLong { bytes: path.len(), max: self.limits.max_url_bytes });
        }
        if req.method == Some("CONNECT") {
            return Err(LimitRefusal::BadHttp { detail: "CONNECT is not supported".into() });
        }
        let http11 = req.version == Some(1);
        body_framing(req.headers, http11)
    }

    fn step_chunked(&mut self, chunk: Chunk, bytes: &[u8], i: &mut usize) -> Result<State, String> {
        let mut chunk = chunk;
        while *i < bytes.len() {
            match chunk {
                Chunk::Data(left) => {
                    let take = left.min((bytes.len() - *i) as u64);
                    *i += take as usize;
                    chunk = if take == left { Chunk::DataEnd(false) } else { Chunk::Data(left - take) };
                }
                Chunk::Size { value, digits, ext, len } => {
                    let b = bytes[*i];
                    *i += 1;
                    let len = len + 1;
                    if len > MAX_CHUNK_LINE_BYTES {
                        return Err(format!("chunk-size line longer than {MAX_CHUNK_LINE_BYTES} bytes"));
                    }
                    if b == b'\n' {
                        if digits == 0 {
                            return Err("chunk-size line without a size".into());
                        }
                        chunk = if value == 0 { Chunk::Trailer { bytes: 0, line_empty: true } } else { Chunk::Data(value) };
                        continue;
                    }
                    match (ext, (b as char).to_digit(16)) {
                        (false, Some(d)) => {
                            let value = value.checked_mul(16).and_then(|v| v.checked_add(u64::from(d))).ok_or("chunk size overflows 64 bits")?;
                            chunk = Chunk::Size { value, digits: digits + 1, ext, len };
                        }
                        _ => chunk = Chunk::Size { value, digits, ext: true, len },
                    }
                }
                Chunk::DataEnd(cr) => {
                    let b = bytes[*i];
                    *i += 1;
                    chunk = match (b, cr) {
                        (b'\r', false) => Chunk::DataEnd(true),
                        (b'\n', _) => Chunk::Size { value: 0, digits: 0, ext: false, len: 0 },
                        _ => return Err("chunk data not followed by CRLF".into()),
                    };
                }
                Chunk::Trailer { bytes: seen, line_empty } => {
                    let b = bytes[*i];
                    *i += 1;
                    let seen = seen + 1;
                    if seen > self.limits.max_header_bytes {
                        return Err(format!("chunked trailer section larger than {} bytes", self.limits.max_header_bytes));
                    }
                    if b == b'\n' {
                        if line_empty {
                            return Ok(State::Head);
                        }
                        chunk = Chunk::Trailer { bytes: seen, line_empty: true };
                    } else {
                        chunk = Chunk::Trailer { bytes: seen, line_empty: line_empty && b == b'\r' };
                    }
                }
            }
        }
        Ok(State::Chunked(chunk))
    }
}

/// The body framing of a request, by the rules hyper applies
/// (RFC 9112 §6.3): `Transfer-Encoding` ending in `chunked` wins over
/// `Content-Length`; differing or invalid lengths, and a transfer coding
/// that does not end in `chunked`, are refused.
fn body_framing(headers: &[httparse::Header<'_>], http11: bool) -> Result<State, LimitRefusal> {
    let bad = |detail: &str| LimitRefusal::BadHttp { detail: detail.into() };
    let mut length: Option<u64> = None;
    let mut te = false;
    let mut chunked = false;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if !http11 {
                return Err(bad("HTTP/1.0 requests cannot use Transfer-Encoding"));
            }
            te = true;
            chunked = std::str::from_utf8(h.value).ok().and_then(|v| v.rsplit(',').next()).is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let n = parse_digits(h.value).ok_or_else(|| bad("invalid Content-Length"))?;
            if length.is_some_and(|prev| prev != n) {
                return Err(bad("differing Content-Length headers"));
            }
            length = Some(n);
        }
    }
    if te {
        return if chunked {
            Ok(State::Chunked(Chunk::Size { value: 0, digits: 0, ext: false, len: 0 }))
        } else {
            Err(bad("Transfer-Encoding does not end in chunked"))
        };
    }
    Ok(match length {
        Some(n) if n > 0 => State::Length(n),
        _ => State::Head,
    })
}

/// An HTTP token character (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A Content-Length value: ASCII digits only, no overflow.
fn parse_digits(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u64, |acc, b| if b.is_ascii_digit() { acc.checked_mul(10)?.checked_add(u64::from(b - b'0')) } else { None })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits { max_url_bytes: 64, max_header_bytes: 128 };

    /// Feeds `stream` in pieces of `step` bytes; returns the released bytes
    /// and the refusal, like the IO wrapper does.
    fn run(stream: &[u8], step: usize) -> (Vec<u8>, Option<Refused>) {
        let mut f = RequestFramer::new(LIMITS);
        let mut held: Vec<u8> = Vec::new();
        let mut released = Vec::new();
        for piece in stream.chunks(step.max(1)) {
            let fed = f.feed(piece);
            let held_before = held.len();
            held.extend_from_slice(piece);
            // Held bytes are a head in progress: released only with an approved prefix.
            let n = if fed.approved > 0 { held_before + fed.approved } else { 0 };
            released.extend(held.drain(..n));
            if let Some(r) = fed.refusal {
                return (released, Some(r));
            }
        }
        (released, None)
    }

    fn every_step(stream: &[u8]) -> (Vec<u8>, Option<Refused>) {
        let whole = run(stream, stream.len());
        for step in [1, 2, 3, 7, 16] {
            assert_eq!(run(stream, step), whole, "step {step} changes the outcome");
        }
        whole
    }

    /// RES-3: pipelined requests with length and chunked bodies are
    /// released exactly, whatever the read sizes; a partial head is held.
    #[test]
    fn res_3_framer_releases_whole_requests_and_holds_partial_heads() {
        let a = b"PUT /v1/docs/c/k HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
        let b = b"POST /v1/commit HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nTrailer: 1\r\n\r\n";
        let c = b"\r\nGET /v1/docs/c/k HTTP/1.1\r\nHo";
        let stream = [&a[..], &b[..], &c[..]].concat();
        let (released, refusal) = every_step(&stream);
        assert_eq!(refusal, None);
        assert_eq!(released, [&a[..], &b[..]].concat(), "the partial third head is held back");
        let mut f = RequestFramer::new(LIMITS);
        f.feed(&stream);
        assert!(f.mid_head());
        assert_eq!(f.requests(), 2);
    }

    /// RES-3: a long request line is refused as URI_TOO_LONG before its end
    /// arrives; an oversized header section as HEADERS_TOO_LARGE; too many
    /// header lines too. What came before the refused head is released.
    #[test]
    fn res_3_framer_refuses_long_urls_and_large_headers_early() {
        let ok = b"GET /a HTTP/1.1\r\n\r\n";
        let long_url = [&ok[..], b"GET /", &[b'a'; 200][..]].concat();
        let (released, refusal) = every_step(&long_url);
        assert_eq!(released, ok);
        assert!(matches!(refusal, Some(Refused::Head(LimitRefusal::UriTooLong { max: 64, .. }))), "{refusal:?}");

        let big_headers = [&b"GET / HTTP/1.1\r\nX: "[..], &[b'v'; 200][..]].concat();
        let (released, refusal) = every_step(&big_headers);
        assert!(released.is_empty());
        assert!(matches!(refusal, Some(Refused::Head(LimitRefusal::HeadersTooLarge { max: 128, .. }))), "{refusal:?}");

        let many = [&b"GET / HTTP/1.1\r\n"[..], &b"a:\r\n".repeat(MAX_HEADER_COUNT + 1)[..]].concat();
        let framer = RequestFramer::new(HeadLimits { max_url_bytes: 64, max_header_bytes: 1 << 20 });
        let mut f = framer;
        assert!(matches!(f.feed(&many).refusal, Some(Refused::Head(LimitRefusal::TooManyHeaders { .. }))));
    }

    /// RES-3 / §11: malformed heads and ambiguous framing are refused with
    /// BAD_HTTP_REQUEST; bad chunked framing inside a body cuts.
    #[test]
    fn res_3_framer_refuses_malformed_heads_and_bad_chunks() {
        for head in [
            &b"GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"CONNECT x:1 HTTP/1.1\r\n\r\n",
            b"G(T / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/2.0\r\n\r\n",
            b"\x52\xae\x01\x00binary frame without any newline",
            b" GET / HTTP/1.1\r\n\r\n",
        ] {
            let (_, refusal) = every_step(head);
            assert!(matches!(refusal, Some(Refused::Head(LimitRefusal::BadHttp { .. }))), "{:?}: {refusal:?}", String::from_utf8_lossy(head));
        }
        let bad_chunk = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert!(matches!(every_step(bad_chunk).1, Some(Refused::Body(_))));
        let overflow = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\n";
        assert!(matches!(every_step(overflow).1, Some(Refused::Body(_))));
        // Transfer-Encoding wins over Content-Length (the body is chunked).
        let both = b"POST / HTTP/1.1\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        assert_eq!(every_step(both), (both.to_vec(), None));
    }

    proptest::proptest! {
        /// RES-3: the framer never panics, never releases more than it was
        /// given, and reaches the same decision whatever the read sizes.
        #[test]
        fn res_3_framer_is_total_and_split_independent(stream in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600), step in 1usize..40) {
            let whole = run(&stream, stream.len());
            proptest::prop_assert_eq!(run(&stream, step), whole.clone());
            proptest::prop_assert!(whole.0.len() <= stream.len());
            proptest::prop_assert_eq!(&stream[..whole.0.len()], &whole.0[..]);
        }
    }
}
