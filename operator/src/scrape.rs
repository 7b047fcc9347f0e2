//! Reads a model-server pod's `/metrics` for the canary analysis: a plain HTTP/1.1 GET to the
//! pod's IP (the operator runs in the cluster, so pod IPs are reachable without the API
//! server's proxy, and its RBAC needs no `pods/proxy`). Bounded in time and size.

use std::time::Duration;

use futures::future::BoxFuture;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

/// Longest wait for one pod's metrics.
const TIMEOUT: Duration = Duration::from_secs(3);
/// Largest metrics page read (a model server's is a few KiB).
const MAX_BYTES: usize = 1 << 20;

/// Fetches the Prometheus text a pod exports.
pub(crate) trait Scrape: Send + Sync {
    /// The body of `GET http://{ip}:{port}/metrics`, or why not.
    fn metrics(&self, ip: &str, port: i32) -> BoxFuture<'static, Result<String, String>>;
}

/// The real scraper, over a pooled HTTP/1.1 client.
pub(crate) struct HttpScraper {
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Default for HttpScraper {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(TIMEOUT));
        Self {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
        }
    }
}

impl Scrape for HttpScraper {
    fn metrics(&self, ip: &str, port: i32) -> BoxFuture<'static, Result<String, String>> {
        let host = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.to_string()
        };
        let uri = format!("http://{host}:{port}/metrics");
        let client = self.client.clone();
        Box::pin(async move {
            let uri: hyper::Uri = uri.parse().map_err(|e| format!("{uri}: {e}"))?;
            let fetch = async {
                let response = client.get(uri.clone()).await.map_err(|e| e.to_string())?;
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
        fn metrics(&self, ip: &str, _port: i32) -> BoxFuture<'static, Result<String, String>> {
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
            .metrics("127.0.0.1", i32::from(port))
            .await
            .expect("metrics");
        assert_eq!(text, "up 1\n");
        server.await.expect("server");
        // Nothing listens there any more.
        let err = scraper
            .metrics("127.0.0.1", i32::from(port))
            .await
            .expect_err("refused");
        assert!(err.contains(&format!("127.0.0.1:{port}/metrics")), "{err}");
    }
}
