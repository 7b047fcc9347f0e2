//! The HTTP side: a route layer on the prediction routes that, for a sampled POST, keeps the
//! request body as read and the response body as answered and offers both to the queue.
//! Installed only when logging runs; an unsampled request passes straight through.

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt as _, Limited};

use super::{Exchange, Mode, Payload};
use crate::error::ApiError;
use crate::paths;
use crate::state::AppState;

/// Triton's binary extension header: the length of the JSON part of the body.
const JSON_LEN_HEADER: &str = "inference-header-content-length";

/// The `endpoint` of a prediction request, None for any other request. KServe v1 shares its
/// template with the model status (GET) and other verbs: only `:predict` is a prediction.
fn endpoint(req: &Request) -> Option<&'static str> {
    if req.method() != Method::POST {
        return None;
    }
    let matched = req.extensions().get::<MatchedPath>()?.as_str();
    match matched {
        paths::PREDICT_IRIS => Some(paths::PREDICT_IRIS),
        paths::V2_INFER => Some(paths::V2_INFER),
        paths::V2_MODEL_VERSION_INFER => Some(paths::V2_MODEL_VERSION_INFER),
        paths::V1_MODEL if req.uri().path().ends_with(":predict") => {
            Some(iris_model::contract::V1_PREDICT)
        }
        _ => None,
    }
}

fn payload(headers: &HeaderMap, body: Bytes) -> Payload {
    Payload {
        body,
        content_type: headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
            .to_owned(),
        json_len: headers
            .get(JSON_LEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok()),
    }
}

/// The layer's function (`axum::middleware::from_fn_with_state`).
pub(crate) async fn log_payloads(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let Some(endpoint) = endpoint(&req) else {
        return next.run(req).await;
    };
    let Some(mode) = state.payload_log().sample() else {
        return next.run(req).await;
    };
    // The body is read here, at most --max-body-bytes, as the handler would read it (a larger
    // one is the same 413); the handler then reads it from memory.
    let (parts, body) = req.into_parts();
    let limit = state.limits().max_body_bytes;
    let request_body = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return ApiError::too_large(format!(
                "request body is larger than the limit of {limit} bytes"
            ))
            .into_response()
        }
        Err(e) => {
            return ApiError::bad_request(format!("cannot read request body: {e}")).into_response()
        }
    };
    let request = (mode != Mode::Response).then(|| payload(&parts.headers, request_body.clone()));
    let response = next
        .run(Request::from_parts(parts, Body::from(request_body)))
        .await;
    if !response.status().is_success() {
        return response;
    }
    let (parts, body) = response.into_parts();
    // The handlers answer whole bodies: collecting them takes no waiting.
    let Ok(collected) = body.collect().await else {
        return ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "cannot write the response",
        )
        .into_response();
    };
    let response_body = collected.to_bytes();
    let logged = (mode != Mode::Request).then(|| payload(&parts.headers, response_body.clone()));
    state.payload_log().offer(Exchange {
        endpoint,
        request,
        response: logged,
    });
    Response::from_parts(parts, Body::from(response_body))
}
