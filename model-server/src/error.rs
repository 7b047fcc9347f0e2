//! The one error type of both transports: a status code and a message. HTTP sends it as
//! `{"error": "..."}` with that status; gRPC as the matching code (400 -> INVALID_ARGUMENT,
//! 404 -> NOT_FOUND, 413 -> RESOURCE_EXHAUSTED, 503 -> UNAVAILABLE). Every rejection (bad
//! JSON, wrong content type, oversized body, unknown model, unknown route) becomes one of
//! these, so clients always get the same shape.

use std::borrow::Cow;

use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use tonic::{Code, Status};

/// A 4xx (or 503) answer with a message that says what was wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    message: Cow<'static, str>,
}

impl ApiError {
    /// An error with any status.
    pub fn new(status: StatusCode, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// 400: the request is malformed or has the wrong shape or values.
    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404: unknown model, version or route.
    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 413: body or batch over the configured limit.
    pub fn too_large(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    /// 503: not ready (shutting down).
    pub fn unavailable(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Maps a failure to read the body: over the limit is a 413 naming the limit.
    pub(crate) fn from_body(rejection: BytesRejection, limit: usize) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::too_large(format!(
                "request body is larger than the limit of {limit} bytes"
            ))
        } else {
            Self::new(
                rejection.status(),
                format!("cannot read request body: {}", rejection.body_text()),
            )
        }
    }
}

/// axum's JSON rejections, in our shape: syntax errors and wrong shapes are 400 with serde's
/// message, a missing or wrong content type is 415 (the lenient check in `extract` runs
/// first, so this arm only sees what it refuses), body read failures as [`ApiError::from_body`].
impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let detail = |e: &dyn std::error::Error| {
            e.source()
                .map_or_else(|| e.to_string(), |source| source.to_string())
        };
        match &rejection {
            JsonRejection::JsonDataError(e) => {
                Self::bad_request(format!("invalid request: {}", detail(e)))
            }
            JsonRejection::JsonSyntaxError(e) => {
                Self::bad_request(format!("malformed JSON: {}", detail(e)))
            }
            JsonRejection::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected Content-Type: application/json",
            ),
            _ => Self::new(rejection.status(), rejection.body_text()),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: &self.message,
            }),
        )
            .into_response()
    }
}

/// The gRPC status of an error: its HTTP status mapped to the code gRPC specifies for it.
impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        let code = match e.status().as_u16() {
            400 | 415 | 422 => Code::InvalidArgument,
            404 => Code::NotFound,
            405 => Code::Unimplemented,
            408 => Code::DeadlineExceeded,
            413 => Code::ResourceExhausted,
            503 => Code::Unavailable,
            _ => Code::Internal,
        };
        Status::new(code, e.message().to_owned())
    }
}
