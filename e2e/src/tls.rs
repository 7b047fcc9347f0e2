//! TLS for the HTTPS tests: CAs and server certificates made here with rcgen, Secrets made from
//! them with `kubectl create secret tls` as docs/securing-a-model.md tells users, and HTTPS clients
//! (rustls, ring) that trust exactly the CAs given.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::CertificateDer;

/// A CA and a server certificate it signed.
pub struct Pki {
    /// The CA certificate.
    pub ca: CertificateDer<'static>,
    /// The server certificate (DER), to recognise it on the wire.
    pub leaf: CertificateDer<'static>,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Pki {
    /// A new CA named `name` and a server certificate for `names` (DNS names, or IPs).
    pub fn new(name: &str, names: &[String]) -> Pki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} e2e CA"));
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");
        let leaf_key = KeyPair::generate().expect("server key");
        let mut params = CertificateParams::new(names.to_vec()).expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} server"));
        let leaf = params
            .signed_by(&leaf_key, &ca)
            .expect("server certificate");
        Pki {
            ca: ca.der().clone(),
            leaf: leaf.der().clone(),
            cert_pem: leaf.pem(),
            key_pem: leaf_key.serialize_pem(),
        }
    }

    /// The lines of the private key's PEM body (its base64), for looking for leaks.
    pub fn key_body_lines(&self) -> Vec<String> {
        self.key_pem
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() >= 40)
            .map(str::to_string)
            .collect()
    }
}

/// The names a model `service` in `ns` is reached by: the Service's names, localhost and
/// 127.0.0.1 (through `kubectl port-forward`).
pub fn service_names(service: &str, ns: &str) -> Vec<String> {
    vec![
        service.to_string(),
        format!("{service}.{ns}.svc"),
        format!("{service}.{ns}.svc.cluster.local"),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ]
}

/// A temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }

    /// Writes `content` to `name` in the directory and returns its path.
    pub fn write(&self, name: &str, content: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, content).expect("write a temporary file");
        path.to_str().expect("utf-8 path").to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The YAML of `kubectl create secret tls NAME --cert --key` (client dry run), to create or
/// replace the Secret with (`kubectl replace` keeps no last-applied copy of the key).
pub fn tls_secret_yaml(ns: &str, name: &str, pki: &Pki) -> String {
    let dir = TempDir::new("iris-e2e-tls");
    let cert = dir.write("tls.crt", &pki.cert_pem);
    let key = dir.write("tls.key", &pki.key_pem);
    crate::kubectl::ok(&[
        "create",
        "secret",
        "tls",
        name,
        "-n",
        ns,
        "--cert",
        &cert,
        "--key",
        &key,
        "--dry-run=client",
        "-o",
        "yaml",
    ])
}

/// The YAML of `kubectl create secret generic NAME --from-file=tokens=FILE` (client dry run).
pub fn tokens_secret_yaml(ns: &str, name: &str, tokens: &[&str]) -> String {
    let dir = TempDir::new("iris-e2e-tokens");
    let mut content = tokens.join("\n");
    content.push('\n');
    let file = dir.write("tokens", &content);
    crate::kubectl::ok(&[
        "create",
        "secret",
        "generic",
        name,
        "-n",
        ns,
        &format!("--from-file=tokens={file}"),
        "--dry-run=client",
        "-o",
        "yaml",
    ])
}

/// `kubectl create` (or, when `replace`, `kubectl replace`) of a Secret's YAML.
pub fn put_secret(ns: &str, yaml: &str, replace: bool) {
    let verb = if replace { "replace" } else { "create" };
    let out = crate::kubectl::run(&[verb, "-n", ns, "-f", "-"], Some(yaml));
    assert!(
        out.status.success(),
        "kubectl {verb} of a Secret failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An HTTPS client trusting exactly `cas`, with `host` resolving to `local` (the
/// port-forward), one new connection (and handshake) per request, and the peer certificate
/// reported in each response's TlsInfo.
pub fn https_client(
    cas: &[&CertificateDer<'static>],
    host: &str,
    local: SocketAddr,
) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        roots.add((*ca).clone()).expect("a CA certificate");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // A full handshake every time: a resumed TLS 1.3 session carries no certificate, so a
    // client resuming a session from before a rotation would never see the new one.
    config.resumption = rustls::client::Resumption::disabled();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .tls_info(true)
        .pool_max_idle_per_host(0)
        .resolve(host, local)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTPS client")
}

/// The DER of the certificate the server presented for `response`.
pub fn peer_certificate(response: &reqwest::Response) -> Option<Vec<u8>> {
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .map(<[u8]>::to_vec)
}

/// A DER certificate as PEM (what Python's ssl and gRPC read).
pub fn pem(der: &[u8]) -> String {
    let body = base64(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Standard base64 with padding (how a Secret's `data` and YAML dumps carry bytes).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_as_kubernetes_writes_it() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"tokens\n"), "dG9rZW5zCg==");
    }
}
