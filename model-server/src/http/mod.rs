//! The HTTP API: [`app`] builds the router from an [`AppState`]; no sockets involved, so
//! tests drive it with `tower::ServiceExt::oneshot`.
//!
//! | route | what |
//! |---|---|
//! | `POST /predict_iris` | tutorial contract: `{"features":[..4]}` or `{"instances":[[..4],..]}` |
//! | `GET /v1/models/{name}` | KServe v1 model status `{"name","ready"}` |
//! | `POST /v1/models/{name}:predict` | KServe v1 `{"instances":[[..4],..]}` -> `{"predictions":[class,..]}` |
//! | `GET /v2`, `/v2/health/live`, `/v2/health/ready` | OIP v2 server metadata and health |
//! | `GET /v2/models/{name}[/versions/{version}][/ready]` | OIP v2 model metadata and readiness |
//! | `POST /v2/models/{name}[/versions/{version}]/infer` | OIP v2 inference, `[N,4]`, JSON or binary tensor data |
//! | `GET /metrics` | Prometheus text |
//!
//! With `--auth-tokens`, [`app_with_auth`] puts every route but health (and `/metrics`,
//! unless `--auth-metrics`) behind a bearer token: see [`crate::auth`].
//! | `GET`/`POST /constant` | a constant body: the HTTP ceiling for benchmarks |

mod error;
mod extract;
mod kserve_v1;
pub(crate) mod metrics;
#[cfg(test)]
mod metrics_bench;
mod oip_v2;
mod request_log;
#[cfg(test)]
mod tests;
mod tutorial;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use prometheus_client::registry::Registry;

pub use error::ApiError;
pub(crate) use tutorial::check_batch_size;

use crate::auth::Auth;
use crate::conn::{ConnLimits, Gate};
use crate::model::ModelArtifact;
use metrics::{Metrics, MetricsLayer, ModelInfo};

/// Route templates, shared by the router and the metrics labels.
pub(crate) mod paths {
    pub const PREDICT_IRIS: &str = iris_model::contract::PREDICT_IRIS;
    pub const V1_MODEL: &str = "/v1/models/{name}";
    pub const V2: &str = "/v2";
    pub const V2_LIVE: &str = "/v2/health/live";
    pub const V2_READY: &str = "/v2/health/ready";
    pub const V2_MODEL: &str = "/v2/models/{name}";
    pub const V2_MODEL_VERSION: &str = "/v2/models/{name}/versions/{version}";
    pub const V2_MODEL_READY: &str = "/v2/models/{name}/ready";
    pub const V2_MODEL_VERSION_READY: &str = "/v2/models/{name}/versions/{version}/ready";
    pub const V2_INFER: &str = iris_model::contract::V2_INFER;
    pub const V2_MODEL_VERSION_INFER: &str = iris_model::contract::V2_VERSION_INFER;
    pub const CONSTANT: &str = "/constant";
    pub const METRICS: &str = "/metrics";
}

/// Request and connection limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted request body in bytes (larger: 413).
    pub max_body_bytes: usize,
    /// Most rows in one batch (more: 413).
    pub max_batch_rows: usize,
    /// A request not answered within this (body upload included) gets a 503 (gRPC:
    /// CANCELLED, "Timeout expired").
    pub request_timeout: Duration,
    /// Connection bounds (see [`crate::conn`]).
    pub conn: ConnLimits,
}

impl Default for Limits {
    /// 1 MiB bodies, 10,000-row batches, 30 s requests, [`ConnLimits::default`].
    fn default() -> Self {
        Limits {
            max_body_bytes: 1024 * 1024,
            max_batch_rows: 10_000,
            request_timeout: crate::conn::DEFAULT_REQUEST_TIMEOUT,
            conn: ConnLimits::default(),
        }
    }
}

/// Everything the handlers share. Cheap to clone (one `Arc`).
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    model_name: String,
    model: ModelArtifact,
    limits: Limits,
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    registry: Registry,
    /// The connection caps of the HTTP port (all workers) and of the gRPC port.
    http_gate: Gate,
    grpc_gate: Gate,
    /// Bodies that never change, serialized once.
    v2_server_metadata: Bytes,
    v2_model_metadata: Bytes,
}

impl AppState {
    /// State for serving `model` under `model_name`. `source` (e.g. `builtin`,
    /// `file:/models/iris.json`) is reported in metrics. Starts ready: the model is loaded.
    pub fn new(
        model_name: impl Into<String>,
        model: ModelArtifact,
        source: impl Into<String>,
        limits: Limits,
    ) -> AppState {
        let model_name = model_name.into();
        let ready = Arc::new(AtomicBool::new(true));
        let metrics = Arc::new(Metrics::new(
            ModelInfo {
                model: model_name.clone(),
                version: model.short_digest().to_owned(),
                digest: model.digest().to_owned(),
                task: model.task().as_str(),
                positive_class: model
                    .positive_class()
                    .map_or_else(String::new, |c| c.to_string()),
                source: source.into(),
                accuracy: model.accuracy(),
                class_labels: model.class_labels().to_vec(),
            },
            ready.clone(),
        ));
        let mut registry = Registry::default();
        registry.register_collector(Box::new(metrics.clone()));
        let v2_server_metadata = oip_v2::server_metadata();
        let v2_model_metadata = oip_v2::model_metadata(&model_name, &model);
        AppState {
            inner: Arc::new(Shared {
                model_name,
                model,
                limits,
                ready,
                metrics,
                registry,
                http_gate: Gate::new(&limits.conn),
                grpc_gate: Gate::new(&limits.conn),
                v2_server_metadata,
                v2_model_metadata,
            }),
        }
    }

    /// Marks the server ready or not (`false` once shutdown begins).
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether readiness probes should pass.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Relaxed)
    }

    /// The served model.
    pub fn model(&self) -> &ModelArtifact {
        &self.inner.model
    }

    /// The name under which the model is served (`--model-name`).
    pub fn model_name(&self) -> &str {
        &self.inner.model_name
    }

    /// The request limits.
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// The connection gate of the HTTP port, shared by its workers.
    pub(crate) fn http_gate(&self) -> Gate {
        self.inner.http_gate.clone()
    }

    /// The connection gate of the gRPC port.
    pub(crate) fn grpc_gate(&self) -> Gate {
        self.inner.grpc_gate.clone()
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Logs at most `per_second` finished HTTP requests a second (0: none, the default),
    /// each line with `namespace` (may be empty) and the model's `name`.
    pub fn log_requests(self, per_second: u32, namespace: &str) -> AppState {
        let log = &self.inner.metrics.request_log;
        log.set_identity(namespace, &self.inner.model_name);
        log.set_rate(per_second);
        self
    }

    /// The metrics, for the gRPC server's layer.
    pub(crate) fn shared_metrics(&self) -> Arc<Metrics> {
        self.inner.metrics.clone()
    }

    /// 404 unless `name` is the served model.
    pub(crate) fn check_model(&self, name: &str) -> Result<(), ApiError> {
        if name == self.inner.model_name {
            Ok(())
        } else {
            Err(ApiError::not_found(format!(
                "unknown model {name:?}; this server serves {:?}",
                self.inner.model_name
            )))
        }
    }

    /// 404 unless `version` names the served model's version (its short or full digest).
    pub(crate) fn check_version(&self, name: &str, version: &str) -> Result<(), ApiError> {
        self.check_model(name)?;
        let model = &self.inner.model;
        if version == model.short_digest() || version == model.digest() {
            Ok(())
        } else {
            Err(ApiError::not_found(format!(
                "model {name:?} has no version {version:?}; its version is {:?}",
                model.short_digest()
            )))
        }
    }

    /// 503 once shutdown has begun.
    pub(crate) fn check_ready(&self) -> Result<(), ApiError> {
        if self.is_ready() {
            Ok(())
        } else {
            Err(ApiError::unavailable(
                "not ready: the server is shutting down",
            ))
        }
    }
}

/// The router with every route, the body limit, the request timeout, JSON 404/405 answers
/// and request metrics; no authentication.
pub fn app(state: AppState) -> Router {
    app_with_auth(state, None)
}

/// [`app`], with every route but health (and `/metrics` unless the settings protect it)
/// behind bearer-token authentication when `auth` is set (see [`crate::auth`]). Without it,
/// the router is exactly [`app`]'s: no layer, no cost.
pub fn app_with_auth(state: AppState, auth: Option<&Auth>) -> Router {
    let limit = state.limits().max_body_bytes;
    let request_timeout = state.limits().request_timeout;
    let metrics = state.inner.metrics.clone();
    let protect_metrics = auth.is_some_and(Auth::protects_metrics);
    let mut protected = Router::new()
        .route(paths::PREDICT_IRIS, post(tutorial::predict_iris))
        .route(paths::CONSTANT, get(constant).post(constant_post))
        .route(
            paths::V1_MODEL,
            get(kserve_v1::model_status).post(kserve_v1::predict),
        )
        .route(paths::V2, get(oip_v2::server))
        .route(paths::V2_MODEL, get(oip_v2::model))
        .route(paths::V2_MODEL_VERSION, get(oip_v2::model_version))
        .route(paths::V2_MODEL_READY, get(oip_v2::model_ready))
        .route(
            paths::V2_MODEL_VERSION_READY,
            get(oip_v2::model_version_ready),
        )
        .route(paths::V2_INFER, post(oip_v2::infer))
        .route(paths::V2_MODEL_VERSION_INFER, post(oip_v2::infer_version));
    if protect_metrics {
        protected = protected.route(paths::METRICS, get(metrics_text));
    }
    if let Some(auth) = auth {
        protected = protected.route_layer(auth.http_layer());
    }
    let mut router = protected
        .route(paths::V2_LIVE, get(oip_v2::live))
        .route(paths::V2_READY, get(oip_v2::ready));
    if !protect_metrics {
        router = router.route(paths::METRICS, get(metrics_text));
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(
            tower::ServiceBuilder::new()
                .layer(HandleErrorLayer::new(move |_: axum::BoxError| async move {
                    timed_out(request_timeout)
                }))
                .layer(tower::timeout::TimeoutLayer::new(request_timeout)),
        )
        .layer(MetricsLayer { metrics })
        .with_state(state)
}

/// A 200 response from bytes that are already JSON (bodies serialized once at start-up).
pub(crate) fn json_bytes(body: impl Into<Body>) -> Response {
    (
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body.into(),
    )
        .into_response()
}

/// The constant body of `/constant`; the same size as a typical single prediction.
const CONSTANT_BODY: &[u8] = br#"{"prediction":1,"label":"setosa","probability":0.9795}"#;

/// `GET /constant`: no parsing, no model; what the HTTP stack alone costs.
async fn constant() -> Response {
    json_bytes(Bytes::from_static(CONSTANT_BODY))
}

/// `POST /constant`: reads (and ignores) the body first, so a benchmark can send the
/// same request as to `/predict_iris` and see the cost of the prediction path alone.
async fn constant_post(_body: Bytes) -> Response {
    json_bytes(Bytes::from_static(CONSTANT_BODY))
}

/// The `/metrics` text (for tests that check the registry without a router).
#[cfg(test)]
pub(crate) fn metrics_text_for_tests(state: &AppState) -> String {
    let mut body = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut body, &state.inner.registry).unwrap();
    body
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    let mut body = String::with_capacity(8 * 1024);
    if prometheus_client::encoding::prometheus_text::encode(&mut body, &state.inner.registry)
        .is_err()
    {
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "failed to encode metrics",
        )
        .into_response();
    }
    let mut response = Response::new(body.into());
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(prometheus_client::encoding::prometheus_text::CONTENT_TYPE),
    );
    response
}

/// The answer to a request that took longer than `--request-timeout-seconds`.
fn timed_out(limit: Duration) -> ApiError {
    ApiError::unavailable(format!(
        "the request did not complete within the request timeout of {} ms",
        limit.as_millis()
    ))
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} is not allowed on {}", uri.path()),
    )
}
