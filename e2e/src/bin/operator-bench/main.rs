//! Operator benchmarks on the cluster KUBECONFIG points to, with the operator installed
//! (`bench/operator.sh` runs this and writes the figures to BENCHMARKS.md):
//!
//! 1. apply-to-Ready: the time from creating an IrisModel to Ready=True, split into the
//!    operator's share (create -> first pod exists, and pod Ready -> IrisModel Ready) and the
//!    pod's own start (pod created -> pod Ready), over several models.
//! 2. unchanged reconcile: an annotation on a child Service makes the operator reconcile; the
//!    resourceVersions of the IrisModel and of its children (after the touch) must not move,
//!    i.e. zero writes.
//! 3. 5,000 IrisModels (BENCH_MODELS) created at once (replicas 0): time until every one has a
//!    Deployment, a Service and a status for its generation; then a full resync with nothing
//!    changed (a fresh operator process reconciles every model: its write counter must stay
//!    at 0), and the time one change takes to converge while they all exist.
//! 4. the operator's memory (working set and RSS from the kubelet's summary API) idle and
//!    after 3.
//! 5. a canary with the shortest steps allowed (one step, held 10 s): the time from a model
//!    change to Promoted, with a light client loop through the Service.
//! 6. the operator's memory with 50 canaries under way (replicas 0 models, so one canary pod
//!    each; their steps hold for an hour).
mod memory;
mod scale;

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use e2e::cluster;
use e2e::iris;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use serde_json::json;

use memory::{operator_memory, print_memory};
use scale::{many_at_once, one_change, operator_metric, resync_writes};

fn model(name: &str, replicas: i32) -> DynamicObject {
    let mut obj = DynamicObject::new(name, &iris::resource());
    obj.data = json!({"spec": {"replicas": replicas, "model": {"task": "binary", "positiveClass": "setosa", "source": {"builtin": {}}}}});
    obj
}

async fn fresh_namespace(client: &Client, name: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(name).await?.is_some() {
        api.delete(name, &DeleteParams::background()).await?;
        while api.get_opt(name).await?.is_some() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    api.create(&PostParams::default(), &ns).await?;
    Ok(())
}

/// Seconds between two instants.
fn secs(a: Instant, b: Instant) -> f64 {
    b.duration_since(a).as_secs_f64()
}

async fn apply_to_ready(client: &Client, ns: &str, runs: usize) -> Result<Vec<(f64, f64, f64)>> {
    let models = iris::api(client, ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut results = Vec::new();
    for i in 0..runs {
        let name = format!("latency-{i}");
        let mut pod_events = watcher(
            pods.clone(),
            watcher::Config::default().labels(&format!("app.kubernetes.io/instance={name}")),
        )
        .applied_objects()
        .boxed();
        let mut model_events = watcher(
            models.clone(),
            watcher::Config::default().fields(&format!("metadata.name={name}")),
        )
        .applied_objects()
        .boxed();
        let t0 = Instant::now();
        models
            .create(&PostParams::default(), &model(&name, 1))
            .await?;
        let (mut pod_seen, mut pod_ready, mut model_ready) = (None, None, None);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while model_ready.is_none() || pod_ready.is_none() {
            tokio::select! {
                Some(p) = pod_events.next() => {
                    let p = p?;
                    pod_seen.get_or_insert_with(Instant::now);
                    if pod_ready.is_none() && e2e::serving::pod_is_ready(&p) { pod_ready = Some(Instant::now()); }
                }
                Some(m) = model_events.next() => {
                    if model_ready.is_none() && iris::is_ready_now(&m?) { model_ready = Some(Instant::now()); }
                }
                _ = tokio::time::sleep_until(deadline) => bail!("{name} not Ready within 120 s"),
            }
        }
        let (seen, ready, done) = (pod_seen.unwrap(), pod_ready.unwrap(), model_ready.unwrap());
        let total = secs(t0, done);
        let pod_start = secs(seen, ready);
        results.push((total, pod_start, total - pod_start));
        models.delete(&name, &DeleteParams::background()).await?;
    }
    Ok(results)
}

async fn unchanged_reconcile_writes(client: &Client, ns: &str) -> Result<(usize, String)> {
    let models = iris::api(client, ns);
    let name = "steady";
    models
        .create(&PostParams::default(), &model(name, 1))
        .await?;
    iris::wait_ready(&models, name, Duration::from_secs(120)).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let reconciles_before = operator_metric(client, "reconcile")
        .await
        .unwrap_or_default();
    // An annotation on the Service is a change to an owned child: the operator reconciles the
    // IrisModel, and must find nothing to write (the annotation is not one of its fields).
    services
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"example.com/touched": "yes"}}})),
        )
        .await?;
    let rv = |o: Option<String>| o.unwrap_or_default();
    let before = (
        rv(models.get(name).await?.metadata.resource_version),
        rv(deployments.get(name).await?.metadata.resource_version),
        rv(services.get(name).await?.metadata.resource_version),
    );
    // Wait (bounded) for the operator to have reconciled the touch, by its own counter.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = operator_metric(client, "reconcile")
            .await
            .unwrap_or_default();
        if now > reconciles_before {
            break;
        }
        if Instant::now() > deadline {
            bail!("the operator did not reconcile after the Service changed (reconciles {now})");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = (
        rv(models.get(name).await?.metadata.resource_version),
        rv(deployments.get(name).await?.metadata.resource_version),
        rv(services.get(name).await?.metadata.resource_version),
    );
    let writes = [
        before.0 != after.0,
        before.1 != after.1,
        before.2 != after.2,
    ]
    .iter()
    .filter(|c| **c)
    .count();
    Ok((
        writes,
        format!("resourceVersions before {before:?} after {after:?}"),
    ))
}

fn canary_model(name: &str, replicas: i32, hold: i32) -> DynamicObject {
    let mut obj = model(name, replicas);
    obj.data["spec"]["resources"] = json!({"requests": {"cpu": "1m", "memory": "16Mi"},
        "limits": {"memory": "128Mi"}});
    obj.data["spec"]["rollout"] = json!({"strategy": "Canary", "canary": {
        "steps": [{"weight": 50, "holdSeconds": hold}],
        "analysis": {"minRequests": 20}}});
    obj
}

fn phase_of(obj: &DynamicObject) -> String {
    iris::status(obj)["rollout"]["phase"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// Seconds from a model change to Promoted, with the shortest steps allowed.
async fn canary_promotion(client: &Client, ns: &str) -> Result<f64> {
    let models = iris::api(client, ns);
    models
        .create(&PostParams::default(), &canary_model("canary", 1, 10))
        .await?;
    iris::wait_ready(&models, "canary", Duration::from_secs(120)).await;
    let proxy = e2e::serving::ServiceProxy::new(client.clone(), ns, "canary", "http");
    let looper = e2e::serving::ClientLoop::start(proxy);
    let t0 = Instant::now();
    let patch = json!({"spec": {"model": {"training": {"seed": 7}}}});
    models
        .patch("canary", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    iris::wait_for(
        &models,
        "canary",
        Duration::from_secs(180),
        "Promoted",
        |o| phase_of(o) == "Promoted" && iris::is_ready_now(o),
    )
    .await;
    let took = secs(t0, Instant::now());
    let (report, _) = looper.stop().await;
    eprintln!("  client loop during the canary: {report:?}");
    Ok(took)
}

/// Starts `count` canaries (replicas 0 models changed once); returns when all run a step.
async fn canaries_under_way(client: &Client, ns: &str, count: usize) -> Result<f64> {
    let models = iris::api(client, ns);
    let t0 = Instant::now();
    for i in 0..count {
        models
            .create(
                &PostParams::default(),
                &canary_model(&format!("c-{i}"), 0, 3600),
            )
            .await?;
    }
    // Each has its (empty) stable Deployment first, then gets a change.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(300);
    while deployments.list(&ListParams::default()).await?.items.len() < count {
        if Instant::now() > deadline {
            bail!("stable Deployments not all made within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let patch = json!({"spec": {"model": {"training": {"seed": 7}}}});
    for i in 0..count {
        models
            .patch(
                &format!("c-{i}"),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
    }
    loop {
        let running = models
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|m| phase_of(m) == "Canary")
            .count();
        if running >= count {
            return Ok(secs(t0, Instant::now()));
        }
        if Instant::now() > deadline {
            bail!("after 300 s: {running}/{count} canaries under way");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let client = cluster::client().await;
    let count: usize = std::env::var("BENCH_MODELS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let ns = "iris-bench";
    // BENCH_EXISTING=1: the 5,000 models of an earlier run are still there (it ran out of
    // time): skip to waiting for them, then the resync and the change.
    let existing = std::env::var_os("BENCH_EXISTING").is_some();
    if !existing {
        fresh_namespace(&client, ns).await?;
    }

    print_memory("idle", operator_memory(&client).await?);

    let runs = if existing {
        Vec::new()
    } else {
        apply_to_ready(&client, ns, 5).await?
    };
    for (total, pod, operator) in &runs {
        println!("apply->Ready {total:.3} s = pod start {pod:.3} s + operator {operator:.3} s");
    }
    let mut ops: Vec<f64> = runs.iter().map(|r| r.2).collect();
    ops.sort_by(f64::total_cmp);
    if !ops.is_empty() {
        println!(
            "apply->Ready minus pod start: median {:.3} s, max {:.3} s",
            ops[ops.len() / 2],
            ops[ops.len() - 1]
        );
        let (writes, detail) = unchanged_reconcile_writes(&client, ns).await?;
        println!("unchanged reconcile: {writes} writes ({detail})");
    }

    let took = many_at_once(&client, ns, count, existing).await?;
    println!(
        "{count} IrisModels at once: all reconciled (Deployment, Service, status) in {took:.1} s"
    );
    print_memory(
        &format!("after {count} models"),
        operator_memory(&client).await?,
    );
    let (resync, writes) = resync_writes(&client, count).await?;
    println!(
        "full resync of {count} unchanged models by a restarted operator: {count} reconciles \
         {resync:.1} s after the restart, {writes} writes (target 0)"
    );
    let change = one_change(&client, ns, "many-0").await?;
    println!("one change with {count} models: observed in {change:.3} s (target 2 s)");
    print_memory(
        &format!("after the resync of {count} models (target under 64 MiB)"),
        operator_memory(&client).await?,
    );

    let canary_ns = "iris-bench-canary";
    if std::env::var_os("BENCH_SKIP_CANARIES").is_some() {
        println!("canaries: skipped (BENCH_SKIP_CANARIES)");
        Api::<Namespace>::all(client.clone())
            .delete(ns, &DeleteParams::background())
            .await?;
        return Ok(());
    }
    fresh_namespace(&client, canary_ns).await?;
    let took = canary_promotion(&client, canary_ns).await?;
    println!("canary with one 10 s step: model change -> Promoted in {took:.1} s");
    fresh_namespace(&client, canary_ns).await?;
    let canaries = 50;
    let took = canaries_under_way(&client, canary_ns, canaries).await?;
    println!("{canaries} canaries under way after {took:.1} s");
    print_memory(
        &format!("with {canaries} canaries under way"),
        operator_memory(&client).await?,
    );

    for ns in [ns, canary_ns] {
        Api::<Namespace>::all(client.clone())
            .delete(ns, &DeleteParams::background())
            .await?;
    }
    Ok(())
}
