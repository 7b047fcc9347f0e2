//! Payload logging (`--payload-log-url`): each sampled prediction's request and response,
//! posted as two CloudEvents in HTTP binary mode with KServe's attributes (`ce-type`
//! `org.kubeflow.serving.inference.request` / `.response`, one `ce-id` for both, the model's
//! name and namespace as the extensions `inferenceservicename` and `namespace`).
//!
//! The request path never waits: a sampled prediction becomes one [`Exchange`] (the request
//! and response bodies as they were sent and answered, reference-counted, not copied) offered
//! with `try_send` to a bounded queue (`--payload-log-queue`); a full queue drops it and counts
//! its events in `model_server_payload_log_dropped_total`. A thread of its own (`worker.rs`)
//! builds the events with the CloudEvents SDK (`event.rs`) and posts them, at most
//! `--payload-log-concurrency` at once, each with a timeout and retries with a doubling
//! back-off; the sink's failures are counted and logged at most once per 10 s.
//!
//! Where the bodies come from: the HTTP prediction routes through a route layer (`http.rs`),
//! OIP gRPC `ModelInfer` from the messages themselves ([`PayloadLog::offer_grpc`]).
//! Only answered predictions (2xx, gRPC OK) are logged, so every request event has its
//! response event.

mod event;
pub(crate) mod http;
mod metrics;
#[cfg(test)]
mod tests;
mod worker;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use axum::body::Bytes;
use clap::{Args, ValueEnum};
use prost::Message as _;
use tokio::sync::mpsc;

use crate::proto::{ModelInferRequest, ModelInferResponse};

pub use iris_model::env;

/// `--payload-log-*`: where to post the events, and how much to keep and retry.
#[derive(Clone, Debug, Args)]
pub struct PayloadLogArgs {
    /// Post each sampled prediction's request and response as CloudEvents (HTTP binary
    /// mode, KServe's attributes) to this URL: `http://host[:port][/path]`. Unset: off.
    #[arg(long, value_name = "URL", env = env::PAYLOAD_LOG_URL, value_parser = parse_url)]
    pub payload_log_url: Option<String>,
    /// Which events to post: `all` (request and response), `request` or `response`.
    #[arg(long, env = env::PAYLOAD_LOG_MODE, value_enum, default_value_t = Mode::All)]
    pub payload_log_mode: Mode,
    /// Share of predictions logged, 0-100 (each decided at random).
    #[arg(long, value_name = "PERCENT", env = env::PAYLOAD_LOG_SAMPLE_PERCENT, default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(0..=100))]
    pub payload_log_sample_percent: u32,
    /// Extra headers of every post (e.g. `Authorization: Bearer ...`), one `Name: value` a
    /// line; blank lines and lines starting with # are ignored. Read at start-up.
    #[arg(long, value_name = "FILE", env = env::PAYLOAD_LOG_HEADERS_FILE)]
    pub payload_log_headers_file: Option<PathBuf>,
    /// Predictions waiting to be posted; when full, further ones are dropped and counted.
    #[arg(long, value_name = "N", env = env::PAYLOAD_LOG_QUEUE, default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub payload_log_queue: u32,
    /// Posts in flight at once.
    #[arg(long, value_name = "N", env = env::PAYLOAD_LOG_CONCURRENCY, default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub payload_log_concurrency: u32,
    /// Time limit of one post (connecting included), in milliseconds.
    #[arg(long, value_name = "MS", env = env::PAYLOAD_LOG_TIMEOUT_MS, default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub payload_log_timeout_ms: u64,
    /// Further attempts of a failed post (error, timeout or a status other than 2xx), after
    /// 100 ms, 200 ms, 400 ms ... (at most 5 s); then the event counts as failed.
    #[arg(long, value_name = "N", env = env::PAYLOAD_LOG_RETRIES, default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(0..=10))]
    pub payload_log_retries: u32,
}

/// Which events of a prediction are posted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// The request and the response.
    All,
    /// The request only.
    Request,
    /// The response only.
    Response,
}

impl Mode {
    fn request(self) -> bool {
        self != Mode::Response
    }

    fn response(self) -> bool {
        self != Mode::Request
    }
}

/// Only `http://` URLs with a host: HTTPS sinks are not supported (yet); say so plainly.
fn parse_url(s: &str) -> Result<String, String> {
    let uri: axum::http::Uri = s.parse().map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        _ if uri.authority().is_some_and(|a| a.as_str().contains('@')) => Err(
            "the URL must not carry credentials (user:password@); put an Authorization \
             header in --payload-log-headers-file"
                .to_owned(),
        ),
        Some("http") if uri.host().is_some_and(|h| !h.is_empty()) => Ok(s.to_owned()),
        Some("https") => Err(format!(
            "{s:?}: https sinks are not supported; use an http:// URL (a sink in the cluster, \
             or a local proxy that adds TLS)"
        )),
        _ => Err(format!("{s:?} is not an http://host[:port][/path] URL")),
    }
}

/// One body as it was sent or answered.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Payload {
    pub(crate) body: Bytes,
    /// Its media type (`application/json` when the client sent none).
    pub(crate) content_type: String,
    /// With Triton's binary tensor extension: the length of the JSON part (the
    /// `Inference-Header-Content-Length` header), carried as an extension attribute.
    pub(crate) json_len: Option<u64>,
}

/// One logged prediction: what goes into the queue.
#[derive(Debug)]
pub(crate) struct Exchange {
    /// The route (template) or gRPC method, the `endpoint` extension.
    pub(crate) endpoint: &'static str,
    pub(crate) request: Option<Payload>,
    pub(crate) response: Option<Payload>,
}

impl Exchange {
    fn events(&self) -> u64 {
        u64::from(self.request.is_some()) + u64::from(self.response.is_some())
    }
}

/// Events posted, given up and dropped.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) sent: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) dropped: AtomicU64,
    /// Events given up in a row since the sink last accepted one.
    pub(crate) failing: AtomicU64,
}

/// The running logger: the queue's sending end and the sampling.
#[derive(Debug)]
struct Logger {
    tx: mpsc::Sender<Exchange>,
    mode: Mode,
    /// Sampled when a draw in 0..10_000 is below this.
    per_ten_thousand: u64,
    draws: AtomicU64,
}

/// The payload log of a server: off until [`PayloadLog::start`]. Its counters are exported
/// once it runs (`metrics.rs`).
#[derive(Debug, Default)]
pub(crate) struct PayloadLog {
    logger: OnceLock<Logger>,
    counters: Arc<Counters>,
}

/// Who the events come from: the model's name and namespace, and the `ce-source` URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) model: String,
    pub(crate) namespace: String,
    pub(crate) source: String,
}

impl Identity {
    /// `ce-source` is `http://<pod name>:<port>/` (the `HOSTNAME` a pod has), as KServe's
    /// logger names the server that answered.
    pub(crate) fn new(model: &str, namespace: &str, port: u16) -> Identity {
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| {
                !h.is_empty()
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            })
            .unwrap_or_else(|| "localhost".to_owned());
        Identity {
            model: model.to_owned(),
            namespace: namespace.to_owned(),
            source: format!("http://{host}:{port}/"),
        }
    }
}

impl PayloadLog {
    /// Starts the worker thread when `--payload-log-url` is set; a no-op otherwise. Fails on
    /// an unreadable or malformed headers file (naming the line, never its content).
    pub(crate) fn start(&self, args: &PayloadLogArgs, identity: Identity) -> anyhow::Result<()> {
        let Some(url) = &args.payload_log_url else {
            return Ok(());
        };
        let headers = match &args.payload_log_headers_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                worker::parse_headers(&text)
                    .with_context(|| format!("refusing {}", path.display()))?
            }
            None => Vec::new(),
        };
        let capacity = usize::try_from(args.payload_log_queue).unwrap_or(usize::MAX);
        let (tx, rx) = mpsc::channel(capacity);
        let sink = worker::Sink {
            url: url.parse().context("--payload-log-url")?,
            headers,
            identity,
            concurrency: usize::try_from(args.payload_log_concurrency).unwrap_or(1),
            timeout: Duration::from_millis(args.payload_log_timeout_ms),
            retries: args.payload_log_retries,
        };
        let logger = Logger {
            tx,
            mode: args.payload_log_mode,
            per_ten_thousand: u64::from(args.payload_log_sample_percent) * 100,
            draws: AtomicU64::new(seed()),
        };
        if self.logger.set(logger).is_err() {
            anyhow::bail!("the payload log is already running");
        }
        worker::spawn(sink, rx, self.counters.clone())
    }

    /// Whether logging runs at all (the HTTP layer is only installed then).
    pub(crate) fn enabled(&self) -> bool {
        self.logger.get().is_some()
    }

    /// The mode, when this prediction is to be logged (a random draw against the sample
    /// percentage); None when logging is off or the draw says no.
    #[inline]
    pub(crate) fn sample(&self) -> Option<Mode> {
        let logger = self.logger.get()?;
        let mode = self.draw(logger)?;
        // A full queue (a slow or dead sink) drops the prediction's events here, before any
        // body is kept: what logging costs a request then is this check.
        if logger.tx.capacity() == 0 {
            let events = u64::from(mode.request()) + u64::from(mode.response());
            self.counters.dropped.fetch_add(events, Relaxed);
            return None;
        }
        Some(mode)
    }

    /// The mode when the sample percentage's draw says yes.
    #[inline]
    fn draw(&self, logger: &Logger) -> Option<Mode> {
        if logger.per_ten_thousand >= 10_000 {
            return Some(logger.mode);
        }
        // splitmix64 over a counter: uniform enough, lock-free, no syscall.
        let mut z = logger
            .draws
            .fetch_add(0x9E37_79B9_7F4A_7C15, Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z % 10_000 < logger.per_ten_thousand).then_some(logger.mode)
    }

    /// Queues `exchange` without waiting; a full (or closed) queue drops it and counts its
    /// events as dropped.
    pub(crate) fn offer(&self, exchange: Exchange) {
        let Some(logger) = self.logger.get() else {
            return;
        };
        if let Err(e) = logger.tx.try_send(exchange) {
            let exchange = match e {
                mpsc::error::TrySendError::Full(x) | mpsc::error::TrySendError::Closed(x) => x,
            };
            self.counters.dropped.fetch_add(exchange.events(), Relaxed);
        }
    }

    /// Logs an answered OIP gRPC `ModelInfer` when sampled: the messages' protobuf bytes,
    /// `application/protobuf; proto=inference.ModelInferRequest` (and `...Response`).
    pub(crate) fn offer_grpc(&self, request: &ModelInferRequest, response: &ModelInferResponse) {
        let Some(mode) = self.sample() else {
            return;
        };
        let payload = |body: Vec<u8>, message: &str| Payload {
            body: Bytes::from(body),
            content_type: format!("application/protobuf; proto=inference.{message}"),
            json_len: None,
        };
        self.offer(Exchange {
            endpoint: GRPC_ENDPOINT,
            request: mode
                .request()
                .then(|| payload(request.encode_to_vec(), "ModelInferRequest")),
            response: mode
                .response()
                .then(|| payload(response.encode_to_vec(), "ModelInferResponse")),
        });
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }
}

/// The `endpoint` of gRPC predictions.
pub(crate) const GRPC_ENDPOINT: &str = "/inference.GRPCInferenceService/ModelInfer";

/// A per-process start for the sampling draws, so that pods do not all sample alike.
fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    // Truncation keeps the fast-changing low bits, which is the point.
    #[allow(clippy::cast_possible_truncation)]
    let low = nanos as u64;
    low ^ u64::from(std::process::id()).rotate_left(32)
}
