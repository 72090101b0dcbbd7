#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs, dead_code)]
#![cfg(feature = "replication")]
//! RES-3 (and REPL-1's role-first check) against the real binary over raw
//! sockets: every HTTP connection and request is bounded in count, size and
//! time to send its head and body; refusals carry the JSON error body with
//! a stable code; waiting reads hold no thread and never starve writes; and
//! SIGTERM finishes whatever clients do. These are the hostile-input cases
//! 1, 2, 7, 8 and 10 of issue 11.

mod support;

use serde_json::{json, Value};
use support::{assert_error, assert_error_shape, metric, signal, start, wait_deadline, wait_until, NodeOptions, RawClient, DEADLINE};

/// A standalone node with the DX API on (for `/metrics`) and extra flags.
fn standalone(dir: &std::path::Path, flags: &[&str]) -> support::Node {
    start(NodeOptions::new("standalone", dir).with_dx().args(flags.iter().copied()))
}

/// A replica whose primary is unreachable: it serves its client API (reads
/// refused by the gate, writes rejected) and never gets data.
fn lonely_replica(dir: &std::path::Path, flags: &[&str]) -> support::Node {
    start(NodeOptions::new("replica", dir).with_dx().args(["--primary", "127.0.0.1:1"]).args(flags.iter().copied()))
}

fn rejects(node: &support::Node, surface: &str, code: &str) -> f64 {
    metric(&node.dx_url(), &format!("aerodb_http_rejects_total{{surface=\"{surface}\",code=\"{code}\"}}")).unwrap_or(-1.0)
}

fn assert_refusal(resp: &(u16, Value), status: u16, code: &str) {
    assert_error(resp, status, code);
    assert_eq!(resp.1["error"]["rule_id"], "RES-3", "{}", resp.1);
}

/// RES-3 (issue 11 cases 8): a request line over `--max-url-bytes` gets 414
/// `URI_TOO_LONG` and a header section over `--max-header-bytes` (or more
/// than 100 header lines) 431 `HEADERS_TOO_LARGE`, each with the JSON error
/// body, then the connection closes; on the DX port the same refusal comes
/// in the DX envelope. A refusal on a kept-alive connection comes after the
/// earlier response. Nothing is stored; the node keeps serving.
#[test]
fn res_3_long_urls_and_large_headers_get_the_json_error_body() {
    let dir = tempfile::tempdir().unwrap();
    let node = standalone(dir.path(), &[]);
    let c = node.put_doc("c", "k", &json!(1));

    let long_url = format!("GET /v1/docs/c/{} HTTP/1.1\r\nHost: x\r\n\r\n", "k".repeat(100 * 1024));
    let mut raw = RawClient::connect(&node.client_addr);
    let _ = raw.send(long_url.as_bytes());
    let resp = raw.response();
    assert_refusal(&resp.pair(), 414, "URI_TOO_LONG");
    assert_eq!(resp.body["error"]["evidence"]["max_url_bytes"], 8192);
    assert!(resp.headers.iter().any(|(k, v)| k == "content-type" && v == "application/json"), "{:?}", resp.headers);
    assert!(raw.closed(), "the connection closes after a refused head");

    let big_header = format!("GET /v1/docs/c/k HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "v".repeat(500 * 1024));
    let mut raw = RawClient::connect(&node.client_addr);
    let _ = raw.send(big_header.as_bytes());
    assert_refusal(&raw.response().pair(), 431, "HEADERS_TOO_LARGE");
    assert!(raw.closed());

    let many = format!("GET /v1/docs/c/k HTTP/1.1\r\n{}\r\n", "X-A: 1\r\n".repeat(101));
    let mut raw = RawClient::connect(&node.client_addr);
    let _ = raw.send(many.as_bytes());
    assert_refusal(&raw.response().pair(), 431, "HEADERS_TOO_LARGE");

    // Kept alive: the first request is answered normally, then the refusal.
    let mut raw = RawClient::connect(&node.client_addr);
    let pipelined = format!("GET /v1/docs/c/k HTTP/1.1\r\nHost: x\r\n\r\n{long_url}");
    let _ = raw.send(pipelined.as_bytes());
    let first = raw.response();
    assert_eq!((first.status, first.body.clone()), (200, json!({"read_view": c, "commit_id": c, "doc": 1})));
    assert_refusal(&raw.response().pair(), 414, "URI_TOO_LONG");

    // Through an ordinary client too.
    let resp = support::request("GET", &format!("{}/v1/docs/c/{}", node.url(), "k".repeat(20 * 1024)), None);
    assert_refusal(&resp, 414, "URI_TOO_LONG");

    // Not HTTP at all: refused at once with 400 and the JSON body.
    let mut raw = RawClient::connect(&node.client_addr);
    let _ = raw.send(b"\x52\xae\x01\x00\x00\x00 binary");
    assert_refusal(&raw.response().pair(), 400, "BAD_HTTP_REQUEST");

    // The DX port answers in its envelope.
    let dx_addr = node.dx_addr.clone().unwrap();
    let mut raw = RawClient::connect(&dx_addr);
    let _ = raw.send(format!("GET /v1/status?x={} HTTP/1.1\r\n\r\n", "q".repeat(10 * 1024)).as_bytes());
    let resp = raw.response();
    assert_eq!(resp.status, 414, "{}", resp.body);
    assert_eq!(resp.body["api_version"], "v1", "{}", resp.body);
    assert_eq!(resp.body["data"]["error"]["code"], "URI_TOO_LONG", "{}", resp.body);
    assert_eq!(resp.body["data"]["error"]["rule_id"], "RES-3", "{}", resp.body);

    assert_eq!(rejects(&node, "client", "URI_TOO_LONG"), 3.0);
    assert_eq!(rejects(&node, "client", "HEADERS_TOO_LARGE"), 2.0);
    assert_eq!(rejects(&node, "dx", "URI_TOO_LONG"), 1.0);
    assert_eq!(node.commit_id(), c, "nothing stored");
    node.stop_clean();
}

/// RES-3 (issue 11 case 10): a client trickling a request head is cut
/// after `--header-timeout-ms` with 408 `HEADER_TIMEOUT` (a connection that
/// sends nothing is closed silently), and one whose body stops arriving
/// after `--body-timeout-ms` with 408 `BODY_TIMEOUT`; the node keeps
/// serving others.
#[test]
fn res_3_header_trickle_is_cut_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let node = standalone(dir.path(), &["--header-timeout-ms", "300", "--body-timeout-ms", "300"]);
    let mut trickle = RawClient::connect(&node.client_addr);
    trickle.send(b"GET /v1/docs/c/k HTTP/1.1\r\nHo").unwrap();
    let mut silent = RawClient::connect(&node.client_addr);
    let resp = trickle.response();
    assert_refusal(&resp.pair(), 408, "HEADER_TIMEOUT");
    assert_eq!(resp.body["error"]["evidence"]["header_timeout_ms"], 300);
    assert!(trickle.closed());
    assert!(silent.try_response().is_none(), "an idle connection is closed without an answer");
    let mut stalled = RawClient::connect(&node.client_addr);
    stalled.send(b"PUT /v1/docs/c/k HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345").unwrap();
    let resp = stalled.response();
    assert_refusal(&resp.pair(), 408, "BODY_TIMEOUT");
    assert_eq!(resp.body["error"]["evidence"]["body_timeout_ms"], 300);
    assert_eq!(node.get("/v1/docs/c/k").0, 404, "the node keeps serving");
    assert_eq!(rejects(&node, "client", "HEADER_TIMEOUT"), 1.0);
    assert_eq!(rejects(&node, "client", "BODY_TIMEOUT"), 1.0);
    node.stop_clean();
}

/// RES-3 (issue 11 case 1): on SIGTERM, with one client holding a
/// half-sent head (`GET /v1/docs/c/k HTTP/1.1\r\nHo`) and one read waiting
/// for `min_commit=99&wait_ms=30000`, a standalone node and a replica both
/// exit 0 (within the test's deadline, although the header timeout is set
/// to 10 minutes: the half-sent head does not hold the stop); the waiting
/// read is answered 503 `SHUTTING_DOWN` (had it waited its 30 s out it
/// would be `READ_REFUSED`), and so is the half-sent head.
#[test]
fn res_3_sigterm_exits_promptly_with_a_half_sent_head_and_a_pending_wait() {
    for role in ["standalone", "replica"] {
        let dir = tempfile::tempdir().unwrap();
        let flags = ["--header-timeout-ms", "600000"];
        let mut node = if role == "replica" { lonely_replica(dir.path(), &flags) } else { standalone(dir.path(), &flags) };
        let mut half = RawClient::connect(&node.client_addr);
        half.send(b"GET /v1/docs/c/k HTTP/1.1\r\nHo").unwrap();
        let mut waiting = RawClient::connect(&node.client_addr);
        waiting.send(b"GET /v1/docs/c/k?min_commit=99&wait_ms=30000 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let dx = node.dx_url();
        wait_until("the read to wait", || metric(&dx, "aerodb_http_waiting_reads") == Some(1.0));

        signal(node.pid(), "TERM");
        let status = wait_deadline(&mut node.child, DEADLINE).unwrap_or_else(|| panic!("{role} did not exit after SIGTERM; stderr:\n{}", node.stderr()));
        assert_eq!(status.code(), Some(0), "{role} exits 0; stderr:\n{}", node.stderr());
        let resp = waiting.response();
        assert_refusal(&resp.pair(), 503, "SHUTTING_DOWN");
        assert_refusal(&half.response().pair(), 503, "SHUTTING_DOWN");
    }
}

/// RES-3 (issue 11 case 2): 600 reads waiting for a CommitId far ahead hold
/// no thread: a PUT is answered while all of them are still pending, and
/// the waiters are still waiting afterwards (their sockets have no answer);
/// at shutdown every one is answered `SHUTTING_DOWN`.
#[test]
fn res_3_waiting_reads_do_not_starve_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = standalone(dir.path(), &[]);
    let dx = node.dx_url();
    let mut waiters: Vec<RawClient> = (0..600)
        .map(|_| {
            let mut c = RawClient::connect(&node.client_addr);
            c.send(b"GET /v1/docs/c/k?min_commit=1000000&wait_ms=30000 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            c
        })
        .collect();
    wait_until("600 waiting reads", || metric(&dx, "aerodb_http_waiting_reads") == Some(600.0));
    assert_eq!(node.put_doc("c", "k", &json!({"written": "while 600 reads wait"})), 1);
    assert_eq!(metric(&dx, "aerodb_http_waiting_reads"), Some(600.0), "the waiters are still pending");
    assert!(waiters.iter_mut().all(RawClient::nothing_yet), "no waiter was answered");
    // Every waiter's connection is still open (the PUT's own connection may
    // or may not have closed yet: it is not what this checks).
    let open = metric(&dx, "aerodb_http_connections_open{surface=\"client\"}").unwrap_or(0.0);
    assert!(open >= 600.0, "the waiters' connections are open: {open}");

    signal(node.pid(), "TERM");
    for w in &mut waiters {
        assert_refusal(&w.response().pair(), 503, "SHUTTING_DOWN");
    }
    assert_eq!(wait_deadline(&mut node.child, DEADLINE).and_then(|s| s.code()), Some(0));
}

/// RES-3: at most `--max-waiting-reads` reads wait at once; one more is
/// refused at once with 503 `TOO_MANY_WAITING_READS`, while a read that
/// needs no wait is served; a waiting read is woken by the commit it waits
/// for and answered with it.
#[test]
fn res_3_waiting_reads_over_the_cap_are_refused_with_a_stable_code() {
    let dir = tempfile::tempdir().unwrap();
    let node = standalone(dir.path(), &["--max-waiting-reads", "2"]);
    let dx = node.dx_url();
    let mut waiters: Vec<RawClient> = (0..2)
        .map(|_| {
            let mut c = RawClient::connect(&node.client_addr);
            c.send(b"GET /v1/docs/c/k?min_commit=1&wait_ms=30000 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            c
        })
        .collect();
    wait_until("2 waiting reads", || metric(&dx, "aerodb_http_waiting_reads") == Some(2.0));
    let over = node.get("/v1/docs/c/k?min_commit=1&wait_ms=30000");
    assert_refusal(&over, 503, "TOO_MANY_WAITING_READS");
    assert_eq!(over.1["error"]["evidence"]["max_waiting_reads"], 2);
    assert_eq!(node.get("/v1/docs/c/k?min_commit=0&wait_ms=30000").0, 404, "no wait needed, no place taken");

    assert_eq!(node.put_doc("c", "k", &json!("v")), 1);
    for w in &mut waiters {
        assert_eq!(w.response().pair(), (200, json!({"read_view": 1, "commit_id": 1, "doc": "v"})));
    }
    assert_eq!(rejects(&node, "client", "TOO_MANY_WAITING_READS"), 1.0);
    node.stop_clean();
}

/// RES-3 (issue 11 case 7): body size is checked before the body is read:
/// a PUT declaring 16 MiB (the document limit is 1 MiB) and a commit
/// declaring 100 MiB are refused 413 `BODY_TOO_LARGE` while almost none of
/// the body was sent; a chunked body is refused as soon as it passes the
/// limit. A declared body is reserved from the node-wide body budget: while
/// a 16 MiB commit is arriving, a second body that does not fit is refused
/// 503 `BODY_BUDGET_EXHAUSTED`; once it is gone, writes go through.
#[test]
fn res_3_bodies_are_bounded_before_they_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let largest = 16 * 1024 * 1024 + 64 * 1024;
    let budget = (largest + 512 * 1024).to_string();
    let node = standalone(dir.path(), &["--body-budget-bytes", &budget]);
    let dx = node.dx_url();

    let mut put = RawClient::connect(&node.client_addr);
    put.send(format!("PUT /v1/docs/c/k HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n[1,", 16 * 1024 * 1024).as_bytes()).unwrap();
    let resp = put.response();
    assert_refusal(&resp.pair(), 413, "BODY_TOO_LARGE");
    assert_eq!(resp.body["error"]["evidence"]["max_body_bytes"], 1024 * 1024 + 64 * 1024);
    let mut commit = RawClient::connect(&node.client_addr);
    commit.send(format!("POST /v1/commit HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{{", 100 * 1024 * 1024).as_bytes()).unwrap();
    assert_refusal(&commit.response().pair(), 413, "BODY_TOO_LARGE");

    let mut chunked = RawClient::connect(&node.client_addr);
    chunked.send(b"PUT /v1/docs/c/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
    let piece = format!("{:x}\r\n{}\r\n", 256 * 1024, "7".repeat(256 * 1024));
    for _ in 0..8 {
        if chunked.send(piece.as_bytes()).is_err() {
            break;
        }
    }
    assert_refusal(&chunked.response().pair(), 413, "BODY_TOO_LARGE");

    // A 16 MiB commit arriving slowly holds its reservation...
    let mut slow = RawClient::connect(&node.client_addr);
    slow.send(format!("POST /v1/commit HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{{\"ops\":[", 16 * 1024 * 1024).as_bytes()).unwrap();
    wait_until("the reservation", || metric(&dx, "aerodb_http_body_bytes_in_flight") == Some((16 * 1024 * 1024) as f64));
    let doc = json!("x".repeat(600 * 1024)).to_string();
    let over = node.put("/v1/docs/c/big", &doc);
    assert_refusal(&over, 503, "BODY_BUDGET_EXHAUSTED");
    assert_eq!(over.1["error"]["evidence"]["in_flight_bytes"], 16 * 1024 * 1024);
    // ...until its client goes away.
    drop(slow);
    wait_until("the reservation to be returned", || metric(&dx, "aerodb_http_body_bytes_in_flight") == Some(0.0));
    assert_eq!(node.put("/v1/docs/c/big", &doc).0, 200);

    assert_eq!(rejects(&node, "client", "BODY_TOO_LARGE"), 3.0);
    assert_eq!(rejects(&node, "client", "BODY_BUDGET_EXHAUSTED"), 1.0);
    assert_eq!(node.commit_id(), 1, "only the last write was stored");
    node.stop_clean();
}

/// RES-3: over `--max-connections`, a new connection gets 503
/// `TOO_MANY_CONNECTIONS` with the JSON error body and is closed; once a
/// connection closes, new ones are served again.
#[test]
fn res_3_connections_over_the_cap_are_refused_and_closed() {
    let dir = tempfile::tempdir().unwrap();
    let node = standalone(dir.path(), &["--max-connections", "3", "--header-timeout-ms", "60000"]);
    let dx = node.dx_url();
    let mut held: Vec<RawClient> = (0..3).map(|_| RawClient::connect(&node.client_addr)).collect();
    wait_until("3 open connections", || metric(&dx, "aerodb_http_connections_open{surface=\"client\"}") == Some(3.0));
    let mut over = RawClient::connect(&node.client_addr);
    let _ = over.send(b"GET /v1/docs/c/k HTTP/1.1\r\nHost: x\r\n\r\n");
    let resp = over.response();
    assert_refusal(&resp.pair(), 503, "TOO_MANY_CONNECTIONS");
    assert_eq!(resp.body["error"]["evidence"]["max_connections"], 3);
    assert!(over.closed());
    assert_eq!(rejects(&node, "client", "TOO_MANY_CONNECTIONS"), 1.0);

    held.pop();
    wait_until("a free slot", || metric(&dx, "aerodb_http_connections_open{surface=\"client\"}") == Some(2.0));
    assert_eq!(node.get("/v1/docs/c/k").0, 404);
    drop(held);
    node.stop_clean();
}

/// REPL-1 (issue 11 case 8, issue 14 item 3): a write to a replica gets 403
/// `WRITE_REJECTED` before anything else is looked at: a body declared
/// 100 MiB (never sent), a malformed commit body, an invalid path, a
/// DELETE. The evidence says what the node is and that the address it knows
/// is the primary's replication port (not where writes go), and embeds no
/// read explanation.
#[test]
fn repl_1_writes_to_a_replica_are_rejected_before_the_request_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let node = lonely_replica(dir.path(), &[]);
    let mut raw = RawClient::connect(&node.client_addr);
    raw.send(format!("PUT /v1/docs/c/k HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", 100 * 1024 * 1024).as_bytes()).unwrap();
    let resp = raw.response();
    assert_error(&resp.pair(), 403, "WRITE_REJECTED");
    let evidence = &resp.body["error"]["evidence"];
    assert_eq!(resp.body["error"]["rule_id"], "REPL-1");
    assert_eq!(evidence["role"], "replica", "{evidence}");
    assert_eq!(evidence["primary_replication_addr"], "127.0.0.1:1", "{evidence}");
    assert!(evidence["writes_accepted_by"].as_str().unwrap().contains("client API"), "{evidence}");
    assert!(evidence.get("explanation").is_none() && !resp.body.to_string().contains("admitted"), "no read explanation: {}", resp.body);
    assert!(resp.body["error"]["message"].as_str().unwrap().contains("replication port"), "{}", resp.body);

    for (method, path, body) in [
        ("POST", "/v1/commit", Some(&b"{not json"[..])),
        ("PUT", "/v1/docs/c/a%2Fb", Some(&b"1"[..])),
        ("PUT", "/v1/docs/c/k", Some(&b"{\"truncated\":"[..])),
        ("DELETE", "/v1/docs/c/k", None),
    ] {
        let resp = support::request(method, &format!("{}{path}", node.url()), body);
        assert_error(&resp, 403, "WRITE_REJECTED");
    }
    // A large body sent in full by an ordinary client still gets the 403 (not a reset).
    let big = vec![b'7'; 20 * 1024 * 1024];
    assert_error(&support::request("PUT", &format!("{}/v1/docs/c/k", node.url()), Some(&big)), 403, "WRITE_REJECTED");
    let error = assert_error_shape(&resp.body);
    assert_eq!(error["code"], "WRITE_REJECTED");
    node.stop_clean();
}
