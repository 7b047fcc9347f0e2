//! `POST /v1/models/{name}:explain` and the OIP v2 `contributions` output over REST (JSON and
//! the binary extension): the sums against the probabilities the same request predicts, the
//! argmax against the prediction, and bad input answered exactly as `:predict` answers it.

use axum::http::StatusCode;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::iris::{dataset, FEATURE_NAMES};

const EXPLAIN: &str = "/v1/models/iris:explain";
const PREDICT: &str = "/v1/models/iris:predict";

fn all_rows() -> Vec<[f64; 4]> {
    dataset().iter().map(|s| s.features).collect()
}

fn softmax(logits: &[f64]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f64::MIN, f64::max);
    let total: f64 = logits.iter().map(|l| (l - max).exp()).sum();
    logits.iter().map(|l| (l - max).exp() / total).collect()
}

/// One row of an `:explain` answer: the fields, the sums, the argmax and the probabilities.
#[track_caller]
fn check_row(e: &Value, classes: usize, predicted: &Value) {
    assert_eq!(&e["prediction"], predicted);
    let list = e["classes"].as_array().unwrap();
    assert_eq!(list.len(), classes);
    let mut names: Vec<&str> = e["standardised"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = FEATURE_NAMES;
    expected.sort_unstable();
    names.sort_unstable();
    assert_eq!(names, expected);
    let mut logits = Vec::new();
    for (k, c) in list.iter().enumerate() {
        assert_eq!(c["class"], k);
        let contributions = c["contributions"].as_object().unwrap();
        assert_eq!(contributions.len(), FEATURE_NAMES.len());
        let logit = c["logit"].as_f64().unwrap();
        let sum: f64 = contributions
            .values()
            .map(|v| v.as_f64().unwrap())
            .sum::<f64>()
            + c["intercept"].as_f64().unwrap();
        assert!((sum - logit).abs() < 1e-9, "{c}");
        logits.push(logit);
    }
    let best = (0..classes).max_by(|&a, &b| logits[a].total_cmp(&logits[b]));
    assert_eq!(
        best.map(Value::from).as_ref(),
        Some(predicted),
        "{logits:?}"
    );
    for (p, c) in softmax(&logits).iter().zip(list) {
        assert!(
            (p - c["probability"].as_f64().unwrap()).abs() < 1e-12,
            "{e}"
        );
    }
    let label = &list[predicted.as_u64().unwrap() as usize]["label"];
    assert_eq!(&e["label"], label);
}

#[tokio::test]
async fn explain_answers_every_iris_row_as_predict_does() {
    for (state, classes) in [(binary_state(), 2), (multiclass_state(), 3)] {
        let r = router(&state);
        let body = json!({"instances": all_rows()});
        let predicted = post_json(&r, PREDICT, body.clone()).await.ok().clone();
        let a = post_json(&r, EXPLAIN, body).await;
        assert_eq!(a.content_type, "application/json");
        // Maps in the model's feature order (serde_json's Value would sort them).
        let order = FEATURE_NAMES.map(|n| format!("\"{n}\":")).concat();
        let first = a.text.find("\"contributions\":{").unwrap();
        let keys: String = a.text[first..]
            .split(['{', ','])
            .skip(1)
            .take(4)
            .map(|kv| &kv[..=kv.find(':').unwrap()])
            .collect();
        assert_eq!(keys, order);
        let v = a.ok();
        assert_eq!(v["predictions"], predicted["predictions"]);
        let rows = v["explanations"].as_array().unwrap();
        assert_eq!(rows.len(), 150);
        for (e, p) in rows
            .iter()
            .zip(predicted["predictions"].as_array().unwrap())
        {
            check_row(e, classes, p);
        }
    }
}

#[tokio::test]
async fn a_binary_explanation_has_a_zero_reference_class() {
    let state = binary_state();
    let r = router(&state);
    let v = post_json(&r, EXPLAIN, json!({"instances": [[5.1, 3.5, 1.4, 0.2]]})).await;
    let e = &v.ok()["explanations"][0];
    assert_eq!(e["label"], "setosa");
    assert_eq!(
        e["classes"][0],
        json!({"class": 0, "label": "not_setosa", "probability": e["classes"][0]["probability"],
               "logit": 0.0, "intercept": 0.0,
               "contributions": {"sepal_length": 0.0, "sepal_width": 0.0,
                                 "petal_length": 0.0, "petal_width": 0.0}})
    );
    let m = state.model();
    assert_eq!(e["classes"][1]["intercept"], m.intercepts()[0]);
    // Counted as predictions, like :predict.
    let text = crate::http::metrics_text_for_tests(&state);
    assert!(
        text.contains(r#"model_server_predictions_total{class="setosa"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn bad_input_gets_the_same_answer_as_predict() {
    let limited = state_with(
        multiclass_model(),
        Limits {
            max_batch_rows: 2,
            max_body_bytes: 512,
            ..Limits::default()
        },
    );
    let r = router(&limited);
    let long = format!(r#"{{"instances":[[{}]]}}"#, "1,".repeat(300) + "1");
    let cases: Vec<String> = vec![
        r#"{"instances":[[1,2,3]]}"#.into(),
        r#"{"instances":[[1,2,3,4,5]]}"#.into(),
        r#"{"instances":[[1,2,3,1e400]]}"#.into(),
        r#"{"instances":[[1,2,3,4],[1,2,3,4],[1,2,3,4]]}"#.into(),
        r#"{"inputs":[[1,2,3,4]]}"#.into(),
        r#"{"instances":"#.into(),
        "[]".into(),
        long,
    ];
    for body in cases {
        let p = post(&r, PREDICT, body.clone()).await;
        let e = post(&r, EXPLAIN, body.clone()).await;
        assert!(p.status.is_client_error(), "{body}: {}", p.text);
        assert_eq!((e.status, e.error()), (p.status, p.error()), "{body}");
    }
    for (uri, needle) in [
        ("/v1/models/rose:explain", "unknown model \"rose\""),
        ("/v1/models/iris:explains", "unsupported KServe v1 verb"),
    ] {
        post_json(&r, uri, json!({"instances": [[1, 2, 3, 4]]}))
            .await
            .assert_error(StatusCode::NOT_FOUND, needle);
    }
    let wrong_type = send(
        &r,
        Request::post(EXPLAIN)
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from(r#"{"instances":[[1,2,3,4]]}"#))
            .unwrap(),
    )
    .await;
    wrong_type.assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "text/plain");
}

/// Bodies near the valid shape: rows of 0..6 numbers (some huge), extra fields, other keys.
fn near_valid() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        4 => (-100.0..100.0f64).prop_map(|v| v.to_string()),
        1 => Just("1e400".to_owned()),
        1 => Just("\"x\"".to_owned()),
        1 => Just("null".to_owned()),
    ];
    let row = prop::collection::vec(number, 0..6).prop_map(|v| format!("[{}]", v.join(",")));
    let rows = prop::collection::vec(row, 0..4).prop_map(|v| format!("[{}]", v.join(",")));
    let key = prop_oneof![4 => Just("instances"), 1 => Just("inputs"), 1 => Just("features")];
    let extra = prop_oneof![3 => Just(""), 1 => Just(r#","id":"a""#)];
    (key, rows, extra).prop_map(|(k, r, x)| format!(r#"{{"{k}":{r}{x}}}"#))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn explain_refuses_and_accepts_exactly_what_predict_does(body in near_valid()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            let state = state_with(
                multiclass_model(),
                Limits { max_batch_rows: 3, ..Limits::default() },
            );
            let r = router(&state);
            let p = post(&r, PREDICT, body.clone()).await;
            let e = post(&r, EXPLAIN, body.clone()).await;
            prop_assert_eq!(p.status, e.status, "{}", body);
            if p.status == StatusCode::OK {
                let preds = p.json["predictions"].as_array().unwrap();
                prop_assert_eq!(&e.json["predictions"], &p.json["predictions"]);
                for (row, pred) in e.json["explanations"].as_array().unwrap().iter().zip(preds) {
                    check_row(row, 3, pred);
                }
            } else {
                prop_assert_eq!(e.error(), p.error());
            }
            Ok(())
        })?;
    }
}

fn infer_body(rows: &[[f64; 4]], outputs: Value) -> Value {
    json!({"inputs": [{"name": "input-0", "shape": [rows.len(), 4], "datatype": "FP64",
                       "data": rows}],
           "outputs": outputs})
}

/// `contributions` of `rows` over REST JSON, with the probabilities of the same request.
async fn rest_contributions(r: &Router, rows: &[[f64; 4]]) -> (Vec<f64>, Vec<f64>, Value) {
    let outputs = json!([{"name": "probabilities"}, {"name": "contributions"}]);
    let a = post_json(r, "/v2/models/iris/infer", infer_body(rows, outputs)).await;
    let v = a.ok();
    let probs = &v["outputs"][0];
    let contrib = &v["outputs"][1];
    assert_eq!(contrib["name"], "contributions");
    assert_eq!(contrib["datatype"], "FP64");
    let floats = |t: &Value| -> Vec<f64> {
        t["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    (floats(contrib), floats(probs), contrib["shape"].clone())
}

/// `[N, classes, 5]`: per row and class the logit is the sum of the 5, and the row's
/// probabilities are their softmax.
#[track_caller]
fn check_contributions(values: &[f64], probs: &[f64], rows: usize, classes: usize) {
    assert_eq!(values.len(), rows * classes * 5);
    for n in 0..rows {
        let logits: Vec<f64> = (0..classes)
            .map(|k| values[(n * classes + k) * 5..][..5].iter().sum())
            .collect();
        for (a, b) in softmax(&logits)
            .iter()
            .zip(&probs[n * classes..][..classes])
        {
            assert!((a - b).abs() < 1e-12, "row {n}: {logits:?}");
        }
    }
}

#[tokio::test]
async fn contributions_over_rest_json_and_binary() {
    for (state, classes) in [(binary_state(), 2), (multiclass_state(), 3)] {
        let r = router(&state);
        let rows = all_rows();
        let (values, probs, shape) = rest_contributions(&r, &rows).await;
        assert_eq!(shape, json!([150, classes, 5]));
        check_contributions(&values, &probs, 150, classes);

        // The same numbers from :explain.
        let v = post_json(&r, EXPLAIN, json!({"instances": rows[..2]})).await;
        let c = &v.ok()["explanations"][1]["classes"][classes - 1];
        let at = &values[(classes + classes - 1) * 5..][..5];
        assert_eq!(at[4], c["intercept"].as_f64().unwrap());
        assert_eq!(at[2], c["contributions"]["petal_length"].as_f64().unwrap());

        // Binary extension: the same numbers as little-endian bytes after the JSON header.
        let outputs = json!([{"name": "contributions", "parameters": {"binary_data": true}}]);
        let (header, raw) = send_binary(&r, infer_body(&rows, outputs)).await;
        let size = header["outputs"][0]["parameters"]["binary_data_size"].as_u64();
        assert_eq!(size, Some(150 * classes as u64 * 5 * 8));
        assert_eq!(header["outputs"][0]["shape"], json!([150, classes, 5]));
        let decoded: Vec<f64> = raw
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(decoded, values);
    }
}

/// Posts `body` and splits a binary-extension answer into its JSON header and binary section.
async fn send_binary(r: &Router, body: Value) -> (Value, Vec<u8>) {
    let req = Request::post("/v2/models/iris/infer")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = r.clone().oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let header_len: usize = response.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        serde_json::from_slice(&bytes[..header_len]).unwrap(),
        bytes[header_len..].to_vec(),
    )
}

#[tokio::test]
async fn contributions_only_on_request_and_listed_last_in_metadata() {
    let state = multiclass_state();
    let r = router(&state);
    let body = json!({"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64",
                                  "data": [5.1, 3.5, 1.4, 0.2]}]});
    let v = post_json(&r, "/v2/models/iris/infer", body).await;
    let names: Vec<&str> = v.ok()["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["label", "probabilities", "predict"]);
    let meta = get(&r, "/v2/models/iris").await;
    assert_eq!(
        meta.ok()["outputs"][3],
        json!({"name": "contributions", "datatype": "FP64", "shape": [-1, 3, 5]})
    );
}
