//! Payload logging (issue 27): a CloudEvents sink in this process (axum with the CloudEvents
//! SDK's extractor, on the host), reached by the model's pods at the kind network's gateway;
//! an IrisModel with `spec.logging` pointing at it. Predictions through curl (/predict_iris and
//! KServe v1) and tritonclient (HTTP binary, HTTP JSON, gRPC) each give exactly one request
//! and one response event, paired by `ce-id`, carrying the inputs sent and the outputs
//! answered. Then the sink goes away: every prediction still succeeds and the pod's /metrics
//! counts the lost events.
//!
//! Every wait is bounded in time.
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::post;
use cloudevents::{AttributesReader, Data, Event};
use e2e::cluster::with_temp_ns;
use e2e::portforward::PortForward;
use e2e::{iris, kubectl};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client};
use model_server::proto::{ModelInferRequest, ModelInferResponse};
use prost::Message as _;
use serde_json::{json, Value};

const READY_WITHIN: Duration = Duration::from_secs(180);
const EVENTS_WITHIN: Duration = Duration::from_secs(60);
const COUNTED_WITHIN: Duration = Duration::from_secs(120);
const ROWS: [[f64; 4]; 3] = [
    [5.1, 3.5, 1.4, 0.2],
    [6.0, 2.7, 5.1, 1.6],
    [6.3, 3.3, 6.0, 2.5],
];
const GRPC: &str = "/inference.GRPCInferenceService/ModelInfer";
const LABELS: [&str; 3] = ["setosa", "versicolor", "virginica"];

/// The events received, in order; the sink runs on a thread and runtime of its own, so the
/// test's blocking calls (curl, Python) never keep it from answering.
struct Sink {
    port: u16,
    events: Arc<Mutex<Vec<Event>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sink {
    fn start() -> Sink {
        let events: Arc<Mutex<Vec<Event>>> = Arc::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let got = events.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let app = axum::Router::new().route(
                    "/events",
                    post(move |event: Event| async move {
                        got.lock().expect("events").push(event);
                        axum::http::StatusCode::ACCEPTED
                    }),
                );
                // All addresses: the pods come through the kind network's gateway.
                let listener = tokio::net::TcpListener::bind("0.0.0.0:0")
                    .await
                    .expect("bind the sink");
                port_tx
                    .send(listener.local_addr().expect("addr").port())
                    .expect("port");
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        let port = port_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the sink's port");
        Sink {
            port,
            events,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn events(&self) -> Vec<Event> {
        self.events.lock().expect("events").clone()
    }

    /// Stops listening: from now on a post is refused.
    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The host's address on the kind nodes' Docker network: the registry's node host (written
/// by e2e/kind/registry.sh), else `docker network inspect kind`.
async fn gateway(client: &Client) -> String {
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-public");
    if let Ok(cm) = maps.get("local-registry-hosting").await {
        let text = cm
            .data
            .and_then(|d| d.get("localRegistryHosting.v1").cloned())
            .unwrap_or_default();
        let host = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("hostFromContainerRuntime:"))
            .map(|v| v.trim().trim_matches('"').to_string());
        if let Some(ip) = host
            .as_deref()
            .and_then(|h| h.rsplit_once(':'))
            .map(|(ip, _)| ip.to_string())
        {
            return ip;
        }
    }
    let out = Command::new("docker")
        .args([
            "network",
            "inspect",
            "kind",
            "-f",
            "{{range .IPAM.Config}}{{.Gateway}} {{end}}",
        ])
        .output()
        .expect("docker network inspect kind");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|a| a.parse::<std::net::Ipv4Addr>().is_ok())
        .expect("an IPv4 gateway on the kind network")
        .to_string()
}

/// One prediction as a client saw it, or as its two events tell it: where, the row (as the
/// FP32 the server may have received: compared after rounding to f32), the answer.
type Seen = (String, Vec<u32>, String);

fn f32_bits(v: impl IntoIterator<Item = f64>) -> Vec<u32> {
    #[allow(clippy::cast_possible_truncation)] // the point: compare as FP32
    v.into_iter().map(|x| (x as f32).to_bits()).collect()
}

fn curl(url: &str, body: &Value) -> Value {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--fail",
            "-m",
            "30",
            "-H",
            "Content-Type: application/json",
            "-d",
        ])
        .arg(body.to_string())
        .arg(url)
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON answer")
}

/// Every prediction of the test, through curl and tritonclient, as the clients saw them.
fn predict_all(base: &str, http: &str, grpc: &str) -> Vec<Seen> {
    let mut seen = Vec::new();
    for row in ROWS {
        let answer = curl(&format!("{base}/predict_iris"), &json!({"features": row}));
        seen.push((
            "/predict_iris".into(),
            f32_bits(row),
            answer["label"].as_str().unwrap_or("").into(),
        ));
        let answer = curl(
            &format!("{base}/v1/models/iris:predict"),
            &json!({"instances": [row]}),
        );
        let class = answer["predictions"][0].as_u64().expect("a class index");
        seen.push((
            "/v1/models/{name}:predict".into(),
            f32_bits(row),
            class.to_string(),
        ));
    }
    for call in e2e::clients::calls_per_row(http, grpc, "iris", &ROWS) {
        let endpoint = if call["client"] == "tritonclient.grpc" {
            GRPC
        } else {
            "/v2/models/{name}/infer"
        };
        let row = call["row"]
            .as_array()
            .expect("row")
            .iter()
            .filter_map(Value::as_f64);
        seen.push((
            endpoint.into(),
            f32_bits(row),
            call["label"].as_str().unwrap_or("").into(),
        ));
    }
    seen
}

fn data(event: &Event) -> Vec<u8> {
    match event.data() {
        Some(Data::Binary(b)) => b.clone(),
        Some(Data::String(s)) => s.clone().into_bytes(),
        Some(Data::Json(j)) => serde_json::to_vec(j).expect("json"),
        None => Vec::new(),
    }
}

fn ext(event: &Event, name: &str) -> String {
    event
        .extension(name)
        .map(ToString::to_string)
        .unwrap_or_default()
}

/// Little-endian FP32 values.
fn fp32(raw: &[u8]) -> Vec<f64> {
    raw.chunks_exact(4)
        .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        .collect()
}

/// The first element of a BYTES tensor in Triton's raw form (4-byte length, then the bytes).
fn first_bytes(raw: &[u8]) -> String {
    let len = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize;
    String::from_utf8_lossy(&raw[4..4 + len]).into_owned()
}

/// The OIP REST body split at `inferenceheadercontentlength` (the whole body without it).
fn oip_rest(event: &Event) -> (Value, Vec<u8>) {
    let body = data(event);
    let split = ext(event, "inferenceheadercontentlength")
        .parse()
        .unwrap_or(body.len());
    (
        serde_json::from_slice(&body[..split]).expect("the JSON part"),
        body[split..].to_vec(),
    )
}

/// What a request event and its response event say: the row sent and the answer.
fn decode(request: &Event, response: &Event) -> Seen {
    let endpoint = ext(request, "endpoint");
    let (row, answer) = match endpoint.as_str() {
        "/predict_iris" => {
            let (req, resp): (Value, Value) = (
                serde_json::from_slice(&data(request)).expect("json"),
                serde_json::from_slice(&data(response)).expect("json"),
            );
            (
                f32_bits(
                    req["features"]
                        .as_array()
                        .expect("features")
                        .iter()
                        .filter_map(Value::as_f64),
                ),
                resp["label"].as_str().unwrap_or("").to_string(),
            )
        }
        "/v1/models/{name}:predict" => {
            let (req, resp): (Value, Value) = (
                serde_json::from_slice(&data(request)).expect("json"),
                serde_json::from_slice(&data(response)).expect("json"),
            );
            (
                f32_bits(
                    req["instances"][0]
                        .as_array()
                        .expect("instances")
                        .iter()
                        .filter_map(Value::as_f64),
                ),
                resp["predictions"][0].to_string(),
            )
        }
        GRPC => {
            let req = ModelInferRequest::decode(&data(request)[..]).expect("a ModelInferRequest");
            let resp =
                ModelInferResponse::decode(&data(response)[..]).expect("a ModelInferResponse");
            let at = resp
                .outputs
                .iter()
                .position(|o| o.name == "label")
                .expect("label output");
            (
                f32_bits(fp32(&req.raw_input_contents[0])),
                first_bytes(&resp.raw_output_contents[at]),
            )
        }
        _ => {
            let ((req, req_bin), (resp, resp_bin)) = (oip_rest(request), oip_rest(response));
            let row = match req["inputs"][0]["data"].as_array() {
                Some(values) => values
                    .iter()
                    .flat_map(|v| v.as_array().cloned().unwrap_or_else(|| vec![v.clone()]))
                    .filter_map(|v| v.as_f64())
                    .collect(),
                None => fp32(&req_bin),
            };
            let label = &resp["outputs"][0];
            assert_eq!(label["name"], "label", "{resp}");
            let answer = match label["data"].as_array() {
                Some(values) => values[0].as_str().unwrap_or("").to_string(),
                None => first_bytes(&resp_bin),
            };
            (f32_bits(row), answer)
        }
    };
    (endpoint, row, answer)
}

/// `model_server_payload_log_<name>_total` on the pod's page.
fn counter(page: &str, name: &str) -> u64 {
    let sample = format!("model_server_payload_log_{name}_total ");
    page.lines()
        .find_map(|l| l.strip_prefix(&sample))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one story in order: events as sent, then the sink gone
async fn each_prediction_is_one_request_and_one_response_event_and_a_dead_sink_costs_nothing() {
    with_temp_ns("payload-log", &[], |client, ns| async move {
        let mut sink = Sink::start();
        let url = format!("http://{}:{}/events", gateway(&client).await, sink.port);
        let spec = format!("  model: {{task: multiclass}}\n  logging: {{url: \"{url}\", mode: all, samplePercent: 100}}");
        let manifest = format!("apiVersion: serving.iris.dev/v1alpha1\nkind: IrisModel\nmetadata: {{name: iris}}\nspec:\n{spec}\n");
        kubectl::apply(&ns, &manifest).expect("the manifest is valid");
        iris::wait_ready(&iris::api(&client, &ns), "iris", READY_WITHIN).await;
        let http = PortForward::start(&ns, "svc/iris", 5001);
        let grpc = PortForward::start(&ns, "svc/iris", 8081);
        let (base, http_addr, grpc_addr) = (http.url(), format!("127.0.0.1:{}", http.port), format!("127.0.0.1:{}", grpc.port));
        let clients_saw = tokio::task::spawn_blocking(move || predict_all(&base, &http_addr, &grpc_addr)).await.expect("predictions");
        let predictions = clients_saw.len();
        assert_eq!(predictions, ROWS.len() * 5);

        // Exactly two events per prediction: wait for them, then a little longer for extras.
        let deadline = Instant::now() + EVENTS_WITHIN;
        while sink.events().len() < 2 * predictions && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let events = sink.events();
        assert_eq!(events.len(), 2 * predictions, "{events:#?}");
        let mut by_id: BTreeMap<String, Vec<&Event>> = BTreeMap::new();
        for e in &events {
            by_id.entry(e.id().to_string()).or_default().push(e);
            assert_eq!(e.specversion().to_string(), "1.0");
            assert_eq!(ext(e, "inferenceservicename"), "iris");
            assert_eq!(ext(e, "namespace"), ns);
            assert!(e.source().to_string().starts_with("http://iris-"), "ce-source {}", e.source());
        }
        assert_eq!(by_id.len(), predictions, "one id per prediction");
        let mut events_say: Vec<Seen> = by_id
            .values()
            .map(|pair| {
                let types: Vec<&str> = pair.iter().map(|e| e.ty()).collect();
                assert_eq!(types, ["org.kubeflow.serving.inference.request", "org.kubeflow.serving.inference.response"], "{pair:#?}");
                decode(pair[0], pair[1])
            })
            .collect();
        let mut clients_saw = clients_saw;
        clients_saw.sort();
        events_say.sort();
        assert_eq!(events_say, clients_saw, "the events carry what was sent and answered");
        assert!(clients_saw.iter().any(|(_, _, label)| LABELS.contains(&label.as_str())));
        assert!(events.iter().any(|e| !ext(e, "inferenceheadercontentlength").is_empty()), "the binary extension's split is carried");

        // The sink goes away: predictions still succeed, and the pod counts every lost event.
        sink.stop();
        let web = e2e::serving::http();
        let lost = 20;
        for _ in 0..lost {
            let answer = web.post(format!("{}/predict_iris", http.url())).json(&json!({"features": ROWS[0]})).send().await.expect("predict");
            assert_eq!(answer.status(), 200, "a prediction failed with the sink down");
        }
        let deadline = Instant::now() + COUNTED_WITHIN;
        let page = loop {
            let page = web.get(format!("{}/metrics", http.url())).send().await.expect("metrics").text().await.expect("text");
            if counter(&page, "failed") + counter(&page, "dropped") >= 2 * lost || Instant::now() > deadline {
                break page;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        assert_eq!(counter(&page, "sent"), 2 * predictions as u64, "{page}");
        assert_eq!(counter(&page, "failed") + counter(&page, "dropped"), 2 * lost, "{page}");
    })
    .await;
}
