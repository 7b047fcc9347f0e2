//! Start-up: the API client, and waiting for the IrisModel CRD.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;
use kube::client::ClientBuilder;
use kube::{Client, Config};
use tower::timeout::TimeoutLayer;
use tracing::{info, warn};

use crate::crd::CRD_NAME;
use crate::shutdown::{stopped, Stop};

/// How often to look for the CRD while it is missing.
const CRD_POLL: Duration = Duration::from_secs(5);

/// The longest wait for the API server to accept a connection (kube's default is 30 s).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest wait for the head of a response. kube sets no read timeout (it would cut idle
/// watch streams), so without this a request to a stalled API server waits for ever. A watch
/// answers its head at once and is then guarded by kube's watcher idle timeout, so this bounds
/// every call without cutting the long streams; a list of thousands of objects takes seconds.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// How to reach the cluster. Inside a pod, the API server is reached at the IP in
/// KUBERNETES_SERVICE_HOST: the static binary cannot resolve host names (glibc's NSS is not in
/// the image), so the in-cluster DNS name must not be used. Elsewhere, the kubeconfig.
pub async fn config() -> anyhow::Result<Config> {
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
        && std::env::var_os("KUBECONFIG").is_none();
    let mut config = if in_cluster {
        Config::incluster_env()?
    } else {
        Config::infer().await?
    };
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    info!(api_server = %config.cluster_url, "connecting to the Kubernetes API");
    Ok(config)
}

/// A client with its own connections: the controller and the leader election each get one, so
/// lease renewals never queue behind the controller's requests.
pub fn client(config: Config) -> anyhow::Result<Client> {
    Ok(ClientBuilder::try_from(config)?
        .with_layer(&TimeoutLayer::new(RESPONSE_TIMEOUT))
        .build())
}

/// Whether the CRD is established (its API is served).
pub(crate) fn established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
}

/// Waits until the IrisModel CRD is established (true), saying what to do while it is missing,
/// or until `stop` fires (false).
pub async fn wait_for_crd(client: Client, stop: &Stop) -> bool {
    let api: Api<CustomResourceDefinition> = Api::all(client);
    loop {
        match api.get_opt(CRD_NAME).await {
            Ok(Some(crd)) if established(&crd) => {
                info!(crd = CRD_NAME, "CRD established");
                return true;
            }
            Ok(Some(_)) => info!(
                crd = CRD_NAME,
                "CRD found, waiting for it to be established"
            ),
            Ok(None) => warn!(
                "CRD {CRD_NAME} not found: install it with `kubectl apply -f crds/irismodel.yaml` \
                 (or `helm install iris-operator charts/iris-operator`); waiting"
            ),
            Err(e) => warn!("cannot read CRD {CRD_NAME}: {e}; waiting"),
        }
        tokio::select! {
            _ = tokio::time::sleep(CRD_POLL) => {}
            _ = stopped(stop.clone()) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn established_reads_the_crd_condition() {
        let crd = |status: &str| -> CustomResourceDefinition {
            serde_json::from_value(json!({
                "metadata": {"name": CRD_NAME},
                "spec": {"group": "serving.iris.dev", "scope": "Namespaced",
                         "names": {"plural": "irismodels", "kind": "IrisModel"}, "versions": []},
                "status": {"conditions": [{"type": "Established", "status": status}]}
            }))
            .expect("a CRD")
        };
        assert!(established(&crd("True")));
        assert!(!established(&crd("False")));
    }
}
