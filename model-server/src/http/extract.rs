//! Extractors whose rejections are [`ApiError`]s, so axum's own plain-text rejections never
//! reach a client.

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::Json;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// A request body type, with the shape a client should have sent (used in error messages).
pub(crate) trait RequestShape {
    /// For example `{"instances": [[sepal_length, sepal_width, petal_length, petal_width], ...]}`.
    const EXPECTED: &'static str;
}

/// A JSON body, read by `axum::Json` into `T`, at most `max_body_bytes`. Lenient about the
/// content type as clients send it: none at all (tritonclient's HTTP client),
/// `application/json` with parameters (`; charset=utf-8`) or a `+json` suffix are all JSON;
/// a content type that says something else is 415.
pub(crate) struct JsonBody<T>(pub T);

impl<T> FromRequest<AppState> for JsonBody<T>
where
    T: DeserializeOwned + RequestShape,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        check_json_content_type(req.headers())?;
        let body = read_body(req, state).await?;
        parse_json(&body).map(JsonBody)
    }
}

/// The body, at most `max_body_bytes` (over: 413 naming the limit).
pub(crate) async fn read_body(req: Request, state: &AppState) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state)
        .await
        .map_err(|r| ApiError::from_body(r, state.limits().max_body_bytes))
}

/// Parses JSON with `axum::Json`; a body of the wrong shape says what was expected.
pub(crate) fn parse_json<T: DeserializeOwned + RequestShape>(body: &[u8]) -> Result<T, ApiError> {
    match Json::<T>::from_bytes(body) {
        Ok(Json(value)) => Ok(value),
        Err(rejection @ JsonRejection::JsonDataError(_)) => {
            let e = ApiError::from(rejection);
            Err(ApiError::bad_request(format!(
                "{}; expected {}",
                e.message(),
                T::EXPECTED
            )))
        }
        Err(rejection) => Err(rejection.into()),
    }
}

/// Ok for no content type (JSON is the only thing these routes read), for JSON media types,
/// and for `application/x-www-form-urlencoded`, which is what `curl -d` sends unless told
/// otherwise (Triton and KServe read such a body as JSON too; one that is not JSON is still a
/// 400 naming the parse error); 415 naming what was sent otherwise.
pub(crate) fn check_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = value
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .unwrap_or("");
    if is_json_essence(essence) || essence.eq_ignore_ascii_case(CURL_DEFAULT) {
        Ok(())
    } else {
        Err(unsupported_media_type(value, "application/json"))
    }
}

/// The content type `curl -d` sends when none is given.
const CURL_DEFAULT: &str = "application/x-www-form-urlencoded";

/// `application/json`, or a structured suffix such as `application/vnd.api+json`.
pub(crate) fn is_json_essence(essence: &str) -> bool {
    essence.eq_ignore_ascii_case("application/json")
        || (essence.len() > "application/+json".len()
            && essence
                .get(..12)
                .is_some_and(|p| p.eq_ignore_ascii_case("application/"))
            && essence
                .get(essence.len() - 5..)
                .is_some_and(|s| s.eq_ignore_ascii_case("+json")))
}

/// 415: `expected` (e.g. `application/json`), and what was sent.
pub(crate) fn unsupported_media_type(got: &HeaderValue, expected: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!(
            "expected Content-Type: {expected} (or none), got {:?}",
            String::from_utf8_lossy(got.as_bytes())
        ),
    )
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
            "application/json;charset=UTF-8",
            "application/vnd.api+json",
            "application/x-www-form-urlencoded",
        ] {
            assert!(check_json_content_type(&with(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "text/plain",
            "multipart/form-data; boundary=x",
            "+json",
            "application/+json",
        ] {
            let err = check_json_content_type(&with(bad)).unwrap_err();
            assert_eq!(err.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{bad}");
        }
        // No content type at all: JSON, as tritonclient sends it.
        assert!(check_json_content_type(&HeaderMap::new()).is_ok());
        let err = check_json_content_type(&with("text/plain")).unwrap_err();
        assert!(
            err.message().contains("\"text/plain\""),
            "{}",
            err.message()
        );
    }
}
