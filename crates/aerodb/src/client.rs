//! `aerodb put|delete|get`: a small HTTP client of the client API.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;

/// Characters left unescaped in a path segment (RFC 3986 unreserved).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Percent-encodes one path segment.
pub fn segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// A node address as a base URL: `http://` is added when no scheme is
/// given, a trailing `/` is removed.
pub fn base_url(node: &str) -> String {
    let base = node.trim_end_matches('/');
    if base.starts_with("http://") || base.starts_with("https://") {
        base.to_string()
    } else {
        format!("http://{base}")
    }
}

/// The URL of one document.
pub fn doc_url(node: &str, collection: &str, key: &str) -> String {
    format!("{}/v1/docs/{}/{}", base_url(node), segment(collection), segment(key))
}

/// Longest a CLI request may take: above the 30 s `wait_ms` bound, so a
/// waiting read is never cut short, while a hung node cannot hang the CLI.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Outcome of a client call: the JSON body and whether it was a success.
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Value,
}

/// Sends a request and returns the status and JSON body, whatever the status.
pub fn call(method: &str, url: &str, body: Option<&Value>) -> Result<Answer, String> {
    let req = ureq::request(method, url).timeout(REQUEST_TIMEOUT);
    let result = match body {
        Some(b) => req.send_json(b.clone()),
        None => req.call(),
    };
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(format!("cannot reach {url}: {e}")),
    };
    let status = response.status();
    let text = response.into_string().map_err(|e| format!("cannot read the answer from {url}: {e}"))?;
    let body = serde_json::from_str(&text).map_err(|e| format!("answer from {url} is not JSON ({e}): {text}"))?;
    Ok(Answer { status, body })
}

/// Runs `put` / `delete`: prints the CommitId, or the error body on stderr.
pub fn write(method: &str, url: &str, body: Option<&Value>) -> i32 {
    match call(method, url, body) {
        Ok(a) if a.status == 200 => match a.body.get("commit_id") {
            Some(id) => {
                outln!("{id}");
                0
            }
            None => {
                eprintln!("unexpected answer: {}", a.body);
                1
            }
        },
        Ok(a) => {
            eprintln!("{}", a.body);
            1
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

/// Runs `get`: prints the response JSON (stdout on 200, stderr otherwise).
pub fn get(url: &str) -> i32 {
    match call("GET", url, None) {
        Ok(a) if a.status == 200 => {
            outln!("{}", a.body);
            0
        }
        Ok(a) => {
            eprintln!("{}", a.body);
            1
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}
