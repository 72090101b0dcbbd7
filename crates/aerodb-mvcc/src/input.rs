//! Validation of client write sets before anything is assigned a CommitId.

use std::collections::BTreeSet;

use aerodb_wal::record::Op;
use bytes::Bytes;
use serde::Serialize;
use thiserror::Error;

/// Bounds on what one write set may contain. Documented in docs/operations.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct WriteLimits {
    /// Largest document body in bytes (canonical JSON).
    pub max_doc_bytes: usize,
    /// Most operations in one write set.
    pub max_ops: usize,
    /// Largest total of collection + key + document bytes in one write set.
    pub max_write_set_bytes: usize,
}

impl Default for WriteLimits {
    fn default() -> Self {
        WriteLimits { max_doc_bytes: 1024 * 1024, max_ops: 1000, max_write_set_bytes: 16 * 1024 * 1024 }
    }
}

/// Longest collection or key name in bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// Why a write set (or a name in a read) was rejected. Nothing was stored.
#[derive(Clone, Debug, PartialEq, Eq, Error, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum InputError {
    /// Collection or key empty, too long, or containing '/'.
    #[error("{field} must be 1..=255 bytes of UTF-8 without '/': {detail}")]
    BadName {
        /// `collection` or `key`.
        field: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// A document above the size limit.
    #[error("document of {size} bytes exceeds the limit of {max}")]
    DocTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// More ops than allowed.
    #[error("write set has {count} operations, limit {max}")]
    TooManyOps {
        /// Op count.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Total size above the limit.
    #[error("write set of {size} bytes exceeds the limit of {max}")]
    WriteSetTooLarge {
        /// Total size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The same key twice in one write set.
    #[error("key {collection}/{key} appears more than once in the write set")]
    DuplicateKey {
        /// Collection.
        collection: String,
        /// Key.
        key: String,
    },
    /// No operations.
    #[error("write set is empty")]
    Empty,
}

impl InputError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            InputError::DocTooLarge { .. } => "DOC_TOO_LARGE",
            InputError::TooManyOps { .. } => "TOO_MANY_OPS",
            InputError::WriteSetTooLarge { .. } => "WRITE_SET_TOO_LARGE",
            _ => "BAD_REQUEST",
        }
    }
}

/// Checks a collection or key name.
pub fn validate_name(field: &'static str, name: &str) -> Result<(), InputError> {
    let detail = if name.is_empty() {
        "empty"
    } else if name.len() > MAX_NAME_BYTES {
        "longer than 255 bytes"
    } else if name.contains('/') {
        "contains '/'"
    } else {
        return Ok(());
    };
    Err(InputError::BadName { field, detail: detail.into() })
}

/// One client operation before validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientOp {
    /// Put a document (canonical JSON bytes).
    Put {
        /// Collection.
        collection: String,
        /// Key.
        key: String,
        /// Document body.
        doc: Bytes,
    },
    /// Delete a key.
    Delete {
        /// Collection.
        collection: String,
        /// Key.
        key: String,
    },
}

/// Validates a write set against `limits` and converts it to WAL ops.
pub fn validate_write_set(ops: Vec<ClientOp>, limits: &WriteLimits) -> Result<Vec<Op>, InputError> {
    if ops.is_empty() {
        return Err(InputError::Empty);
    }
    if ops.len() > limits.max_ops {
        return Err(InputError::TooManyOps { count: ops.len(), max: limits.max_ops });
    }
    let mut seen = BTreeSet::new();
    let mut total = 0usize;
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        let (collection, key, doc) = match op {
            ClientOp::Put { collection, key, doc } => (collection, key, Some(doc)),
            ClientOp::Delete { collection, key } => (collection, key, None),
        };
        validate_name("collection", &collection)?;
        validate_name("key", &key)?;
        if let Some(d) = &doc {
            if d.len() > limits.max_doc_bytes {
                return Err(InputError::DocTooLarge { size: d.len(), max: limits.max_doc_bytes });
            }
        }
        total += collection.len() + key.len() + doc.as_ref().map_or(0, Bytes::len);
        if total > limits.max_write_set_bytes {
            return Err(InputError::WriteSetTooLarge { size: total, max: limits.max_write_set_bytes });
        }
        if !seen.insert((collection.clone(), key.clone())) {
            return Err(InputError::DuplicateKey { collection, key });
        }
        let (collection, key) = (Bytes::from(collection), Bytes::from(key));
        out.push(match doc {
            Some(doc) => Op::Put { collection, key, doc },
            None => Op::Delete { collection, key },
        });
    }
    Ok(out)
}
