//! The binary tensor data extension (REST), as tritonclient's HTTP client uses it.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use proptest::prelude::*;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::*;

const ROWS: [[f64; 4]; 3] = [
    [5.1, 3.5, 1.4, 0.2],
    [5.9, 2.8, 4.3, 1.3],
    [6.2, 3.4, 5.4, 2.3],
];
const URI: &str = "/v2/models/iris/infer";

fn fp32_bytes() -> Vec<u8> {
    ROWS.iter()
        .flatten()
        .flat_map(|v| (*v as f32).to_le_bytes())
        .collect()
}

fn fp64_bytes() -> Vec<u8> {
    ROWS.iter()
        .flatten()
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

/// A request as tritonclient builds it: the JSON header, then the binary data, the header's
/// length in `Inference-Header-Content-Length`, and no content type.
fn binary_request(header: &Value, binary: &[u8], content_type: Option<&str>) -> Request<Body> {
    let json = header.to_string();
    let mut body = json.clone().into_bytes();
    body.extend_from_slice(binary);
    let mut req = Request::post(URI).header("Inference-Header-Content-Length", json.len());
    if let Some(ct) = content_type {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    req.body(Body::from(body)).unwrap()
}

/// Status, content type, `Inference-Header-Content-Length`, JSON header, binary section.
struct BinaryAnswer {
    status: StatusCode,
    content_type: String,
    header_len: Option<usize>,
    json: Value,
    binary: Vec<u8>,
}

async fn send_raw(router: &Router, req: Request<Body>) -> BinaryAnswer {
    let response = router.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let header_len = headers
        .get("inference-header-content-length")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let split = header_len.unwrap_or(bytes.len());
    BinaryAnswer {
        status,
        content_type,
        header_len,
        json: serde_json::from_slice(&bytes[..split]).unwrap_or(Value::Null),
        binary: bytes[split..].to_vec(),
    }
}

fn input(datatype: &str, size: usize) -> Value {
    json!({"name": "INPUT0", "shape": [3, 4], "datatype": datatype,
           "parameters": {"binary_data_size": size}})
}

/// The outputs of a JSON response, for comparison.
async fn json_outputs(r: &Router, datatype: &str) -> Value {
    let flat: Vec<f64> = ROWS.iter().flatten().copied().collect();
    let body =
        json!({"inputs": [{"name": "x", "shape": [3, 4], "datatype": datatype, "data": flat}]});
    post_json(r, URI, body).await.ok()["outputs"].clone()
}

#[tokio::test]
async fn binary_inputs_fp32_and_fp64_with_json_outputs() {
    let state = multiclass_state();
    let r = router(&state);
    for (datatype, bytes) in [("FP64", fp64_bytes()), ("FP32", fp32_bytes())] {
        let expected = json_outputs(&r, datatype).await;
        let header = json!({"id": "7", "parameters": {"sequence_id": 0},
                            "inputs": [input(datatype, bytes.len())]});
        for ct in [
            None,
            Some("application/octet-stream"),
            Some("application/json"),
        ] {
            let a = send_raw(&r, binary_request(&header, &bytes, ct)).await;
            assert_eq!(a.status, StatusCode::OK, "{datatype} {ct:?}: {}", a.json);
            assert_eq!(a.content_type, "application/json");
            assert_eq!(a.header_len, None);
            assert_eq!(a.json["id"], "7");
            let outputs = &a.json["outputs"];
            assert_eq!(outputs, &expected, "{datatype}");
        }
    }
}

#[tokio::test]
async fn tritonclient_defaults_binary_in_binary_out() {
    let state = multiclass_state();
    let r = router(&state);
    let expected = json_outputs(&r, "FP32").await;
    // tritonclient without `outputs`: request-level binary_data_output.
    let header = json!({"inputs": [input("FP32", 48)], "parameters": {"binary_data_output": true}});
    let a = send_raw(&r, binary_request(&header, &fp32_bytes(), None)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    assert_eq!(a.content_type, "application/octet-stream");
    assert!(a.header_len.is_some());
    let outputs = a.json["outputs"].as_array().unwrap();
    let sizes: Vec<u64> = outputs
        .iter()
        .map(|o| {
            assert!(o.get("data").is_none(), "{o}");
            o["parameters"]["binary_data_size"].as_u64().unwrap()
        })
        .collect();
    // label: 4+6, 4+10, 4+9; probabilities: 9 * 8; predict: 3 * 8.
    assert_eq!(sizes, [37, 72, 24]);
    assert_eq!(a.binary.len(), 37 + 72 + 24);
    assert_eq!(outputs[0]["shape"], json!([3]));
    assert_eq!(outputs[1]["shape"], json!([3, 3]));
    assert_eq!(outputs[1]["datatype"], "FP64");

    // BYTES: 4-byte little-endian length, then the bytes, per element.
    let mut labels = Vec::new();
    for l in ["setosa", "versicolor", "virginica"] {
        labels.extend_from_slice(&(l.len() as u32).to_le_bytes());
        labels.extend_from_slice(l.as_bytes());
    }
    assert_eq!(a.binary[..37], labels[..]);
    let probs: Vec<f64> = a.binary[37..109]
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let expected_probs: Vec<f64> = expected[1]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(probs, expected_probs);
    let classes: Vec<i64> = a.binary[109..]
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(classes, [0, 1, 2]);
}

#[tokio::test]
async fn per_output_binary_data_in_request_order() {
    let r = router(&multiclass_state());
    // tritonclient with InferRequestedOutput("predict", binary_data=True, class_count=0) and
    // a JSON one; a JSON request body (no header) may still ask for binary outputs.
    let flat: Vec<f64> = ROWS.iter().flatten().copied().collect();
    let body = json!({
        "inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP64", "data": flat}],
        "outputs": [
            {"name": "predict", "parameters": {"binary_data": true, "classification": 0}},
            {"name": "label", "parameters": {"binary_data": false}},
        ],
    });
    let req = Request::post(URI)
        .body(Body::from(body.to_string()))
        .unwrap();
    let a = send_raw(&r, req).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    assert_eq!(a.content_type, "application/octet-stream");
    let outputs = &a.json["outputs"];
    assert_eq!(outputs[0]["name"], "predict");
    assert_eq!(outputs[0]["parameters"]["binary_data_size"], 24);
    assert_eq!(
        outputs[1]["data"],
        json!(["setosa", "versicolor", "virginica"])
    );
    assert_eq!(a.binary.len(), 24);
    assert_eq!(a.header_len, Some(a.json.to_string().len()));
}

#[tokio::test]
async fn binary_refusals_name_the_problem() {
    let r = router(&binary_state());
    let bytes = fp32_bytes();
    let good = json!({"inputs": [input("FP32", 48)]});

    // Header length larger than the body.
    let json = good.to_string();
    let req = Request::post(URI)
        .header("Inference-Header-Content-Length", json.len() + 100)
        .body(Body::from(json.clone()))
        .unwrap();
    send(&r, req)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "larger than the");
    // Not a number.
    let req = Request::post(URI)
        .header("Inference-Header-Content-Length", "ten")
        .body(Body::from(json))
        .unwrap();
    send(&r, req)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "not a byte count");

    let cases: Vec<(Value, Vec<u8>, &str)> = vec![
        // binary_data_size does not match shape [3, 4] x FP32 (48 bytes).
        (
            json!({"inputs": [input("FP32", 40)]}),
            bytes[..40].to_vec(),
            "needs 48 bytes",
        ),
        (
            json!({"inputs": [input("FP64", 48)]}),
            bytes.clone(),
            "needs 96 bytes",
        ),
        // Truncated body: fewer bytes than declared.
        (good.clone(), bytes[..30].to_vec(), "truncated"),
        // More bytes than the inputs declare.
        (
            good.clone(),
            [&bytes[..], &[0u8; 8]].concat(),
            "add up to 48",
        ),
        // Binary bytes but no binary input.
        (
            json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROWS[0]}]}),
            bytes.clone(),
            "no input has parameters.binary_data_size",
        ),
        // Both data and binary_data_size.
        (
            json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROWS[0],
                               "parameters": {"binary_data_size": 48}}]}),
            bytes.clone(),
            "give one",
        ),
        (
            json!({"inputs": [input("BYTES", 48)]}),
            bytes.clone(),
            "datatype \"BYTES\"",
        ),
    ];
    for (header, binary, needle) in cases {
        send(&r, binary_request(&header, &binary, None))
            .await
            .assert_error(StatusCode::BAD_REQUEST, needle);
    }
    // A binary body with a content type that is neither binary nor JSON.
    send(&r, binary_request(&good, &bytes, Some("text/plain")))
        .await
        .assert_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "application/octet-stream",
        );
    // And binary_data_size without the header: nothing follows the JSON.
    post_json(&r, URI, good)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "truncated");
}

#[tokio::test]
async fn integer_binary_inputs() {
    let r = router(&multiclass_state());
    let ints: Vec<u8> = [5i32, 3, 1, 0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let header = json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "INT32",
                                    "parameters": {"binary_data_size": 16}}]});
    let a = send_raw(&r, binary_request(&header, &ints, None)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    assert_eq!(a.json["outputs"][0]["data"], json!(["setosa"]));
}

fn binary_header() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["FP32", "FP64", "INT32", "UINT8", "BYTES", "fp32"]),
        prop::collection::vec(-2i64..6, 0..4),
        prop::option::of(0u64..200),
        any::<bool>(),
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(dt, shape, size, binary_out, out_binary)| {
            let mut input = json!({"name": "x", "shape": shape, "datatype": dt});
            if let Some(size) = size {
                input["parameters"] = json!({"binary_data_size": size});
            }
            let mut req = json!({"inputs": [input],
                                 "parameters": {"binary_data_output": binary_out}});
            if let Some(b) = out_binary {
                req["outputs"] = json!([{"name": "label", "parameters": {"binary_data": b}}]);
            }
            req.to_string()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary JSON headers, binary sections and header lengths: never a 5xx, every 4xx
    /// is a JSON error, every 2xx is JSON or JSON + binary as announced.
    #[test]
    fn arbitrary_binary_bodies_are_answered_without_5xx(
        header in binary_header(),
        binary in prop::collection::vec(any::<u8>(), 0..120),
        declared in prop::option::of(0usize..400),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            let r = router(&binary_state());
            let mut body = header.clone().into_bytes();
            body.extend_from_slice(&binary);
            let len = declared.unwrap_or(header.len());
            let req = Request::post(URI)
                .header("Inference-Header-Content-Length", len)
                .body(Body::from(body))
                .unwrap();
            let a = send_raw(&r, req).await;
            prop_assert!(!a.status.is_server_error(), "{} {}", a.status, a.json);
            if a.status.is_client_error() {
                prop_assert!(a.json["error"].as_str().is_some_and(|e| !e.is_empty()));
            } else {
                prop_assert_eq!(a.status, StatusCode::OK);
                prop_assert!(a.json.is_object(), "{}", a.json);
                prop_assert_eq!(a.header_len.is_some(), a.content_type == "application/octet-stream");
            }
            Ok(())
        })?;
    }
}
