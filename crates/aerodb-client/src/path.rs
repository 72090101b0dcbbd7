//! Request paths and queries (pure): percent-encoding of collection and key
//! path segments and of query values.
//!
//! Everything except RFC 3986 unreserved characters is escaped. A segment
//! that consists only of dots (`.` or `..`) is escaped completely (`%2E`),
//! because URL normalisation in clients, proxies and servers removes or
//! resolves literal dot segments: the key `..` must reach the node as the
//! key `..`, never as "the parent path" (issue 11, item 9).

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::types::{ReadOptions, ScanOptions};

/// Characters left unescaped (RFC 3986 unreserved).
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Percent-encodes one path segment (see the module docs for dot segments).
pub fn segment(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b == b'.') {
        return "%2E".repeat(s.len());
    }
    utf8_percent_encode(s, UNRESERVED).to_string()
}

/// Percent-encodes one query value.
pub fn query_value(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

/// Appends `name=value` pairs as a query string (`?a=1&b=2`, or nothing).
fn with_query(mut path: String, pairs: &[(&str, Option<String>)]) -> String {
    let mut first = true;
    for (name, value) in pairs {
        if let Some(v) = value {
            path.push(if first { '?' } else { '&' });
            path.push_str(name);
            path.push('=');
            path.push_str(v);
            first = false;
        }
    }
    path
}

/// `/v1/docs/{collection}/{key}`.
pub fn doc_path(collection: &str, key: &str) -> String {
    format!("/v1/docs/{}/{}", segment(collection), segment(key))
}

/// `/v1/docs/{collection}/{key}` with `at`, `min_commit`, `wait_ms`.
pub fn get_path(collection: &str, key: &str, opts: &ReadOptions) -> String {
    with_query(
        doc_path(collection, key),
        &[("at", opts.at.map(|n| n.to_string())), ("min_commit", opts.min_commit.map(|n| n.to_string())), ("wait_ms", opts.wait_ms.map(|n| n.to_string()))],
    )
}

/// `/v1/docs/{collection}?start&end&limit&at&min_commit`.
pub fn scan_path(collection: &str, opts: &ScanOptions) -> String {
    with_query(
        format!("/v1/docs/{}", segment(collection)),
        &[
            ("start", opts.start.as_deref().map(query_value)),
            ("end", opts.end.as_deref().map(query_value)),
            ("limit", opts.limit.map(|n| n.to_string())),
            ("at", opts.read.at.map(|n| n.to_string())),
            ("min_commit", opts.read.min_commit.map(|n| n.to_string())),
            ("wait_ms", opts.read.wait_ms.map(|n| n.to_string())),
        ],
    )
}

/// `/v1/explain/read?collection&key[&at]`.
pub fn explain_read_path(collection: &str, key: &str, at: Option<u64>) -> String {
    with_query(
        "/v1/explain/read".to_string(),
        &[("collection", Some(query_value(collection))), ("key", Some(query_value(key))), ("at", at.map(|n| n.to_string()))],
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn dot_segments_are_escaped_so_they_are_never_dropped() {
        assert_eq!(segment(".."), "%2E%2E");
        assert_eq!(segment("."), "%2E");
        assert_eq!(segment("..."), "%2E%2E%2E");
        assert_eq!(doc_path("c", ".."), "/v1/docs/c/%2E%2E");
        assert_eq!(doc_path("..", "."), "/v1/docs/%2E%2E/%2E");
        // Dots inside a longer segment are ordinary characters.
        assert_eq!(segment("a..b"), "a..b");
        assert_eq!(segment("v1.2"), "v1.2");
    }

    #[test]
    fn reserved_and_non_ascii_characters_are_escaped() {
        assert_eq!(segment("a/b"), "a%2Fb");
        assert_eq!(segment("a b?c#d%"), "a%20b%3Fc%23d%25");
        assert_eq!(segment("é"), "%C3%A9");
        assert_eq!(segment("A-z_0~"), "A-z_0~");
        assert_eq!(segment(""), "");
    }

    #[test]
    fn queries_carry_only_the_options_given() {
        assert_eq!(get_path("c", "k", &ReadOptions::default()), "/v1/docs/c/k");
        let o = ReadOptions { at: Some(3), min_commit: Some(7), wait_ms: Some(100) };
        assert_eq!(get_path("c", "k", &o), "/v1/docs/c/k?at=3&min_commit=7&wait_ms=100");
        let o = ReadOptions { min_commit: Some(7), ..ReadOptions::default() };
        assert_eq!(get_path("c", "k", &o), "/v1/docs/c/k?min_commit=7");
        let s = ScanOptions { start: Some("a&b".into()), end: Some("z".into()), limit: Some(10), read: ReadOptions { at: Some(2), ..ReadOptions::default() } };
        assert_eq!(scan_path("c c", &s), "/v1/docs/c%20c?start=a%26b&end=z&limit=10&at=2");
        assert_eq!(explain_read_path("c c", "k/1", Some(4)), "/v1/explain/read?collection=c%20c&key=k%2F1&at=4");
        assert_eq!(explain_read_path("c", "..", None), "/v1/explain/read?collection=c&key=..");
    }
}
