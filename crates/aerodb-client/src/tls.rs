//! TLS trust for `https://` nodes: the CA certificates a node's certificate
//! must chain to (`--tls-ca`). No system roots are used: an AeroDB cluster
//! runs its own CA, and a client that trusts the whole web PKI would accept
//! any certificate for a name.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::error::ClientError;

/// Largest CA file read.
const MAX_CA_FILE_BYTES: u64 = 1024 * 1024;

/// The trust of an HTTPS client: a rustls client config that verifies the
/// node against exactly the given CA certificates (ring provider).
#[derive(Clone)]
pub struct TlsConfig {
    config: Arc<rustls::ClientConfig>,
    source: String,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TlsConfig(ca from {})", self.source)
    }
}

impl PartialEq for TlsConfig {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.config, &other.config)
    }
}

impl Eq for TlsConfig {}

fn bad(source: &str, detail: impl std::fmt::Display) -> ClientError {
    ClientError::Tls { url: source.to_string(), detail: detail.to_string() }
}

impl TlsConfig {
    /// Trusts the PEM CA certificate(s) in `pem`.
    pub fn from_ca_pem(pem: &[u8]) -> Result<TlsConfig, ClientError> {
        TlsConfig::build(pem, "PEM bytes")
    }

    /// Trusts the PEM CA certificate(s) in the file at `path` (`--tls-ca`).
    pub fn from_ca_file(path: &Path) -> Result<TlsConfig, ClientError> {
        let source = path.display().to_string();
        let mut pem = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_CA_FILE_BYTES + 1).read_to_end(&mut pem))
            .map_err(|e| bad(&source, format!("cannot read the CA file: {e}")))?;
        if pem.len() as u64 > MAX_CA_FILE_BYTES {
            return Err(bad(&source, format!("the CA file is larger than {MAX_CA_FILE_BYTES} bytes")));
        }
        TlsConfig::build(&pem, &source)
    }

    fn build(pem: &[u8], source: &str) -> Result<TlsConfig, ClientError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| bad(source, format!("not a PEM certificate: {e}")))?;
            roots.add(cert).map_err(|e| bad(source, format!("not a usable CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(bad(source, "no CA certificate found"));
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(source, e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsConfig { config: Arc::new(config), source: source.to_string() })
    }

    /// The rustls client config.
    pub fn rustls_config(&self) -> &Arc<rustls::ClientConfig> {
        &self.config
    }
}

/// The TLS reason behind a connect error, if it was one: walks the error's
/// sources, looking inside (nested) `io::Error`s, whose own `source` skips
/// the error they wrap, for a `rustls::Error`.
pub(crate) fn tls_cause(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    if let Some(t) = e.downcast_ref::<rustls::Error>() {
        return Some(t.to_string());
    }
    if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
        if let Some(found) = tls_cause(inner) {
            return Some(found);
        }
    }
    e.source().and_then(tls_cause)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn res_4_ca_files_are_checked() {
        assert_eq!(TlsConfig::from_ca_pem(b"").unwrap_err().code(), "TLS");
        assert_eq!(TlsConfig::from_ca_pem(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n").unwrap_err().code(), "TLS");
        assert_eq!(TlsConfig::from_ca_file(Path::new("/nonexistent/ca.pem")).unwrap_err().code(), "TLS");
        let ca = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let t = TlsConfig::from_ca_pem(ca.cert.pem().as_bytes()).unwrap();
        assert_eq!(t, t.clone());
        assert!(format!("{t:?}").contains("PEM bytes"));
    }
}
