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
use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use e2e::cluster::{self, OPERATOR_NAMESPACE, OPERATOR_SELECTOR};
use e2e::iris;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use serde_json::{json, Value};

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

/// Sum of the operator's metric samples whose name contains `needle` and ends in _total.
async fn operator_metric(client: &Client, needle: &str) -> Option<f64> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let pod = pods
        .list(&ListParams::default().labels(OPERATOR_SELECTOR))
        .await
        .ok()?
        .items
        .into_iter()
        .find(|p| p.metadata.deletion_timestamp.is_none() && e2e::serving::pod_is_ready(p))?;
    let name = pod.metadata.name?;
    let req = http::Request::get(format!(
        "/api/v1/namespaces/{OPERATOR_NAMESPACE}/pods/{name}:8080/proxy/metrics"
    ))
    .body(Vec::new())
    .ok()?;
    let text = client.request_text(req).await.ok()?;
    Some(
        text.lines()
            .filter(|l| {
                !l.starts_with('#')
                    && l.split(['{', ' '])
                        .next()
                        .is_some_and(|m| m.contains(needle) && m.ends_with("_total"))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            // 0.0 + : a sum of no samples (no write at all) is -0.0 in Rust, printed "-0".
            .fold(0.0, |a, b| a + b),
    )
}

/// Creates `count` models (unless `existing`: they were made by an earlier run that ran out of
/// time, BENCH_EXISTING=1) and waits until every one is reconciled.
async fn many_at_once(client: &Client, ns: &str, count: usize, existing: bool) -> Result<f64> {
    let models = iris::api(client, ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let t0 = Instant::now();
    let to_create = if existing { 0 } else { count };
    futures::stream::iter(0..to_create)
        .map(|i| {
            let models = models.clone();
            async move {
                models
                    .create(&PostParams::default(), &model(&format!("many-{i}"), 0))
                    .await
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    let created = secs(t0, Instant::now());
    eprintln!("  {to_create} IrisModels created in {created:.1} s");
    // 5,000 took about 24 minutes on the 2-core machine shared with builds (2026-12-01).
    let limit = Duration::from_secs(300 + count as u64 / 2);
    let deadline = Instant::now() + limit;
    // Watched, not polled: a list of 5,000 IrisModels a second (about 15 MB of JSON for the API
    // server to encode) took a share of the 2 cores the API server and the operator need. The
    // children are listed once every status is there (at most once a second).
    let mut events = watcher(models.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    let mut done: HashSet<String> = HashSet::new();
    let mut complete = 0;
    let mut last_report = Instant::now();
    let mut last_children = Instant::now() - Duration::from_secs(1);
    loop {
        if done.len() == count && last_children.elapsed() >= Duration::from_secs(1) {
            last_children = Instant::now();
            let deps: HashSet<String> = deployments
                .list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .filter_map(|d| d.metadata.name)
                .collect();
            let svcs: HashSet<String> = services
                .list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .filter_map(|s| s.metadata.name)
                .collect();
            complete = (0..count)
                .filter(|i| {
                    deps.contains(&format!("many-{i}")) && svcs.contains(&format!("many-{i}"))
                })
                .count();
            if complete == count {
                return Ok(secs(t0, Instant::now()));
            }
        }
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(m)) => {
                    let name = m.metadata.name.clone().unwrap_or_default();
                    if name.starts_with("many-") {
                        if iris::status(&m)["observedGeneration"] == iris::generation(&m) {
                            done.insert(name);
                        } else {
                            done.remove(&name);
                        }
                    }
                }
                Some(Err(e)) => eprintln!("  IrisModel watch: {e}"),
                None => bail!("the IrisModel watch ended"),
            },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if last_report.elapsed() >= Duration::from_secs(30) {
            eprintln!(
                "  {:.0} s: {}/{count} with status",
                secs(t0, Instant::now()),
                done.len()
            );
            last_report = Instant::now();
        }
        if Instant::now() > deadline {
            bail!(
                "after {limit:?}: {}/{count} with status, {complete}/{count} with children",
                done.len()
            );
        }
    }
}

/// A full resync with nothing changed: the operator is restarted (a fresh process, its counters
/// at zero, lists everything and reconciles every model). Returns the seconds from the restart
/// until it has reconciled `count` models, and its writes to the API server by then.
async fn resync_writes(client: &Client, count: usize) -> Result<(f64, f64)> {
    // "Reconciled" above is observedGeneration on every model; the second status write of the
    // last ones (once their Deployment is observed) may still be on its way. A restart before
    // it would count that write as the resync's: first wait until the operator writes nothing
    // for 10 s (at most 120 s).
    let settle = Instant::now();
    let mut writes = operator_metric(client, "api_writes").await;
    while settle.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let now = operator_metric(client, "api_writes").await;
        if now == writes {
            break;
        }
        writes = now;
    }
    eprintln!(
        "  operator idle (no write for 10 s) {:.0} s after the models were reconciled",
        settle.elapsed().as_secs_f64()
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let pods: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let old: HashSet<String> = pods
        .list(&ListParams::default().labels(OPERATOR_SELECTOR))
        .await?
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    let t0 = Instant::now();
    let restarted = json!({"spec": {"template": {"metadata": {"annotations": {
        "iris-operator.dev/bench-restart": format!("{:?}", std::time::SystemTime::now())}}}}});
    deployments
        .patch(
            cluster::RELEASE,
            &PatchParams::default(),
            &Patch::Merge(restarted),
        )
        .await?;
    let deadline = t0 + Duration::from_secs(600);
    loop {
        let fresh = pods
            .list(&ListParams::default().labels(OPERATOR_SELECTOR))
            .await?
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .all(|p| !old.contains(p.metadata.name.as_deref().unwrap_or("")));
        let reconciles = operator_metric(client, "operator_reconciles").await;
        if fresh && reconciles.is_some_and(|r| r >= count as f64) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the restarted operator did not reconcile {count} models within 600 s ({reconciles:?})");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let took = secs(t0, Instant::now());
    // Let the last reconciles finish before reading the writes.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let writes = operator_metric(client, "api_writes").await.unwrap_or(-1.0);
    Ok((took, writes))
}

/// The seconds from a change of one model (its training seed) to its status for the new
/// generation, while all the others exist.
async fn one_change(client: &Client, ns: &str, name: &str) -> Result<f64> {
    let models = iris::api(client, ns);
    let t0 = Instant::now();
    let changed = models
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"model": {"training": {"seed": 4242}}}})),
        )
        .await?;
    let generation = iris::generation(&changed);
    let deadline = t0 + Duration::from_secs(60);
    loop {
        let obj = models.get(name).await?;
        if iris::status(&obj)["observedGeneration"] == generation {
            return Ok(secs(t0, Instant::now()));
        }
        if Instant::now() > deadline {
            bail!("{name}: generation {generation} not observed within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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

/// The operator container's memory from the kubelet's summary API, and its pod's UID.
struct OperatorMemory {
    working_set_mib: f64,
    /// The cgroup's `rss`: anonymous memory only.
    rss_mib: f64,
    pod_uid: String,
}

async fn operator_memory(client: &Client) -> Result<OperatorMemory> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let pod = pods
        .list(&ListParams::default().labels(OPERATOR_SELECTOR))
        .await?
        .items
        .into_iter()
        .find(|p| p.metadata.deletion_timestamp.is_none() && e2e::serving::pod_is_ready(p))
        .context("a ready operator pod")?;
    let node = pod
        .spec
        .and_then(|s| s.node_name)
        .context("scheduled operator pod")?;
    let pod_uid = pod.metadata.uid.unwrap_or_default();
    let name = pod.metadata.name.unwrap_or_default();
    // The kubelet collects stats every few seconds: a new pod shows up after a while.
    let deadline = Instant::now() + Duration::from_secs(90);
    let stats = loop {
        let req = http::Request::get(format!("/api/v1/nodes/{node}/proxy/stats/summary"))
            .body(Vec::new())?;
        let summary: Value = client.request(req).await?;
        let found = summary["pods"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["podRef"]["name"] == name.as_str()))
            .filter(|p| p["containers"][0]["memory"]["workingSetBytes"].is_number())
            .cloned();
        match found {
            Some(stats) => break stats,
            None if Instant::now() > deadline => {
                bail!("operator pod {name} not in the kubelet's summary")
            }
            None => tokio::time::sleep(Duration::from_secs(2)).await,
        }
    };
    let mem = &stats["containers"][0]["memory"];
    let mib = |v: &Value| v.as_f64().unwrap_or(0.0) / 1024.0 / 1024.0;
    Ok(OperatorMemory {
        working_set_mib: mib(&mem["workingSetBytes"]),
        rss_mib: mib(&mem["rssBytes"]),
        pod_uid,
    })
}

/// What /proc on this host shows of one `/iris-operator` process.
struct HostProcess {
    /// VmRSS in MiB: resident memory including its mapped binary, which the cgroup's `rss`
    /// (anonymous memory only) leaves out.
    rss_mib: f64,
    /// VmHWM in MiB: the peak of VmRSS over the process's life (what a memory limit must allow).
    peak_mib: f64,
    /// utime + stime in seconds: CPU the process used since it started.
    cpu_s: f64,
}

/// Each `/iris-operator` process of the pod `pod_uid` visible on this host (kind's nodes are
/// containers here): found by the pod UID in its cgroup, so that the operator of another cluster
/// on the same host is not counted.
fn host_processes(pod_uid: &str) -> Vec<HostProcess> {
    let forms = [pod_uid.to_string(), pod_uid.replace('-', "_")];
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let kib = |status: &str, key: &str| -> Option<f64> {
        status
            .lines()
            .find(|l| l.starts_with(key))?
            .split_whitespace()
            .nth(1)?
            .parse::<f64>()
            .ok()
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).next() == Some(b"/iris-operator".as_slice()))
        })
        .filter(|e| {
            std::fs::read_to_string(e.path().join("cgroup"))
                .is_ok_and(|c| forms.iter().any(|f| c.contains(f.as_str())))
        })
        .filter_map(|e| {
            let status = std::fs::read_to_string(e.path().join("status")).ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // Fields after the command (which is in parentheses): state is field 3, utime 14,
            // stime 15, in clock ticks (100 a second on Linux).
            let after = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = after.split_whitespace().collect();
            let ticks =
                fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
            Some(HostProcess {
                rss_mib: kib(&status, "VmRSS:")? / 1024.0,
                peak_mib: kib(&status, "VmHWM:")? / 1024.0,
                cpu_s: ticks / 100.0,
            })
        })
        .collect()
}

fn print_memory(when: &str, memory: OperatorMemory) {
    let (ws, rss) = (memory.working_set_mib, memory.rss_mib);
    let host: Vec<String> = host_processes(&memory.pod_uid)
        .iter()
        .map(|p| {
            format!(
                "{:.1} MiB (peak VmHWM {:.1} MiB, CPU used {:.1} s)",
                p.rss_mib, p.peak_mib, p.cpu_s
            )
        })
        .collect();
    println!(
        "operator memory {when}: process VmRSS {} (from /proc on this host); cgroup working set {ws:.1} MiB, cgroup rss (anonymous) {rss:.1} MiB",
        if host.is_empty() { "not visible here".to_string() } else { host.join(", ") }
    );
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
