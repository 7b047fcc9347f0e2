//! Building JSON responses without axum's `Json` wrapper: serialize straight into a
//! right-sized buffer and set a static content type.

use axum::body::Body;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde::Serialize;

const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// Serializes `value` as the body of a JSON response with `status`.
pub(crate) fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    let mut buf = Vec::with_capacity(128);
    match serde_json::to_writer(&mut buf, value) {
        Ok(()) => bytes(status, buf),
        // Our response types are plain data and always serialize; should one ever fail,
        // answer with a valid JSON error instead of a half-written body.
        Err(_) => bytes(
            StatusCode::INTERNAL_SERVER_ERROR,
            br#"{"error":"failed to encode the response"}"#.to_vec(),
        ),
    }
}

/// A JSON response from bytes that are already JSON.
pub(crate) fn bytes(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, APPLICATION_JSON);
    response
}
