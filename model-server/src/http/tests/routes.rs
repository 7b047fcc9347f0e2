//! `/predict_iris`, KServe v1, `/constant`, `/metrics`, and the 404/405/413/415 answers.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use serde_json::json;

use super::*;
use crate::metrics::RouteId;

const SETOSA: [f64; 4] = [5.1, 3.5, 1.4, 0.2];
const VIRGINICA: [f64; 4] = [6.2, 3.4, 5.4, 2.3];

#[tokio::test]
async fn predict_iris_single_row() {
    let state = binary_state();
    let r = router(&state);
    let a = post_json(&r, "/predict_iris", json!({"features": SETOSA})).await;
    let v = a.ok();
    assert_eq!(a.content_type, "application/json");
    assert_eq!(v["prediction"], 1);
    assert_eq!(v["label"], "setosa");
    let p = v["probability"].as_f64().unwrap();
    assert!(p > 0.5 && p <= 1.0);
    assert_eq!(v.as_object().unwrap().len(), 3);

    let v = post_json(&r, "/predict_iris", json!({"features": VIRGINICA})).await;
    assert_eq!(v.ok()["label"], "not_setosa");
    assert_eq!(v.ok()["prediction"], 0);

    // Integers are numbers too.
    let v = post_json(&r, "/predict_iris", json!({"features": [5, 3, 1, 0]})).await;
    assert_eq!(v.ok()["label"], "setosa");
}

#[tokio::test]
async fn predict_iris_multiclass_and_batch() {
    let r = router(&multiclass_state());
    let a = post_json(
        &r,
        "/predict_iris",
        json!({"instances": [SETOSA, [5.9, 2.8, 4.3, 1.3], VIRGINICA]}),
    )
    .await;
    let preds = a.ok()["predictions"].as_array().unwrap();
    let labels: Vec<&str> = preds.iter().map(|p| p["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["setosa", "versicolor", "virginica"]);
    let indices: Vec<u64> = preds
        .iter()
        .map(|p| p["prediction"].as_u64().unwrap())
        .collect();
    assert_eq!(indices, [0, 1, 2]);
    let empty = post_json(&r, "/predict_iris", json!({"instances": []})).await;
    assert_eq!(empty.ok()["predictions"], json!([]));
}

#[tokio::test]
async fn predict_iris_bad_input() {
    let r = router(&binary_state());
    let cases = [
        (
            json!({"features": [1, 2, 3]}),
            "invalid length 3, expected an array of 4 numbers",
        ),
        (
            json!({"features": [1, 2, 3, 4, 5]}),
            "invalid length 5, expected an array of 4",
        ),
        (json!({"features": []}), "invalid length 0"),
        (json!({"features": [1, "2", 3, 4]}), "invalid type: string"),
        (json!({"features": [1, null, 3, 4]}), "invalid type: null"),
        (json!({"feature": [1, 2, 3, 4]}), "unknown field `feature`"),
        (json!({}), "missing \"features\" or \"instances\""),
        (json!([1, 2, 3, 4]), "invalid type"),
        (
            json!({"features": SETOSA, "instances": [SETOSA]}),
            "not both",
        ),
        (json!({"instances": [SETOSA, [1, 2]]}), "invalid length 2"),
        (json!({"instances": SETOSA}), "invalid type"),
    ];
    for (body, needle) in cases {
        post_json(&r, "/predict_iris", body)
            .await
            .assert_error(StatusCode::BAD_REQUEST, needle);
    }
    for (body, needle) in [
        ("{\"features\": [1, 2, 3, 4]", "malformed JSON"),
        ("", "malformed JSON"),
        ("not json", "malformed JSON"),
        ("{\"features\": [1e400, 2, 3, 4]}", "number out of range"),
        ("{\"features\": [NaN, 2, 3, 4]}", "malformed JSON"),
    ] {
        post(&r, "/predict_iris", body)
            .await
            .assert_error(StatusCode::BAD_REQUEST, needle);
    }
}

#[tokio::test]
async fn json_without_content_type_or_with_charset_is_read_as_json() {
    let r = router(&binary_state());
    let body = json!({"features": SETOSA}).to_string();
    let v2 =
        json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": SETOSA}]})
            .to_string();
    for (uri, body) in [
        ("/predict_iris", &body),
        (
            "/v1/models/iris:predict",
            &json!({"instances": [SETOSA]}).to_string(),
        ),
        ("/v2/models/iris/infer", &v2),
    ] {
        for ct in [
            None,
            Some("application/json; charset=utf-8"),
            Some("application/json;charset=UTF-8"),
            // what `curl -d` sends without `-H content-type`
            Some("application/x-www-form-urlencoded"),
        ] {
            let mut req = Request::post(uri);
            if let Some(ct) = ct {
                req = req.header(header::CONTENT_TYPE, ct);
            }
            let a = send(&r, req.body(Body::from(body.clone())).unwrap()).await;
            assert_eq!(a.status, StatusCode::OK, "{uri} {ct:?}: {}", a.text);
        }
    }
}

#[tokio::test]
async fn another_content_type_is_415() {
    let r = router(&binary_state());
    let body = json!({"features": SETOSA}).to_string();
    for ct in [
        "multipart/form-data; boundary=x",
        "text/plain",
        "text/plain; charset=utf-8",
    ] {
        for uri in [
            "/predict_iris",
            "/v1/models/iris:predict",
            "/v2/models/iris/infer",
        ] {
            let req = Request::post(uri)
                .header(header::CONTENT_TYPE, ct)
                .body(Body::from(body.clone()))
                .unwrap();
            send(&r, req)
                .await
                .assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "application/json");
        }
    }
}

#[tokio::test]
async fn oversized_bodies_and_batches_are_413() {
    let state = state_with(
        binary_model(),
        Limits {
            max_body_bytes: 256,
            max_batch_rows: 3,
            ..Limits::default()
        },
    );
    let r = router(&state);
    let big = format!("{{\"instances\": [{}]}}", vec!["[1,2,3,4]"; 40].join(","));
    assert!(big.len() > 256);
    for uri in [
        "/predict_iris",
        "/v1/models/iris:predict",
        "/v2/models/iris/infer",
    ] {
        post(&r, uri, big.clone())
            .await
            .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "limit of 256 bytes");
    }
    let four = json!({"instances": [SETOSA, SETOSA, SETOSA, SETOSA]});
    post_json(&r, "/predict_iris", four.clone())
        .await
        .assert_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch of 4 rows exceeds the limit of 3",
        );
    post_json(&r, "/v1/models/iris:predict", four)
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "batch of 4 rows");
    let infer = json!({"inputs": [{"name": "x", "shape": [4, 4], "datatype": "FP64",
                                   "data": [SETOSA, SETOSA, SETOSA, SETOSA]}]});
    post_json(&r, "/v2/models/iris/infer", infer)
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "batch of 4 rows");
    // The limit is inclusive.
    let three = json!({"instances": [SETOSA, SETOSA, SETOSA]});
    post_json(&r, "/predict_iris", three).await.ok();
}

#[tokio::test]
async fn kserve_v1() {
    let state = binary_state();
    let r = router(&state);
    let a = post_json(
        &r,
        "/v1/models/iris:predict",
        json!({"instances": [SETOSA, VIRGINICA]}),
    )
    .await;
    assert_eq!(a.ok(), &json!({"predictions": [1, 0]}));
    assert_eq!(
        get(&r, "/v1/models/iris").await.ok(),
        &json!({"name": "iris", "ready": true})
    );
    state.set_ready(false);
    assert_eq!(get(&r, "/v1/models/iris").await.ok()["ready"], false);

    get(&r, "/v1/models/flowers")
        .await
        .assert_error(StatusCode::NOT_FOUND, "unknown model \"flowers\"");
    let body = json!({"instances": [SETOSA]});
    post_json(&r, "/v1/models/flowers:predict", body.clone())
        .await
        .assert_error(StatusCode::NOT_FOUND, "unknown model");
    post_json(&r, "/v1/models/iris:generate", body.clone())
        .await
        .assert_error(StatusCode::NOT_FOUND, "unsupported KServe v1 verb");
    post_json(&r, "/v1/models/iris", body)
        .await
        .assert_error(StatusCode::NOT_FOUND, ":predict");
    post_json(&r, "/v1/models/iris:predict", json!({"inputs": [SETOSA]}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "missing field `instances`");
    post_json(
        &r,
        "/v1/models/iris:predict",
        json!({"instances": [[1, 2, 3, 1e300]]}),
    )
    .await
    .ok();
}

#[tokio::test]
async fn constant_route() {
    let r = router(&binary_state());
    let a = get(&r, "/constant").await;
    assert_eq!(a.ok()["label"], "setosa");
    let b = post(&r, "/constant", "anything at all").await;
    assert_eq!(b.text, a.text);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let r = router(&binary_state());
    get(&r, "/predict")
        .await
        .assert_error(StatusCode::NOT_FOUND, "no route for GET /predict");
    get(&r, "/predict_iris")
        .await
        .assert_error(StatusCode::METHOD_NOT_ALLOWED, "method GET is not allowed");
    post(&r, "/v2/health/ready", "{}")
        .await
        .assert_error(StatusCode::METHOD_NOT_ALLOWED, "POST");
}

#[tokio::test]
async fn metrics_count_routes_codes_and_classes() {
    let state = multiclass_state();
    let r = router(&state);
    post_json(&r, "/predict_iris", json!({"features": SETOSA}))
        .await
        .ok();
    post_json(
        &r,
        "/predict_iris",
        json!({"instances": [SETOSA, VIRGINICA]}),
    )
    .await
    .ok();
    post(&r, "/predict_iris", "{").await;
    post_json(
        &r,
        "/v1/models/iris:predict",
        json!({"instances": [VIRGINICA]}),
    )
    .await
    .ok();
    get(&r, "/v1/models/iris").await.ok();
    get(&r, "/nowhere").await;

    let m = state.metrics();
    assert_eq!(m.requests(RouteId::PredictIris, StatusCode::OK), 2);
    assert_eq!(m.requests(RouteId::PredictIris, StatusCode::BAD_REQUEST), 1);
    assert_eq!(m.requests(RouteId::V1Predict, StatusCode::OK), 1);
    assert_eq!(m.requests(RouteId::V1Model, StatusCode::OK), 1);
    assert_eq!(m.requests(RouteId::Unmatched, StatusCode::NOT_FOUND), 1);

    let a = get(&r, "/metrics").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        a.content_type.starts_with("text/plain; version=0.0.4"),
        "{}",
        a.content_type
    );
    let text = &a.text;
    for line in [
        r#"model_server_http_requests_total{route="/predict_iris",code="200"} 2"#,
        r#"model_server_http_requests_total{route="/predict_iris",code="400"} 1"#,
        r#"model_server_http_requests_total{route="/v1/models/{name}:predict",code="200"} 1"#,
        r#"model_server_http_requests_total{route="unmatched",code="404"} 1"#,
        r#"model_server_http_request_duration_seconds_count{route="/predict_iris",code="200"} 2"#,
        r#"model_server_http_request_duration_seconds_bucket{route="/predict_iris",code="200",le="+Inf"} 2"#,
        r#"model_server_predictions_total{class="setosa"} 2"#,
        r#"model_server_predictions_total{class="versicolor"} 0"#,
        r#"model_server_predictions_total{class="virginica"} 2"#,
        "model_server_ready 1",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    let digest = state.model().digest();
    assert!(text.contains(&format!(
        r#"model_server_model_info{{model="iris",version="{}",digest="{digest}",task="multiclass",positive_class="",source="builtin"}} 1"#,
        &digest[..12]
    )), "{text}");
}
