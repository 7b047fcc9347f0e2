//! Scale to zero, measured on the cluster KUBECONFIG points to, with the operator installed
//! (`bench/coldstart.sh`): the cold-start latency of a model with no pod (median and max of
//! COLD_STARTS requests, each after the model went back to zero), and the latency of warm
//! requests to a model that scales to zero against one that does not (target: no measurable
//! difference: its Service selects the model's pods once one is ready).
//!
//! `COLDSTART_CONTROL=1` runs the warm half as a control: both models with `minReplicas: 1`
//! (the same two names), to see what differs between two identical models on this machine.
//!
//! Requests go through each model's NodePort Service at the node's own address (the local
//! cluster only): the path a client in the cluster takes, through kube-proxy.
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use e2e::iris;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

const NS: &str = "iris-coldstart";
const COLD_STARTS: usize = 10;
const IDLE_SECONDS: i64 = 10;
/// Warm requests per model, sent in alternating blocks so both see the same machine.
const WARM_REQUESTS: usize = 2_000;
const BLOCK: usize = 100;
const WAIT: Duration = Duration::from_secs(120);

fn model(name: &str, min: i64) -> DynamicObject {
    let mut obj = DynamicObject::new(name, &iris::resource());
    let mut autoscaling = json!({"minReplicas": min, "maxReplicas": 1,
        "targetRequestsPerSecond": 1_000_000});
    if min == 0 {
        autoscaling["idleSeconds"] = json!(IDLE_SECONDS);
    }
    obj.data = json!({"spec": {
        "model": {"source": {"builtin": {}}},
        "service": {"type": "NodePort"},
        "autoscaling": autoscaling,
    }});
    obj
}

/// `http://NODE-IP:NODE-PORT` of the model's Service.
async fn url(client: &Client, name: &str) -> Result<String> {
    let nodes: Api<Node> = Api::all(client.clone());
    let ip = nodes
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .flat_map(|n| n.status.iter().flat_map(|s| s.addresses.iter().flatten()))
        .find(|a| a.type_ == "InternalIP")
        .map(|a| a.address.clone())
        .context("a node's InternalIP")?;
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    for _ in 0..120 {
        let port = services
            .get_opt(name)
            .await?
            .and_then(|s| s.spec)
            .and_then(|s| s.ports)
            .and_then(|p| p.into_iter().find(|p| p.name.as_deref() == Some("http")))
            .and_then(|p| p.node_port);
        if let Some(port) = port {
            return Ok(format!("http://{ip}:{port}"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("service/{name} has no node port")
}

async fn predict(http: &reqwest::Client, url: &str, name: &str) -> Result<Duration> {
    let t0 = Instant::now();
    let response = http
        .post(format!("{url}/v1/models/{name}:predict"))
        .json(&json!({"instances": [[5.1, 3.5, 1.4, 0.2]]}))
        .send()
        .await?;
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() || !text.contains("\"predictions\"") {
        bail!("{name}: {status}: {text}");
    }
    Ok(t0.elapsed())
}

/// Waits until the model has no pod and its Service selects the activator.
async fn wait_zero(client: &Client, name: &str) -> Result<()> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    let selector = format!("app.kubernetes.io/instance={name},app.kubernetes.io/name=model-server");
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        let replicas = deployments.get(name).await?.spec.and_then(|s| s.replicas);
        let left = pods.list(&ListParams::default().labels(&selector)).await?;
        let through = services
            .get(name)
            .await?
            .spec
            .and_then(|s| s.selector)
            .and_then(|s| s.get("app.kubernetes.io/name").cloned());
        if replicas == Some(0)
            && left.items.is_empty()
            && through.as_deref() == Some("iris-activator")
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("{name} did not go to zero pods within {WAIT:?}")
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

fn summary(label: &str, mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let mean = samples.iter().map(Duration::as_secs_f64).sum::<f64>() / samples.len() as f64;
    let (p50, p99) = (percentile(&samples, 0.5), percentile(&samples, 0.99));
    println!(
        "{label}: {} requests, mean {:.3} ms, p50 {p50:.3} ms, p99 {p99:.3} ms, max {:.3} ms",
        samples.len(),
        mean * 1000.0,
        percentile(&samples, 1.0)
    );
    (p50, p99)
}

async fn run(client: &Client) -> Result<()> {
    let control = std::env::var("COLDSTART_CONTROL").is_ok_and(|v| v == "1");
    let models = iris::api(client, NS);
    for (name, min) in [("zero", i64::from(control)), ("always", 1)] {
        models
            .patch(
                name,
                &PatchParams::apply("coldstart-bench").force(),
                &Patch::Apply(&model(name, min)),
            )
            .await?;
    }
    for name in ["zero", "always"] {
        iris::wait_ready(&models, name, WAIT).await;
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let (zero, always) = (url(client, "zero").await?, url(client, "always").await?);
    // A new node port answers once kube-proxy has programmed it (a second or so).
    for (url, name) in [(&zero, "zero"), (&always, "always")] {
        let deadline = Instant::now() + WAIT;
        while let Err(e) = predict(&http, url, name).await {
            if Instant::now() >= deadline {
                bail!("{name} at {url} does not answer: {e:#}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    // Warm: both models have a pod; the scale-to-zero one's Service selects it directly.
    for _ in 0..100 {
        predict(&http, &zero, "zero").await?;
        predict(&http, &always, "always").await?;
    }
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for block in 0..WARM_REQUESTS / BLOCK {
        // Each goes first in every other block, so neither gains from the order.
        for first in [block % 2 == 0, block % 2 != 0] {
            for _ in 0..BLOCK {
                if first {
                    with.push(predict(&http, &zero, "zero").await?);
                } else {
                    without.push(predict(&http, &always, "always").await?);
                }
            }
        }
    }
    let label = if control {
        "warm, control: model zero with minReplicas 1"
    } else {
        "warm, minReplicas 0 (scale to zero)"
    };
    let (p50_with, p99_with) = summary(label, with);
    let (p50_without, p99_without) = summary("warm, minReplicas 1", without);
    println!(
        "warm difference (scale to zero minus not): p50 {:+.3} ms, p99 {:+.3} ms",
        p50_with - p50_without,
        p99_with - p99_without
    );
    if control {
        return Ok(());
    }
    // Cold: each request after the model went back to zero pods.
    let mut cold = Vec::new();
    for i in 1..=COLD_STARTS {
        wait_zero(client, "zero").await?;
        let took = predict(&http, &zero, "zero").await?;
        println!("cold start {i}: {:.2} s", took.as_secs_f64());
        cold.push(took);
    }
    cold.sort();
    let middle = cold.len() / 2;
    let median = if cold.len() % 2 == 0 {
        (cold[middle - 1] + cold[middle]).as_secs_f64() / 2.0
    } else {
        cold[middle].as_secs_f64()
    };
    println!(
        "cold start (a request to zero pods, through the Service, answered): median {median:.2} s, max {:.2} s over {COLD_STARTS} (target < 3 s)",
        percentile(&cold, 1.0) / 1000.0
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    rustls::crypto::ring::default_provider()
        .install_default()
        .ok();
    let client = Client::try_default().await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NS}}))?;
    // A namespace left terminating by the last run is waited out (at most 2 minutes).
    for _ in 0..240 {
        match namespaces.get_opt(NS).await? {
            Some(old) if old.metadata.deletion_timestamp.is_some() => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            _ => break,
        }
    }
    if namespaces.get_opt(NS).await?.is_none() {
        namespaces.create(&PostParams::default(), &ns).await?;
    }
    let result = run(&client).await;
    namespaces.delete(NS, &DeleteParams::background()).await?;
    result
}
