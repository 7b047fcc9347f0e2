//! Window rotation, PSI of in-distribution and shifted inputs, the flags, and every
//! prediction route counting its rows.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use clap::Parser;
use serde_json::json;
use tower::ServiceExt;

use super::*;
use crate::config::{Cli, Command};
use crate::grpc::InferenceService;
use crate::iris;
use crate::proto::grpc_inference_service_server::GrpcInferenceService;
use crate::proto::{model_infer_request::InferInputTensor, InferTensorContents, ModelInferRequest};
use crate::state::{AppState, Limits};

fn model() -> &'static ModelArtifact {
    crate::test_models::binary()
}

fn drift(slices: usize) -> Drift {
    Drift::new(model(), slices, Duration::from_secs(60)).expect("the trained model has bins")
}

fn all_rows() -> Vec<[f64; N_FEATURES]> {
    iris::dataset().iter().map(|s| s.features).collect()
}

#[test]
fn the_window_keeps_its_slices_and_drops_the_oldest() {
    let d = drift(3);
    let row = [5.1, 3.5, 1.4, 0.2];
    d.count([&row, &row]);
    assert_eq!(d.snapshot().rows, 2);
    d.rotate();
    d.count([&row]);
    d.rotate();
    d.count([row; 4].iter());
    // Three slices: 2, 1, 4.
    assert_eq!(d.snapshot().rows, 7);
    d.rotate(); // the first slice (2 rows) is zeroed and current again
    assert_eq!(d.snapshot().rows, 5);
    d.rotate();
    d.rotate();
    assert_eq!(d.snapshot().rows, 0);
    // An empty window: rows 0 and no PSI.
    assert!(d.snapshot().features.iter().all(|(psi, _)| psi.is_none()));
}

#[test]
fn counts_land_in_the_training_bins_from_every_thread() {
    let d = Arc::new(drift(2));
    let row = [5.1, 3.5, 1.4, 0.2];
    let threads: Vec<_> = (0..12)
        .map(|_| {
            let d = d.clone();
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    d.count([&row]);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = d.snapshot();
    assert_eq!(s.rows, 12_000);
    let bins = model().training_bins().unwrap();
    for (f, (_, counts)) in s.features.iter().enumerate() {
        let mut expected = vec![0; bins[f].len()];
        expected[bins[f].bin_of(row[f])] = 12_000;
        assert_eq!(counts, &expected, "feature {f}");
    }
}

#[test]
fn a_batch_counts_as_its_rows_one_by_one() {
    let (batch, single) = (drift(2), drift(2));
    let rows = all_rows();
    batch.count(&rows);
    for row in &rows {
        single.count([row]);
    }
    assert_eq!(batch.snapshot(), single.snapshot());
    assert_eq!(batch.snapshot().rows, 150);
}

#[test]
fn in_distribution_inputs_give_a_low_psi_and_shifted_petals_a_high_one() {
    let d = drift(10);
    let rows = all_rows();
    for _ in 0..4 {
        d.count(&rows);
    }
    let s = d.snapshot();
    assert_eq!(s.rows, 600);
    for (f, (psi, _)) in s.features.iter().enumerate() {
        let psi = psi.unwrap();
        eprintln!(
            "{}: PSI {psi:.4} (150 rows against the 120 training rows)",
            iris::FEATURE_NAMES[f]
        );
        assert!(
            psi < 0.05,
            "{}: PSI {psi} for the data set itself",
            iris::FEATURE_NAMES[f]
        );
    }
    // Petal length + 3 cm: most rows beyond the top edge (5.9 cm).
    for slice in 0..10 {
        d.rotate();
        if slice == 9 {
            assert_eq!(d.snapshot().rows, 0);
        }
    }
    let shifted: Vec<_> = rows
        .iter()
        .map(|r| [r[0], r[1], r[2] + 3.0, r[3]])
        .collect();
    d.count(&shifted);
    let s = d.snapshot();
    let psi: Vec<f64> = s.features.iter().map(|(p, _)| p.unwrap()).collect();
    eprintln!("shifted petal length: PSI {psi:.4?}");
    assert!(psi[2] > 2.0, "petal_length PSI {}", psi[2]);
    for f in [0, 1, 3] {
        assert!(psi[f] < 0.05, "{}: {}", iris::FEATURE_NAMES[f], psi[f]);
    }
}

#[test]
fn flags_and_their_defaults() {
    let parse = |extra: &[&str]| {
        let argv = ["model-server", "serve"].iter().chain(extra).copied();
        Cli::try_parse_from(argv).map(|cli| match cli.command {
            Command::Serve(args) => args.drift,
            _ => panic!("not serve"),
        })
    };
    let defaults = parse(&[]).unwrap();
    assert_eq!(defaults, DriftArgs::default());
    assert_eq!(defaults.slice(), Some(Duration::from_secs(60)));
    let off = parse(&["--drift-window-seconds", "0"]).unwrap();
    assert_eq!(off.slice(), None);
    let short = parse(&["--drift-window-seconds", "30", "--drift-window-slices", "3"]).unwrap();
    assert_eq!(short.slice(), Some(Duration::from_secs(10)));
    for bad in [
        &["--drift-window-slices", "1"][..],
        &["--drift-window-slices", "121"],
        &["--drift-window-seconds", "-1"],
        &["--drift-window-seconds", "604801"],
    ] {
        assert!(parse(bad).is_err(), "{bad:?}");
    }
}

#[tokio::test]
async fn off_or_without_bins_nothing_is_counted_or_exported() {
    let rt = tokio::runtime::Handle::current();
    let state = AppState::new("iris", model().clone(), "builtin", Limits::default());
    let off = DriftArgs {
        drift_window_seconds: 0,
        ..DriftArgs::default()
    };
    assert!(!state.count_drift(&off, &rt));
    let text = crate::http::metrics_text_for_tests(&state);
    assert!(!text.contains("input_drift"), "{text}");

    // A schema version 1 artifact has no bins.
    let old = ModelArtifact::from_json(&crate::test_models::as_version_1(model())).unwrap();
    assert!(old.training_bins().is_none());
    let state = AppState::new("iris", old, "builtin", Limits::default());
    assert!(!state.count_drift(&DriftArgs::default(), &rt));
    assert_eq!(
        crate::oip::codec::predict(&state, &all_rows()).len(),
        iris::N_ROWS
    );
    assert!(!crate::http::metrics_text_for_tests(&state).contains("input_drift"));
}

async fn post(router: &axum::Router, uri: &str, body: Body, json: bool) -> StatusCode {
    let mut req = Request::post(uri);
    if json {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    router
        .clone()
        .oneshot(req.body(body).unwrap())
        .await
        .unwrap()
        .status()
}

/// OIP v2 REST with the binary extension: 2 rows of FP32.
async fn binary_extension_call(router: &axum::Router) -> StatusCode {
    let header = json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4],
        "parameters": {"binary_data_size": 32}}]})
    .to_string();
    let mut body = header.clone().into_bytes();
    for _ in 0..2 {
        for v in [5.1f32, 3.5, 1.4, 0.2] {
            body.extend_from_slice(&v.to_le_bytes());
        }
    }
    let req = Request::post("/v2/models/iris/infer")
        .header("Inference-Header-Content-Length", header.len())
        .body(Body::from(body))
        .unwrap();
    router.clone().oneshot(req).await.unwrap().status()
}

/// OIP v2 gRPC: 2 rows.
async fn grpc_call(state: &AppState) {
    let svc = InferenceService::new(state.clone());
    let req = ModelInferRequest {
        model_name: "iris".into(),
        inputs: vec![InferInputTensor {
            name: "x".into(),
            datatype: "FP64".into(),
            shape: vec![2, 4],
            parameters: HashMap::new(),
            contents: Some(InferTensorContents {
                fp64_contents: [5.1, 3.5, 1.4, 0.2].repeat(2),
                ..Default::default()
            }),
        }],
        ..Default::default()
    };
    svc.model_infer(tonic::Request::new(req)).await.unwrap();
}

/// One request on each prediction route: every row shows in the window.
#[tokio::test]
async fn every_prediction_route_counts_its_rows() {
    let state = AppState::new("iris", model().clone(), "builtin", Limits::default());
    let rt = tokio::runtime::Handle::current();
    assert!(state.count_drift(&DriftArgs::default(), &rt));
    // Only once.
    assert!(!state.count_drift(&DriftArgs::default(), &rt));
    let router = crate::http::app(state.clone());
    let row = json!([5.1, 3.5, 1.4, 0.2]);
    let json_calls = [
        ("/predict_iris", json!({"features": row})),
        ("/predict_iris", json!({"instances": [row, row]})),
        (
            "/v1/models/iris:predict",
            json!({"instances": [row, row, row]}),
        ),
        (
            "/v2/models/iris/infer",
            json!({"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 4], "data": row}]}),
        ),
    ];
    for (uri, body) in json_calls {
        let status = post(&router, uri, Body::from(body.to_string()), true).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
    }
    assert_eq!(binary_extension_call(&router).await, StatusCode::OK);
    grpc_call(&state).await;
    // A refused request counts nothing.
    let bad = json!({"instances": [[1.0, 2.0]]}).to_string();
    let status = post(&router, "/predict_iris", Body::from(bad), true).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let rows = 1 + 2 + 3 + 1 + 2 + 2;
    // The chart's list of metric names (which its alerts may use) has exactly these.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../charts/iris-operator/files/metrics.txt"
    );
    let listed: Vec<String> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("model_server_input_drift_"))
        .map(str::to_string)
        .collect();
    assert_eq!(
        listed,
        [
            iris_model::contract::INPUT_DRIFT_PSI,
            iris_model::contract::INPUT_DRIFT_WINDOW_ROWS
        ]
    );
    let text = crate::http::metrics_text_for_tests(&state);
    assert!(
        text.contains(&format!("model_server_input_drift_window_rows {rows}\n")),
        "{text}"
    );
    for f in iris::FEATURE_NAMES {
        assert!(
            text.contains(&format!("model_server_input_drift_psi{{feature=\"{f}\"}} ")),
            "{f}: {text}"
        );
    }
}
