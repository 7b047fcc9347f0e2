//! Request and prediction metrics kept in fixed arrays of atomics (no locks, no allocation
//! on the request path) and encoded with prometheus-client at scrape time.
//!
//! Label values are bounded: `route` is one of the route templates below (or `unmatched`),
//! `code` one of a fixed list of status codes (or `other`), `class` one of the model's labels.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use tower::{Layer, Service};

use super::paths;
use crate::grpc::metrics as grpc;
use crate::grpc::GrpcMethod;
use crate::model::MAX_CLASSES;

/// A route for metrics purposes: the matched template (and, for the KServe v1 model path,
/// the method, since GET and POST are different endpoints there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RouteId {
    PredictIris,
    V1Model,
    V1Predict,
    V2Server,
    V2Live,
    V2Ready,
    V2Model,
    V2ModelVersion,
    V2ModelReady,
    V2ModelVersionReady,
    V2Infer,
    V2ModelVersionInfer,
    Constant,
    Metrics,
    Unmatched,
}

const N_ROUTES: usize = RouteId::Unmatched as usize + 1;

impl RouteId {
    const ALL: [RouteId; N_ROUTES] = [
        RouteId::PredictIris,
        RouteId::V1Model,
        RouteId::V1Predict,
        RouteId::V2Server,
        RouteId::V2Live,
        RouteId::V2Ready,
        RouteId::V2Model,
        RouteId::V2ModelVersion,
        RouteId::V2ModelReady,
        RouteId::V2ModelVersionReady,
        RouteId::V2Infer,
        RouteId::V2ModelVersionInfer,
        RouteId::Constant,
        RouteId::Metrics,
        RouteId::Unmatched,
    ];

    /// The `route` label.
    fn label(self) -> &'static str {
        match self {
            RouteId::PredictIris => paths::PREDICT_IRIS,
            RouteId::V1Model => paths::V1_MODEL,
            RouteId::V1Predict => iris_model::contract::V1_PREDICT,
            RouteId::V2Server => paths::V2,
            RouteId::V2Live => paths::V2_LIVE,
            RouteId::V2Ready => paths::V2_READY,
            RouteId::V2Model => paths::V2_MODEL,
            RouteId::V2ModelVersion => paths::V2_MODEL_VERSION,
            RouteId::V2ModelReady => paths::V2_MODEL_READY,
            RouteId::V2ModelVersionReady => paths::V2_MODEL_VERSION_READY,
            RouteId::V2Infer => paths::V2_INFER,
            RouteId::V2ModelVersionInfer => paths::V2_MODEL_VERSION_INFER,
            RouteId::Constant => paths::CONSTANT,
            RouteId::Metrics => paths::METRICS,
            RouteId::Unmatched => "unmatched",
        }
    }

    pub(crate) fn of(req: &Request) -> RouteId {
        let Some(path) = req.extensions().get::<MatchedPath>() else {
            return RouteId::Unmatched;
        };
        match path.as_str() {
            paths::PREDICT_IRIS => RouteId::PredictIris,
            paths::V1_MODEL if req.method() == Method::POST => RouteId::V1Predict,
            paths::V1_MODEL => RouteId::V1Model,
            paths::V2 => RouteId::V2Server,
            paths::V2_LIVE => RouteId::V2Live,
            paths::V2_READY => RouteId::V2Ready,
            paths::V2_MODEL => RouteId::V2Model,
            paths::V2_MODEL_VERSION => RouteId::V2ModelVersion,
            paths::V2_MODEL_READY => RouteId::V2ModelReady,
            paths::V2_MODEL_VERSION_READY => RouteId::V2ModelVersionReady,
            paths::V2_INFER => RouteId::V2Infer,
            paths::V2_MODEL_VERSION_INFER => RouteId::V2ModelVersionInfer,
            paths::CONSTANT => RouteId::Constant,
            paths::METRICS => RouteId::Metrics,
            _ => RouteId::Unmatched,
        }
    }
}

/// Status codes with their own `code` label; anything else is counted as `other`.
const CODES: [(u16, &str); 12] = [
    (200, "200"),
    (400, "400"),
    (401, "401"),
    (404, "404"),
    (405, "405"),
    (408, "408"),
    (413, "413"),
    (415, "415"),
    (422, "422"),
    (500, "500"),
    (503, "503"),
    (0, "other"),
];
const N_CODES: usize = CODES.len();

fn code_index(status: StatusCode) -> usize {
    match status.as_u16() {
        200 => 0,
        400 => 1,
        401 => 2,
        404 => 3,
        405 => 4,
        408 => 5,
        413 => 6,
        415 => 7,
        422 => 8,
        500 => 9,
        503 => 10,
        _ => 11,
    }
}

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
    ready: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The opt-in sampled request log.
    pub(crate) request_log: super::request_log::RequestLog,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Metrics {
    pub(crate) fn new(
        info: ModelInfo,
        ready: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> Metrics {
        Metrics {
            series: (0..N_ROUTES * N_CODES).map(|_| Series::default()).collect(),
            grpc_series: (0..grpc::N_METHODS * grpc::N_CODES)
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
        if code < grpc::N_CODES {
            if let Some(s) = self.grpc_series.get(method as usize * grpc::N_CODES + code) {
                s.observe(started);
            }
        }
    }

    /// gRPC calls seen for a method and code (for tests).
    #[cfg(test)]
    pub(crate) fn grpc_calls(&self, method: GrpcMethod, code: tonic::Code) -> u64 {
        self.grpc_series[method as usize * grpc::N_CODES + code as usize]
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

impl Collector for Metrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshots: Vec<(RouteId, usize, [u64; N_BUCKETS], u64)> = RouteId::ALL
            .iter()
            .flat_map(|&r| (0..N_CODES).map(move |c| (r, c)))
            .filter_map(|(r, c)| {
                let (b, sum) = self.series[r as usize * N_CODES + c].snapshot();
                (b.iter().sum::<u64>() > 0).then_some((r, c, b, sum))
            })
            .collect();

        let mut requests = encoder.encode_descriptor(
            iris_model::contract::HTTP_REQUESTS,
            "HTTP requests by route template and status code",
            None,
            MetricType::Counter,
        )?;
        for (route, code, buckets, _) in &snapshots {
            let labels = [("route", route.label()), ("code", CODES[*code].1)];
            let count: u64 = buckets.iter().sum();
            ConstCounter::new(count).encode(requests.encode_family(&labels)?)?;
        }

        let mut latency = encoder.encode_descriptor(
            iris_model::contract::HTTP_DURATION,
            "Time from routing to the response head, by route template and status code",
            None,
            MetricType::Histogram,
        )?;
        for (route, code, buckets, sum_ns) in &snapshots {
            let labels = [("route", route.label()), ("code", CODES[*code].1)];
            let bounds = bucket_bounds(buckets);
            latency
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(
                    *sum_ns as f64 / 1e9,
                    buckets.iter().sum(),
                    &bounds,
                    None,
                )?;
        }

        let grpc_snapshots: Vec<(GrpcMethod, usize, [u64; N_BUCKETS], u64)> = GrpcMethod::ALL
            .iter()
            .flat_map(|&m| (0..grpc::N_CODES).map(move |c| (m, c)))
            .filter_map(|(m, c)| {
                let (b, sum) = self.grpc_series[m as usize * grpc::N_CODES + c].snapshot();
                (b.iter().sum::<u64>() > 0).then_some((m, c, b, sum))
            })
            .collect();
        let mut grpc_requests = encoder.encode_descriptor(
            iris_model::contract::GRPC_REQUESTS,
            "gRPC calls by method and status code",
            None,
            MetricType::Counter,
        )?;
        for (method, code, buckets, _) in &grpc_snapshots {
            let labels = [
                ("method", method.label()),
                ("code", grpc::code_label(*code)),
            ];
            let count: u64 = buckets.iter().sum();
            ConstCounter::new(count).encode(grpc_requests.encode_family(&labels)?)?;
        }
        let mut grpc_latency = encoder.encode_descriptor(
            iris_model::contract::GRPC_DURATION,
            "Time from the request head to the response head, by gRPC method and status code",
            None,
            MetricType::Histogram,
        )?;
        for (method, code, buckets, sum_ns) in &grpc_snapshots {
            let labels = [
                ("method", method.label()),
                ("code", grpc::code_label(*code)),
            ];
            grpc_latency
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(
                    *sum_ns as f64 / 1e9,
                    buckets.iter().sum(),
                    &bucket_bounds(buckets),
                    None,
                )?;
        }

        let mut predictions = encoder.encode_descriptor(
            "model_server_predictions",
            "Predictions by predicted class",
            None,
            MetricType::Counter,
        )?;
        for (label, counter) in self.info.class_labels.iter().zip(&self.predictions) {
            let labels = [("class", label.as_str())];
            ConstCounter::new(counter.load(Relaxed)).encode(predictions.encode_family(&labels)?)?;
        }

        let failures = encoder.encode_descriptor(
            "model_server_tls_handshake_failures",
            "TLS handshakes that failed or timed out (plain HTTP on a TLS port, untrusted \
             certificate, no common protocol); 0 without --tls-cert",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(self.tls_handshake_failures.load(Relaxed)).encode(failures)?;
        let mut reloads = encoder.encode_descriptor(
            "model_server_reloads",
            "Re-reads of the certificate and tokens files that changed what is served \
             (result=changed) or were refused, keeping the old one (result=error)",
            None,
            MetricType::Counter,
        )?;
        for file in [Reloaded::Certificate, Reloaded::Tokens] {
            for (i, result) in ["changed", "error"].into_iter().enumerate() {
                let labels = [("file", file.label()), ("result", result)];
                ConstCounter::new(self.reloads[file as usize][i].load(Relaxed))
                    .encode(reloads.encode_family(&labels)?)?;
            }
        }

        let i = &self.info;
        let mut info = encoder.encode_descriptor(
            "model_server_model_info",
            "The served model (value is always 1)",
            None,
            MetricType::Gauge,
        )?;
        let labels = [
            ("model", i.model.as_str()),
            ("version", i.version.as_str()),
            ("digest", i.digest.as_str()),
            ("task", i.task),
            ("positive_class", i.positive_class.as_str()),
            ("source", i.source.as_str()),
        ];
        ConstGauge::new(1i64).encode(info.encode_family(&labels)?)?;

        let accuracy = encoder.encode_descriptor(
            "model_server_model_held_out_accuracy",
            "Held-out accuracy recorded in the model artifact",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i.accuracy).encode(accuracy)?;

        let ready = encoder.encode_descriptor(
            "model_server_ready",
            "1 while the server accepts traffic, 0 once shutdown has begun",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::from(self.ready.load(Relaxed))).encode(ready)?;
        Ok(())
    }
}

/// Per-bucket counts with their upper bounds in seconds; the encoder accumulates them into
/// `le` buckets.
fn bucket_bounds(buckets: &[u64; N_BUCKETS]) -> Vec<(f64, u64)> {
    buckets
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let le = BUCKETS_NS
                .get(i)
                .map_or(f64::INFINITY, |ns| *ns as f64 / 1e9);
            (le, *n)
        })
        .collect()
}

/// Wraps every route (applied with `Router::layer`, so the matched path is known) and
/// records its latency and status code.
///
/// Hand-written rather than `axum::middleware::from_fn`, because that costs more: in process
/// (`metrics_bench.rs`, release, one trivial route) this layer adds 223 ns per request and the
/// same recording as `from_fn` adds 415 ns (it boxes the inner future and clones the router
/// per request), 0.2 us more on a request that costs the server about 23 us of CPU.
#[derive(Clone)]
pub(crate) struct MetricsLayer {
    pub(crate) metrics: std::sync::Arc<Metrics>,
}

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// See [`MetricsLayer`].
#[derive(Clone)]
pub(crate) struct MetricsService<S> {
    inner: S,
    metrics: std::sync::Arc<Metrics>,
}

impl<S> Service<Request> for MetricsService<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = MetricsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let route = RouteId::of(&req);
        MetricsFuture {
            inner: self.inner.call(req),
            route,
            started: Instant::now(),
            metrics: self.metrics.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`MetricsService`].
    pub(crate) struct MetricsFuture<F> {
        #[pin]
        inner: F,
        route: RouteId,
        started: Instant,
        metrics: std::sync::Arc<Metrics>,
    }
}

impl<F, E> Future for MetricsFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let Ok(response) = &result {
            this.metrics
                .observe(*this.route, response.status(), *this.started);
            if this.metrics.request_log.allow() {
                let (namespace, name) = this.metrics.request_log.identity();
                tracing::info!(
                    target: "model_server::request",
                    namespace,
                    name,
                    route = this.route.label(),
                    code = response.status().as_u16(),
                    latency_ms = this.started.elapsed().as_secs_f64() * 1e3,
                    "request"
                );
            }
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use prometheus_client::registry::Registry;

    use super::*;

    /// charts/iris-operator/files/metrics.txt, which the alerts and the dashboard are checked
    /// against, lists exactly the sample names /metrics has once every series was touched.
    #[test]
    fn metrics_list_of_the_chart_is_what_the_server_exports() {
        let info = ModelInfo {
            model: "iris".into(),
            version: "v".into(),
            digest: "d".into(),
            task: "binary",
            positive_class: String::new(),
            source: "builtin".into(),
            accuracy: 1.0,
            class_labels: vec!["setosa".into()],
        };
        let metrics = Arc::new(Metrics::new(info, Arc::new(AtomicBool::new(true))));
        metrics.observe(RouteId::PredictIris, StatusCode::OK, Instant::now());
        metrics.observe_grpc(GrpcMethod::ALL[0], 0, Instant::now());
        let mut registry = Registry::default();
        registry.register_collector(Box::new(metrics));
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
            .expect("encodes");
        let exported: BTreeSet<String> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.split(['{', ' ']).next())
            .map(str::to_string)
            .collect();
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../charts/iris-operator/files/metrics.txt"
        );
        let listed: BTreeSet<String> = std::fs::read_to_string(path)
            .expect("metrics.txt")
            .lines()
            .filter(|l| l.starts_with("model_server_"))
            .map(str::to_string)
            .collect();
        assert_eq!(
            exported, listed,
            "update {path} with the server's metric names"
        );
    }
}
