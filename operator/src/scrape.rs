//! Reads a model-server pod's `/metrics` for the canary analysis: an HTTP/1.1 GET to the pod's
//! IP (the operator runs in the cluster, so pod IPs are reachable without the API server's
//! proxy, and its RBAC needs no `pods/proxy`), over HTTPS when the model has `spec.tls` (the
//! certificate unverified, see [`tls`]). Bounded in time and size.

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

/// Fetches the Prometheus text a pod exports.
pub(crate) trait Scrape: Send + Sync {
    /// The body of `GET http://{ip}:{port}/metrics` (`https://` when `https`), or why not.
    fn metrics(
        &self,
        ip: &str,
        port: i32,
        https: bool,
    ) -> BoxFuture<'static, Result<String, String>>;
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
    ) -> BoxFuture<'static, Result<String, String>> {
        let host = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.to_string()
        };
        let scheme = if https { "https" } else { "http" };
        let uri = format!("{scheme}://{host}:{port}/metrics");
        let (http, tls) = (self.http.clone(), self.https.clone());
        Box::pin(async move {
            let uri: hyper::Uri = uri.parse().map_err(|e| format!("{uri}: {e}"))?;
            let fetch = async {
                let response = if https {
                    tls.get(uri.clone()).await
                } else {
                    http.get(uri.clone()).await
                };
                let response = response.map_err(|e| e.to_string())?;
                if !response.status().is_success() {
                    return Err(format!("HTTP {}", response.status()));
                }
                let body = Limited::new(response.into_body(), MAX_BYTES)
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?
                    .to_bytes();
                String::from_utf8(body.to_vec()).map_err(|e| e.to_string())
            };
            match tokio::time::timeout(TIMEOUT, fetch).await {
                Ok(result) => result.map_err(|e| format!("GET {uri}: {e}")),
                Err(_) => Err(format!(
                    "GET {uri}: no answer within {}s",
                    TIMEOUT.as_secs()
                )),
            }
        })
    }
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
        ) -> BoxFuture<'static, Result<String, String>> {
            let answer = self.0.lock().expect("table").get(ip).cloned();
            let ip = ip.to_string();
            Box::pin(async move { answer.ok_or(format!("GET http://{ip}/metrics: refused")) })
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
        assert!(
            err.contains(&format!("http://127.0.0.1:{port}/metrics")),
            "{err}"
        );
        server.await.expect("server");
    }
}
