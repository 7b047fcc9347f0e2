//! What the proxy needs from the cluster: wake the model, and know its pods. A trait, so the
//! proxy's tests run on loopback without a cluster.
//!
//! The pods are watched, not listed per connection: one watch of the model's pods (its label
//! selector, in its namespace) feeds a reflector's store, and every change of the candidate
//! IPs is published on a `tokio::sync::watch` channel that held connections and wake loops
//! wait on. The watch needs the `list` and `watch` verbs on pods (the activator's Role).

use std::net::IpAddr;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// The model's Deployment and pods, as the proxy sees them.
pub(super) trait Backend: Send + Sync {
    /// Scales the model's Deployment to one replica if it wants none; never lowers a count.
    /// Returns the replica count it found.
    fn wake(&self) -> BoxFuture<'_, anyhow::Result<i32>>;

    /// The IPs of the model's pods that may accept connections (see [`candidates`]), kept
    /// current: the receiver is notified when they change. Empty until the first list.
    fn pods(&self) -> watch::Receiver<Vec<IpAddr>>;
}

/// The [`Backend`] of a real cluster.
pub(super) struct KubeBackend {
    deployments: Api<Deployment>,
    deployment: String,
    namespace: String,
    pods: watch::Receiver<Vec<IpAddr>>,
}

impl KubeBackend {
    /// The backend, and its watch of the pods started (a task that ends with the backend).
    pub(super) fn new(client: Client, namespace: &str, deployment: &str, selector: &str) -> Self {
        let (publish, pods) = watch::channel(Vec::new());
        tokio::spawn(watch_pods(
            Api::namespaced(client.clone(), namespace),
            format!("{namespace}/{selector}"),
            watcher::Config::default().labels(selector),
            publish,
        ));
        Self {
            deployments: Api::namespaced(client, namespace),
            deployment: deployment.to_string(),
            namespace: namespace.to_string(),
            pods,
        }
    }

    async fn scale_up_from_zero(&self) -> anyhow::Result<i32> {
        let name = &self.deployment;
        let scale = self.deployments.get_scale(name).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot read the scale of Deployment {}/{name}: {e}",
                self.namespace
            )
        })?;
        let replicas = scale.spec.and_then(|s| s.replicas).unwrap_or(0);
        if replicas == 0 {
            self.deployments
                .patch_scale(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"replicas": 1}})),
                )
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot scale Deployment {}/{name} to 1 replica: {e}",
                        self.namespace
                    )
                })?;
        }
        Ok(replicas)
    }
}

impl Backend for KubeBackend {
    fn wake(&self) -> BoxFuture<'_, anyhow::Result<i32>> {
        self.scale_up_from_zero().boxed()
    }

    fn pods(&self) -> watch::Receiver<Vec<IpAddr>> {
        self.pods.clone()
    }
}

/// Watches the pods (re-listing with kube's default backoff after an error) and publishes
/// their candidate IPs whenever they change, until no receiver is left.
async fn watch_pods(
    api: Api<Pod>,
    what: String,
    config: watcher::Config,
    publish: watch::Sender<Vec<IpAddr>>,
) {
    let (store, writer) = reflector::store();
    // Only the status and the deletion mark are read: the rest is not kept.
    let events = watcher(api, config)
        .modify(|pod| {
            pod.managed_fields_mut().clear();
            pod.annotations_mut().clear();
            pod.spec = None;
        })
        .default_backoff();
    let events = reflector::reflector(writer, events);
    tokio::pin!(events);
    let mut failing = false;
    loop {
        let event = tokio::select! {
            () = publish.closed() => return,
            event = events.next() => event,
        };
        match event {
            None => return,
            Some(Ok(_)) => {
                if std::mem::take(&mut failing) {
                    info!(pods = %what, "watching the model's pods again");
                }
                publish_candidates(&store, &publish);
            }
            Some(Err(e)) if failing => debug!(pods = %what, "cannot watch the model's pods: {e}"),
            Some(Err(e)) => {
                failing = true;
                warn!(pods = %what, "cannot watch the model's pods: {e}; retrying with backoff");
            }
        }
    }
}

/// Publishes the store's candidate IPs if they changed.
fn publish_candidates(store: &Store<Pod>, publish: &watch::Sender<Vec<IpAddr>>) {
    let pods = store.state();
    let ips = candidates(pods.iter().map(Arc::as_ref));
    publish.send_if_modified(|current| {
        if *current == ips {
            return false;
        }
        debug!(?ips, "the model's pods changed");
        *current = ips;
        true
    });
}

/// The IPs of the pods that may accept connections: Running, not being deleted, with an IP;
/// Ready pods first, then by IP (a store has no order: the same pods give the same list). A
/// Running pod that is not Ready yet is still a candidate: the model server binds once its
/// model is loaded, before its readiness probe has passed.
pub(super) fn candidates<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> Vec<IpAddr> {
    let mut found: Vec<(bool, IpAddr)> = pods
        .into_iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter_map(|pod| {
            let status = pod.status.as_ref()?;
            if status.phase.as_deref() != Some("Running") {
                return None;
            }
            let ip = status.pod_ip.as_deref()?.parse().ok()?;
            Some((is_ready(pod), ip))
        })
        .collect();
    found.sort_by_key(|(ready, ip)| (!ready, *ip));
    found.dedup();
    found.into_iter().map(|(_, ip)| ip).collect()
}

/// Whether the pod's Ready condition is True.
fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, phase: &str, ip: Option<&str>, ready: bool, deleting: bool) -> Pod {
        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name},
            "status": {
                "phase": phase,
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]
            }
        }))
        .expect("a pod");
        if let Some(status) = pod.status.as_mut() {
            status.pod_ip = ip.map(str::to_string);
        }
        if deleting {
            pod.metadata.deletion_timestamp =
                Some(serde_json::from_value(json!("2026-01-01T00:00:00Z")).expect("a timestamp"));
        }
        pod
    }

    #[test]
    fn candidates_are_running_live_pods_with_an_ip_ready_first() {
        let pods = [
            pod("starting", "Running", Some("10.0.0.1"), false, false),
            pod("pending", "Pending", Some("10.0.0.2"), false, false),
            pod("no-ip", "Running", None, true, false),
            pod("deleting", "Running", Some("10.0.0.3"), true, true),
            pod("ready", "Running", Some("10.0.0.4"), true, false),
            pod("starting-too", "Running", Some("10.0.0.5"), false, false),
            pod("ready-too", "Running", Some("10.0.0.0"), true, false),
        ];
        let ips: Vec<String> = candidates(&pods).iter().map(|ip| ip.to_string()).collect();
        assert_eq!(ips, ["10.0.0.0", "10.0.0.4", "10.0.0.1", "10.0.0.5"]);
    }
}
