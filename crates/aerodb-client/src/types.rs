//! Typed requests and responses of the client API (INTERFACE.md "Client API").

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

/// The CommitId a durable write was assigned (`{"commit_id": N}`). A
/// receipt means the write is fsynced on the primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitReceipt {
    /// The CommitId.
    pub commit_id: u64,
}

/// Read-view parameters of a point or range read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Explicit read view R (`at`).
    pub at: Option<u64>,
    /// CommitId the node must have applied (`min_commit`).
    pub min_commit: Option<u64>,
    /// How long the node may wait for `min_commit`, in milliseconds
    /// (`wait_ms`; the node caps it at 30 000). The request timeout is
    /// extended by this much so a waiting read is never cut short.
    pub wait_ms: Option<u64>,
}

/// A document read at a read view (`GET /v1/docs/{c}/{k}` → 200).
#[derive(Debug, Deserialize)]
pub struct Document {
    /// The read view R the read used.
    pub read_view: u64,
    /// CommitId of the visible version.
    pub commit_id: u64,
    /// The document, as the node sent it (canonical JSON, unparsed).
    pub doc: Box<RawValue>,
}

impl Document {
    /// The document as a `serde_json::Value`.
    pub fn value(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_str(self.doc.get())
    }

    /// The document deserialised into `T`.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.doc.get())
    }
}

/// Range-read parameters (`GET /v1/docs/{collection}?...`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanOptions {
    /// First key (inclusive).
    pub start: Option<String>,
    /// End key (exclusive).
    pub end: Option<String>,
    /// Page size (the node's default is 100, maximum 1000).
    pub limit: Option<u64>,
    /// Read view parameters. Pass the previous page's `read_view` as `at`
    /// to read every page at one view (MVCC-3).
    pub read: ReadOptions,
}

/// One document of a range read.
#[derive(Debug, Deserialize)]
pub struct ScanItem {
    /// Key.
    pub key: String,
    /// CommitId of the visible version.
    pub commit_id: u64,
    /// The document (canonical JSON, unparsed).
    pub doc: Box<RawValue>,
}

/// One page of a range read.
#[derive(Debug, Deserialize)]
pub struct ScanPage {
    /// The read view R of this page.
    pub read_view: u64,
    /// Documents in key order.
    pub items: Vec<ScanItem>,
    /// The key to start the next page at, or `None` after the last page.
    pub next: Option<String>,
}

/// One operation of an atomic write set (`POST /v1/commit`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum WriteOp {
    /// Put a document.
    Put {
        /// Collection.
        collection: String,
        /// Key.
        key: String,
        /// Document.
        doc: Value,
    },
    /// Delete a document.
    Delete {
        /// Collection.
        collection: String,
        /// Key.
        key: String,
    },
}

impl WriteOp {
    /// A put.
    pub fn put(collection: impl Into<String>, key: impl Into<String>, doc: Value) -> Self {
        WriteOp::Put { collection: collection.into(), key: key.into(), doc }
    }

    /// A delete.
    pub fn delete(collection: impl Into<String>, key: impl Into<String>) -> Self {
        WriteOp::Delete { collection: collection.into(), key: key.into() }
    }
}

/// An atomic write set: every op commits under one CommitId or none does.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct WriteSet {
    /// The operations, in order.
    pub ops: Vec<WriteOp>,
}

impl WriteSet {
    /// An empty write set.
    pub fn new() -> Self {
        WriteSet::default()
    }

    /// Adds a put.
    pub fn put(mut self, collection: impl Into<String>, key: impl Into<String>, doc: Value) -> Self {
        self.ops.push(WriteOp::put(collection, key, doc));
        self
    }

    /// Adds a delete.
    pub fn delete(mut self, collection: impl Into<String>, key: impl Into<String>) -> Self {
        self.ops.push(WriteOp::delete(collection, key));
        self
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    /// MVCC-2: a write set serialises to the documented `POST /v1/commit` body.
    #[test]
    fn mvcc_2_write_set_serialises_to_the_documented_commit_body() {
        let ws = WriteSet::new().put("c", "k", json!({"a": 1})).delete("c", "k2");
        assert_eq!(
            serde_json::to_value(&ws).unwrap(),
            json!({"ops": [{"op": "put", "collection": "c", "key": "k", "doc": {"a": 1}}, {"op": "delete", "collection": "c", "key": "k2"}]})
        );
    }

    /// MVCC-1: the documented read shapes parse, documents stay unparsed until asked.
    #[test]
    fn mvcc_1_read_and_scan_answers_parse() {
        let d: Document = serde_json::from_str(r#"{"read_view":5,"commit_id":3,"doc":{"b":[1,2]}}"#).unwrap();
        assert_eq!((d.read_view, d.commit_id, d.doc.get()), (5, 3, r#"{"b":[1,2]}"#));
        assert_eq!(d.value().unwrap(), json!({"b": [1, 2]}));
        let p: ScanPage = serde_json::from_str(r#"{"read_view":5,"items":[{"key":"a","commit_id":1,"doc":1}],"next":null}"#).unwrap();
        assert_eq!((p.items.len(), p.items[0].key.as_str(), p.next), (1, "a", None));
    }
}
