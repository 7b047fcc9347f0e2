//! Reads a model-server pod's `/metrics` for the canary analysis: an HTTP/1.1 GET to the pod's
//! IP (the operator runs in the cluster, so pod IPs are reachable without the API server's
//! proxy, and its RBAC needs no `pods/proxy`), over HTTPS when the model has `spec.tls` (the
//! certificate unverified, see [`tls`]). Bounded in time and size.
//!
//! A scrape that gets no page (no IP, no answer, an HTTP error) is [`Unread::Failed`]: the
//! evidence is missing, as when a pod restarts. A pod that answers 200 and then a page over
//! [`MAX_BYTES`], not in UTF-8 or not finished within [`TIMEOUT`] is [`Unread::Unusable`]:
//! its own answer is wrong, and the model says so (Degraded `MetricsUnusable`).

pub(crate) mod text;
mod tls;

use std::time::Duration;

use futures::future::BoxFuture;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

/// Longest wait for one pod's metrics.
const TIMEOUT: Duration = Duration::from_secs(3);
/// Largest metrics page read (a model server's is a few KiB).
const MAX_BYTES: usize = 1 << 20;
/// Most pods one reconcile scrapes (the canary's first, then the stable ones; the scaler's
/// ready pods, the rate extrapolated to the others). With [`CONCURRENT_SCRAPES`] and
/// [`TIMEOUT`], a reconcile waits at most 4 x 3 s = 12 s on pods that do not answer, and holds
/// at most 16 MiB of pages.
pub(crate) const MAX_PODS_PER_RECONCILE: usize = 16;
/// Most scrapes in flight at once, per reconcile.
pub(crate) const CONCURRENT_SCRAPES: usize = 4;

/// Why a pod's counters were not read.
#[derive(Debug, PartialEq)]
pub(crate) enum Unread {
    /// The scrape failed (no IP, no answer, an HTTP error): no evidence either way.
    Failed(String),
    /// The pod answered a page that cannot be used (too large, not UTF-8, not finished in
    /// time, or not Prometheus text with usable counters: see `Traffic::read`).
    Unusable(String),
}

/// Fetches the Prometheus text a pod exports.
pub(crate) trait Scrape: Send + Sync {
    /// The body of `GET http://{ip}:{port}/metrics` (`https://` when `https`), or why not.
    fn metrics(
        &self,
        ip: &str,
        port: i32,
        https: bool,
    ) -> BoxFuture<'static, Result<String, Unread>>;
}

/// The real scraper, over pooled HTTP/1.1 clients, plain and TLS.
pub(crate) struct HttpScraper {
    http: Client<HttpConnector, Empty<Bytes>>,
    https: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl Default for HttpScraper {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(TIMEOUT));
        let mut tcp = connector.clone();
        tcp.enforce_http(false);
        let tls = HttpsConnectorBuilder::new()
            .with_tls_config(tls::client_config())
            .https_only()
            .enable_http1()
            .wrap_connector(tcp);
        let builder = || {
            let mut builder = Client::builder(TokioExecutor::new());
            builder.pool_idle_timeout(Duration::from_secs(30));
            builder
        };
        Self {
            http: builder().build(connector),
            https: builder().build(tls),
        }
    }
}

impl Scrape for HttpScraper {
    fn metrics(
        &self,
        ip: &str,
        port: i32,
        https: bool,
    ) -> BoxFuture<'static, Result<String, Unread>> {
        let host = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.to_string()
        };
        let scheme = if https { "https" } else { "http" };
        let uri = format!("{scheme}://{host}:{port}/metrics");
        let (http, tls) = (self.http.clone(), self.https.clone());
        Box::pin(async move {
            let uri: hyper::Uri = uri
                .parse()
                .map_err(|e| Unread::Failed(format!("{uri}: {e}")))?;
            let deadline = tokio::time::Instant::now() + TIMEOUT;
            let get = async {
                if https {
                    tls.get(uri.clone()).await
                } else {
                    http.get(uri.clone()).await
                }
            };
            let response = match tokio::time::timeout_at(deadline, get).await {
                Ok(Ok(response)) => response,
                Ok(Err(e)) => return Err(Unread::Failed(format!("GET {uri}: {e}"))),
                Err(_) => return Err(Unread::Failed(format!("GET {uri}: {}", no_answer()))),
            };
            if !response.status().is_success() {
                return Err(Unread::Failed(format!(
                    "GET {uri}: HTTP {}",
                    response.status()
                )));
            }
            // The pod answered: from here on, what it sends is its own page.
            let unusable = |why: String| Unread::Unusable(format!("metrics page unusable: {why}"));
            let body = Limited::new(response.into_body(), MAX_BYTES).collect();
            let body = match tokio::time::timeout_at(deadline, body).await {
                Ok(Ok(body)) => body.to_bytes(),
                Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                    return Err(unusable(format!("larger than {MAX_BYTES} bytes")))
                }
                Ok(Err(e)) => return Err(Unread::Failed(format!("GET {uri}: {e}"))),
                Err(_) => {
                    return Err(unusable(format!(
                        "not sent in full within {}s",
                        TIMEOUT.as_secs()
                    )))
                }
            };
            String::from_utf8(body.to_vec()).map_err(|e| unusable(format!("not UTF-8: {e}")))
        })
    }
}

/// A scrape that had no answer in time.
fn no_answer() -> String {
    format!("no answer within {}s", TIMEOUT.as_secs())
}

#[cfg(test)]
pub(crate) mod testing {
    //! A scraper answering from a table, for reconcile tests.

    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;

    /// Answers each pod IP with its text; an IP not in the table does not answer.
    #[derive(Default)]
    pub(crate) struct Table(pub(crate) Mutex<HashMap<String, String>>);

    impl Table {
        pub(crate) fn set(&self, ip: &str, text: impl Into<String>) {
            self.0
                .lock()
                .expect("table")
                .insert(ip.to_string(), text.into());
        }
    }

    impl Scrape for Table {
        fn metrics(
            &self,
            ip: &str,
            _port: i32,
            _https: bool,
        ) -> BoxFuture<'static, Result<String, Unread>> {
            let answer = self.0.lock().expect("table").get(ip).cloned();
            let ip = ip.to_string();
            Box::pin(async move {
                answer.ok_or_else(|| Unread::Failed(format!("GET http://{ip}/metrics: refused")))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_a_pods_metrics_over_http_and_reports_failures() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut socket, _) = listener.accept().await.expect("accepts");
            let mut request = [0u8; 1024];
            let n = socket.read(&mut request).await.expect("reads");
            assert!(String::from_utf8_lossy(&request[..n]).starts_with("GET /metrics HTTP/1.1"));
            let body = "up 1\n";
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(response.as_bytes()).await.expect("writes");
        });
        let scraper = HttpScraper::default();
        let text = scraper
            .metrics("127.0.0.1", i32::from(port), false)
            .await
            .expect("metrics");
        assert_eq!(text, "up 1\n");
        server.await.expect("server");
        // Nothing listens there any more.
        let err = scraper
            .metrics("127.0.0.1", i32::from(port), false)
            .await
            .expect_err("refused");
        let Unread::Failed(err) = err else {
            panic!("a refused connection is a failed scrape: {err:?}")
        };
        assert!(err.contains(&format!("127.0.0.1:{port}/metrics")), "{err}");
    }

    #[tokio::test]
    async fn reads_a_pods_metrics_over_https_without_verifying_its_certificate() {
        use std::sync::Arc;

        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        // A self-signed certificate no CA vouches for, naming neither the IP nor any host.
        let certified = rcgen::generate_simple_self_signed(vec!["elsewhere.test".to_string()])
            .expect("certificate");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.expect("accepts");
            let mut tls = acceptor.accept(socket).await.expect("handshake");
            let mut request = [0u8; 1024];
            let n = tls.read(&mut request).await.expect("reads");
            let text = String::from_utf8_lossy(&request[..n]).to_string();
            assert!(text.starts_with("GET /metrics HTTP/1.1"), "{text}");
            assert!(!text.to_ascii_lowercase().contains("authorization"));
            let body = "up 1\n";
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            tls.write_all(response.as_bytes()).await.expect("writes");
            tls.shutdown().await.expect("closes");
            // The same port spoken to in plain HTTP: no answer is a page.
            let (mut plain, _) = listener.accept().await.expect("accepts");
            let _ = plain.read(&mut request).await;
        });
        let scraper = HttpScraper::default();
        let text = scraper
            .metrics("127.0.0.1", i32::from(port), true)
            .await
            .expect("metrics over https");
        assert_eq!(text, "up 1\n");
        let err = scraper
            .metrics("127.0.0.1", i32::from(port), false)
            .await
            .expect_err("plain HTTP to a TLS port");
        let Unread::Failed(err) = err else {
            panic!("no HTTP answer is a failed scrape: {err:?}")
        };
        assert!(
            err.contains(&format!("http://127.0.0.1:{port}/metrics")),
            "{err}"
        );
        server.await.expect("server");
    }

    /// Serves one connection: the status line and headers at once, then `body` in `chunks`
    /// pieces `gap` apart.
    async fn answering(body: Vec<u8>, chunks: usize, gap: Duration) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accepts");
            let mut request = [0u8; 1024];
            let _ = socket.read(&mut request).await.expect("reads");
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            socket.write_all(head.as_bytes()).await.expect("writes");
            for chunk in body.chunks(body.len().div_ceil(chunks).max(1)) {
                if socket.write_all(chunk).await.is_err() {
                    return;
                }
                tokio::time::sleep(gap).await;
            }
        });
        port
    }

    async fn scraped(port: u16) -> Result<String, Unread> {
        HttpScraper::default()
            .metrics("127.0.0.1", i32::from(port), false)
            .await
    }

    #[tokio::test]
    async fn a_pods_oversized_slow_or_binary_page_is_unusable_not_a_failed_scrape() {
        let huge = "up 1\n".repeat(MAX_BYTES / 5 + 1).into_bytes();
        let port = answering(huge, 1, Duration::ZERO).await;
        assert_eq!(
            scraped(port).await,
            Err(Unread::Unusable(format!(
                "metrics page unusable: larger than {MAX_BYTES} bytes"
            )))
        );
        let port = answering(b"up 1\n".repeat(8), 8, Duration::from_millis(500)).await;
        assert_eq!(
            scraped(port).await,
            Err(Unread::Unusable(
                "metrics page unusable: not sent in full within 3s".into()
            ))
        );
        let port = answering(vec![b'u', b'p', 0xff, b'\n'], 1, Duration::ZERO).await;
        let Err(Unread::Unusable(why)) = scraped(port).await else {
            panic!("a page that is not UTF-8 is unusable")
        };
        assert!(why.starts_with("metrics page unusable: not UTF-8"), "{why}");
    }
}
