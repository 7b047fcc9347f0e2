//! The payload log against a CloudEvents receiver in the test (axum, the SDK's extractor):
//! every route's request and response arrive as a pair with KServe's attributes; a full
//! queue drops and counts without waiting; a dead sink is counted as failed.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::routing::post;
use axum::Router;
use clap::Parser as _;
use cloudevents::{AttributesReader, Data, Event};
use prost::Message as _;
use serde_json::{json, Value};
use tower::ServiceExt as _;

use super::event::{REQUEST_TYPE, RESPONSE_TYPE};
use super::*;
use crate::config::{Cli, Command};
use crate::grpc::InferenceService;
use crate::proto::grpc_inference_service_server::GrpcInferenceService as _;
use crate::proto::{model_infer_request, InferTensorContents};
use crate::state::{AppState, Limits};

fn args(extra: &[&str]) -> Result<PayloadLogArgs, clap::Error> {
    let argv = ["model-server", "serve"].iter().chain(extra).copied();
    Cli::try_parse_from(argv).map(|cli| match cli.command {
        Command::Serve(args) => args.payload_log,
        _ => panic!("not serve"),
    })
}

#[test]
fn flags_and_their_bounds() {
    let off = args(&[]).unwrap();
    assert_eq!(off.payload_log_url, None);
    assert_eq!(off.payload_log_mode, Mode::All);
    assert_eq!(off.payload_log_sample_percent, 100);
    assert_eq!(
        (off.payload_log_queue, off.payload_log_concurrency),
        (4096, 8)
    );
    assert_eq!(
        (off.payload_log_timeout_ms, off.payload_log_retries),
        (2000, 3)
    );
    let on = args(&[
        "--payload-log-url",
        "http://sink.ns.svc:8080/events",
        "--payload-log-mode",
        "response",
        "--payload-log-sample-percent",
        "0",
    ])
    .unwrap();
    assert_eq!(
        on.payload_log_url.as_deref(),
        Some("http://sink.ns.svc:8080/events")
    );
    assert_eq!(on.payload_log_mode, Mode::Response);
    for (flag, bad) in [
        ("--payload-log-sample-percent", "101"),
        ("--payload-log-queue", "0"),
        ("--payload-log-concurrency", "0"),
        ("--payload-log-retries", "11"),
        ("--payload-log-mode", "both"),
    ] {
        assert!(args(&[flag, bad]).is_err(), "{flag} {bad}");
    }
    for (url, needle) in [
        ("https://sink/", "https sinks are not supported"),
        ("http://u:secret@sink/", "must not carry credentials"),
        ("ftp://sink/", "not an http://"),
        ("/relative", "not an http://"),
    ] {
        let e = args(&["--payload-log-url", url]).unwrap_err().to_string();
        assert!(e.contains(needle), "{url}: {e}");
    }
}

#[test]
fn headers_file_lines() {
    let headers =
        worker::parse_headers("# comment\n\nAuthorization: Bearer abc\nX-Tenant:  blue \n")
            .unwrap();
    let pairs: Vec<_> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
        .collect();
    assert_eq!(
        pairs,
        [("authorization", "Bearer abc"), ("x-tenant", "blue")]
    );
    for bad in [
        "no colon here",
        "Bad Name: x",
        "ce-id: 1",
        "Content-Type: text/plain",
    ] {
        let e = format!(
            "{:#}",
            worker::parse_headers(&format!("A: b\n{bad}")).unwrap_err()
        );
        assert!(e.contains("line 2"), "{e}");
        assert!(
            !e.contains(bad),
            "the line's content must not be echoed: {e}"
        );
    }
}

#[test]
fn sampling_follows_the_percentage() {
    let draws = |percent: &str| {
        let log = PayloadLog::default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let a = args(&[
            "--payload-log-url",
            "http://127.0.0.1:9/",
            "--payload-log-sample-percent",
            percent,
        ])
        .unwrap();
        log.start(&a, Identity::new("iris", "ns", 5001)).unwrap();
        (0..10_000).filter(|_| log.sample().is_some()).count()
    };
    assert_eq!(draws("0"), 0);
    assert_eq!(draws("100"), 10_000);
    let some = draws("30");
    assert!((2_700..=3_300).contains(&some), "{some} of 10000 at 30%");
    assert!(
        PayloadLog::default().sample().is_none(),
        "off until started"
    );
}

/// The events a receiver got, in arrival order.
type Received = Arc<Mutex<Vec<Event>>>;

/// A CloudEvents receiver on 127.0.0.1 (the SDK's axum extractor) answering `status`.
async fn receiver(status: StatusCode) -> (String, Received) {
    let got: Received = Arc::default();
    let sink = got.clone();
    let app = Router::new().route(
        "/events",
        post(move |event: Event| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(event);
                status
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/events"), got)
}

fn logging_state(url: &str, extra: &[&str]) -> AppState {
    let state = AppState::new(
        "iris",
        crate::test_models::multiclass().clone(),
        "builtin",
        Limits::default(),
    );
    let mut argv = vec!["--payload-log-url", url, "--payload-log-retries", "1"];
    argv.extend_from_slice(extra);
    state
        .payload_log()
        .start(&args(&argv).unwrap(), Identity::new("iris", "team-a", 5001))
        .unwrap();
    state
}

async fn wait_for(got: &Received, n: usize) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = got.lock().unwrap().clone();
        if events.len() >= n || Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn data(event: &Event) -> Vec<u8> {
    match event.data() {
        Some(Data::Binary(b)) => b.clone(),
        Some(Data::String(s)) => s.clone().into_bytes(),
        Some(Data::Json(j)) => serde_json::to_vec(j).unwrap(),
        None => Vec::new(),
    }
}

async fn call(state: &AppState, uri: &str, body: Value) -> (StatusCode, Vec<u8>) {
    let request = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = crate::http::app(state.clone())
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap();
    (status, body.to_bytes().to_vec())
}

/// The request and response events of each exchange, paired by id, in the order sent.
fn pairs(events: &[Event]) -> Vec<(&Event, &Event)> {
    let requests = events.iter().filter(|e| e.ty() == REQUEST_TYPE);
    requests
        .map(|req| {
            let matching: Vec<_> = events
                .iter()
                .filter(|e| e.ty() == RESPONSE_TYPE && e.id() == req.id())
                .collect();
            assert_eq!(matching.len(), 1, "one response for request {}", req.id());
            (req, matching[0])
        })
        .collect()
}

/// Both events of each pair come from the same server and carry KServe's attributes.
fn assert_identity(pairs: &[(&Event, &Event)]) {
    for (req, resp) in pairs {
        assert_ne!(req.id(), "");
        assert_eq!(req.source().to_string(), resp.source().to_string());
        assert!(
            req.source().to_string().ends_with(":5001/"),
            "{}",
            req.source()
        );
        for e in [req, resp] {
            assert_eq!(
                e.extension("inferenceservicename")
                    .map(ToString::to_string)
                    .as_deref(),
                Some("iris")
            );
            assert_eq!(
                e.extension("namespace").map(ToString::to_string).as_deref(),
                Some("team-a")
            );
            assert_eq!(e.specversion().to_string(), "1.0");
        }
    }
}

/// One gRPC ModelInfer of `row` (typed FP64 contents): the request and its answer.
async fn grpc_call(state: &AppState, row: [f64; 4]) -> (ModelInferRequest, ModelInferResponse) {
    let grpc_request = ModelInferRequest {
        model_name: "iris".into(),
        inputs: vec![model_infer_request::InferInputTensor {
            name: "input-0".into(),
            datatype: "FP64".into(),
            shape: vec![1, 4],
            contents: Some(InferTensorContents {
                fp64_contents: row.to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let service = InferenceService::new(state.clone());
    let grpc_answer = service
        .model_infer(tonic::Request::new(grpc_request.clone()))
        .await
        .unwrap()
        .into_inner();
    (grpc_request, grpc_answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_posts_a_request_and_a_response_event() {
    let (url, got) = receiver(StatusCode::ACCEPTED).await;
    let state = logging_state(&url, &[]);
    let row = [6.3, 3.3, 6.0, 2.5];
    let sent = [
        ("/predict_iris", json!({"features": row})),
        ("/v1/models/iris:predict", json!({"instances": [row]})),
        (
            "/v2/models/iris/infer",
            json!({"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": row}]}),
        ),
    ];
    let mut answers = Vec::new();
    for (uri, body) in &sent {
        let (status, answer) = call(&state, uri, body.clone()).await;
        assert_eq!(status, StatusCode::OK);
        answers.push(answer);
    }
    // Not logged: a failed prediction, a status read, another verb.
    let (status, _) = call(&state, "/predict_iris", json!({"features": [1]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (grpc_request, grpc_answer) = grpc_call(&state, row).await;

    let events = wait_for(&got, 8).await;
    assert_eq!(events.len(), 8, "{events:#?}");
    let pairs = pairs(&events);
    assert_eq!(pairs.len(), 4);
    assert_identity(&pairs);
    let ids: std::collections::BTreeSet<_> = pairs.iter().map(|(r, _)| r.id()).collect();
    assert_eq!(ids.len(), 4, "one id per prediction");
    for ((uri, body), answer) in sent.iter().zip(&answers) {
        let (req, resp) = pairs
            .iter()
            .find(|(r, _)| serde_json::from_slice::<Value>(&data(r)).ok().as_ref() == Some(body))
            .unwrap_or_else(|| panic!("no request event for {uri}"));
        assert_eq!(req.datacontenttype(), Some("application/json"));
        assert_eq!(&data(resp), answer, "{uri}");
        assert_eq!(resp.datacontenttype(), Some("application/json"));
    }
    let (req, resp) = pairs
        .iter()
        .find(|(r, _)| {
            r.extension("endpoint").map(ToString::to_string).as_deref() == Some(GRPC_ENDPOINT)
        })
        .expect("the gRPC pair");
    assert_eq!(
        ModelInferRequest::decode(&data(req)[..]).unwrap(),
        grpc_request
    );
    assert_eq!(
        ModelInferResponse::decode(&data(resp)[..]).unwrap(),
        grpc_answer
    );
    assert_eq!(
        req.datacontenttype(),
        Some("application/protobuf; proto=inference.ModelInferRequest")
    );
    assert_eq!(state.payload_log().counters().sent.load(Relaxed), 8);
    assert_eq!(state.payload_log().counters().failing.load(Relaxed), 0);
    let page = crate::http::metrics_text_for_tests(&state);
    assert!(
        page.contains("model_server_payload_log_sent_total 8"),
        "{page}"
    );
    assert!(
        page.contains("model_server_payload_log_dropped_total 0"),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_extension_and_modes() {
    let (url, got) = receiver(StatusCode::OK).await;
    let state = logging_state(&url, &["--payload-log-mode", "request"]);
    let json_part = br#"{"inputs":[{"name":"input-0","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}}]}"#;
    let mut body = json_part.to_vec();
    for v in [5.1f32, 3.5, 1.4, 0.2] {
        body.extend_from_slice(&v.to_le_bytes());
    }
    let request = Request::post("/v2/models/iris/infer")
        .header("inference-header-content-length", json_part.len())
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(Body::from(body.clone()))
        .unwrap();
    let response = crate::http::app(state.clone())
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let events = wait_for(&got, 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let events = if events.len() == 1 {
        got.lock().unwrap().clone()
    } else {
        events
    };
    assert_eq!(events.len(), 1, "mode request: no response event");
    assert_eq!(events[0].ty(), REQUEST_TYPE);
    assert_eq!(data(&events[0]), body);
    assert_eq!(
        events[0].datacontenttype(),
        Some("application/octet-stream")
    );
    assert_eq!(
        events[0]
            .extension("inferenceheadercontentlength")
            .map(ToString::to_string),
        Some(json_part.len().to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_without_waiting_and_a_dead_sink_counts_failures() {
    // A sink that accepts connections and never answers: the one post in flight hangs.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", silent.local_addr().unwrap());
    let state = logging_state(
        &url,
        &[
            "--payload-log-queue",
            "1",
            "--payload-log-concurrency",
            "1",
            "--payload-log-timeout-ms",
            "60000",
        ],
    );
    let started = Instant::now();
    for _ in 0..20 {
        let (status, _) = call(
            &state,
            "/predict_iris",
            json!({"features": [5.1, 3.5, 1.4, 0.2]}),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let dropped = state.payload_log().counters().dropped.load(Relaxed);
    // At most 3 of 20 fit: one posting, one taken off the queue waiting for a permit, one
    // queued.
    assert!(
        dropped >= 2 * 17,
        "at most 3 of 20 exchanges fit: {dropped} events dropped"
    );
    drop(silent);

    // Nothing listens: every post fails after its retry, and is counted.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", closed.local_addr().unwrap());
    drop(closed);
    let state = logging_state(&url, &[]);
    for _ in 0..3 {
        let (status, _) = call(
            &state,
            "/predict_iris",
            json!({"features": [5.1, 3.5, 1.4, 0.2]}),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while state.payload_log().counters().failed.load(Relaxed) < 6 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(state.payload_log().counters().failed.load(Relaxed), 6);
    let page = crate::http::metrics_text_for_tests(&state);
    assert!(
        page.contains("model_server_payload_log_failed_total 6"),
        "{page}"
    );
    // Six given up in a row, none accepted since: what the operator reads for the status.
    assert!(
        page.contains("model_server_payload_log_consecutive_failures 6"),
        "{page}"
    );
}

#[test]
fn off_exports_nothing() {
    let state = AppState::new(
        "iris",
        crate::test_models::binary().clone(),
        "builtin",
        Limits::default(),
    );
    assert!(!crate::http::metrics_text_for_tests(&state).contains("payload_log"));
}
