//! Talking to a served model: the tutorial route, KServe v1 and Open Inference Protocol v2,
//! the digest it serves, the same model trained here to know the expected answers, and a
//! client loop through the API server's Service proxy. (The waits on Events are in
//! [`crate::events`], re-exported here for the tests that name them from this module.)
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use iris_model::{IrisClass, Task, TrainingParams};
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use serde_json::{json, Value};

pub use crate::events::{wait_model_event, wait_warning_event, wait_warning_event_about};

/// Training parameters of a binary "is it `class`?" model, as the examples write them.
pub fn params_binary(class: &str, seed: u64) -> TrainingParams {
    TrainingParams {
        task: Task::Binary,
        positive_class: Some(class.parse::<IrisClass>().expect("an Iris class")),
        seed,
        ..TrainingParams::default()
    }
}

/// Training parameters of a multiclass model.
pub fn params_multiclass(seed: u64) -> TrainingParams {
    TrainingParams {
        task: Task::Multiclass,
        positive_class: None,
        seed,
        ..TrainingParams::default()
    }
}

/// The artifact `model-server train` writes for `params` (what goes into a ConfigMap).
pub fn train_artifact_json(params: &TrainingParams) -> String {
    iris_model::train(params)
        .expect("training")
        .to_json_pretty()
}

/// The 150 rows of the Iris data set.
pub fn iris_rows() -> Vec<[f64; 4]> {
    iris_model::iris::dataset()
        .iter()
        .map(|s| s.features)
        .collect()
}

/// What a served model must answer: the digest and the label of each Iris row, from the same
/// model trained here, plus the true labels.
pub struct Expected {
    pub digest: String,
    /// The label of each row.
    pub labels: Vec<String>,
    /// The class index of each row (binary: 1 = the positive class).
    pub classes: Vec<u64>,
    truth: Vec<String>,
}

impl Expected {
    pub fn train(params: &TrainingParams) -> Expected {
        let artifact = iris_model::train(params).expect("training");
        let predictions = artifact.predict(&iris_rows());
        let labels = predictions
            .iter()
            .map(|p| artifact.label(p.class_index).to_string())
            .collect();
        let classes = predictions.iter().map(|p| p.class_index as u64).collect();
        // Binary labels are ["not_<class>", "<class>"]; multiclass labels are the classes.
        let truth = iris_model::iris::dataset()
            .iter()
            .map(|s| match artifact.positive_class() {
                Some(p) if s.class != p => artifact.label(0).to_string(),
                Some(_) => artifact.label(1).to_string(),
                None => s.class.to_string(),
            })
            .collect();
        Expected {
            digest: artifact.digest().to_string(),
            labels,
            classes,
            truth,
        }
    }

    /// The share of `labels` equal to the true labels.
    pub fn accuracy_of(&self, labels: &[String]) -> f64 {
        let right = labels
            .iter()
            .zip(&self.truth)
            .filter(|(a, b)| a == b)
            .count();
        right as f64 / self.truth.len() as f64
    }
}

/// An HTTP client with a 10 s timeout per request.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

async fn post(url: &str, body: Value) -> Value {
    let resp = http()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = resp.status();
    let text = resp.text().await.expect("response body");
    assert!(status.is_success(), "POST {url}: {status}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("POST {url}: not JSON ({e}): {text}"))
}

/// The tutorial's route, one request per row: `{"features":[..]}` -> `{"label":..}`.
pub async fn labels_via_predict_iris(url: &str, rows: &[[f64; 4]]) -> Vec<String> {
    let mut labels = Vec::with_capacity(rows.len());
    for row in rows {
        let answer = post(&format!("{url}/predict_iris"), json!({ "features": row })).await;
        labels.push(
            answer["label"]
                .as_str()
                .unwrap_or_else(|| panic!("no label: {answer}"))
                .to_string(),
        );
    }
    labels
}

/// KServe v1: `POST /v1/models/NAME:predict` with all rows as instances; the predictions are
/// class indices, as KServe's sklearn runtime answers.
pub async fn classes_via_kserve_v1(url: &str, model: &str, rows: &[[f64; 4]]) -> Vec<u64> {
    let answer = post(
        &format!("{url}/v1/models/{model}:predict"),
        json!({ "instances": rows }),
    )
    .await;
    answer["predictions"]
        .as_array()
        .unwrap_or_else(|| panic!("no predictions: {answer}"))
        .iter()
        .map(|p| {
            p.as_u64()
                .unwrap_or_else(|| panic!("not a class index: {p}"))
        })
        .collect()
}

/// One KServe v1 prediction of the first Iris row through `url` (model `iris`): the response
/// body of a 2xx answer, else the status and body (or the transport error) as the error.
pub async fn try_kserve_v1_first_row(url: &str) -> Result<String, String> {
    let response = http()
        .post(format!("{url}/v1/models/iris:predict"))
        .json(&serde_json::json!({"instances": [iris_rows()[0]]}))
        .send()
        .await
        .map_err(|e| format!("POST: {e}"))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| format!("body: {e}"))?;
    if status.is_success() {
        Ok(text)
    } else {
        Err(format!("{status}: {text}"))
    }
}

/// Open Inference Protocol v2: `POST /v2/models/NAME/infer`, FP32 [N,4], the `label` output.
pub async fn labels_via_oip_v2(url: &str, model: &str, rows: &[[f64; 4]]) -> Vec<String> {
    let flat: Vec<f32> = rows.iter().flatten().map(|v| *v as f32).collect();
    let body = json!({
        "id": "e2e",
        "inputs": [{"name": "input-0", "shape": [rows.len(), 4], "datatype": "FP32", "data": flat}]
    });
    let answer = post(&format!("{url}/v2/models/{model}/infer"), body).await;
    assert_eq!(answer["model_name"], model, "{answer}");
    assert_eq!(answer["id"], "e2e", "{answer}");
    let label = answer["outputs"]
        .as_array()
        .and_then(|o| o.iter().find(|o| o["name"] == "label"))
        .unwrap_or_else(|| panic!("no label output: {answer}"));
    assert_eq!(label["datatype"], "BYTES");
    assert_eq!(label["shape"], json!([rows.len()]));
    label["data"]
        .as_array()
        .expect("label data")
        .iter()
        .map(|v| v.as_str().expect("a string label").to_string())
        .collect()
}

/// The digest in the `model_info` gauge of `/metrics`.
pub async fn served_digest(url: &str) -> String {
    let text = http()
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics body");
    digest_in_metrics(&text).unwrap_or_else(|| panic!("no model_info digest in /metrics:\n{text}"))
}

fn digest_in_metrics(text: &str) -> Option<String> {
    let line = text
        .lines()
        .find(|l| l.starts_with("model_server_model_info{"))?;
    let start = line.find("digest=\"")? + "digest=\"".len();
    let end = start + line[start..].find('"')?;
    Some(line[start..end].to_string())
}

/// Whether a pod's Ready condition is True.
pub fn pod_is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Requests to a Service through the API server's proxy
/// (`/api/v1/namespaces/NS/services/NAME:PORT/proxy/...`), which sends each request to a
/// ready endpoint of the Service.
#[derive(Clone)]
pub struct ServiceProxy {
    client: Client,
    base: String,
}

impl ServiceProxy {
    pub fn new(client: Client, ns: &str, service: &str, port: &str) -> ServiceProxy {
        ServiceProxy {
            client,
            base: format!("/api/v1/namespaces/{ns}/services/{service}:{port}/proxy"),
        }
    }

    async fn send(&self, req: http::Request<Vec<u8>>) -> Result<String, String> {
        self.client
            .request_text(req)
            .await
            .map_err(|e| e.to_string())
    }

    pub async fn get(&self, path: &str) -> Result<String, String> {
        let req = http::Request::get(format!("{}{path}", self.base))
            .body(Vec::new())
            .map_err(|e| e.to_string())?;
        self.send(req).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Result<String, String> {
        let req = http::Request::post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(body).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        self.send(req).await
    }
}

/// What a [`ClientLoop`] saw.
#[derive(Debug, Default, Clone)]
pub struct LoopReport {
    pub ok: u64,
    pub failed: u64,
    pub first_errors: Vec<String>,
}

/// Sends predictions (and reads the served digest) in a loop until stopped.
pub struct ClientLoop {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    errors: Arc<Mutex<Vec<String>>>,
    /// The last 10 digests the loop read from /metrics, oldest first.
    last_digests: tokio::sync::watch::Receiver<Vec<String>>,
    /// Every digest the loop read, with how often.
    all_digests: Arc<Mutex<std::collections::BTreeMap<String, u64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ClientLoop {
    pub fn start(proxy: ServiceProxy) -> ClientLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let (digests_tx, last_digests) = tokio::sync::watch::channel(Vec::new());
        let all_digests = Arc::new(Mutex::new(std::collections::BTreeMap::new()));
        let task = {
            let (stop, ok, failed, errors) =
                (stop.clone(), ok.clone(), failed.clone(), errors.clone());
            let all = all_digests.clone();
            tokio::spawn(async move {
                let body = json!({"features": [6.1, 2.8, 4.7, 1.2]});
                // About 50 rounds a second: enough to catch a gap, gentle on a 2-core machine.
                let mut pace = tokio::time::interval(Duration::from_millis(20));
                while !stop.load(Ordering::Relaxed) {
                    pace.tick().await;
                    let predicted = proxy.post_json("/predict_iris", &body).await;
                    let metrics = proxy.get("/metrics").await;
                    for result in [&predicted, &metrics] {
                        match result {
                            Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                            Err(e) => {
                                let mut errs = errors.lock().expect("errors lock");
                                if errs.len() < 5 {
                                    errs.push(e.clone());
                                }
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                    }
                    if let Ok(text) = metrics {
                        if let Some(d) = digest_in_metrics(&text) {
                            *all.lock()
                                .expect("digests lock")
                                .entry(d.clone())
                                .or_insert(0) += 1;
                            digests_tx.send_modify(|seen| {
                                seen.push(d);
                                let excess = seen.len().saturating_sub(10);
                                seen.drain(..excess);
                            });
                        }
                    }
                }
            })
        };
        ClientLoop {
            stop,
            ok,
            failed,
            errors,
            last_digests,
            all_digests,
            task,
        }
    }

    /// Stops the loop now; reports, with every digest it read and how often.
    pub async fn stop(self) -> (LoopReport, std::collections::BTreeMap<String, u64>) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let report = LoopReport {
            ok: self.ok.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            first_errors: self.errors.lock().expect("errors lock").clone(),
        };
        let digests = self.all_digests.lock().expect("digests lock").clone();
        (report, digests)
    }

    /// Keeps the loop running until its last 10 reads of the served digest all equal
    /// `digest` (or `timeout`), then stops it and reports.
    pub async fn stop_after_seeing(self, digest: &str, timeout: Duration) -> LoopReport {
        let settled = |seen: &Vec<String>| seen.len() == 10 && seen.iter().all(|d| d == digest);
        let mut digests = self.last_digests.clone();
        let _ = tokio::time::timeout(timeout, digests.wait_for(settled)).await;
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let seen = self.last_digests.borrow().clone();
        assert!(
            settled(&seen),
            "the Service did not settle on digest {digest} within {timeout:?}; last reads: {seen:?}"
        );
        LoopReport {
            ok: self.ok.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            first_errors: self.errors.lock().expect("errors lock").clone(),
        }
    }
}
