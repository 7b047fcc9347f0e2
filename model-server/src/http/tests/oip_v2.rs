//! Open Inference Protocol v2 routes.

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::*;

const ROWS: [[f64; 4]; 3] = [
    [5.1, 3.5, 1.4, 0.2],
    [5.9, 2.8, 4.3, 1.3],
    [6.2, 3.4, 5.4, 2.3],
];

fn infer_body(datatype: &str, shape: Value, data: Value) -> Value {
    json!({"inputs": [{"name": "input-0", "shape": shape, "datatype": datatype, "data": data}]})
}

fn output<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("no output {name} in {v}"))
}

#[tokio::test]
async fn health_and_server_metadata() {
    let state = binary_state();
    let r = router(&state);
    let v = get(&r, "/v2").await;
    assert_eq!(v.ok()["name"], "iris-model-server");
    assert_eq!(v.ok()["extensions"], json!(["binary_tensor_data"]));
    assert_eq!(get(&r, "/v2/health/live").await.ok()["live"], true);
    assert_eq!(get(&r, "/v2/health/ready").await.ok()["ready"], true);
    assert_eq!(get(&r, "/v2/models/iris/ready").await.ok()["ready"], true);

    state.set_ready(false);
    get(&r, "/v2/health/ready")
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    get(&r, "/v2/models/iris/ready")
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    // Liveness is unaffected; requests still in flight or arriving late are still served.
    get(&r, "/v2/health/live").await.ok();
    post_json(
        &r,
        "/v2/models/iris/infer",
        infer_body("FP64", json!([1, 4]), json!(ROWS[0])),
    )
    .await
    .ok();
}

#[tokio::test]
async fn model_metadata_and_versions() {
    let state = multiclass_state();
    let r = router(&state);
    let version = state.model().short_digest().to_owned();
    let meta = get(&r, "/v2/models/iris").await;
    let v = meta.ok();
    assert_eq!(v["name"], "iris");
    assert_eq!(v["versions"], json!([version]));
    assert_eq!(v["inputs"][0]["shape"], json!([-1, 4]));
    assert_eq!(
        v["outputs"][0],
        json!({"name": "label", "datatype": "BYTES", "shape": [-1]})
    );
    assert_eq!(
        v["outputs"][1],
        json!({"name": "probabilities", "datatype": "FP64", "shape": [-1, 3]})
    );
    assert_eq!(v["parameters"]["digest"], state.model().digest());

    let by_version = get(&r, &format!("/v2/models/iris/versions/{version}")).await;
    assert_eq!(by_version.ok(), v);
    let full = state.model().digest().to_owned();
    get(&r, &format!("/v2/models/iris/versions/{full}"))
        .await
        .ok();
    get(&r, &format!("/v2/models/iris/versions/{version}/ready"))
        .await
        .ok();

    get(&r, "/v2/models/rose")
        .await
        .assert_error(StatusCode::NOT_FOUND, "unknown model \"rose\"");
    get(&r, "/v2/models/rose/ready")
        .await
        .assert_error(StatusCode::NOT_FOUND, "unknown model");
    get(&r, "/v2/models/iris/versions/1")
        .await
        .assert_error(StatusCode::NOT_FOUND, "has no version \"1\"");
    get(&r, "/v2/models/iris/versions/1/ready")
        .await
        .assert_error(StatusCode::NOT_FOUND, &version);
}

#[tokio::test]
async fn infer_fp64_flat_and_fp32_nested() {
    let state = multiclass_state();
    let r = router(&state);
    let flat: Vec<f64> = ROWS.iter().flatten().copied().collect();
    let mut body = infer_body("FP64", json!([3, 4]), json!(flat));
    body["id"] = json!("req-7");
    let a = post_json(&r, "/v2/models/iris/infer", body).await;
    let v = a.ok();
    assert_eq!(v["model_name"], "iris");
    assert_eq!(v["model_version"], state.model().short_digest());
    assert_eq!(v["id"], "req-7");
    let names: Vec<&str> = v["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["label", "probabilities", "predict"]);
    assert_eq!(
        output(v, "label"),
        &json!({"name": "label", "datatype": "BYTES", "shape": [3],
                "data": ["setosa", "versicolor", "virginica"]})
    );
    assert_eq!(output(v, "predict")["data"], json!([0, 1, 2]));
    assert_eq!(output(v, "predict")["datatype"], "INT64");
    let probs = output(v, "probabilities");
    assert_eq!(probs["shape"], json!([3, 3]));
    assert_eq!(probs["datatype"], "FP64");
    let p: Vec<f64> = probs["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(p.len(), 9);
    for row in p.chunks(3) {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }
    // Same numbers as the library.
    let lib = state.model().predict_one(&ROWS[1]);
    assert_eq!(&p[3..6], lib.probabilities());

    // FP32, nested rows, versioned path, no id echoed when none was sent.
    let uri = format!(
        "/v2/models/iris/versions/{}/infer",
        state.model().short_digest()
    );
    let a = post_json(&r, &uri, infer_body("FP32", json!([3, 4]), json!(ROWS))).await;
    let v = a.ok();
    assert!(v.get("id").is_none());
    assert_eq!(output(v, "predict")["data"], json!([0, 1, 2]));
}

#[tokio::test]
async fn infer_outputs_filter() {
    let r = router(&binary_state());
    let mut body = infer_body("FP64", json!([1, 4]), json!([ROWS[0]]));
    body["outputs"] = json!([{"name": "predict"}, {"name": "label", "parameters": {"x": 1}}]);
    let a = post_json(&r, "/v2/models/iris/infer", body.clone()).await;
    let outs = a.ok()["outputs"].as_array().unwrap();
    assert_eq!(outs.len(), 2);
    assert_eq!(outs[0]["name"], "predict");
    assert_eq!(outs[0]["data"], json!([1]));
    assert_eq!(outs[1]["data"], json!(["setosa"]));

    body["outputs"] = json!([{"name": "logits"}]);
    post_json(&r, "/v2/models/iris/infer", body)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "unknown output \"logits\"");

    // Binary probabilities: two per row, [rest, positive].
    let a = post_json(
        &r,
        "/v2/models/iris/infer",
        infer_body("FP64", json!([1, 4]), json!(ROWS[0])),
    )
    .await;
    assert_eq!(output(a.ok(), "probabilities")["shape"], json!([1, 2]));
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one table of bad inputs, each with the message it gets
async fn infer_bad_input() {
    let r = router(&binary_state());
    let uri = "/v2/models/iris/infer";
    let row = json!(ROWS[0]);
    let cases = [
        (
            infer_body("INT64", json!([1, 4]), row.clone()),
            "datatype \"INT64\"",
        ),
        (
            infer_body("BYTES", json!([1, 4]), json!(["a", "b", "c", "d"])),
            "invalid type: string",
        ),
        (infer_body("FP64", json!([4]), row.clone()), "has shape [4]"),
        (
            infer_body("FP64", json!([1, 3]), json!([1, 2, 3])),
            "has shape [1, 3]",
        ),
        (
            infer_body("FP64", json!([-1, 4]), row.clone()),
            "has shape [-1, 4]",
        ),
        (
            infer_body("FP64", json!([2, 4]), row.clone()),
            "needs 8 values, but data has 4",
        ),
        (
            infer_body("FP64", json!([1, 4]), json!([[1, 2], [3, 4]])),
            "nested rows of 2 values",
        ),
        (
            infer_body("FP64", json!([2, 4]), json!([[1, 2, 3, 4], [1, 2, 3]])),
            "different lengths",
        ),
        (
            infer_body("FP64", json!([2, 4]), json!([1, 2, 3, 4, [1, 2, 3, 4]])),
            "mixes numbers",
        ),
        (
            infer_body("FP64", json!([1, 4]), json!([[[1, 2, 3, 4]]])),
            "invalid type: sequence",
        ),
        (
            infer_body("FP32", json!([1, 4]), json!([1e39, 1, 1, 1])),
            "not a finite FP32",
        ),
        (
            infer_body("FP64", json!([1, 4]), json!({"a": 1})),
            "invalid type: map",
        ),
        (json!({"inputs": []}), "exactly one input tensor"),
        (
            json!({"inputs": [
                {"name": "a", "shape": [1, 4], "datatype": "FP64", "data": ROWS[0]},
                {"name": "b", "shape": [1, 4], "datatype": "FP64", "data": ROWS[0]}]}),
            "got 2",
        ),
        (json!({"input": []}), "missing field `inputs`"),
        (
            json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64"}]}),
            "neither \"data\" nor parameters.binary_data_size",
        ),
        (json!({"id": 5, "inputs": []}), "invalid type: integer"),
    ];
    for (body, needle) in cases {
        post_json(&r, uri, body)
            .await
            .assert_error(StatusCode::BAD_REQUEST, needle);
    }
    post(
        &r,
        uri,
        r#"{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP64","data":[1e999,1,1,1]}]}"#,
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "number out of range");
    post_json(
        &r,
        "/v2/models/rose/infer",
        infer_body("FP64", json!([1, 4]), row.clone()),
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "unknown model");
    post_json(
        &r,
        "/v2/models/iris/versions/2/infer",
        infer_body("FP64", json!([1, 4]), row),
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "no version");
    // A shape with a huge N is refused by the batch limit, not by allocating.
    let huge = infer_body("FP64", json!([i64::MAX, 4]), json!([1, 2, 3, 4]));
    post_json(&r, uri, huge)
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "exceeds the limit");
}

#[tokio::test]
async fn empty_batch_is_fine() {
    let r = router(&binary_state());
    let a = post_json(
        &r,
        "/v2/models/iris/infer",
        infer_body("FP64", json!([0, 4]), json!([])),
    )
    .await;
    assert_eq!(output(a.ok(), "label")["shape"], json!([0]));
    assert_eq!(output(a.ok(), "probabilities")["shape"], json!([0, 2]));
}

/// The operator reads prediction traffic by the names of `iris_model::contract`: each
/// prediction route, once served, is on the page under exactly those names and labels.
#[tokio::test]
async fn every_prediction_route_is_exported_under_the_contracts_names() {
    use iris_model::contract::{
        HTTP_DURATION_BUCKET, HTTP_REQUESTS_TOTAL, PREDICTION_ROUTES, PREDICT_IRIS, V1_PREDICT,
        V2_INFER, V2_VERSION_INFER,
    };
    let state = multiclass_state();
    let r = router(&state);
    let version = state.model().short_digest().to_owned();
    let row = json!(ROWS[0]);
    post_json(&r, "/predict_iris", json!({ "features": row }))
        .await
        .ok();
    post_json(&r, "/v1/models/iris:predict", json!({ "instances": [row] }))
        .await
        .ok();
    let body = infer_body("FP64", json!([1, 4]), row);
    post_json(&r, "/v2/models/iris/infer", body.clone())
        .await
        .ok();
    post_json(
        &r,
        &format!("/v2/models/iris/versions/{version}/infer"),
        body,
    )
    .await
    .ok();
    assert_eq!(
        PREDICTION_ROUTES,
        [PREDICT_IRIS, V1_PREDICT, V2_INFER, V2_VERSION_INFER]
    );
    let text = get(&r, "/metrics").await.text;
    for route in PREDICTION_ROUTES {
        for line in [
            format!(r#"{HTTP_REQUESTS_TOTAL}{{route="{route}",code="200"}} 1"#),
            format!(r#"{HTTP_DURATION_BUCKET}{{route="{route}",code="200",le="+Inf"}} 1"#),
        ] {
            assert!(text.contains(&line), "missing {line} in\n{text}");
        }
    }
}
