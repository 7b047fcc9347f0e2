//! Extractors whose rejections are [`ApiError`]s, so axum's own plain-text rejections never
//! reach a client.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use super::{ApiError, AppState};

/// A request body type, with the shape a client should have sent (used in error messages).
pub(crate) trait RequestShape {
    /// For example `{"instances": [[sepal_length, sepal_width, petal_length, petal_width], ...]}`.
    const EXPECTED: &'static str;
}

/// A JSON body: `Content-Type: application/json`, at most `max_body_bytes`, valid JSON of
/// shape `T`.
pub(crate) struct JsonBody<T>(pub T);

impl<T> FromRequest<AppState> for JsonBody<T>
where
    T: DeserializeOwned + RequestShape,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        check_json_content_type(req.headers())?;
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|r| ApiError::from_body(r, state.limits().max_body_bytes))?;
        serde_json::from_slice(&body)
            .map(JsonBody)
            .map_err(|e| json_error(&e, T::EXPECTED))
    }
}

fn check_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let value = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let essence = value
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .unwrap_or("");
    // `application/json`, or a structured suffix such as `application/vnd.api+json`.
    let is_json = essence.eq_ignore_ascii_case("application/json")
        || (essence.len() > "application/+json".len()
            && essence
                .get(..12)
                .is_some_and(|p| p.eq_ignore_ascii_case("application/"))
            && essence
                .get(essence.len() - 5..)
                .is_some_and(|s| s.eq_ignore_ascii_case("+json")));
    if is_json {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            match value {
                Some(v) => format!("expected Content-Type: application/json, got {v:?}"),
                None => "expected Content-Type: application/json".to_owned(),
            },
        ))
    }
}

fn json_error(e: &serde_json::Error, expected: &str) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => {
            ApiError::bad_request(format!("invalid request: {e}; expected {expected}"))
        }
        Category::Eof | Category::Syntax | Category::Io => {
            ApiError::bad_request(format!("malformed JSON: {e}"))
        }
    }
}

/// The `{name}` segment of a model route.
pub(crate) struct ModelName(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ModelName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(name) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("invalid path: {}", e.body_text())))?;
        Ok(ModelName(name))
    }
}

/// The `{name}` and `{version}` segments of a versioned model route.
pub(crate) struct ModelVersion(pub String, pub String);

impl<S: Send + Sync> FromRequestParts<S> for ModelVersion {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path((name, version)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("invalid path: {}", e.body_text())))?;
        Ok(ModelVersion(name, version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        h
    }

    #[test]
    fn content_types() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/vnd.api+json",
        ] {
            assert!(check_json_content_type(&with(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "+json",
            "application/+json",
        ] {
            let err = check_json_content_type(&with(bad)).unwrap_err();
            assert_eq!(err.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{bad}");
        }
        assert!(check_json_content_type(&HeaderMap::new()).is_err());
    }
}
