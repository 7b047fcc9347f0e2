//! The metrics registry both transports record into: request and prediction metrics kept in
//! fixed arrays of atomics (no locks, no allocation on the request path) and encoded with
//! prometheus-client at scrape time (`encode.rs`). The HTTP layer (`http::metrics`) and the
//! gRPC layer (`grpc::metrics`) record into one [`Metrics`]; TLS and the reloads count here
//! too.
//!
//! Label values are bounded (`labels.rs`): `route` is one of the route templates (or
//! `unmatched`), `code` one of a fixed list of status codes (or `other`), `method` one of the
//! gRPC methods, `class` one of the model's labels.

mod encode;
mod labels;
pub(crate) mod request_log;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use axum::http::StatusCode;

pub(crate) use labels::RouteId;
use labels::{code_index, N_CODES, N_GRPC_CODES, N_ROUTES};
use request_log::RequestLog;

use crate::model::MAX_CLASSES;
use crate::proto::{GrpcMethod, N_METHODS};

/// Upper bounds of the latency buckets in nanoseconds (10 us .. 1 s; +Inf is implicit).
/// A prediction takes tens of microseconds inside the server, hence the fine low end.
const BUCKETS_NS: [u64; 15] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    1_000_000_000,
];
const N_BUCKETS: usize = BUCKETS_NS.len() + 1;

/// One (route, code) series: per-bucket counts (not cumulative) and the sum in ns.
#[derive(Default)]
struct Series {
    buckets: [AtomicU64; N_BUCKETS],
    sum_ns: AtomicU64,
}

impl Series {
    #[inline]
    fn observe(&self, started: Instant) {
        let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let bucket = BUCKETS_NS
            .iter()
            .position(|&le| ns <= le)
            .unwrap_or(N_BUCKETS - 1);
        self.buckets[bucket].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    fn snapshot(&self) -> ([u64; N_BUCKETS], u64) {
        let mut b = [0; N_BUCKETS];
        for (dst, src) in b.iter_mut().zip(&self.buckets) {
            *dst = src.load(Relaxed);
        }
        (b, self.sum_ns.load(Relaxed))
    }
}

/// A file re-read on a timer, for the `file` label of `model_server_reloads_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reloaded {
    /// `--tls-cert` and `--tls-key`.
    Certificate,
    /// `--auth-tokens`.
    Tokens,
}

impl Reloaded {
    fn label(self) -> &'static str {
        match self {
            Reloaded::Certificate => "certificate",
            Reloaded::Tokens => "tokens",
        }
    }
}

/// Static facts about the served model, exported as `model_server_model_info`.
#[derive(Clone, Debug)]
pub(crate) struct ModelInfo {
    pub(crate) model: String,
    pub(crate) version: String,
    pub(crate) digest: String,
    pub(crate) task: &'static str,
    pub(crate) positive_class: String,
    pub(crate) source: String,
    pub(crate) accuracy: f64,
    pub(crate) class_labels: Vec<String>,
}

/// All metrics of the server.
pub(crate) struct Metrics {
    series: Box<[Series]>,
    /// gRPC calls by (method, code).
    grpc_series: Box<[Series]>,
    predictions: [AtomicU64; MAX_CLASSES],
    /// TLS handshakes that failed or timed out.
    tls_handshake_failures: AtomicU64,
    /// Reloads of the certificate and tokens files, by [`Reloaded`] kind and outcome.
    reloads: [[AtomicU64; 2]; 2],
    info: ModelInfo,
    ready: Arc<AtomicBool>,
    /// The opt-in sampled request log.
    pub(crate) request_log: RequestLog,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Metrics {
    pub(crate) fn new(info: ModelInfo, ready: Arc<AtomicBool>) -> Metrics {
        Metrics {
            series: (0..N_ROUTES * N_CODES).map(|_| Series::default()).collect(),
            grpc_series: (0..N_METHODS * N_GRPC_CODES)
                .map(|_| Series::default())
                .collect(),
            predictions: Default::default(),
            tls_handshake_failures: AtomicU64::new(0),
            reloads: Default::default(),
            info,
            ready,
            request_log: Default::default(),
        }
    }

    /// Records one finished request.
    #[inline]
    pub(crate) fn observe(&self, route: RouteId, status: StatusCode, started: Instant) {
        if let Some(s) = self
            .series
            .get(route as usize * N_CODES + code_index(status))
        {
            s.observe(started);
        }
    }

    /// Records one gRPC call with status code `code` (0..17; others are not recorded).
    #[inline]
    pub(crate) fn observe_grpc(&self, method: GrpcMethod, code: usize, started: Instant) {
        if code < N_GRPC_CODES {
            if let Some(s) = self.grpc_series.get(method as usize * N_GRPC_CODES + code) {
                s.observe(started);
            }
        }
    }

    /// gRPC calls seen for a method and code (for tests).
    #[cfg(test)]
    pub(crate) fn grpc_calls(&self, method: GrpcMethod, code: tonic::Code) -> u64 {
        self.grpc_series[method as usize * N_GRPC_CODES + code as usize]
            .snapshot()
            .0
            .iter()
            .sum()
    }

    /// Counts predictions per class index.
    #[inline]
    pub(crate) fn count_predictions(&self, per_class: &[u64; MAX_CLASSES]) {
        for (counter, n) in self.predictions.iter().zip(per_class) {
            if *n > 0 {
                counter.fetch_add(*n, Relaxed);
            }
        }
    }

    /// Counts a failed or timed-out TLS handshake.
    pub(crate) fn count_tls_handshake_failure(&self) {
        self.tls_handshake_failures.fetch_add(1, Relaxed);
    }

    /// Counts a reload of `file` that changed what is served (`ok`) or failed (`!ok`).
    pub(crate) fn count_reload(&self, file: Reloaded, ok: bool) {
        self.reloads[file as usize][usize::from(!ok)].fetch_add(1, Relaxed);
    }

    /// Failed TLS handshakes so far (for tests).
    #[cfg(test)]
    pub(crate) fn tls_handshake_failures(&self) -> u64 {
        self.tls_handshake_failures.load(Relaxed)
    }

    /// Requests seen for a route and status (for tests).
    #[cfg(test)]
    pub(crate) fn requests(&self, route: RouteId, status: StatusCode) -> u64 {
        self.series[route as usize * N_CODES + code_index(status)]
            .snapshot()
            .0
            .iter()
            .sum()
    }
}
