//! TLS trust for `tls://` (frames over TLS) and `wss://` endpoints: the system's roots by
//! default, or the certificates of a given CA (a private deployment, a test).

use std::{
    path::Path,
    sync::{Arc, OnceLock},
};

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, pem::PemObject};

use crate::ClientError;

/// Which certificate authorities a connection trusts.
#[derive(Clone)]
pub struct TlsTrust {
    config: Arc<ClientConfig>,
}

impl std::fmt::Debug for TlsTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTrust").finish_non_exhaustive()
    }
}

fn trust_error(reason: String) -> ClientError {
    ClientError::Connect {
        endpoint: "TLS".into(),
        reason,
    }
}

impl TlsTrust {
    /// The operating system's trusted roots (loaded once per process).
    pub fn system() -> Result<TlsTrust, ClientError> {
        static SYSTEM: OnceLock<Result<TlsTrust, String>> = OnceLock::new();
        SYSTEM
            .get_or_init(|| {
                let found = rustls_native_certs::load_native_certs();
                let mut roots = RootCertStore::empty();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(format!(
                        "no trusted root certificates found on this system ({:?})",
                        found.errors
                    ));
                }
                Self::with_roots(roots).map_err(|e| e.to_string())
            })
            .clone()
            .map_err(trust_error)
    }

    /// Trusts the certificates in a PEM file (typically one CA), and nothing else.
    pub fn from_pem_file(path: &Path) -> Result<TlsTrust, ClientError> {
        let bytes = std::fs::read(path)
            .map_err(|e| trust_error(format!("reading {}: {e}", path.display())))?;
        Self::from_pem(&bytes).map_err(|e| trust_error(format!("{}: {e}", path.display())))
    }

    /// Trusts the certificates in PEM text, and nothing else.
    pub fn from_pem(pem: &[u8]) -> Result<TlsTrust, ClientError> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| trust_error(format!("not a PEM certificate: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| trust_error(format!("unusable CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(trust_error("no certificate in the PEM text".into()));
        }
        Self::with_roots(roots)
    }

    fn with_roots(roots: RootCertStore) -> Result<TlsTrust, ClientError> {
        let config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| trust_error(e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
        Ok(TlsTrust {
            config: Arc::new(config),
        })
    }

    /// The rustls configuration.
    pub fn config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }
}
