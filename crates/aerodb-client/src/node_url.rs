//! Node URLs: parsed and validated before anything touches the network.
//!
//! Accepted forms (case-insensitive scheme):
//!
//! | input | result |
//! |---|---|
//! | `http://127.0.0.1:7700` | as is |
//! | `127.0.0.1:7700` | `http://` is assumed |
//! | `http://localhost:7700/` | one trailing `/` is allowed |
//! | `http://[::1]:7700` | IPv6 literals in brackets |
//!
//! | `https://db.example:7700` | HTTPS (TLS); verified against the CA in [`crate::ClientConfig::tls`] |
//!
//! Refused with [`ClientError::BadUrl`](crate::ClientError::BadUrl), without
//! any DNS lookup: an empty host (`http://`), another scheme (`unix://x`,
//! `ftp://…`), a missing port, port 0, a path, query or fragment (`http://h:1/v1`), user info
//! (`http://u@h:1`), and host names with characters no host name can have.
//!
//! **The port is required.** AeroDB serves no well-known port (the defaults
//! are 7700 for the client API and 7702 for the DX API), so a URL without a
//! port is almost always a mistake (issue 14, item 5): rather than guessing
//! port 80 and failing later with "connection refused", it is refused here
//! with a message naming the defaults.
//!
//! **TLS.** `https://` parses to [`Scheme::Https`]; the transport
//! (`transport.rs`) then connects through rustls (hyper-rustls), verifying
//! the node against the CA given in [`crate::ClientConfig::tls`].

use std::fmt;

use crate::error::ClientError;

/// The transport a node URL asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Plain HTTP/1.1 over TCP.
    Http,
    /// HTTP/1.1 over TLS (rustls).
    Https,
}

/// A validated node address: scheme, host and port, nothing else.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeUrl {
    scheme: Scheme,
    host: String,
    port: u16,
}

fn bad(input: &str, reason: impl Into<String>) -> ClientError {
    ClientError::BadUrl { input: input.to_string(), reason: reason.into() }
}

/// Whether `host` is a plausible DNS name or IPv4 address (letters, digits,
/// `-`, `.`, `_`; labels non-empty, at most 253 bytes).
fn plausible_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').enumerate().all(|(i, label)| {
            // A single trailing dot (fully qualified name) leaves an empty last label.
            (!label.is_empty() || (i > 0 && host.ends_with('.') && i == host.split('.').count() - 1))
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl NodeUrl {
    /// Parses and validates a node address (see the module docs for the
    /// accepted forms). Never resolves the host.
    pub fn parse(input: &str) -> Result<NodeUrl, ClientError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(bad(input, "empty node URL; expected e.g. http://127.0.0.1:7700"));
        }
        let (scheme, rest) = match trimmed.split_once("://") {
            Some((s, rest)) => {
                let scheme = match s.to_ascii_lowercase().as_str() {
                    "http" => Scheme::Http,
                    "https" => Scheme::Https,
                    other => return Err(bad(input, format!("unsupported scheme `{other}://`; use http://HOST:PORT or https://HOST:PORT"))),
                };
                (scheme, rest)
            }
            None => (Scheme::Http, trimmed),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() {
            return Err(bad(input, "no host; expected e.g. http://127.0.0.1:7700"));
        }
        if let Some(c) = authority.chars().find(|c| matches!(c, '/' | '?' | '#')) {
            return Err(bad(input, format!("a node URL is only scheme://host:port; found `{c}` (paths, queries and fragments are not allowed)")));
        }
        if authority.contains('@') {
            return Err(bad(input, "user info (`user@`) is not supported in a node URL"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let Some((addr, after)) = v6.split_once(']') else {
                return Err(bad(input, "unterminated IPv6 literal; expected e.g. http://[::1]:7700"));
            };
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad(input, format!("`{addr}` is not an IPv6 address")));
            }
            let Some(port) = after.strip_prefix(':') else {
                return Err(bad(input, "missing port; AeroDB's defaults are 7700 (client API) and 7702 (DX API)"));
            };
            (format!("[{addr}]"), port)
        } else {
            let Some((host, port)) = authority.rsplit_once(':') else {
                return Err(bad(input, "missing port; AeroDB's defaults are 7700 (client API) and 7702 (DX API)"));
            };
            if host.contains(':') {
                return Err(bad(input, "IPv6 addresses must be written in brackets, e.g. http://[::1]:7700"));
            }
            if !plausible_host_name(host) {
                return Err(bad(input, format!("`{host}` is not a valid host name or address")));
            }
            (host.to_ascii_lowercase(), port)
        };
        let port: u16 = match port.parse() {
            Ok(0) => return Err(bad(input, "port 0 is not a port a node listens on")),
            Ok(p) => p,
            Err(_) => return Err(bad(input, format!("`{port}` is not a port number (1-65535)"))),
        };
        Ok(NodeUrl { scheme, host, port })
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host as written (lowercased; IPv6 literals keep their brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port`, as used in the HTTP `Host` header.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The absolute URL of `path_and_query` (which must start with `/`).
    pub fn join(&self, path_and_query: &str) -> String {
        format!("{self}{path_and_query}")
    }
}

impl fmt::Display for NodeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scheme {
            Scheme::Http => write!(f, "http://{}:{}", self.host, self.port),
            Scheme::Https => write!(f, "https://{}:{}", self.host, self.port),
        }
    }
}

impl std::str::FromStr for NodeUrl {
    type Err = ClientError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NodeUrl::parse(s)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn reason(input: &str) -> String {
        match NodeUrl::parse(input) {
            Err(ClientError::BadUrl { reason, .. }) => reason,
            other => panic!("{input:?} should be refused, got {other:?}"),
        }
    }

    #[test]
    fn accepted_forms_normalise_to_http_host_port() {
        for (input, want) in [
            ("http://127.0.0.1:7700", "http://127.0.0.1:7700"),
            ("127.0.0.1:7700", "http://127.0.0.1:7700"),
            ("HTTP://LocalHost:7702/", "http://localhost:7702"),
            ("  http://node-1.example:80 ", "http://node-1.example:80"),
            ("http://[::1]:7700", "http://[::1]:7700"),
            ("[::1]:1", "http://[::1]:1"),
        ] {
            let url = NodeUrl::parse(input).unwrap();
            assert_eq!(url.to_string(), want, "{input}");
            assert_eq!(url.scheme(), Scheme::Http);
        }
        let url = NodeUrl::parse("http://h:9/").unwrap();
        assert_eq!((url.host(), url.port(), url.authority()), ("h", 9, "h:9".to_string()));
        assert_eq!(url.join("/v1/status"), "http://h:9/v1/status");
    }

    #[test]
    fn obviously_invalid_urls_are_refused_without_a_lookup() {
        assert!(reason("").contains("empty"));
        assert!(reason("http://").contains("no host"));
        assert!(reason("http:///").contains("no host"));
        assert!(reason("unix://x").contains("unsupported scheme `unix://`"));
        assert!(reason("ftp://h:1").contains("unsupported scheme"));
        assert_eq!(NodeUrl::parse("HTTPS://h:1/").unwrap().to_string(), "https://h:1");
        assert_eq!(NodeUrl::parse("https://h:1").unwrap().scheme(), Scheme::Https);
        assert!(reason("http://localhost").contains("missing port"));
        assert!(reason("localhost").contains("7700"));
        assert!(reason("http://h:0").contains("port 0"));
        assert!(reason("http://h:65536").contains("not a port number"));
        assert!(reason("http://h:x").contains("not a port number"));
        assert!(reason("http://h:").contains("not a port number"));
        assert!(reason("http://h:1/v1/docs").contains("only scheme://host:port"));
        assert!(reason("http://h:1?x=1").contains("only scheme://host:port"));
        assert!(reason("http://u@h:1").contains("user info"));
        assert!(reason("http://::1:7700").contains("brackets"));
        assert!(reason("http://[::1").contains("unterminated"));
        assert!(reason("http://[zz]:1").contains("not an IPv6"));
        assert!(reason("http://[::1]").contains("missing port"));
        assert!(reason("http://a b:1").contains("not a valid host"));
        assert!(reason("http://a..b:1").contains("not a valid host"));
        assert!(reason("http://:7700").contains("not a valid host"));
    }

    #[test]
    fn bad_url_errors_carry_the_input_and_a_stable_code() {
        let err = NodeUrl::parse("unix://x").unwrap_err();
        assert_eq!(err.code(), "BAD_URL");
        assert!(err.to_string().contains("unix://x"), "{err}");
        assert_eq!("h:5".parse::<NodeUrl>().unwrap().port(), 5);
    }
}
