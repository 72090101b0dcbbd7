#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
#![cfg(feature = "replication")]
//! Securing replication, black-box: real `aerodb` processes with real
//! certificates generated in the test (rcgen) and token files on disk.
//! Token authentication (REPL-1) refuses wrong, missing and unexpected
//! tokens on both sides with stable codes and explains them in
//! `/v1/replication` on both nodes; TLS carries replication and the client
//! API; an unauthenticated peer can never fence the primary (REPL-11); a
//! token file readable by others is refused at startup (RES-4).

mod repl_support;

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aerodb_client::{blocking, ClientConfig, TlsConfig};
use aerodb_repl_core::auth::{Nonce, ReplToken};
use aerodb_repl_core::handshake::{Hello, HelloRequest, PROTOCOL_VERSION};
use aerodb_repl_core::ids::{ClusterId, ReplicaId};
use aerodb_repl_core::wire::{frame, AuthMessage, FrameType, Message, DEFAULT_MAX_PAYLOAD};
use aerodb_repl_net::framed::read_frame;
use aerodb_wal::Fingerprint;
use repl_support::{start_primary, start_replica, wait_for, Node};
use serde_json::{json, Value};

const TOKEN_A: &str = "6a0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff";
const TOKEN_B: &str = "ffeeddccbbaa99887766554433221100f0e1d2c3b4a5968778695a4b3c2d1e0f6a";

/// A CA and a server certificate for localhost / 127.0.0.1 signed by it,
/// written as PEM files; and a second, unrelated CA.
struct Pki {
    ca: PathBuf,
    other_ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn make_ca(name: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    let key = rcgen::KeyPair::generate().unwrap();
    (params.self_signed(&key).unwrap(), key)
}

fn pki(dir: &Path) -> Pki {
    let (ca, ca_key) = make_ca("aerodb test CA");
    let (other, _) = make_ca("some other CA");
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "aerodb node");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let write = |name: &str, body: String| {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    Pki {
        ca: write("ca.pem", ca.pem()),
        other_ca: write("other-ca.pem", other.pem()),
        cert: write("node.pem", cert.pem()),
        key: secret(dir, "node.key", &key.serialize_pem()),
    }
}

/// Writes a file readable by its owner only.
fn secret(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

fn token_file(dir: &Path, name: &str, token: &str) -> String {
    secret(dir, name, &format!("{token}\n")).display().to_string()
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

fn https_dx(addr: &str, ca: &Path) -> blocking::DxClient {
    let config = ClientConfig { tls: Some(TlsConfig::from_ca_file(ca).unwrap()), ..ClientConfig::default() };
    blocking::DxClient::with_config(&format!("https://{addr}"), config).unwrap()
}

fn https_client(addr: &str, ca: &Path) -> blocking::Client {
    let config = ClientConfig { tls: Some(TlsConfig::from_ca_file(ca).unwrap()), ..ClientConfig::default() };
    blocking::Client::with_config(&format!("https://{addr}"), config).unwrap()
}

/// `/v1/replication` data over HTTPS.
fn replication_tls(node: &Node, ca: &Path) -> Value {
    https_dx(node.dx.as_ref().unwrap(), ca).envelope::<Value>("/v1/replication").unwrap().data
}

/// Waits until the replica's blocking reason has `code` (it keeps
/// retrying; the state is never Halted for an authentication failure).
fn wait_blocked(replica: &Node, code: &str) -> Value {
    let v = replica.wait_replication(&format!("blocked by {code}"), |v| v["blocking_reason"]["code"] == code);
    assert_ne!(v["replica_state"], "Halted", "{v}");
    assert!(!replica.data_dir.join("replica/halt.json").exists(), "an authentication failure is never a persisted halt");
    v
}

/// Waits until the primary has refused a peer with `code` (`/v1/replication` and `/metrics`).
fn wait_primary_refused(primary: &Node, code: &str) -> Value {
    let v = primary.wait_replication(&format!("primary refused a peer with {code}"), |v| v["security"]["refused"][code].as_u64().is_some_and(|n| n > 0));
    let (status, metrics) = primary.dx_get("/metrics");
    assert_eq!(status, 200);
    let text = metrics.as_str().unwrap_or_default().to_string();
    assert!(text.contains(&format!("aerodb_repl_refused_peers_total{{code=\"{code}\"}}")), "{text}");
    v
}

/// REPL-1: over TLS with a token on both sides, a replica bootstraps and
/// streams real writes; clients reach the primary over HTTPS with the CA
/// (and are refused with another CA, or in plain HTTP with TLS_REQUIRED).
#[test]
fn repl_1_tls_and_token_replicate_real_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = pki(tmp.path());
    let token = token_file(tmp.path(), "token", TOKEN_A);
    let pdir = tmp.path().join("p");
    let primary = start_primary(&pdir, &["--tls-cert", &p(&pki.cert), "--tls-key", &p(&pki.key), "--repl-token-file", &token], &[]);
    let client = https_client(&primary.client, &pki.ca);
    for i in 0..20 {
        client.put("docs", &format!("k{i}"), &json!({"i": i})).unwrap();
    }
    let rdir = tmp.path().join("r");
    let replica = start_replica(&rdir, primary.repl.as_ref().unwrap(), &["--bootstrap", "wal", "--tls-ca", &p(&pki.ca), "--repl-token-file", &token], &[]);
    replica.wait_caught_up(20);
    client.put("docs", "late", &json!({"late": true})).unwrap();
    replica.wait_caught_up(21);
    let (status, body) = replica.get("docs", "late", "");
    assert_eq!((status, body["doc"].clone()), (200, json!({"late": true})));
    let pv = replication_tls(&primary, &pki.ca);
    assert_eq!(pv["security"]["token_required"], true);
    assert_eq!(pv["security"]["tls"], true);
    assert!(pv["replicas"].as_array().is_some_and(|r| r.len() == 1), "{pv}");
    repl_support::assert_wal_prefix(&pdir, &rdir);

    // The client API: another CA is a TLS error; plain HTTP is told TLS_REQUIRED.
    let wrong = https_client(&primary.client, &pki.other_ca).get("docs", "k1", &Default::default()).unwrap_err();
    assert_eq!(wrong.code(), "TLS", "{wrong}");
    let plain = blocking::Client::new(&format!("http://{}", primary.client)).unwrap().get("docs", "k1", &Default::default()).unwrap_err();
    assert_eq!(plain.code(), "TLS_REQUIRED", "{plain}");
    let no_ca = blocking::Client::new(&format!("https://{}", primary.client)).unwrap().get("docs", "k1", &Default::default()).unwrap_err();
    assert_eq!(no_ca.code(), "TLS", "{no_ca}");
}

/// REPL-1: a replica that cannot verify the primary's certificate (another
/// CA) or speaks plain TCP to a TLS port is refused, explained on both sides.
#[test]
fn repl_1_tls_refusals_are_explained_on_both_sides() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = pki(tmp.path());
    let primary = start_primary(&tmp.path().join("p"), &["--tls-cert", &p(&pki.cert), "--tls-key", &p(&pki.key)], &[]);
    let repl = primary.repl.clone().unwrap();
    let plain = start_replica(&tmp.path().join("r1"), &repl, &["--bootstrap", "wal"], &[]);
    wait_blocked(&plain, "TLS_REQUIRED");
    let v = wait_for("primary counts TLS_REQUIRED", || {
        let v = replication_tls(&primary, &pki.ca);
        v["security"]["refused"]["TLS_REQUIRED"].as_u64().is_some_and(|n| n > 0).then_some(v)
    });
    assert!(v["security"]["last_refused"]["code"].as_str().is_some());
    let wrong_ca = start_replica(&tmp.path().join("r2"), &repl, &["--bootstrap", "wal", "--tls-ca", &p(&pki.other_ca)], &[]);
    let v = wrong_ca.wait_replication("TLS verification failure", |v| v["blocking_reason"]["code"] == "CONNECT_FAILED");
    assert!(v["blocking_reason"]["detail"].as_str().unwrap().contains("TLS handshake"), "{v}");
    wait_for("primary counts TLS_HANDSHAKE_FAILED", || {
        let v = replication_tls(&primary, &pki.ca);
        v["security"]["refused"]["TLS_HANDSHAKE_FAILED"].as_u64().is_some_and(|n| n > 0).then_some(v)
    });
}

/// REPL-1: different tokens are refused on both sides with AUTH_FAILED, a
/// replica without a token gets AUTH_REQUIRED, a replica with one against a
/// primary without gets AUTH_NOT_CONFIGURED; never a halt, even for a
/// bootstrapped replica, which streams again once its token is right.
#[test]
fn repl_1_token_refusals_are_explained_on_both_sides_and_never_halt() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (token_file(tmp.path(), "a", TOKEN_A), token_file(tmp.path(), "b", TOKEN_B));
    let primary = start_primary(&tmp.path().join("p"), &["--repl-token-file", &a], &[]);
    let repl = primary.repl.clone().unwrap();
    primary.put("docs", "k", &json!(1));

    let rdir = tmp.path().join("r");
    let replica = start_replica(&rdir, &repl, &["--bootstrap", "wal", "--repl-token-file", &a], &[]);
    replica.wait_caught_up(1);
    let args: Vec<String> = replica.args.iter().map(|x| if *x == a { b.clone() } else { x.clone() }).collect();
    drop(replica);
    let replica = repl_support::spawn(&args, &[], &rdir);
    let v = wait_blocked(&replica, "AUTH_FAILED");
    assert_eq!(v["blocking_reason"]["rule_id"], "REPL-1");
    let pv = wait_primary_refused(&primary, "AUTH_FAILED");
    assert_eq!(pv["security"]["last_refused"]["code"], "AUTH_FAILED");
    let args: Vec<String> = args.iter().map(|x| if *x == b { a.clone() } else { x.clone() }).collect();
    drop(replica);
    let replica = repl_support::spawn(&args, &[], &rdir);
    primary.put("docs", "k2", &json!(2));
    replica.wait_caught_up(2);
    drop(replica);

    let none = start_replica(&tmp.path().join("none"), &repl, &["--bootstrap", "wal"], &[]);
    wait_blocked(&none, "AUTH_REQUIRED");
    wait_primary_refused(&primary, "AUTH_REQUIRED");

    let open_primary = start_primary(&tmp.path().join("p2"), &[], &[]);
    let wants = start_replica(&tmp.path().join("wants"), open_primary.repl.as_ref().unwrap(), &["--bootstrap", "wal", "--repl-token-file", &a], &[]);
    wait_blocked(&wants, "AUTH_NOT_CONFIGURED");
    wait_primary_refused(&open_primary, "AUTH_NOT_CONFIGURED");
}

/// RES-4: a token file readable by group or others (or malformed) is
/// refused at startup with a stable code, before the data directory is
/// created.
#[test]
fn res_4_group_readable_token_file_is_refused_at_startup() {
    let tmp = tempfile::tempdir().unwrap();
    let token = tmp.path().join("token");
    std::fs::write(&token, format!("{TOKEN_A}\n")).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o640)).unwrap();
    let short = secret(tmp.path(), "short", "too-short\n");
    for (role, file, code) in
        [("primary", &token, "TOKEN_FILE_PERMISSIONS"), ("replica", &token, "TOKEN_FILE_PERMISSIONS"), ("primary", &short, "TOKEN_FILE_FORMAT")]
    {
        let dir = tmp.path().join(format!("{role}-{code}"));
        let mut cmd = Command::new(repl_support::bin());
        cmd.args([role, "--data-dir", &p(&dir), "--listen", "127.0.0.1:0", "--dx-listen", "off", "--repl-token-file", &p(file)]);
        if role == "primary" {
            cmd.args(["--repl-listen", "127.0.0.1:0"]);
        } else {
            cmd.args(["--primary", "127.0.0.1:1"]);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{stderr}");
        assert!(stderr.contains(code), "{role}: {stderr}");
        assert!(!stderr.contains(TOKEN_A), "the token is never printed");
        assert!(!dir.join("identity.json").exists(), "refused before the data directory is touched");
    }
}

/// Sends raw frames to the primary's replication port; returns the frames
/// it answers until it closes.
fn raw_session(repl: &str, frames: &[Vec<u8>]) -> Vec<Message> {
    let mut s = TcpStream::connect(repl).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    for f in frames {
        s.write_all(f).unwrap();
    }
    let mut got = Vec::new();
    while let Ok(f) = read_frame(&mut s, DEFAULT_MAX_PAYLOAD) {
        got.push(Message::decode(&f).unwrap());
    }
    got
}

/// REPL-11: with a token configured, a peer that did not prove it cannot
/// fence the primary, whatever resume point it claims: not without
/// authenticating, not with a proof made with another token. The same
/// claim from a peer holding the token does fence (the control).
#[test]
fn repl_11_unauthenticated_peer_cannot_fence_a_running_primary() {
    let tmp = tempfile::tempdir().unwrap();
    let a = token_file(tmp.path(), "a", TOKEN_A);
    let primary = start_primary(&tmp.path().join("p"), &["--repl-token-file", &a], &[]);
    let repl = primary.repl.clone().unwrap();
    assert_eq!(primary.put("docs", "k", &json!(1)).0, 200);
    let cluster = ClusterId::parse(primary.replication()["cluster_id"].as_str().unwrap()).unwrap();
    let ahead = Message::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        cluster_id: Some(cluster),
        replica_id: ReplicaId::parse("intruder").unwrap(),
        name: None,
        request: HelloRequest::Resume { end_lsn: 1 << 30, commit_id: 1 << 20, fingerprint: Fingerprint(7) },
    });
    let payload = ahead.payload();
    let hello = frame::encode(FrameType::Hello, &payload);
    let nonce = Nonce([5; 32]);
    let begin = Message::Auth(AuthMessage::Begin { protocol_version: PROTOCOL_VERSION, replica_nonce: nonce }).to_frame().to_vec();
    let prove = |token: &str| {
        let mut s = TcpStream::connect(&repl).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(&begin).unwrap();
        let Message::Auth(AuthMessage::Challenge { primary_nonce, cluster_id, .. }) =
            Message::decode(&read_frame(&mut s, DEFAULT_MAX_PAYLOAD).unwrap()).unwrap()
        else {
            panic!("expected AUTH_CHALLENGE")
        };
        let proof = ReplToken::parse(token.as_bytes()).unwrap().replica_proof(PROTOCOL_VERSION, &cluster_id, &nonce, &primary_nonce, &payload);
        s.write_all(&Message::Auth(AuthMessage::Proof { proof }).to_frame()).unwrap();
        s.write_all(&hello).unwrap();
        let mut got = Vec::new();
        while let Ok(f) = read_frame(&mut s, DEFAULT_MAX_PAYLOAD) {
            got.push(Message::decode(&f).unwrap());
        }
        got
    };

    let unauthenticated = raw_session(&repl, std::slice::from_ref(&hello));
    assert!(matches!(&unauthenticated[..], [Message::Auth(AuthMessage::Refuse(r))] if r.code.as_str() == "AUTH_REQUIRED"), "{unauthenticated:?}");
    let wrong = prove(TOKEN_B);
    assert!(matches!(&wrong[..], [Message::Auth(AuthMessage::Refuse(r))] if r.code.as_str() == "AUTH_FAILED"), "{wrong:?}");
    assert_eq!(primary.put("docs", "k2", &json!(2)).0, 200, "REPL-11: not fenced by an unauthenticated peer");
    assert_eq!(primary.replication()["fence"]["fenced"], false, "{}", primary.replication());

    let right = prove(TOKEN_A);
    assert!(matches!(&right[..], [Message::Refuse(r)] if r.code().as_str() == "REPLICA_AHEAD"), "{right:?}");
    let (status, body) = primary.put("docs", "k3", &json!(3));
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("PRIMARY_FENCED")), "{body}");
}
