//! The runtime side of replication security: reading the token file
//! (permissions, size and format checked before the secret is used), fresh
//! nonces from the OS RNG for the engines' authentication exchange, and the
//! primary's counters of refused peers (shown in `/v1/replication` and
//! `/metrics`).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use parking_lot::Mutex;
use ring::rand::{SecureRandom, SystemRandom};
use serde::Serialize;

use aerodb_repl_core::auth::{Nonce, ReplToken, MAX_TOKEN_FILE_BYTES, NONCE_LEN};

/// Why the token file cannot be used. The node refuses to start; the
/// message names the file and the check, never the token.
#[derive(Debug, thiserror::Error)]
#[error("token file {path}: {detail} ({code}, RES-4)")]
pub struct TokenFileError {
    /// `TOKEN_FILE_UNREADABLE`, `TOKEN_FILE_PERMISSIONS` or `TOKEN_FILE_FORMAT`.
    pub code: &'static str,
    /// The file.
    pub path: String,
    /// What is wrong.
    pub detail: String,
}

impl TokenFileError {
    fn new(code: &'static str, path: &Path, detail: impl Into<String>) -> Self {
        TokenFileError { code, path: path.display().to_string(), detail: detail.into() }
    }
}

/// Reads `--repl-token-file`: a regular file, readable by its owner only
/// (no group or world permission bits, like ssh keys), at most
/// [`MAX_TOKEN_FILE_BYTES`] long, holding one line of 32 to 1024 printable
/// ASCII characters (`openssl rand -hex 32 > token`).
pub fn load_token_file(path: &Path) -> Result<ReplToken, TokenFileError> {
    let meta = std::fs::metadata(path).map_err(|e| TokenFileError::new("TOKEN_FILE_UNREADABLE", path, format!("cannot read it: {e}")))?;
    if !meta.is_file() {
        return Err(TokenFileError::new("TOKEN_FILE_UNREADABLE", path, "not a regular file"));
    }
    check_permissions(path, &meta)?;
    if meta.len() > MAX_TOKEN_FILE_BYTES {
        return Err(TokenFileError::new("TOKEN_FILE_FORMAT", path, format!("{} bytes; a token file holds at most {MAX_TOKEN_FILE_BYTES}", meta.len())));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_TOKEN_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| TokenFileError::new("TOKEN_FILE_UNREADABLE", path, format!("cannot read it: {e}")))?;
    if bytes.len() as u64 > MAX_TOKEN_FILE_BYTES {
        return Err(TokenFileError::new("TOKEN_FILE_FORMAT", path, format!("more than {MAX_TOKEN_FILE_BYTES} bytes")));
    }
    ReplToken::parse(&bytes).map_err(|e| TokenFileError::new("TOKEN_FILE_FORMAT", path, e.detail))
}

#[cfg(unix)]
fn check_permissions(path: &Path, meta: &std::fs::Metadata) -> Result<(), TokenFileError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(TokenFileError::new(
            "TOKEN_FILE_PERMISSIONS",
            path,
            format!("permissions are {mode:04o}; the token must be readable by its owner only (chmod 600 {})", path.display()),
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_path: &Path, _meta: &std::fs::Metadata) -> Result<(), TokenFileError> {
    Ok(())
}

/// A fresh nonce from the operating system's RNG (for one connection).
pub fn fresh_nonce() -> std::io::Result<Nonce> {
    let mut n = [0u8; NONCE_LEN];
    SystemRandom::new().fill(&mut n).map_err(|_| std::io::Error::other("the operating system's random number generator failed"))?;
    Ok(Nonce(n))
}

/// One refused peer, as the primary shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RefusedPeer {
    /// Peer address.
    pub peer: String,
    /// Stable code (`AUTH_REQUIRED`, `AUTH_FAILED`, `AUTH_NOT_CONFIGURED`, `TLS_REQUIRED`, `TLS_HANDSHAKE_FAILED`).
    pub code: String,
    /// What happened.
    pub detail: String,
}

/// The primary's record of peers refused by authentication or TLS since
/// start: counts by code and the most recent refusal. Observability only.
#[derive(Default)]
pub struct SecurityStats {
    inner: Mutex<(BTreeMap<String, u64>, Option<RefusedPeer>)>,
}

impl SecurityStats {
    /// Records a refusal.
    pub fn refused(&self, peer: &str, code: &str, detail: &str) {
        let mut inner = self.inner.lock();
        *inner.0.entry(code.to_string()).or_insert(0) += 1;
        inner.1 = Some(RefusedPeer { peer: peer.to_string(), code: code.to_string(), detail: detail.chars().take(512).collect() });
    }

    /// Counts by code, ordered by code.
    pub fn counts(&self) -> Vec<(String, u64)> {
        self.inner.lock().0.iter().map(|(c, n)| (c.clone(), *n)).collect()
    }

    /// The most recent refusal.
    pub fn last(&self) -> Option<RefusedPeer> {
        self.inner.lock().1.clone()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn write(dir: &Path, name: &str, body: &[u8], mode: u32) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    /// RES-4: a token file is used only if owner-only, bounded and well
    /// formed; each refusal has a stable code and never shows the token.
    #[test]
    fn res_4_token_file_permissions_size_and_format_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let secret = "9f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a0\n";
        assert!(load_token_file(&write(dir.path(), "ok", secret.as_bytes(), 0o600)).is_ok());
        assert!(load_token_file(&write(dir.path(), "ro", secret.as_bytes(), 0o400)).is_ok());
        for mode in [0o640, 0o604, 0o644, 0o660] {
            let e = load_token_file(&write(dir.path(), &format!("m{mode:o}"), secret.as_bytes(), mode)).unwrap_err();
            assert_eq!(e.code, "TOKEN_FILE_PERMISSIONS", "{mode:o}");
            assert!(e.to_string().contains("chmod 600") && !e.to_string().contains(secret.trim()), "{e}");
        }
        let e = load_token_file(&write(dir.path(), "short", b"abc\n", 0o600)).unwrap_err();
        assert_eq!(e.code, "TOKEN_FILE_FORMAT");
        let e = load_token_file(&write(dir.path(), "big", &vec![b'a'; 5000], 0o600)).unwrap_err();
        assert_eq!(e.code, "TOKEN_FILE_FORMAT");
        assert_eq!(load_token_file(&dir.path().join("missing")).unwrap_err().code, "TOKEN_FILE_UNREADABLE");
        assert_eq!(load_token_file(dir.path()).unwrap_err().code, "TOKEN_FILE_UNREADABLE");
    }

    #[test]
    fn repl_1_nonces_are_fresh() {
        assert_ne!(fresh_nonce().unwrap(), fresh_nonce().unwrap());
    }
}
