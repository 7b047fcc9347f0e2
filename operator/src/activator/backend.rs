//! What the proxy needs from the cluster: wake the model, and find its pods. A trait, so the
//! proxy's tests run on loopback without a cluster.

use std::net::IpAddr;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::Client;
use serde_json::json;

/// The model's Deployment and pods, as the proxy sees them.
pub(super) trait Backend: Send + Sync {
    /// Scales the model's Deployment to one replica if it wants none; never lowers a count.
    /// Returns the replica count it found.
    fn wake(&self) -> BoxFuture<'_, anyhow::Result<i32>>;

    /// The IPs of the model's pods that may accept connections, Ready pods first.
    fn pods(&self) -> BoxFuture<'_, anyhow::Result<Vec<IpAddr>>>;
}

/// The [`Backend`] of a real cluster.
pub(super) struct KubeBackend {
    deployments: Api<Deployment>,
    pods: Api<Pod>,
    deployment: String,
    namespace: String,
    selector: String,
}

impl KubeBackend {
    pub(super) fn new(client: Client, namespace: &str, deployment: &str, selector: &str) -> Self {
        Self {
            deployments: Api::namespaced(client.clone(), namespace),
            pods: Api::namespaced(client, namespace),
            deployment: deployment.to_string(),
            namespace: namespace.to_string(),
            selector: selector.to_string(),
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

    async fn list_pods(&self) -> anyhow::Result<Vec<IpAddr>> {
        let list = self
            .pods
            .list(&ListParams::default().labels(&self.selector))
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot list the pods {} in namespace {}: {e}",
                    self.selector,
                    self.namespace
                )
            })?;
        Ok(candidates(&list.items))
    }
}

impl Backend for KubeBackend {
    fn wake(&self) -> BoxFuture<'_, anyhow::Result<i32>> {
        self.scale_up_from_zero().boxed()
    }

    fn pods(&self) -> BoxFuture<'_, anyhow::Result<Vec<IpAddr>>> {
        self.list_pods().boxed()
    }
}

/// The IPs of the pods that may accept connections: Running, not being deleted, with an IP;
/// Ready pods first. A Running pod that is not Ready yet is still a candidate: the model
/// server binds once its model is loaded, before its readiness probe has passed.
pub(super) fn candidates(pods: &[Pod]) -> Vec<IpAddr> {
    let mut found: Vec<(bool, IpAddr)> = pods
        .iter()
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
    // Stable: pods keep the API's order within each group.
    found.sort_by_key(|(ready, _)| !ready);
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
        ];
        let ips: Vec<String> = candidates(&pods).iter().map(|ip| ip.to_string()).collect();
        assert_eq!(ips, ["10.0.0.4", "10.0.0.1", "10.0.0.5"]);
    }
}
