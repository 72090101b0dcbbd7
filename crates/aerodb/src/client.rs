//! `aerodb put|delete|get|scan --node URL`: the CLI on the client API,
//! through `aerodb_client` (the one typed HTTP client: node URLs are
//! validated before any lookup, keys are percent-encoded, `.`/`..`
//! included). Default output is one short human line; `--json` prints the
//! node's full answer. Failures are rendered by [`crate::render`].

use aerodb_client::{blocking, ClientError, Document, ReadOptions, ScanOptions};
use serde_json::{json, Value};

use crate::exit::Exit;
use crate::render::{failure, Api, Failure};

/// Output options shared by the client commands.
#[derive(Clone, Copy, Debug)]
pub struct Output {
    /// Print full JSON answers.
    pub json: bool,
}

/// A client of `node`, or the failure to report.
fn connect(node: &str) -> Result<blocking::Client, Failure> {
    blocking::Client::new(node).map_err(|e| failure(&e, None, Api::Client))
}

/// Reports `result` of a call to `client`'s node.
fn finish<T>(client: &blocking::Client, out: Output, result: Result<T, ClientError>, print: impl FnOnce(T, Output)) -> i32 {
    match result {
        Ok(value) => {
            print(value, out);
            Exit::Ok.code()
        }
        Err(e) => failure(&e, Some(client.url()), Api::Client).report(out.json),
    }
}

/// `aerodb put`: prints the CommitId (`{"commit_id": N}` with `--json`).
pub fn put(node: &str, collection: &str, key: &str, json_text: &str, out: Output) -> i32 {
    let doc: Value = match serde_json::from_str(json_text) {
        Ok(doc) => doc,
        Err(e) => return Failure::bad_arguments("BAD_JSON", format!("the document argument is not valid JSON: {e}")).report(out.json),
    };
    let client = match connect(node) {
        Ok(c) => c,
        Err(f) => return f.report(out.json),
    };
    let result = client.put(collection, key, &doc);
    finish(&client, out, result, print_receipt)
}

/// `aerodb delete`: prints the CommitId.
pub fn delete(node: &str, collection: &str, key: &str, out: Output) -> i32 {
    let client = match connect(node) {
        Ok(c) => c,
        Err(f) => return f.report(out.json),
    };
    let result = client.delete(collection, key);
    finish(&client, out, result, print_receipt)
}

fn print_receipt(r: aerodb_client::CommitReceipt, out: Output) {
    if out.json {
        outln!("{}", json!({"commit_id": r.commit_id}));
    } else {
        outln!("{}", r.commit_id);
    }
}

/// The human line of a read: the document, then where it was read.
pub fn document_line(d: &Document) -> String {
    format!("{}  (CommitId {}, read view {})", d.doc.get(), d.commit_id, d.read_view)
}

/// `aerodb get`.
pub fn get(node: &str, collection: &str, key: &str, opts: ReadOptions, out: Output) -> i32 {
    let client = match connect(node) {
        Ok(c) => c,
        Err(f) => return f.report(out.json),
    };
    let result = client.get(collection, key, &opts);
    finish(&client, out, result, |d, out| {
        if out.json {
            outln!("{{\"read_view\":{},\"commit_id\":{},\"doc\":{}}}", d.read_view, d.commit_id, d.doc.get());
        } else {
            outln!("{}", document_line(&d));
        }
    })
}

/// `aerodb scan`: one page of a range read; one line per document
/// (`KEY  DOC  (CommitId N)`), then the next page's start on stderr.
pub fn scan(node: &str, collection: &str, opts: ScanOptions, out: Output) -> i32 {
    let client = match connect(node) {
        Ok(c) => c,
        Err(f) => return f.report(out.json),
    };
    let result = client.scan(collection, &opts);
    finish(&client, out, result, |page, out| {
        if out.json {
            let items: Vec<String> =
                page.items.iter().map(|i| format!("{{\"key\":{},\"commit_id\":{},\"doc\":{}}}", json!(i.key), i.commit_id, i.doc.get())).collect();
            outln!("{{\"read_view\":{},\"items\":[{}],\"next\":{}}}", page.read_view, items.join(","), json!(page.next));
            return;
        }
        for item in &page.items {
            outln!("{}  {}  (CommitId {})", item.key, item.doc.get(), item.commit_id);
        }
        match &page.next {
            Some(next) => eprintln!("{} document(s) at read view {}; more from --start {next:?} --at {}", page.items.len(), page.read_view, page.read_view),
            None => eprintln!("{} document(s) at read view {}", page.items.len(), page.read_view),
        }
    })
}
