//! Autoscaling on a real cluster, with the metrics-server the suite installs
//! (e2e/metrics-server): a bounded CPU load through the model's Service drives an autoscaled
//! model from 1 to 2 pods and, once it stops, back to 1 (the scale-down window set short with
//! the user's field); with the metrics API gone, the IrisModel says the autoscaler cannot act.
//!
//! The load goes only to the cluster's own addresses (through the API server's Service
//! proxy), bounded in count and time. The two tests share the metrics API (one removes it),
//! so they take turns.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::cluster::{self, with_temp_ns};
use e2e::serving::ServiceProxy;
use e2e::{iris, kubectl};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::DynamicObject;
use kube::Api;
use serde_json::{json, Value};

/// The metrics API is the cluster's, not a namespace's: one test at a time may depend on it
/// or take it away (under `cargo test`; nextest runs each test in a process of its own, and
/// .config/nextest.toml's `metrics-api` test group does this).
static METRICS_API: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const APISERVICE: &str = "v1beta1.metrics.k8s.io";
const READY_WITHIN: Duration = Duration::from_secs(90);
/// metrics-server scrapes every 15 s and the HPA controller looks every 15 s: a change of
/// load shows in a replica count within about a minute.
const SCALE_WITHIN: Duration = Duration::from_secs(180);
/// The load's bounds: at most this long, at most this many requests.
const LOAD_FOR_AT_MOST: Duration = Duration::from_secs(180);
const LOAD_AT_MOST_REQUESTS: u64 = 200_000;
const LOAD_WORKERS: usize = 4;
/// Rows per request: a batch makes each request cost the server a millisecond or so of CPU.
const ROWS_PER_REQUEST: usize = 2_000;

/// The IrisModel `iris` (builtin, multiclass) with these further spec fields.
fn model_with(spec: Value) -> String {
    let mut manifest = json!({
        "apiVersion": "serving.iris.dev/v1alpha1",
        "kind": "IrisModel",
        "metadata": {"name": "iris"},
        "spec": {"model": {"task": "multiclass", "source": {"builtin": {}}}}
    });
    if let (Some(into), Value::Object(fields)) = (manifest["spec"].as_object_mut(), spec) {
        into.extend(fields);
    }
    manifest.to_string()
}

/// An autoscaled model whose pods request little CPU, so that a modest load is far above
/// the target, and whose scale-down window is short.
fn autoscaled() -> String {
    model_with(json!({
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"},
                      "limits": {"cpu": "500m", "memory": "64Mi"}},
        "autoscaling": {"minReplicas": 1, "maxReplicas": 2,
                        "targetCPUUtilizationPercentage": 30,
                        "scaleDownStabilizationSeconds": 10}
    }))
}

fn condition(obj: &DynamicObject, type_: &str) -> (String, String, String) {
    let c = iris::condition(obj, type_).cloned().unwrap_or(Value::Null);
    let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
    (s("status"), s("reason"), s("message"))
}

/// A bounded load on the model's Service: LOAD_WORKERS loops of batch predictions until
/// stopped, LOAD_FOR_AT_MOST passed, or LOAD_AT_MOST_REQUESTS were sent.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// As fast as LOAD_WORKERS loops go, with batches of `rows` rows, or at most `per_second`
    /// requests a second over all the loops.
    fn start(proxy: ServiceProxy, model: &str, rows: usize, per_second: Option<u32>) -> Load {
        let pause = per_second.map(|n| Duration::from_secs(LOAD_WORKERS as u64) / n.max(1));
        let rows: Vec<[f64; 4]> = e2e::serving::iris_rows()
            .into_iter()
            .cycle()
            .take(rows)
            .collect();
        let body = Arc::new(json!({ "instances": rows }));
        let path = Arc::new(format!("/v1/models/{model}:predict"));
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + LOAD_FOR_AT_MOST;
        let tasks = (0..LOAD_WORKERS)
            .map(|_| {
                let (proxy, body, path) = (proxy.clone(), body.clone(), path.clone());
                let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
                tokio::spawn(async move {
                    let mut pace = pause.map(tokio::time::interval);
                    while !stop.load(Ordering::Relaxed)
                        && Instant::now() < deadline
                        && sent.fetch_add(1, Ordering::Relaxed) < LOAD_AT_MOST_REQUESTS
                    {
                        if let Some(pace) = pace.as_mut() {
                            pace.tick().await;
                        }
                        if proxy.post_json(&path, &body).await.is_err() {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            sent,
            failed,
            tasks,
        }
    }

    async fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        (
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// Applies the model `iris` and waits until it is Ready and its autoscaler acts
/// (Autoscaling=True), printing the condition's message after `what`.
async fn apply_until_active(
    client: &kube::Client,
    ns: &str,
    manifest: &str,
    what: &str,
) -> Api<DynamicObject> {
    kubectl::apply(ns, manifest).expect("apply");
    let api = iris::api(client, ns);
    iris::wait_ready(&api, "iris", READY_WITHIN).await;
    let active = iris::wait_for(&api, "iris", SCALE_WITHIN, "Autoscaling=True", |o| {
        condition(o, "Autoscaling").0 == "True"
    })
    .await;
    println!("{what}: {}", condition(&active, "Autoscaling").2);
    api
}

async fn wait_replicas(
    client: &kube::Client,
    ns: &str,
    name: &str,
    what: &str,
    ok: fn(i32) -> bool,
) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    cluster::wait_until(
        &deployments,
        name,
        SCALE_WITHIN,
        what,
        move |d: Option<&Deployment>| {
            let ready = d
                .and_then(|d| d.status.as_ref())
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0);
            let spec = d.and_then(|d| d.spec.as_ref()).and_then(|s| s.replicas);
            spec.is_some_and(ok) && ok(ready)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cpu_load_scales_a_model_up_and_back_down_and_the_status_follows() {
    let _turn = METRICS_API.lock().await;
    with_temp_ns("autoscale-cpu", &[], |client, ns| async move {
        // The HPA reads its first metric: the model says the autoscaler acts.
        let api = apply_until_active(&client, &ns, &autoscaled(), "autoscaling").await;

        let t0 = Instant::now();
        let proxy = ServiceProxy::new(client.clone(), &ns, "iris", "5001");
        let load = Load::start(proxy, "iris", ROWS_PER_REQUEST, None);
        wait_replicas(&client, &ns, "iris", "at 2 ready replicas under load", |n| n >= 2).await;
        let up = t0.elapsed();
        iris::wait_for(&api, "iris", SCALE_WITHIN, "status.replicas 2", |o| {
            iris::status(o)["replicas"] == 2
        })
        .await;
        // The load is far above the target: at maxReplicas (2) the model says it is pinned.
        let pinned = iris::wait_for(
            &api,
            "iris",
            SCALE_WITHIN,
            "Autoscaling=False TooManyReplicas at maxReplicas under load",
            |o| {
                let (status, reason, _) = condition(o, "Autoscaling");
                status == "False" && reason == "TooManyReplicas"
            },
        )
        .await;
        let pinned_after = t0.elapsed();
        let (sent, failed) = load.stop().await;
        println!(
            "autoscaling: 1 -> 2 ready pods in {:.1} s under load, pinned at the maximum reported after {:.1} s ({sent} batch requests of {ROWS_PER_REQUEST} rows, {failed} failed): {}",
            up.as_secs_f64(),
            pinned_after.as_secs_f64(),
            condition(&pinned, "Autoscaling").2
        );
        assert!(condition(&pinned, "Autoscaling").2.contains("autoscaling.maxReplicas (2)"));

        let t1 = Instant::now();
        wait_replicas(&client, &ns, "iris", "back at 1 replica after the load", |n| n == 1).await;
        let down = t1.elapsed();
        iris::wait_for(&api, "iris", SCALE_WITHIN, "status.replicas 1", |o| {
            iris::status(o)["replicas"] == 1
        })
        .await;
        println!(
            "autoscaling: 2 -> 1 pod {:.1} s after the load stopped (scaleDownStabilizationSeconds 10)",
            down.as_secs_f64()
        );
        // And it acts again within its bounds.
        iris::wait_for(&api, "iris", SCALE_WITHIN, "Autoscaling=True again", |o| {
            condition(o, "Autoscaling").0 == "True"
        })
        .await;
    })
    .await;
}

/// A model the operator autoscales on its request rate: 10 predictions a second per pod,
/// between 1 and 3 pods, with a short scale-down window.
fn rate_autoscaled() -> String {
    model_with(json!({
        "autoscaling": {"minReplicas": 1, "maxReplicas": 3,
                        "targetRequestsPerSecond": 10,
                        "scaleDownStabilizationSeconds": 10}
    }))
}

/// A paced load of 25 single-row predictions a second asks for ceil(25 / 10) = 3 pods.
const RATE_LOAD_PER_SECOND: u32 = 25;

#[tokio::test(flavor = "multi_thread")]
async fn request_rate_scales_a_model_up_and_back_down_without_an_hpa() {
    // No metrics API needed: the operator reads the pods' own counters.
    with_temp_ns("autoscale-rate", &[], |client, ns| async move {
        let manifest = rate_autoscaled();
        let api = apply_until_active(&client, &ns, &manifest, "autoscaling on the request rate").await;
        let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &ns);
        assert!(
            hpas.get_opt("iris").await.expect("get HPA").is_none(),
            "the operator is this model's autoscaler: no HorizontalPodAutoscaler"
        );

        let t0 = Instant::now();
        let proxy = ServiceProxy::new(client.clone(), &ns, "iris", "5001");
        let load = Load::start(proxy, "iris", 1, Some(RATE_LOAD_PER_SECOND));
        wait_replicas(&client, &ns, "iris", "at 3 ready replicas under load", |n| n >= 3).await;
        let up = t0.elapsed();
        let scaled = iris::wait_for(&api, "iris", SCALE_WITHIN, "status.replicas 3", |o| {
            iris::status(o)["replicas"] == 3
        })
        .await;
        let message = condition(&scaled, "Autoscaling").2;
        let (sent, failed) = load.stop().await;
        println!(
            "autoscaling on the request rate: 1 -> 3 ready pods in {:.1} s under {RATE_LOAD_PER_SECOND} requests/s ({sent} sent, {failed} failed): {message}",
            up.as_secs_f64()
        );
        assert_eq!(failed, 0, "no request fails while the model scales up");
        assert!(message.contains("requests/s"), "{message}");
        let event = e2e::serving::wait_model_event(&client, &ns, "Rescaled", "iris", SCALE_WITHIN).await;
        assert!(event.contains("1 -> "), "{event}");
        println!("autoscaling on the request rate: the IrisModel's Event: {event}");

        let t1 = Instant::now();
        wait_replicas(&client, &ns, "iris", "back at 1 replica after the load", |n| n == 1).await;
        println!(
            "autoscaling on the request rate: 3 -> 1 pod {:.1} s after the load stopped (scaleDownStabilizationSeconds 10)",
            t1.elapsed().as_secs_f64()
        );
        iris::wait_for(&api, "iris", SCALE_WITHIN, "status.replicas 1", |o| {
            iris::status(o)["replicas"] == 1
        })
        .await;
    })
    .await;
}

/// Takes the metrics API away (deletes its APIService) and puts it back when dropped, even
/// when the test fails.
struct MetricsApiRemoved {
    saved: Value,
}

impl MetricsApiRemoved {
    fn now() -> MetricsApiRemoved {
        let mut saved: Value = serde_json::from_str(&kubectl::ok(&[
            "get",
            "apiservice",
            APISERVICE,
            "-o",
            "json",
        ]))
        .expect("APIService JSON");
        if let Some(meta) = saved["metadata"].as_object_mut() {
            for k in [
                "resourceVersion",
                "uid",
                "creationTimestamp",
                "managedFields",
                "generation",
            ] {
                meta.remove(k);
            }
        }
        if let Some(o) = saved.as_object_mut() {
            o.remove("status");
        }
        kubectl::ok(&["delete", "apiservice", APISERVICE, "--wait=true"]);
        MetricsApiRemoved { saved }
    }
}

impl Drop for MetricsApiRemoved {
    fn drop(&mut self) {
        let out = kubectl::run(&["apply", "-f", "-"], Some(&self.saved.to_string()));
        if !out.status.success() {
            eprintln!(
                "could not restore the APIService {APISERVICE}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let _ = kubectl::run(
            &[
                "wait",
                &format!("apiservice/{APISERVICE}"),
                "--for=condition=Available",
                "--timeout=60s",
            ],
            None,
        );
    }
}

/// The first Warning Event about the IrisModel `name` (not its HPA, which has the same name),
/// as "reason: note".
async fn model_warning(client: &kube::Client, ns: &str, name: &str) -> String {
    e2e::serving::wait_warning_event_about(client, ns, Some("IrisModel"), name, SCALE_WITHIN).await
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_metrics_api_the_model_says_its_autoscaler_cannot_act() {
    let _turn = METRICS_API.lock().await;
    let removed = MetricsApiRemoved::now();
    with_temp_ns("autoscale-nometrics", &[], |client, ns| async move {
        kubectl::apply(&ns, &autoscaled()).expect("apply");
        let api = iris::api(&client, &ns);
        let t0 = Instant::now();
        let stuck = iris::wait_for(
            &api,
            "iris",
            SCALE_WITHIN,
            "Autoscaling=False because the HPA cannot get its metric",
            |o| {
                let (status, reason, _) = condition(o, "Autoscaling");
                status == "False" && reason.starts_with("FailedGet")
            },
        )
        .await;
        let (_, reason, message) = condition(&stuck, "Autoscaling");
        println!(
            "autoscaling: without a metrics API, after {:.1} s: {reason}: {message}",
            t0.elapsed().as_secs_f64()
        );
        assert!(message.contains("cannot act"), "{message}");
        assert!(message.contains("metrics"), "{message}");
        // Ready stays about the pods: they serve.
        let (ready, _, _) = condition(&iris::wait_ready(&api, "iris", READY_WITHIN).await, "Ready");
        assert_eq!(ready, "True");
        let event = model_warning(&client, &ns, "iris").await;
        assert!(event.starts_with("FailedGet"), "{event}");
        println!("autoscaling: the IrisModel's Event: {event}");
    })
    .await;
    drop(removed);
}
