//! A soak on the cluster KUBECONFIG points to, with the operator installed (`bench/soak.sh`):
//! two models under a steady client loop each (through the API server's Service proxy: only
//! the local cluster is reached), one of them changed every 2 minutes, for 10 minutes
//! (SOAK_SECONDS). At the end: no failed request, the memory of the steady model's server and
//! of the operator within 10% of their memory after the warm-up, and no growth of their open
//! file descriptors. Exits non-zero on a miss, after printing every figure.
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use e2e::cluster::{self, OPERATOR_NAMESPACE, OPERATOR_SELECTOR};
use e2e::iris;
use e2e::serving::{pod_is_ready, ClientLoop, ServiceProxy};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};

const NS: &str = "iris-soak";
const WARM_UP: Duration = Duration::from_secs(60);
const CHANGE_EVERY: Duration = Duration::from_secs(120);
/// Memory at the end may exceed the warm-up figure by this fraction at most.
const MEMORY_GROWTH: f64 = 0.10;
/// Open descriptors may move by this much (a pooled connection opened or closed).
const FD_SLACK: i64 = 2;

fn model(name: &str) -> DynamicObject {
    let mut obj = DynamicObject::new(name, &iris::resource());
    obj.data = json!({"spec": {"replicas": 1, "model": {"source": {"builtin": {}}}}});
    obj
}

/// The one running pod selected by `labels` in `ns`.
async fn pod(client: &Client, ns: &str, labels: &str) -> Result<Pod> {
    Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(labels))
        .await?
        .items
        .into_iter()
        .find(|p| p.metadata.deletion_timestamp.is_none() && pod_is_ready(p))
        .with_context(|| format!("a ready pod {labels} in {ns}"))
}

/// The pod's working set in MiB, from the kubelet's summary API.
async fn working_set_mib(client: &Client, pod: &Pod) -> Result<f64> {
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .context("a scheduled pod")?;
    let name = pod.metadata.name.clone().unwrap_or_default();
    let req =
        http::Request::get(format!("/api/v1/nodes/{node}/proxy/stats/summary")).body(Vec::new())?;
    let summary: Value = client.request(req).await?;
    let bytes = summary["pods"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["podRef"]["name"] == name.as_str()))
        .and_then(|p| p["containers"][0]["memory"]["workingSetBytes"].as_f64())
        .with_context(|| format!("{name} in the kubelet's summary"))?;
    Ok(bytes / 1024.0 / 1024.0)
}

/// Open file descriptors of the pod's processes, from /proc on this host (kind's nodes are
/// containers here, so their processes are visible), found by the pod UID in their cgroup.
fn open_fds(pod: &Pod) -> Option<i64> {
    let uid = pod.metadata.uid.clone()?;
    let forms = [uid.clone(), uid.replace('-', "_")];
    let mut total = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let path = entry.path();
        let Ok(cgroup) = std::fs::read_to_string(path.join("cgroup")) else {
            continue;
        };
        if !forms.iter().any(|f| cgroup.contains(f.as_str())) {
            continue;
        }
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim() == "pause" {
            continue;
        }
        if let Ok(fds) = std::fs::read_dir(path.join("fd")) {
            *total.get_or_insert(0) += fds.count() as i64;
        }
    }
    total
}

struct Sample {
    steady_mib: f64,
    operator_mib: f64,
    steady_fds: Option<i64>,
    operator_fds: Option<i64>,
}

async fn sample(client: &Client) -> Result<Sample> {
    let steady = pod(client, NS, "app.kubernetes.io/instance=steady").await?;
    let operator = pod(client, OPERATOR_NAMESPACE, OPERATOR_SELECTOR).await?;
    Ok(Sample {
        steady_mib: working_set_mib(client, &steady).await?,
        operator_mib: working_set_mib(client, &operator).await?,
        steady_fds: open_fds(&steady),
        operator_fds: open_fds(&operator),
    })
}

/// Deletes the soak's namespace of an earlier run (waiting until it is gone), then creates it.
async fn fresh_namespace(namespaces: &Api<Namespace>) -> Result<()> {
    if namespaces.get_opt(NS).await?.is_some() {
        namespaces.delete(NS, &DeleteParams::background()).await?;
        while namespaces.get_opt(NS).await?.is_some() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NS}}))?,
        )
        .await?;
    Ok(())
}

/// The targets missed: a failed request, memory grown by more than MEMORY_GROWTH, open
/// descriptors grown by more than FD_SLACK.
fn misses(warm: &Sample, end: &Sample, failed: u64, errors: &[String]) -> Vec<String> {
    let growth = |a: f64, b: f64| (b - a) / a;
    let mut misses = Vec::new();
    if failed > 0 {
        misses.push(format!("{failed} failed requests: {errors:?}"));
    }
    for (what, a, b) in [
        ("model server", warm.steady_mib, end.steady_mib),
        ("operator", warm.operator_mib, end.operator_mib),
    ] {
        if growth(a, b) > MEMORY_GROWTH {
            misses.push(format!("{what} memory grew {:.1}%", 100.0 * growth(a, b)));
        }
    }
    for (what, a, b) in [
        ("model server", warm.steady_fds, end.steady_fds),
        ("operator", warm.operator_fds, end.operator_fds),
    ] {
        match (a, b) {
            (Some(a), Some(b)) if b - a > FD_SLACK => {
                misses.push(format!("{what} open fds grew {a} -> {b}"))
            }
            (Some(_), Some(_)) => {}
            _ => println!("{what}: open fds not visible from this host (not counted)"),
        }
    }
    misses
}

/// Changes the "changing" model every CHANGE_EVERY until the soak's end is near, waiting each
/// time until it is Ready for the change; returns the count, each change's time to Ready, and a
/// sample after each period.
async fn change_every_period(
    client: &Client,
    models: &Api<DynamicObject>,
    duration: Duration,
    started: Instant,
) -> Result<(u64, Vec<f64>, Vec<Sample>)> {
    let mut changes = 0u64;
    let mut converged = Vec::new();
    let mut series = Vec::new();
    while started.elapsed() + CHANGE_EVERY <= duration + WARM_UP / 2 {
        let next = Instant::now() + CHANGE_EVERY;
        changes += 1;
        let t0 = Instant::now();
        let patched = models
            .patch(
                "changing",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"model": {"training": {"seed": 1000 + changes}}}})),
            )
            .await?;
        let generation = iris::generation(&patched);
        iris::wait_for(
            models,
            "changing",
            CHANGE_EVERY,
            "Ready for the change",
            |o| iris::is_ready_now(o) && iris::generation(o) == generation,
        )
        .await;
        converged.push(t0.elapsed().as_secs_f64());
        tokio::time::sleep_until(next.into()).await;
        // One sample per period, so a miss shows whether memory climbs or stepped once.
        series.push(sample(client).await?);
    }
    Ok((changes, converged, series))
}

#[tokio::main]
async fn main() -> Result<()> {
    let duration = Duration::from_secs(
        std::env::var("SOAK_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(600),
    );
    let client = cluster::client().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    fresh_namespace(&namespaces).await?;
    let models = iris::api(&client, NS);
    for name in ["steady", "changing"] {
        models.create(&PostParams::default(), &model(name)).await?;
    }
    for name in ["steady", "changing"] {
        iris::wait_ready(&models, name, Duration::from_secs(120)).await;
    }
    let loops: Vec<ClientLoop> = ["steady", "changing"]
        .into_iter()
        .map(|name| ClientLoop::start(ServiceProxy::new(client.clone(), NS, name, "http")))
        .collect();
    let started = Instant::now();
    tokio::time::sleep(WARM_UP).await;
    let warm = sample(&client).await?;
    let (changes, converged, series) =
        change_every_period(&client, &models, duration, started).await?;
    let remaining = duration.saturating_sub(started.elapsed());
    tokio::time::sleep(remaining).await;
    let end = sample(&client).await?;
    let mut ok = 0;
    let mut failed = 0;
    let mut errors = Vec::new();
    for l in loops {
        let (report, _) = l.stop().await;
        ok += report.ok;
        failed += report.failed;
        errors.extend(report.first_errors);
    }
    let soaked = started.elapsed().as_secs_f64();
    let growth = |a: f64, b: f64| (b - a) / a;
    println!(
        "soak {soaked:.0} s, two models, {changes} changes (each Ready in {converged:.1?} s): \
         {ok} requests ok, {failed} failed"
    );
    println!(
        "memory after warm-up -> end: model server {:.1} -> {:.1} MiB ({:+.1}%), operator {:.1} -> {:.1} MiB ({:+.1}%)",
        warm.steady_mib,
        end.steady_mib,
        100.0 * growth(warm.steady_mib, end.steady_mib),
        warm.operator_mib,
        end.operator_mib,
        100.0 * growth(warm.operator_mib, end.operator_mib)
    );
    let mib = |f: fn(&Sample) -> f64| -> Vec<String> {
        std::iter::once(&warm)
            .chain(&series)
            .chain(std::iter::once(&end))
            .map(|s| format!("{:.2}", f(s)))
            .collect()
    };
    println!(
        "working set every period (after warm-up, after each change, end), MiB: model server [{}], operator [{}]",
        mib(|s| s.steady_mib).join(", "),
        mib(|s| s.operator_mib).join(", ")
    );
    println!(
        "open fds after warm-up -> end: model server {:?} -> {:?}, operator {:?} -> {:?}",
        warm.steady_fds, end.steady_fds, warm.operator_fds, end.operator_fds
    );
    let _ = namespaces.delete(NS, &DeleteParams::background()).await;

    let misses = misses(&warm, &end, failed, &errors);
    if !misses.is_empty() {
        bail!("soak missed its targets: {}", misses.join("; "));
    }
    println!("soak: every target met");
    Ok(())
}
