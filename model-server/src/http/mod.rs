//! The HTTP API: [`app`] builds the router from an [`AppState`] (see [`crate::state`]); no sockets involved, so
//! tests drive it with `tower::ServiceExt::oneshot`.
//!
//! | route | what |
//! |---|---|
//! | `POST /predict_iris` | tutorial contract: `{"features":[..4]}` or `{"instances":[[..4],..]}` |
//! | `GET /v1/models/{name}` | KServe v1 model status `{"name","ready"}` |
//! | `POST /v1/models/{name}:predict` | KServe v1 `{"instances":[[..4],..]}` -> `{"predictions":[class,..]}` |
//! | `POST /v1/models/{name}:explain` | KServe v1, same body -> `{"predictions":[..],"explanations":[..]}` (see `explain`) |
//! | `GET /v2`, `/v2/health/live`, `/v2/health/ready` | OIP v2 server metadata and health |
//! | `GET /v2/models/{name}[/versions/{version}][/ready]` | OIP v2 model metadata and readiness |
//! | `POST /v2/models/{name}[/versions/{version}]/infer` | OIP v2 inference, `[N,4]`, JSON or binary tensor data |
//! | `GET /metrics` | Prometheus text |
//!
//! With `--auth-tokens`, [`app_with_auth`] puts every route but health (and `/metrics`,
//! unless `--auth-metrics`) behind a bearer token: see [`crate::auth`].
//! | `GET`/`POST /constant` | a constant body: the HTTP ceiling for benchmarks |

mod explain;
mod extract;
mod kserve_v1;
pub(crate) mod metrics;
#[cfg(test)]
mod metrics_bench;
mod oip_v2;
#[cfg(test)]
mod tests;
mod tutorial;

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::auth::Auth;
use crate::conn::RequestTimeoutLayer;
use crate::error::ApiError;
use crate::paths;
use crate::state::AppState;
use metrics::MetricsLayer;

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
    let metrics = state.shared_metrics();
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
    if state.payload_log().enabled() {
        protected = protected.route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::payload_log::http::log_payloads,
        ));
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
        .layer(RequestTimeoutLayer::new(request_timeout, timed_out))
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
    state.encode_metrics(&mut body).unwrap();
    body
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    let mut body = String::with_capacity(8 * 1024);
    if state.encode_metrics(&mut body).is_err() {
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
