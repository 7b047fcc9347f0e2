//! Property test: arbitrary bodies at every POST route never produce a 5xx or a panic, every
//! 4xx carries `{"error": "..."}`, and the service keeps answering; without authentication,
//! and behind bearer tokens with arbitrary `Authorization` headers (a 401 unless the token
//! is right).

use axum::body::Body;
use axum::http::{header, Request};
use proptest::prelude::*;
use serde_json::Value;

use super::*;

/// A random JSON value, with keys biased towards the ones the API knows.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from), // NaN/inf become null
        "[a-zA-Z0-9 ]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    "features|instances|inputs|outputs|data|shape|datatype|name|id|parameters|[a-z]{1,6}",
                    inner
                ),
                0..5
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A number-ish JSON token, including ones that overflow to infinity and non-numbers.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (-1000.0f64..1000.0).prop_map(|f| f.to_string()),
        1 => "-?[0-9]{1,3}",
        1 => "-?1e[0-9]{1,3}",
        1 => Just("1e400".to_owned()),
        1 => Just("-1e999".to_owned()),
        1 => Just("1.7976931348623157e308".to_owned()),
        1 => Just("null".to_owned()),
        1 => Just("\"5.1\"".to_owned()),
        1 => Just("[]".to_owned()),
    ]
}

fn row() -> impl Strategy<Value = String> {
    prop::collection::vec(token(), 0..7).prop_map(|t| format!("[{}]", t.join(",")))
}

/// Bodies that are almost right: right keys, wrong lengths, types, shapes or values.
fn near_valid() -> impl Strategy<Value = String> {
    let rows = || prop::collection::vec(row(), 0..5).prop_map(|r| format!("[{}]", r.join(",")));
    let flat = prop::collection::vec(token(), 0..13).prop_map(|t| format!("[{}]", t.join(",")));
    let dims = prop::collection::vec(-2i64..6, 0..4).prop_map(|d| {
        format!(
            "[{}]",
            d.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
        )
    });
    let datatype = prop_oneof![
        Just("FP64"),
        Just("FP32"),
        Just("INT64"),
        Just("BYTES"),
        Just("fp64")
    ];
    prop_oneof![
        row().prop_map(|r| format!(r#"{{"features":{r}}}"#)),
        rows().prop_map(|r| format!(r#"{{"instances":{r}}}"#)),
        (row(), rows()).prop_map(|(a, b)| format!(r#"{{"features":{a},"instances":{b}}}"#)),
        (dims, datatype, prop_oneof![flat, rows()], prop::option::of("[a-z]{1,8}")).prop_map(
            |(shape, dt, data, out)| {
                let outputs = out.map_or(String::new(), |o| format!(r#","outputs":[{{"name":"{o}"}}]"#));
                format!(
                    r#"{{"id":"p","inputs":[{{"name":"input-0","shape":{shape},"datatype":"{dt}","data":{data}}}]{outputs}}}"#
                )
            }
        ),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        near_valid().prop_map(String::into_bytes),
    ]
}

fn content_type() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![
        6 => Just(Some("application/json")),
        1 => Just(Some("text/plain")),
        1 => Just(None),
    ]
}

/// The token of the authenticated app.
const TOKEN: &str = "fuzz-token";

/// An `Authorization` header: none, the right token, or anything printable.
fn authorization() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        1 => Just(None),
        3 => Just(Some(format!("Bearer {TOKEN}"))),
        1 => Just(Some(format!("bearer  {TOKEN} "))),
        2 => "[ -~]{0,40}".prop_map(Some),
        2 => "(Bearer|bearer|Basic) [ -~]{0,20}".prop_map(Some),
    ]
}

/// Whether the app behind tokens must let this header through.
fn accepted(authorization: Option<&str>) -> bool {
    authorization
        .and_then(|a| crate::auth::bearer(a.as_bytes()))
        .is_some_and(|t| t == TOKEN.as_bytes())
}

async fn check_one(
    router: &Router,
    uri: &str,
    ct: Option<&str>,
    authorization: Option<&str>,
    body: Vec<u8>,
) -> Result<StatusCode, TestCaseError> {
    let mut req = Request::post(uri);
    if let Some(ct) = ct {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    if let Some(a) = authorization {
        req = req.header(header::AUTHORIZATION, a);
    }
    let answer = send(router, req.body(Body::from(body)).unwrap()).await;
    prop_assert!(
        !answer.status.is_server_error(),
        "{uri}: {} {}",
        answer.status,
        answer.text
    );
    if answer.status.is_client_error() {
        prop_assert_eq!(&answer.content_type, "application/json");
        prop_assert!(
            answer.json["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{uri}: no error message in {}",
            answer.text
        );
    } else {
        prop_assert!(answer.status.is_success(), "{uri}: {}", answer.status);
        prop_assert!(
            !answer.json.is_null(),
            "{uri}: 2xx body is not JSON: {}",
            answer.text
        );
    }
    Ok(answer.status)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_body_at_any_post_route_is_answered_without_5xx(body in body(), ct in content_type()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            for (state, name) in [(binary_state(), "binary"), (multiclass_state(), "multiclass")] {
                let r = router(&state);
                let version = state.model().short_digest().to_owned();
                let routes = [
                    "/predict_iris".to_owned(),
                    "/v1/models/iris:predict".to_owned(),
                    "/v1/models/iris:explain".to_owned(),
                    "/v1/models/iris".to_owned(),
                    "/v2/models/iris/infer".to_owned(),
                    format!("/v2/models/iris/versions/{version}/infer"),
                    "/constant".to_owned(),
                ];
                for uri in &routes {
                    check_one(&r, uri, ct, None, body.clone()).await
                        .map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
                }
                // Still serving, same state.
                let ok = post(&r, "/predict_iris", r#"{"features":[5.1,3.5,1.4,0.2]}"#).await;
                prop_assert_eq!(ok.status, StatusCode::OK);
            }
            Ok(())
        })?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn behind_tokens_any_request_is_answered_without_5xx(
        body in body(),
        ct in content_type(),
        authorization in authorization(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let dir = crate::test_models::TempDir::new("fuzz-tokens");
        let tokens = crate::auth::Tokens::load(dir.write("tokens", format!("other\n{TOKEN}\n"))).unwrap();
        let auth = crate::auth::Auth::new(tokens, true);
        rt.block_on(async {
            let state = multiclass_state();
            let r = crate::http::app_with_auth(state.clone(), Some(&auth));
            let version = state.model().short_digest().to_owned();
            let routes = [
                "/predict_iris".to_owned(),
                "/v1/models/iris:predict".to_owned(),
                "/v1/models/iris:explain".to_owned(),
                "/v2/models/iris/infer".to_owned(),
                format!("/v2/models/iris/versions/{version}/infer"),
                "/constant".to_owned(),
            ];
            let ok = accepted(authorization.as_deref());
            for uri in &routes {
                let status = check_one(&r, uri, ct, authorization.as_deref(), body.clone()).await?;
                prop_assert_eq!(
                    status == StatusCode::UNAUTHORIZED,
                    !ok,
                    "{}: {:?} -> {}", uri, authorization, status
                );
            }
            let health = get(&r, "/v2/health/ready").await;
            prop_assert_eq!(health.status, StatusCode::OK);
            Ok(())
        })?;
    }
}
