//! The thread that posts the events: a single-threaded runtime, a pooled HTTP/1 client, at
//! most `concurrency` exchanges in flight (the queue fills while the sink is slow), each post
//! with a timeout and `retries` further attempts after a doubling back-off.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::body::Bytes;
use axum::http::{HeaderName, HeaderValue, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{mpsc, Semaphore};
use tracing::warn;

use super::event::{self, Kind};
use super::{Counters, Exchange, Identity, Payload};

/// Where and how to post.
#[derive(Debug)]
pub(crate) struct Sink {
    pub(crate) url: Uri,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) identity: Identity,
    pub(crate) concurrency: usize,
    pub(crate) timeout: Duration,
    pub(crate) retries: u32,
}

/// First back-off, doubled after each failed attempt, at most [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// At most one warning line per this period about the sink's failures.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// `Name: value` lines (blank lines and `#` comments skipped). An error names the line
/// number only: the values may be credentials.
pub(crate) fn parse_headers(text: &str) -> anyhow::Result<Vec<(HeaderName, HeaderValue)>> {
    let mut headers = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = line.split_once(':').and_then(|(name, value)| {
            let name = HeaderName::from_bytes(name.trim().as_bytes()).ok()?;
            let value = HeaderValue::from_str(value.trim()).ok()?;
            let reserved = name.as_str().starts_with("ce-")
                || name == axum::http::header::CONTENT_TYPE
                || name == axum::http::header::CONTENT_LENGTH
                || name == axum::http::header::HOST;
            (!reserved).then_some((name, value))
        });
        let header = parsed.with_context(|| {
            format!(
                "line {} is not a `Name: value` header (or names ce-*, Content-Type, \
                 Content-Length or Host, which the logger sets)",
                i + 1
            )
        })?;
        headers.push(header);
    }
    Ok(headers)
}

/// Starts the posting thread.
pub(crate) fn spawn(
    sink: Sink,
    rx: mpsc::Receiver<Exchange>,
    counters: Arc<Counters>,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the payload log's runtime")?;
    std::thread::Builder::new()
        .name("payload-log".to_owned())
        .spawn(move || rt.block_on(run(Arc::new(sink), rx, counters)))
        .context("cannot start the payload log's thread")?;
    Ok(())
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Takes exchanges off the queue until it closes, posting at most `concurrency` at once.
pub(crate) async fn run(
    sink: Arc<Sink>,
    mut rx: mpsc::Receiver<Exchange>,
    counters: Arc<Counters>,
) {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(sink.timeout));
    connector.set_nodelay(true);
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector);
    let permits = Arc::new(Semaphore::new(sink.concurrency.max(1)));
    let failures = Arc::new(FailureLog::default());
    while let Some(exchange) = rx.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (sink, client, counters, failures) = (
            sink.clone(),
            client.clone(),
            counters.clone(),
            failures.clone(),
        );
        tokio::spawn(async move {
            let id = uuid::Uuid::new_v4().to_string();
            let parts = [
                (Kind::Request, exchange.request.as_ref()),
                (Kind::Response, exchange.response.as_ref()),
            ];
            for (kind, payload) in parts {
                let Some(payload) = payload else { continue };
                match post(&client, &sink, kind, &id, exchange.endpoint, payload).await {
                    Ok(()) => {
                        counters.failing.store(0, Relaxed);
                        counters.sent.fetch_add(1, Relaxed)
                    }
                    Err(e) => {
                        failures.record(&sink.url, &e);
                        counters.failing.fetch_add(1, Relaxed);
                        counters.failed.fetch_add(1, Relaxed)
                    }
                };
            }
            drop(permit);
        });
    }
}

/// Posts one event, retrying; the last error when every attempt failed.
async fn post(
    client: &HttpClient,
    sink: &Sink,
    kind: Kind,
    id: &str,
    endpoint: &str,
    payload: &Payload,
) -> Result<(), String> {
    let event = event::build(kind, id, &sink.identity, endpoint, payload)
        .map_err(|e| format!("cannot make the event: {e}"))?;
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 0;
    loop {
        let request = event::to_request(event.clone(), &sink.url, &sink.headers)
            .map_err(|e| format!("cannot write the event: {e}"))?;
        let error = match tokio::time::timeout(sink.timeout, client.request(request)).await {
            Ok(Ok(response)) => {
                let status = response.status();
                // Read to the end, so the connection goes back to the pool.
                let _ = tokio::time::timeout(sink.timeout, response.into_body().collect()).await;
                if status.is_success() {
                    return Ok(());
                }
                format!("the sink answered {status}")
            }
            Ok(Err(e)) => format!("{e}: {}", source_chain(&e)),
            Err(_) => format!("no answer within {} ms", sink.timeout.as_millis()),
        };
        if attempt >= sink.retries {
            return Err(error);
        }
        attempt += 1;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut next = e.source();
    while let Some(cause) = next {
        out.push(cause.to_string());
        next = cause.source();
    }
    out.join(": ")
}

/// The rate-limited warning about the sink: at most one line per [`WARN_EVERY`], with the
/// count of events given up since the last line.
#[derive(Debug, Default)]
struct FailureLog {
    state: Mutex<(Option<Instant>, u64)>,
}

impl FailureLog {
    fn record(&self, url: &Uri, error: &str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.1 += 1;
        let now = Instant::now();
        if state
            .0
            .is_some_and(|last| now.duration_since(last) < WARN_EVERY)
        {
            return;
        }
        warn!(
            sink = %url,
            failed_events = state.1,
            "payload log: the sink keeps failing; events given up after the retries: {error}"
        );
        *state = (Some(now), 0);
    }
}
