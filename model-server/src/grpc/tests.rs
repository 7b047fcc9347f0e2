//! The gRPC service: trait methods called directly (no socket), a property test with
//! arbitrary requests, and one loopback test with a tonic client through the real server.

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use tonic::{Code, Request};

use super::*;
use crate::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use crate::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use crate::state::Limits;

const ROWS: [[f64; 4]; 2] = [[5.1, 3.5, 1.4, 0.2], [6.2, 3.4, 5.4, 2.3]];

fn state_with(limits: Limits) -> AppState {
    AppState::new(
        "iris",
        crate::test_models::multiclass().clone(),
        "builtin",
        limits,
    )
}

fn service() -> InferenceService {
    InferenceService::new(state_with(Limits::default()))
}

fn input(
    datatype: &str,
    shape: Vec<i64>,
    contents: Option<InferTensorContents>,
) -> InferInputTensor {
    InferInputTensor {
        name: "input-0".into(),
        datatype: datatype.into(),
        shape,
        parameters: HashMap::new(),
        contents,
    }
}

fn fp64_request() -> ModelInferRequest {
    ModelInferRequest {
        model_name: "iris".into(),
        id: "req-1".into(),
        inputs: vec![input(
            "FP64",
            vec![2, 4],
            Some(InferTensorContents {
                fp64_contents: ROWS.concat(),
                ..Default::default()
            }),
        )],
        ..Default::default()
    }
}

fn raw_fp32_request() -> ModelInferRequest {
    ModelInferRequest {
        model_name: "iris".into(),
        inputs: vec![input("FP32", vec![2, 4], None)],
        raw_input_contents: vec![ROWS
            .concat()
            .iter()
            .flat_map(|v| (*v as f32).to_le_bytes())
            .collect()],
        ..Default::default()
    }
}

async fn infer(
    svc: &InferenceService,
    req: ModelInferRequest,
) -> Result<ModelInferResponse, Status> {
    svc.model_infer(Request::new(req))
        .await
        .map(|r| r.into_inner())
}

#[track_caller]
fn assert_status(result: Result<ModelInferResponse, Status>, code: Code, needle: &str) {
    let status = result.expect_err("should fail");
    assert_eq!(status.code(), code, "{}", status.message());
    assert!(
        status.message().contains(needle),
        "{needle:?} not in {:?}",
        status.message()
    );
}

fn bool_param(v: bool) -> InferParameter {
    InferParameter {
        parameter_choice: Some(ParameterChoice::BoolParam(v)),
    }
}

#[tokio::test]
async fn typed_contents_in_typed_contents_out() {
    let svc = service();
    let r = infer(&svc, fp64_request()).await.unwrap();
    assert_eq!(r.model_name, "iris");
    assert_eq!(r.model_version, svc.state.model().short_digest());
    assert_eq!(r.id, "req-1");
    assert!(r.raw_output_contents.is_empty());
    let names: Vec<&str> = r.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["label", "probabilities", "predict"]);
    let label = &r.outputs[0];
    assert_eq!(
        (label.datatype.as_str(), label.shape.as_slice()),
        ("BYTES", &[2][..])
    );
    assert_eq!(
        label.contents.as_ref().unwrap().bytes_contents,
        [b"setosa".to_vec(), b"virginica".to_vec()]
    );
    let probs = &r.outputs[1];
    assert_eq!(probs.shape, [2, 3]);
    assert_eq!(probs.contents.as_ref().unwrap().fp64_contents.len(), 6);
    assert_eq!(
        r.outputs[2].contents.as_ref().unwrap().int64_contents,
        [0, 2]
    );
}

#[tokio::test]
async fn raw_inputs_get_raw_outputs_in_output_order() {
    let svc = service();
    let mut req = raw_fp32_request();
    req.outputs = ["predict", "label"]
        .map(|n| InferRequestedOutputTensor {
            name: n.into(),
            parameters: HashMap::new(),
        })
        .to_vec();
    let r = infer(&svc, req).await.unwrap();
    assert!(r.outputs.iter().all(|o| o.contents.is_none()));
    assert_eq!(r.outputs[0].name, "predict");
    assert_eq!(r.raw_output_contents.len(), 2);
    let classes: Vec<u8> = [0i64, 2].iter().flat_map(|c| c.to_le_bytes()).collect();
    assert_eq!(r.raw_output_contents[0], classes);
    let mut labels = 6u32.to_le_bytes().to_vec();
    labels.extend_from_slice(b"setosa");
    labels.extend_from_slice(&9u32.to_le_bytes());
    labels.extend_from_slice(b"virginica");
    assert_eq!(r.raw_output_contents[1], labels);
}

#[tokio::test]
async fn raw_outputs_on_request() {
    let svc = service();
    let mut req = fp64_request();
    req.outputs = vec![InferRequestedOutputTensor {
        name: "probabilities".into(),
        parameters: HashMap::from([("binary_data".to_owned(), bool_param(true))]),
    }];
    let r = infer(&svc, req).await.unwrap();
    assert_eq!(r.raw_output_contents.len(), 1);
    assert_eq!(r.raw_output_contents[0].len(), 2 * 3 * 8);

    let mut req = fp64_request();
    req.parameters = HashMap::from([("binary_data_output".to_owned(), bool_param(true))]);
    assert_eq!(infer(&svc, req).await.unwrap().raw_output_contents.len(), 3);
}

fn requested(names: &[&str]) -> Vec<InferRequestedOutputTensor> {
    names
        .iter()
        .map(|n| InferRequestedOutputTensor {
            name: (*n).into(),
            parameters: HashMap::new(),
        })
        .collect()
}

/// `contributions` `[2, 3, 5]`: each (row, class) sums to a logit, and the softmax of a row's
/// logits is its `probabilities`.
#[track_caller]
fn check_contributions(values: &[f64], probs: &[f64]) {
    assert_eq!(values.len(), 2 * 3 * 5);
    for n in 0..2 {
        let logits: Vec<f64> = (0..3)
            .map(|k| values[(n * 3 + k) * 5..][..5].iter().sum())
            .collect();
        let max = logits.iter().copied().fold(f64::MIN, f64::max);
        let total: f64 = logits.iter().map(|l| (l - max).exp()).sum();
        for (l, p) in logits.iter().zip(&probs[n * 3..][..3]) {
            assert!(((l - max).exp() / total - p).abs() < 1e-12, "{logits:?}");
        }
    }
}

#[tokio::test]
async fn contributions_typed_and_raw() {
    let svc = service();
    let mut req = fp64_request();
    req.outputs = requested(&["contributions", "probabilities"]);
    let r = infer(&svc, req).await.unwrap();
    let c = &r.outputs[0];
    assert_eq!(
        (c.name.as_str(), c.datatype.as_str(), c.shape.as_slice()),
        ("contributions", "FP64", &[2, 3, 5][..])
    );
    let typed = c.contents.as_ref().unwrap().fp64_contents.clone();
    check_contributions(
        &typed,
        &r.outputs[1].contents.as_ref().unwrap().fp64_contents,
    );
    // The intercept of class k is last in each group of five.
    assert_eq!(typed[4], svc.state.model().intercepts()[0]);
    assert_eq!(typed[14], svc.state.model().intercepts()[2]);

    // Raw (as tritonclient.grpc reads it), from the same rows as FP64 raw input.
    let mut req = fp64_request();
    req.outputs = requested(&["contributions", "probabilities"]);
    req.inputs[0].contents = None;
    req.raw_input_contents = vec![ROWS.concat().iter().flat_map(|v| v.to_le_bytes()).collect()];
    let r = infer(&svc, req).await.unwrap();
    let floats = |b: &[u8]| -> Vec<f64> {
        b.chunks_exact(8)
            .map(|x| f64::from_le_bytes(x.try_into().unwrap()))
            .collect()
    };
    assert_eq!(floats(&r.raw_output_contents[0]), typed);
    check_contributions(&typed, &floats(&r.raw_output_contents[1]));

    // Metadata lists it last; the defaults are unchanged (typed_contents_in_typed_contents_out).
    let meta = svc
        .model_metadata(Request::new(ModelMetadataRequest {
            name: "iris".into(),
            version: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.outputs[3].name, "contributions");
    assert_eq!(meta.outputs[3].shape, [-1, 3, 5]);
}

#[tokio::test]
async fn versions_and_unknown_models() {
    let svc = service();
    let version = svc.state.model().short_digest().to_owned();
    let mut req = fp64_request();
    req.model_version = version.clone();
    infer(&svc, req).await.unwrap();

    let mut req = fp64_request();
    req.model_name = "rose".into();
    assert_status(
        infer(&svc, req).await,
        Code::NotFound,
        "unknown model \"rose\"",
    );
    let mut req = fp64_request();
    req.model_version = "7".into();
    assert_status(infer(&svc, req).await, Code::NotFound, "no version \"7\"");

    let ready = |name: &str, version: &str| ModelReadyRequest {
        name: name.into(),
        version: version.into(),
    };
    let r = svc
        .model_ready(Request::new(ready("iris", &version)))
        .await
        .unwrap();
    assert!(r.into_inner().ready);
    let e = svc
        .model_ready(Request::new(ready("rose", "")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let meta = svc
        .model_metadata(Request::new(ModelMetadataRequest {
            name: "iris".into(),
            version: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.versions, [version]);
    assert_eq!(meta.inputs[0].shape, [-1, 4]);
    assert_eq!(meta.outputs[1].shape, [-1, 3]);
    let e = svc
        .model_metadata(Request::new(ModelMetadataRequest {
            name: "iris".into(),
            version: "nope".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test]
async fn invalid_arguments() {
    let svc = service();
    let with = |f: &dyn Fn(&mut ModelInferRequest)| {
        let mut r = fp64_request();
        f(&mut r);
        r
    };
    let cases: Vec<(ModelInferRequest, &str)> = vec![
        (
            with(&|r| r.inputs[0].datatype = "BYTES".into()),
            "datatype \"BYTES\"",
        ),
        (with(&|r| r.inputs[0].shape = vec![8]), "expected [N, 4]"),
        (with(&|r| r.inputs[0].shape = vec![3, 4]), "needs 12 values"),
        (
            with(&|r| r.inputs[0].contents = None),
            "fp64_contents has 0",
        ),
        (with(&|r| r.inputs.clear()), "got 0"),
        (with(&|r| r.inputs.push(r.inputs[0].clone())), "got 2"),
        (
            with(&|r| {
                r.outputs = vec![InferRequestedOutputTensor {
                    name: "score".into(),
                    parameters: HashMap::new(),
                }]
            }),
            "unknown output",
        ),
        (
            with(&|r| r.raw_input_contents = vec![vec![0; 64]]),
            "also has raw_input_contents",
        ),
        (
            with(&|r| r.inputs[0].contents.as_mut().unwrap().fp64_contents[0] = f64::INFINITY),
            "not a finite FP64",
        ),
    ];
    for (req, needle) in cases {
        assert_status(infer(&svc, req).await, Code::InvalidArgument, needle);
    }
    let mut req = raw_fp32_request();
    req.raw_input_contents[0].pop();
    assert_status(infer(&svc, req).await, Code::InvalidArgument, "31 bytes");
    let mut req = raw_fp32_request();
    req.raw_input_contents.push(vec![]);
    assert_status(infer(&svc, req).await, Code::InvalidArgument, "2 entries");
}

#[tokio::test]
async fn batch_limit_is_resource_exhausted_and_readiness_follows_shutdown() {
    let svc = InferenceService::new(state_with(Limits {
        max_body_bytes: 1024,
        max_batch_rows: 1,
        ..Limits::default()
    }));
    assert_status(
        infer(&svc, fp64_request()).await,
        Code::ResourceExhausted,
        "limit of 1 rows",
    );

    let ready = svc
        .server_ready(Request::new(ServerReadyRequest {}))
        .await
        .unwrap();
    assert!(ready.into_inner().ready);
    svc.state.set_ready(false);
    let ready = svc
        .server_ready(Request::new(ServerReadyRequest {}))
        .await
        .unwrap();
    assert!(!ready.into_inner().ready);
    let model = svc
        .model_ready(Request::new(ModelReadyRequest {
            name: "iris".into(),
            version: String::new(),
        }))
        .await
        .unwrap();
    assert!(!model.into_inner().ready);
    let live = svc
        .server_live(Request::new(ServerLiveRequest {}))
        .await
        .unwrap();
    assert!(live.into_inner().live);
}

#[test]
fn api_errors_map_to_status_codes() {
    for (e, code) in [
        (ApiError::bad_request("x"), Code::InvalidArgument),
        (ApiError::not_found("x"), Code::NotFound),
        (ApiError::too_large("x"), Code::ResourceExhausted),
        (ApiError::unavailable("x"), Code::Unavailable),
    ] {
        let status = Status::from(e);
        assert_eq!(status.code(), code);
        assert_eq!(status.message(), "x");
    }
}

#[test]
fn method_labels_are_bounded() {
    assert_eq!(
        GrpcMethod::of_path("/inference.GRPCInferenceService/ModelInfer"),
        GrpcMethod::ModelInfer
    );
    assert_eq!(
        GrpcMethod::of_path("/inference.GRPCInferenceService/RepositoryIndex"),
        GrpcMethod::Unknown
    );
    assert_eq!(
        GrpcMethod::of_path("/grpc.health.v1.Health/Check"),
        GrpcMethod::Unknown
    );
}

fn datatype() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32",
            "UINT64", "BYTES", "BOOL", "FP16", "",
        ])
        .prop_map(str::to_owned),
        ".{0,8}",
    ]
}

fn contents() -> impl Strategy<Value = Option<InferTensorContents>> {
    prop::option::of(
        (
            prop::collection::vec(any::<f32>(), 0..12),
            prop::collection::vec(any::<f64>(), 0..12),
            prop::collection::vec(any::<i32>(), 0..12),
            prop::collection::vec(any::<i64>(), 0..12),
            prop::collection::vec(any::<u64>(), 0..12),
        )
            .prop_map(|(f32s, f64s, i32s, i64s, u64s)| InferTensorContents {
                fp32_contents: f32s,
                fp64_contents: f64s,
                int_contents: i32s,
                int64_contents: i64s,
                uint64_contents: u64s,
                ..Default::default()
            }),
    )
}

fn infer_request() -> impl Strategy<Value = ModelInferRequest> {
    let tensor = (
        datatype(),
        prop::collection::vec(prop_oneof![-2i64..6, any::<i64>()], 0..4),
        contents(),
    )
        .prop_map(|(dt, shape, contents)| input(&dt, shape, contents));
    (
        prop::sample::select(vec!["iris", "rose", ""]),
        prop::sample::select(vec!["", "1", "latest"]),
        prop::collection::vec(tensor, 0..3),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 0..3),
        prop::collection::vec(
            prop::sample::select(vec!["label", "probabilities", "predict", "x"]),
            0..3,
        ),
        any::<bool>(),
    )
        .prop_map(
            |(name, version, inputs, raw, outputs, binary)| ModelInferRequest {
                model_name: name.into(),
                model_version: version.into(),
                id: String::new(),
                parameters: HashMap::from([("binary_data_output".to_owned(), bool_param(binary))]),
                inputs,
                outputs: outputs
                    .into_iter()
                    .map(|n| InferRequestedOutputTensor {
                        name: n.into(),
                        parameters: HashMap::new(),
                    })
                    .collect(),
                raw_input_contents: raw,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_requests_get_ok_or_an_expected_code(req in infer_request()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let svc = InferenceService::new(state_with(Limits { max_body_bytes: 4096, max_batch_rows: 4, ..Limits::default() }));
        match rt.block_on(infer(&svc, req)) {
            Ok(r) => prop_assert_eq!(r.outputs.len().max(1), r.outputs.len()),
            Err(status) => {
                prop_assert!(
                    matches!(
                        status.code(),
                        Code::InvalidArgument | Code::NotFound | Code::ResourceExhausted
                    ),
                    "{:?}: {}", status.code(), status.message()
                );
                prop_assert!(!status.message().is_empty());
            }
        }
    }
}

/// The real server on a loopback port, a tonic client, the shared metrics, the size limit,
/// and the graceful shutdown.
#[tokio::test]
async fn over_a_socket_with_a_tonic_client() {
    let state = state_with(Limits {
        max_body_bytes: 512,
        max_batch_rows: 100,
        ..Limits::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::server::serve_grpc_until(
        listener,
        state.clone(),
        crate::security::Security::default(),
        crate::server::ShutdownTiming {
            delay: Duration::ZERO,
            grace: Duration::from_secs(5),
        },
        async move {
            let _ = stopped.await;
        },
        std::future::pending(),
    ));
    let mut client = GrpcInferenceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();

    let r = client
        .model_infer(raw_fp32_request())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.raw_output_contents.len(), 3);
    let meta = client
        .server_metadata(ServerMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.extensions, ["binary_tensor_data"]);
    let mut wrong = fp64_request();
    wrong.model_name = "rose".into();
    assert_eq!(
        client.model_infer(wrong).await.unwrap_err().code(),
        Code::NotFound
    );

    // 20 rows of FP64 is 640 bytes of contents: over the 512-byte message limit.
    let mut big = fp64_request();
    big.inputs[0].shape = vec![20, 4];
    big.inputs[0].contents.as_mut().unwrap().fp64_contents = vec![1.0; 80];
    let status = client.model_infer(big).await.unwrap_err();
    assert_eq!(
        status.code(),
        Code::ResourceExhausted,
        "{}",
        status.message()
    );

    let m = state.metrics();
    assert_eq!(m.grpc_calls(GrpcMethod::ModelInfer, Code::Ok), 1);
    assert_eq!(m.grpc_calls(GrpcMethod::ServerMetadata, Code::Ok), 1);
    assert_eq!(m.grpc_calls(GrpcMethod::ModelInfer, Code::NotFound), 1);
    assert_eq!(
        m.grpc_calls(GrpcMethod::ModelInfer, Code::ResourceExhausted),
        1
    );
    let text = crate::http::metrics_text_for_tests(&state);
    assert!(
        text.contains(r#"model_server_grpc_requests_total{method="ModelInfer",code="OK"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("model_server_grpc_request_duration_seconds_bucket"),
        "{text}"
    );

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!state.is_ready());
    // The listener is closed: a new call fails as UNAVAILABLE.
    let err = GrpcInferenceServiceClient::connect(format!("http://{addr}")).await;
    assert!(err.is_err());
    let status = client.server_live(ServerLiveRequest {}).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{}", status.message());
}
