//! Certificates made in the test with rcgen (two CAs), the store's loading and reloading,
//! and the real servers on loopback with tokio-rustls and tonic clients.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::*;
use crate::security::{Security, Tls};
use crate::server::ShutdownTiming;
use crate::state::{AppState, Limits};
use crate::test_models::TempDir;

const LIMIT: Duration = Duration::from_secs(10);

/// A CA and a leaf certificate for `localhost` and 127.0.0.1 signed by it.
pub(crate) struct Pki {
    pub ca: CertificateDer<'static>,
    pub leaf: CertificateDer<'static>,
    pub cert_pem: String,
    pub key_pem: String,
}

pub(crate) fn pki(name: &str) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} server"));
    let leaf = params.signed_by(&leaf_key, &ca).unwrap();
    Pki {
        ca: ca.der().clone(),
        leaf: leaf.der().clone(),
        cert_pem: leaf.pem(),
        key_pem: leaf_key.serialize_pem(),
    }
}

/// A client trusting only `ca`, offering `alpn`.
pub(crate) fn client_config(ca: &CertificateDer<'static>, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

pub(crate) async fn connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    timeout(LIMIT, TlsConnector::from(config).connect(name, tcp))
        .await
        .map_err(std::io::Error::other)?
}

/// One keep-alive HTTP/1.1 GET over `conn`: the status line and the body.
pub(crate) async fn http_get(conn: &mut TlsStream<TcpStream>, path: &str) -> (String, String) {
    let head = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n");
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = timeout(LIMIT, conn.read(&mut byte)).await.unwrap().unwrap();
        assert_eq!(n, 1, "connection closed mid-head: {buf:?}");
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; length];
    timeout(LIMIT, conn.read_exact(&mut body))
        .await
        .unwrap()
        .unwrap();
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, String::from_utf8(body).unwrap())
}

fn write_pair(dir: &TempDir, pki: &Pki) -> TlsFiles {
    TlsFiles {
        cert: dir.write("tls.crt", &pki.cert_pem),
        key: dir.write("tls.key", &pki.key_pem),
    }
}

fn load_err(dir: &TempDir, cert: &str, key: &str) -> String {
    let files = TlsFiles {
        cert: dir.write("c.pem", cert),
        key: dir.write("k.pem", key),
    };
    CertStore::load(files).unwrap_err().to_string()
}

#[test]
fn start_up_errors_name_the_file_and_the_reason() {
    let dir = TempDir::new("tls-errors");
    let a = pki("a");
    let b = pki("b");
    let missing = CertStore::load(TlsFiles {
        cert: dir.path().join("nope.crt"),
        key: dir.path().join("nope.key"),
    })
    .unwrap_err()
    .to_string();
    assert!(
        missing.contains("cannot read certificate") && missing.contains("nope.crt"),
        "{missing}"
    );

    let e = load_err(&dir, "not a certificate", &a.key_pem);
    assert!(
        e.contains("invalid certificate") && e.contains("c.pem"),
        "{e}"
    );
    assert!(e.contains("no PEM CERTIFICATE block"), "{e}");

    let e = load_err(&dir, &a.cert_pem, &a.cert_pem);
    assert!(
        e.contains("invalid private key") && e.contains("k.pem"),
        "{e}"
    );

    let truncated = &a.cert_pem[..a.cert_pem.len() / 2];
    let e = load_err(&dir, truncated, &a.key_pem);
    assert!(e.contains("c.pem"), "{e}");

    let e = load_err(&dir, &a.cert_pem, &b.key_pem);
    assert!(e.contains("does not match"), "{e}");
    assert!(e.contains("k.pem") && e.contains("c.pem"), "{e}");

    assert!(CertStore::load(TlsFiles {
        cert: dir.write("c.pem", &a.cert_pem),
        key: dir.write("k.pem", &a.key_pem),
    })
    .is_ok());
}

#[test]
fn reload_swaps_only_a_changed_and_valid_pair() {
    let dir = TempDir::new("tls-reload");
    let (a, b) = (pki("a"), pki("b"));
    let files = write_pair(&dir, &a);
    let store = CertStore::load(files.clone()).unwrap();
    let first = store.fingerprint();
    assert_eq!(first, hex::encode(Sha256::digest(a.leaf.as_ref())));
    assert!(!store.reload().unwrap(), "unchanged files");

    // Half-written: the new certificate with the old key.
    dir.write("tls.crt", &b.cert_pem);
    assert!(store
        .reload()
        .unwrap_err()
        .to_string()
        .contains("does not match"));
    assert_eq!(store.fingerprint(), first);
    // Garbage key.
    dir.write("tls.key", "-----BEGIN PRIVATE KEY-----\nAAAA\n");
    assert!(store.reload().is_err());
    assert_eq!(store.fingerprint(), first);
    // Gone.
    std::fs::remove_file(&files.key).unwrap();
    assert!(store
        .reload()
        .unwrap_err()
        .to_string()
        .contains("cannot read private key"));
    assert_eq!(store.fingerprint(), first);

    dir.write("tls.key", &b.key_pem);
    assert!(store.reload().unwrap());
    assert_eq!(
        store.fingerprint(),
        hex::encode(Sha256::digest(b.leaf.as_ref()))
    );
    assert!(!store.reload().unwrap());
}

/// The layout of a Secret volume: `tls.crt -> ..data/tls.crt`, `..data -> ..<timestamp>`,
/// and an update is an atomic rename of a new `..data` symlink.
struct SecretVolume {
    dir: TempDir,
    generation: u32,
}

impl SecretVolume {
    fn new(pki: &Pki) -> SecretVolume {
        let dir = TempDir::new("secret");
        std::os::unix::fs::symlink("..data/tls.crt", dir.path().join("tls.crt")).unwrap();
        std::os::unix::fs::symlink("..data/tls.key", dir.path().join("tls.key")).unwrap();
        let mut volume = SecretVolume { dir, generation: 0 };
        volume.update(pki);
        volume
    }

    fn files(&self) -> TlsFiles {
        TlsFiles {
            cert: self.dir.path().join("tls.crt"),
            key: self.dir.path().join("tls.key"),
        }
    }

    fn update(&mut self, pki: &Pki) {
        self.generation += 1;
        let name = format!("..gen_{}", self.generation);
        let data = self.dir.path().join(&name);
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("tls.crt"), &pki.cert_pem).unwrap();
        std::fs::write(data.join("tls.key"), &pki.key_pem).unwrap();
        let tmp: PathBuf = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&name, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.path().join("..data")).unwrap();
    }
}

fn state() -> AppState {
    AppState::new(
        "iris",
        crate::test_models::binary().clone(),
        "builtin",
        Limits::default(),
    )
}

struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(state: &AppState, security: Security, grpc: bool) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let timing = ShutdownTiming {
        delay: Duration::ZERO,
        grace: Duration::from_secs(5),
    };
    let stopped = async move {
        let _ = stopped.await;
    };
    let state = state.clone();
    let server = if grpc {
        tokio::spawn(crate::server::serve_grpc_until(
            listener,
            state,
            security,
            timing,
            stopped,
            std::future::pending(),
        ))
    } else {
        tokio::spawn(crate::server::serve_until(
            listener,
            state,
            security,
            timing,
            stopped,
            std::future::pending(),
        ))
    };
    Running { addr, stop, server }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        timeout(LIMIT, self.server).await.unwrap().unwrap().unwrap();
    }
}

fn peer_leaf(conn: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    conn.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

#[tokio::test]
async fn https_only_rotation_without_restart_and_alpn() {
    let (a, b) = (pki("a"), pki("b"));
    let mut volume = SecretVolume::new(&a);
    let store = CertStore::load(volume.files()).unwrap();
    let state = state();
    let security = Security {
        tls: Some(Tls::new(store.clone()).unwrap()),
        auth: None,
    };
    let running = start(&state, security, false).await;
    let addr = running.addr;
    let trusts_a = client_config(&a.ca, &HTTP_ALPN);
    let trusts_b = client_config(&b.ca, &HTTP_ALPN);

    let mut old = connect(addr, trusts_a.clone()).await.unwrap();
    assert_eq!(peer_leaf(&old), a.leaf);
    assert_eq!(old.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut h1 = connect(addr, client_config(&a.ca, &[b"http/1.1"]))
        .await
        .unwrap();
    assert_eq!(h1.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (status, body) = http_get(&mut h1, "/v2/health/ready").await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    assert!(
        connect(addr, trusts_b.clone()).await.is_err(),
        "CA b not yet"
    );

    // Plain HTTP on the TLS port gets no HTTP answer.
    let failures = state.metrics().tls_handshake_failures();
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /v2/health/ready HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = timeout(LIMIT, plain.read_to_end(&mut answer))
        .await
        .unwrap();
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
    timeout(LIMIT, async {
        while state.metrics().tls_handshake_failures() == failures {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the failed handshake is counted");

    // Rotate as Kubernetes does, then reload as the timer would.
    volume.update(&b);
    assert!(store.reload().unwrap());
    let mut new = connect(addr, trusts_b).await.unwrap();
    assert_eq!(peer_leaf(&new), b.leaf);
    let (status, _) = http_get(&mut new, "/v2/health/live").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(connect(addr, trusts_a).await.is_err(), "CA a no more");
    // The connection made before the rotation still works.
    let (status, _) = http_get(&mut h1, "/v2/health/live").await;
    assert_eq!(status, "HTTP/1.1 200 OK");

    drop((old.shutdown().await, h1, new));
    running.stop().await;
}

mod grpc {
    use hyper_util::rt::TokioIo;
    use tonic::transport::Endpoint;
    use tonic::Code;

    use super::*;
    use crate::auth::{Auth, Tokens};
    use crate::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
    use crate::proto::GrpcMethod;
    use crate::proto::{ServerLiveRequest, ServerMetadataRequest};

    async fn channel(addr: SocketAddr, config: Arc<ClientConfig>) -> tonic::transport::Channel {
        // The URI's scheme only names the :scheme header; the connector does TLS.
        Endpoint::from_static("http://localhost")
            .connect_with_connector(tower::service_fn(move |_| {
                let config = config.clone();
                async move { connect(addr, config).await.map(TokioIo::new) }
            }))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn grpc_over_tls_with_a_token() {
        let (a, b) = (pki("a"), pki("b"));
        let dir = TempDir::new("grpc-tls");
        let files = write_pair(&dir, &a);
        let tokens = Tokens::load(dir.write("tokens", "s3cret\n")).unwrap();
        let state = state();
        let store = CertStore::load(files).unwrap();
        let security = Security {
            tls: Some(Tls::new(store.clone()).unwrap()),
            auth: Some(Auth::new(tokens, false)),
        };
        let running = start(&state, security, true).await;
        let channel = channel(running.addr, client_config(&a.ca, &GRPC_ALPN)).await;

        let mut anonymous = GrpcInferenceServiceClient::new(channel.clone());
        assert!(
            anonymous
                .server_live(ServerLiveRequest {})
                .await
                .unwrap()
                .into_inner()
                .live
        );
        let status = anonymous
            .server_metadata(ServerMetadataRequest {})
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{}", status.message());
        assert!(status.message().contains("missing bearer token"));

        let with = |token: &'static str| {
            GrpcInferenceServiceClient::with_interceptor(
                channel.clone(),
                move |mut req: tonic::Request<()>| {
                    req.metadata_mut()
                        .insert("authorization", format!("Bearer {token}").parse().unwrap());
                    Ok(req)
                },
            )
        };
        let status = with("wrong")
            .server_metadata(ServerMetadataRequest {})
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        assert!(status.message().contains("invalid bearer token"));
        let meta = with("s3cret")
            .server_metadata(ServerMetadataRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(meta.extensions, ["binary_tensor_data"]);

        let m = state.metrics();
        assert_eq!(
            m.grpc_calls(GrpcMethod::ServerMetadata, Code::Unauthenticated),
            2
        );
        assert_eq!(m.grpc_calls(GrpcMethod::ServerMetadata, Code::Ok), 1);

        // A client that offers no h2, or trusts another CA, gets no connection.
        assert!(connect(running.addr, client_config(&a.ca, &[b"http/1.1"]))
            .await
            .is_err());
        assert!(connect(running.addr, client_config(&b.ca, &GRPC_ALPN))
            .await
            .is_err());
        running.stop().await;
    }
}
