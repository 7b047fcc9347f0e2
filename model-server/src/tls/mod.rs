//! TLS for both ports (`--tls-cert`, `--tls-key`): rustls with the ring provider, TLS 1.2 and
//! 1.3 only. The HTTP port offers ALPN `h2` and `http/1.1`, the gRPC port `h2`.
//!
//! The certificate is rotated without a restart: [`CertStore`] is the rustls certificate
//! resolver, holding the current [`CertifiedKey`] behind an atomic swap, and
//! [`CertStore::reload`] (called on a timer, see [`crate::security`]) re-reads both files and
//! swaps only when their content changed, parses cleanly and the key matches the
//! certificate. A bad, half-written or mismatched pair (Kubernetes swaps a Secret volume's
//! `..data` symlink between our two reads) keeps the old certificate. Established
//! connections are untouched; new handshakes get the new certificate.

mod listener;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::InconsistentKeys;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

pub(crate) use listener::grpc_incoming;
pub use listener::TlsListener;

/// ALPN protocols of the HTTP port (axum serves both).
pub const HTTP_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];
/// ALPN protocol of the gRPC port.
pub const GRPC_ALPN: [&[u8]; 1] = [b"h2"];

/// A certificate or key file that cannot be used, naming the file and the reason.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read.
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        /// `certificate` or `private key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not what it should be.
    #[error("invalid {what} {}: {reason}", path.display())]
    Invalid {
        /// `certificate` or `private key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The key is not the certificate's, or rustls refuses the configuration.
    #[error("{0}")]
    Other(String),
}

/// The certificate and key files (`kubernetes.io/tls` Secret: `tls.crt`, `tls.key`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The rustls certificate resolver: the current certificate, swapped atomically on reload.
pub struct CertStore {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
    /// SHA-256 of the two files' bytes last loaded: an unchanged pair is not parsed again.
    loaded: Mutex<[u8; 32]>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("files", &self.files)
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl CertStore {
    /// Loads the pair; errors name the file and what is wrong with it.
    pub fn load(files: TlsFiles) -> Result<Arc<CertStore>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (key, digest) = read_pair(&files, &provider)?;
        Ok(Arc::new(CertStore {
            files,
            provider,
            current: ArcSwap::from_pointee(key),
            loaded: Mutex::new(digest),
        }))
    }

    /// The files.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Re-reads both files: `Ok(true)` if a new certificate is now served, `Ok(false)` if
    /// the files did not change, an error (the old certificate stays) if the new pair is
    /// unreadable, invalid or mismatched. A mismatch is retried once at once, since a
    /// Secret volume update between the two reads causes one.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let mut loaded = self
            .loaded
            .lock()
            .map_err(|_| TlsError::Other("certificate store lock poisoned".into()))?;
        let mut attempt = 0;
        let (key, digest) = loop {
            attempt += 1;
            let (cert_pem, key_pem) = read_files(&self.files)?;
            let digest = pair_digest(&cert_pem, &key_pem);
            if digest == *loaded {
                return Ok(false);
            }
            match certified_key(&self.files, &cert_pem, &key_pem, &self.provider) {
                Ok(key) => break (key, digest),
                Err(e) if attempt < 2 => tracing::debug!("{e}; reading the pair again"),
                Err(e) => return Err(e),
            }
        };
        self.current.store(Arc::new(key));
        *loaded = digest;
        Ok(true)
    }

    /// SHA-256 of the served leaf certificate (DER), hex: what `openssl x509 -fingerprint
    /// -sha256` prints, for logs.
    pub fn fingerprint(&self) -> String {
        let key = self.current.load();
        key.cert
            .first()
            .map_or_else(String::new, |c| hex::encode(Sha256::digest(c.as_ref())))
    }

    /// A rustls server configuration resolving to this store: TLS 1.3 and 1.2, no client
    /// certificates, the given ALPN protocols, stateless session tickets.
    pub fn server_config(self: &Arc<Self>, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Other(format!("TLS configuration: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config.ticketer = rustls::crypto::ring::Ticketer::new()
            .map_err(|e| TlsError::Other(format!("TLS session tickets: {e}")))?;
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

fn read_files(files: &TlsFiles) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    Ok((
        read("certificate", &files.cert)?,
        read("private key", &files.key)?,
    ))
}

fn pair_digest(cert: &[u8], key: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((cert.len() as u64).to_le_bytes());
    h.update(cert);
    h.update(key);
    h.finalize().into()
}

fn read_pair(
    files: &TlsFiles,
    provider: &CryptoProvider,
) -> Result<(CertifiedKey, [u8; 32]), TlsError> {
    let (cert_pem, key_pem) = read_files(files)?;
    let key = certified_key(files, &cert_pem, &key_pem, provider)?;
    Ok((key, pair_digest(&cert_pem, &key_pem)))
}

/// Parses the PEM pair and checks that the key is the certificate's.
fn certified_key(
    files: &TlsFiles,
    cert_pem: &[u8],
    key_pem: &[u8],
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let invalid = |what, path: &Path, reason: String| TlsError::Invalid {
        what,
        path: path.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("certificate", &files.cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(invalid(
            "certificate",
            &files.cert,
            "no PEM CERTIFICATE block".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        invalid(
            "private key",
            &files.key,
            format!("{e} (expected a PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block)"),
        )
    })?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| invalid("private key", &files.key, e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::Other(format!(
            "the private key {} does not match the certificate {}",
            files.key.display(),
            files.cert.display()
        ))),
        Err(e) => Err(invalid("certificate", &files.cert, e.to_string())),
    }
}

#[cfg(test)]
pub(crate) mod tests;
