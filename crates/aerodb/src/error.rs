//! Startup refusals: each has a stable code and a one-line reason, printed
//! on stderr before a non-zero exit.

use std::path::Path;

use thiserror::Error;

use crate::datadir::Role;

/// Why a node refuses to start.
#[derive(Debug, Error)]
pub enum StartupError {
    /// The data directory was initialised with another role (REPL-1).
    #[error("data directory is initialised as {} but was started as {} (REPL-1)", recorded.as_str(), requested.as_str())]
    RoleMismatch {
        /// Role on disk.
        recorded: Role,
        /// Role requested.
        requested: Role,
    },
    /// Another process holds the directory.
    #[error("data directory {path} is locked by another process")]
    Locked {
        /// Directory.
        path: String,
    },
    /// A metadata file failed its checks.
    #[error("{file}: {detail} ({code})")]
    Metadata {
        /// Stable code.
        code: &'static str,
        /// File.
        file: String,
        /// Check that failed.
        detail: String,
    },
    /// Recovery found corruption or a mismatch.
    #[error("recovery failed: {detail} ({code}, {rule_id})")]
    Recovery {
        /// Stable code.
        code: &'static str,
        /// Rule enforced.
        rule_id: &'static str,
        /// Evidence.
        detail: String,
    },
    /// IO failure.
    #[error("{op} {path}: {source}")]
    Io {
        /// Operation.
        op: &'static str,
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A flag value is out of range or inconsistent with another.
    #[error("bad flags: {0}")]
    BadFlags(String),
    /// A security file (token, certificate, key, CA) cannot be used.
    #[error("{detail}")]
    Security {
        /// Stable code (`TOKEN_FILE_*`, `TLS_*_INVALID`).
        code: &'static str,
        /// The file and what is wrong with it (never a secret).
        detail: String,
    },
    /// Anything else, already phrased for the operator.
    #[error("{0}")]
    Other(String),
}

impl StartupError {
    /// IO error helper.
    pub fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        StartupError::Io { op, path: path.display().to_string(), source }
    }
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            StartupError::RoleMismatch { .. } => "ROLE_MISMATCH",
            StartupError::Locked { .. } => "DATA_DIR_LOCKED",
            StartupError::Metadata { code, .. } | StartupError::Recovery { code, .. } | StartupError::Security { code, .. } => code,
            StartupError::Io { .. } => "IO_ERROR",
            StartupError::BadFlags(_) => "BAD_FLAGS",
            StartupError::Other(_) => "STARTUP_FAILED",
        }
    }
}

impl From<aerodb_mvcc::StoreRecoveryError> for StartupError {
    fn from(e: aerodb_mvcc::StoreRecoveryError) -> Self {
        StartupError::Recovery { code: e.code(), rule_id: e.rule_id(), detail: e.to_string() }
    }
}
