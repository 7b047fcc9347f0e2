//! The many-models measures: thousands of IrisModels at once, a full resync of them by a
//! restarted operator (its write counter), one change among them; and the operator's metric
//! counters they read.
use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use e2e::cluster::{self, OPERATOR_NAMESPACE, OPERATOR_SELECTOR};
use e2e::iris;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use serde_json::json;

use crate::{model, secs};

/// Sum of the operator's metric samples whose name contains `needle` and ends in _total.
pub async fn operator_metric(client: &Client, needle: &str) -> Option<f64> {
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

/// How many of the models many-0..count have both their Deployment and their Service.
async fn with_children(client: &Client, ns: &str, count: usize) -> Result<usize> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
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
    Ok((0..count)
        .map(|i| format!("many-{i}"))
        .filter(|name| deps.contains(name) && svcs.contains(name))
        .count())
}

/// Creates `count` models (unless `existing`: they were made by an earlier run that ran out of
/// time, BENCH_EXISTING=1) and waits until every one is reconciled.
pub async fn many_at_once(client: &Client, ns: &str, count: usize, existing: bool) -> Result<f64> {
    let models = iris::api(client, ns);
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
            complete = with_children(client, ns, count).await?;
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
pub async fn resync_writes(client: &Client, count: usize) -> Result<(f64, f64)> {
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
pub async fn one_change(client: &Client, ns: &str, name: &str) -> Result<f64> {
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
