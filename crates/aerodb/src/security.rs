//! The node's security flags, loaded and checked before the data directory
//! is touched: `--tls-cert/--tls-key` (rustls server config for the client
//! API, the DX API and the replication port), `--tls-ca` (the CA a replica
//! verifies its primary against) and `--repl-token-file` (read by
//! `aerodb_repl_net::security`, permissions checked). Every failure is a
//! startup refusal with a stable code and the file it concerns.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::StartupError;

/// Largest certificate, key or CA file read (RES-4).
pub const MAX_PEM_FILE_BYTES: u64 = 1024 * 1024;

/// The security flags of a server (`--tls-cert/--tls-key`).
#[derive(Clone, Debug, Default)]
pub struct TlsServerFiles {
    /// PEM certificate chain (leaf first).
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
}

fn refuse(code: &'static str, path: &Path, detail: impl std::fmt::Display) -> StartupError {
    StartupError::Security { code, detail: format!("{}: {detail}", path.display()) }
}

/// Reads a PEM file, bounded in size.
fn read_pem(path: &Path, code: &'static str) -> Result<Vec<u8>, StartupError> {
    let mut bytes = Vec::new();
    std::fs::File::open(path).and_then(|f| f.take(MAX_PEM_FILE_BYTES + 1).read_to_end(&mut bytes)).map_err(|e| refuse(code, path, e))?;
    if bytes.len() as u64 > MAX_PEM_FILE_BYTES {
        return Err(refuse(code, path, format!("larger than {MAX_PEM_FILE_BYTES} bytes")));
    }
    Ok(bytes)
}

/// The crypto provider every TLS config uses (ring).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls server config of `--tls-cert/--tls-key`, or None when
/// neither is given. Both or neither (clap enforces it; checked again).
pub fn server_config(files: &TlsServerFiles) -> Result<Option<Arc<rustls::ServerConfig>>, StartupError> {
    let (cert, key) = match (&files.cert, &files.key) {
        (None, None) => return Ok(None),
        (Some(c), Some(k)) => (c, k),
        _ => return Err(StartupError::BadFlags("--tls-cert and --tls-key go together".into())),
    };
    let pem = read_pem(cert, "TLS_CERT_INVALID")?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| refuse("TLS_CERT_INVALID", cert, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(refuse("TLS_CERT_INVALID", cert, "no certificate in the file"));
    }
    let key_pem = read_pem(key, "TLS_KEY_INVALID")?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| refuse("TLS_KEY_INVALID", key, format!("not a PEM private key: {e}")))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| refuse("TLS_CERT_INVALID", cert, e))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| refuse("TLS_KEY_INVALID", key, format!("does not match the certificate or is unusable: {e}")))?;
    Ok(Some(Arc::new(config)))
}

/// The rustls client config that trusts exactly the CA certificates in
/// `--tls-ca` (no system roots: a replication cluster runs its own CA).
#[cfg(feature = "replication")]
pub fn client_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>, StartupError> {
    let pem = read_pem(ca, "TLS_CA_INVALID")?;
    let mut roots = rustls::RootCertStore::empty();
    let mut added = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| refuse("TLS_CA_INVALID", ca, format!("not a PEM certificate: {e}")))?;
        roots.add(cert).map_err(|e| refuse("TLS_CA_INVALID", ca, e))?;
        added += 1;
    }
    if added == 0 {
        return Err(refuse("TLS_CA_INVALID", ca, "no CA certificate in the file"));
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| refuse("TLS_CA_INVALID", ca, e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Reads `--repl-token-file` (owner-only permissions, bounded, one line).
#[cfg(feature = "replication")]
pub fn load_token(path: Option<&Path>) -> Result<Option<aerodb_repl_core::auth::ReplToken>, StartupError> {
    path.map(|p| aerodb_repl_net::security::load_token_file(p).map_err(|e| StartupError::Security { code: e.code, detail: e.to_string() })).transpose()
}
