//! Route tests through `tower::ServiceExt::oneshot`: no sockets.

mod binary;
mod explain;
mod fuzz;
mod oip_v2;
mod routes;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use super::app;
use crate::model::ModelArtifact;
use crate::state::{AppState, Limits};

pub(super) fn binary_model() -> ModelArtifact {
    crate::test_models::binary().clone()
}

pub(super) fn multiclass_model() -> ModelArtifact {
    crate::test_models::multiclass().clone()
}

pub(super) fn state_with(model: ModelArtifact, limits: Limits) -> AppState {
    AppState::new("iris", model, "builtin", limits)
}

pub(super) fn binary_state() -> AppState {
    state_with(binary_model(), Limits::default())
}

pub(super) fn multiclass_state() -> AppState {
    state_with(multiclass_model(), Limits::default())
}

/// A response: status, content type, and the body as JSON (`Value::Null` if not JSON).
pub(super) struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub text: String,
    pub json: Value,
}

impl Answer {
    /// The `error` message; panics (test failure) unless the body is `{"error": "..."}`.
    #[track_caller]
    pub fn error(&self) -> &str {
        assert_eq!(self.content_type, "application/json", "{}", self.text);
        self.json["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no \"error\" in {}", self.text))
    }

    /// Asserts the status and that the error message contains `needle`.
    #[track_caller]
    pub fn assert_error(&self, status: StatusCode, needle: &str) {
        assert_eq!(self.status, status, "{}", self.text);
        assert!(
            self.error().contains(needle),
            "expected {needle:?} in {:?}",
            self.error()
        );
    }

    #[track_caller]
    pub fn ok(&self) -> &Value {
        assert_eq!(self.status, StatusCode::OK, "{}", self.text);
        &self.json
    }
}

pub(super) async fn send(router: &Router, req: Request<Body>) -> Answer {
    let response = router.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        content_type,
        text,
        json,
    }
}

pub(super) async fn get(router: &Router, uri: &str) -> Answer {
    send(router, Request::get(uri).body(Body::empty()).unwrap()).await
}

pub(super) async fn post(router: &Router, uri: &str, body: impl Into<Body>) -> Answer {
    send(
        router,
        Request::post(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.into())
            .unwrap(),
    )
    .await
}

pub(super) async fn post_json(router: &Router, uri: &str, body: Value) -> Answer {
    post(router, uri, body.to_string()).await
}

pub(super) fn router(state: &AppState) -> Router {
    app(state.clone())
}
