//! Scale to zero on a real cluster: a model with `autoscaling.minReplicas: 0` goes to no pod
//! after its idle time, its Service (and `kubectl port-forward service/NAME`) still answers
//! through the activator, which starts a pod and forwards what it held; a burst of concurrent
//! requests to the scaled-to-zero model all succeed; and an activator restarted during a cold
//! start loses none of the requests it had accepted (or refuses them honestly with a 503).
//!
//! Every request goes to the cluster's own addresses (port-forward, the API server's Service
//! proxy), bounded in count; every wait is bounded in time.
use std::time::{Duration, Instant};

use e2e::cluster::{self, with_temp_ns};
use e2e::portforward::PortForward;
use e2e::serving::{self, ServiceProxy};
use e2e::{iris, kubectl};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{DeleteParams, ListParams};
use kube::Api;
use serde_json::{json, Value};

const READY_WITHIN: Duration = Duration::from_secs(90);
/// idleSeconds 10, sampled every 5 s, and the pods' 5 s drain: at zero well within a minute.
const ZERO_WITHIN: Duration = Duration::from_secs(90);
const IDLE_SECONDS: u64 = 10;
/// The burst of concurrent requests sent to the model while it has no pod.
const BURST: usize = 50;
/// Requests held while the activator is restarted.
const HELD_DURING_RESTART: usize = 10;
const ACTIVATOR: &str = "iris-activator";

/// The model `iris` (builtin, multiclass) that scales to zero after 10 s without a request.
fn scales_to_zero() -> String {
    json!({
        "apiVersion": "serving.iris.dev/v1alpha1",
        "kind": "IrisModel",
        "metadata": {"name": "iris"},
        "spec": {
            "model": {"task": "multiclass", "source": {"builtin": {}}},
            "autoscaling": {"minReplicas": 0, "maxReplicas": 2, "targetRequestsPerSecond": 50,
                            "idleSeconds": IDLE_SECONDS, "scaleDownStabilizationSeconds": 0}
        }
    })
    .to_string()
}

fn condition(obj: &kube::api::DynamicObject, type_: &str) -> (String, String, String) {
    let c = iris::condition(obj, type_).cloned().unwrap_or(Value::Null);
    let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
    (s("status"), s("reason"), s("message"))
}

/// The `app.kubernetes.io/name` the Service selects: `model-server` or `iris-activator`.
async fn selected(client: &kube::Client, ns: &str) -> String {
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let service = services.get("iris").await.expect("get the Service");
    service
        .spec
        .and_then(|s| s.selector)
        .and_then(|s| s.get("app.kubernetes.io/name").cloned())
        .unwrap_or_default()
}

/// Waits until the model has no pod (the Deployment asks for none and none runs) and its
/// status says ScaledToZero with Ready=True; returns how long that took.
async fn wait_zero(client: &kube::Client, ns: &str) -> Duration {
    let t0 = Instant::now();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    cluster::wait_until(&deployments, "iris", ZERO_WITHIN, "at 0 replicas", |d| {
        let spec = d.and_then(|d| d.spec.as_ref()).and_then(|s| s.replicas);
        let running = d
            .and_then(|d| d.status.as_ref())
            .and_then(|s| s.replicas)
            .unwrap_or(0);
        spec == Some(0) && running == 0
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector = "app.kubernetes.io/instance=iris,app.kubernetes.io/name=model-server";
    for _ in 0..60 {
        let left = pods
            .list(&ListParams::default().labels(selector))
            .await
            .expect("list pods");
        if left.items.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let api = iris::api(client, ns);
    let zero = iris::wait_for(&api, "iris", ZERO_WITHIN, "Ready=True ScaledToZero", |o| {
        let (status, reason, _) = condition(o, "Ready");
        status == "True" && reason == "ScaledToZero"
    })
    .await;
    println!(
        "scale to zero: Ready: {}; Autoscaling: {}",
        condition(&zero, "Ready").2,
        condition(&zero, "Autoscaling").2
    );
    assert_eq!(iris::status(&zero)["replicas"], 0);
    assert_eq!(
        selected(client, ns).await,
        ACTIVATOR,
        "at zero the Service selects the activator"
    );
    t0.elapsed()
}

/// Sends one KServe v1 prediction of the first iris row through `url`; returns the class.
async fn predict(url: &str) -> Result<u64, String> {
    let text = serving::try_kserve_v1_first_row(url).await?;
    let answer: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    answer["predictions"][0]
        .as_u64()
        .ok_or_else(|| format!("no class: {text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_goes_to_zero_pods_and_wakes_on_the_first_request_through_port_forward() {
    with_temp_ns("zero", &[], |client, ns| async move {
        kubectl::apply(&ns, &scales_to_zero()).expect("apply");
        let api = iris::api(&client, &ns);
        iris::wait_ready(&api, "iris", READY_WITHIN).await;
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        cluster::wait_until(&deployments, ACTIVATOR, READY_WITHIN, "activator ready", |d| {
            d.and_then(|d| d.status.as_ref())
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0)
                >= 1
        })
        .await;
        // The class the model gives the first row, from a warm pod.
        let warm = PortForward::start(&ns, "service/iris", 5001);
        let expected = predict(&warm.url()).await.expect("a warm prediction");
        drop(warm);

        let idle = wait_zero(&client, &ns).await;
        println!("scale to zero: 1 -> 0 pods {:.1} s after the last request (idleSeconds {IDLE_SECONDS})", idle.as_secs_f64());
        let event = serving::wait_model_event(&client, &ns, "ScaledToZero", "iris", ZERO_WITHIN).await;
        println!("scale to zero: the IrisModel's Event: {event}");

        // kubectl port-forward to the Service of a model with no pod reaches the activator.
        let forward = PortForward::start(&ns, "service/iris", 5001);
        let t0 = Instant::now();
        let class = predict(&forward.url()).await.expect("the first request after zero is answered");
        let cold = t0.elapsed();
        println!(
            "scale to zero: first request after zero answered in {:.2} s (cold start, through kubectl port-forward; target < 3 s)",
            cold.as_secs_f64()
        );
        assert_eq!(class, expected, "the cold start answers what a warm pod answers");
        let woken = serving::wait_model_event(&client, &ns, "Woken", "iris", READY_WITHIN).await;
        println!("scale to zero: {woken}");

        // Once a pod is ready the Service selects the model's pods again: no extra hop warm.
        let mut back = false;
        for _ in 0..60 {
            if selected(&client, &ns).await == "model-server" {
                back = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert!(back, "the Service selects the model's pods once one is ready");
        // The port-forward opened at zero keeps working (through the activator) while warm.
        assert_eq!(predict(&forward.url()).await.expect("warm through the activator"), expected);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
#[allow(clippy::too_many_lines)] // one scenario on the cluster, told in order
async fn a_burst_to_a_scaled_to_zero_model_all_succeeds_and_an_activator_restart_loses_nothing() {
    with_temp_ns("zero-burst", &[], |client, ns| async move {
        kubectl::apply(&ns, &scales_to_zero()).expect("apply");
        let api = iris::api(&client, &ns);
        iris::wait_ready(&api, "iris", READY_WITHIN).await;
        wait_zero(&client, &ns).await;

        // 50 concurrent requests through the Service (the API server's proxy) to no pod.
        let proxy = ServiceProxy::new(client.clone(), &ns, "iris", "5001");
        let body = json!({"instances": [serving::iris_rows()[0]]});
        let t0 = Instant::now();
        let burst: Vec<_> = (0..BURST)
            .map(|_| {
                let (proxy, body) = (proxy.clone(), body.clone());
                tokio::spawn(async move {
                    let t = Instant::now();
                    let answer = proxy.post_json("/v1/models/iris:predict", &body).await;
                    (answer, t.elapsed())
                })
            })
            .collect();
        let mut slowest = Duration::ZERO;
        let mut failures = Vec::new();
        for task in burst {
            let (answer, took) = task.await.expect("request task");
            slowest = slowest.max(took);
            match answer {
                Ok(text) if text.contains("\"predictions\"") => {}
                other => failures.push(format!("{other:?}")),
            }
        }
        println!(
            "scale to zero: a burst of {BURST} concurrent requests to zero pods: {} succeeded, slowest {:.2} s, all in {:.2} s",
            BURST - failures.len(),
            slowest.as_secs_f64(),
            t0.elapsed().as_secs_f64()
        );
        assert!(failures.is_empty(), "every request of the burst succeeds: {failures:?}");

        // Back to zero; then requests are held and the activator's pod is deleted while the
        // model's pod starts.
        wait_zero(&client, &ns).await;
        let held: Vec<_> = (0..HELD_DURING_RESTART)
            .map(|_| {
                let (proxy, body) = (proxy.clone(), body.clone());
                tokio::spawn(async move { proxy.post_json("/v1/models/iris:predict", &body).await })
            })
            .collect();
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        cluster::wait_until(&deployments, "iris", READY_WITHIN, "woken (replicas 1)", |d| {
            d.and_then(|d| d.spec.as_ref()).and_then(|s| s.replicas).unwrap_or(0) >= 1
        })
        .await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let activators = pods
            .list(&ListParams::default().labels("app.kubernetes.io/name=iris-activator"))
            .await
            .expect("list the activator's pods");
        let woke_pod_ready = pods
            .list(&ListParams::default().labels("app.kubernetes.io/name=model-server"))
            .await
            .expect("list the model's pods")
            .items
            .iter()
            .any(serving::pod_is_ready);
        for pod in &activators.items {
            let name = pod.metadata.name.clone().unwrap_or_default();
            pods.delete(&name, &DeleteParams::default()).await.expect("delete the activator's pod");
        }
        println!(
            "scale to zero: deleted the activator's pod during the cold start (a model pod ready already: {woke_pod_ready})"
        );
        let (mut answered, mut refused, mut lost) = (0, 0, Vec::new());
        for task in held {
            match task.await.expect("request task") {
                Ok(text) if text.contains("\"predictions\"") => answered += 1,
                // The activator's own honest refusal names the model and the bound.
                Err(e) if e.contains("503") && e.contains("model ") => refused += 1,
                other => lost.push(format!("{other:?}")),
            }
        }
        println!(
            "scale to zero: activator restarted during a cold start: {answered} of {HELD_DURING_RESTART} held requests answered, {refused} refused with 503, {} lost",
            lost.len()
        );
        assert!(lost.is_empty(), "no accepted request is lost: {lost:?}");
        // The new activator takes over.
        cluster::wait_until(&deployments, ACTIVATOR, READY_WITHIN, "a new activator ready", |d| {
            d.and_then(|d| d.status.as_ref())
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0)
                >= 1
        })
        .await;
    })
    .await;
}
