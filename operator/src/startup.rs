//! Start-up: the API client, and waiting for the IrisModel CRD.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;
use kube::{Client, Config};
use tracing::{info, warn};

use crate::crd::CRD_NAME;
use crate::shutdown::{stopped, Stop};

/// How often to look for the CRD while it is missing.
const CRD_POLL: Duration = Duration::from_secs(5);

/// A client for the cluster. Inside a pod, the API server is reached at the IP in
/// KUBERNETES_SERVICE_HOST: the static binary cannot resolve host names (glibc's NSS is not in
/// the image), so the in-cluster DNS name must not be used. Elsewhere, the kubeconfig.
pub async fn client() -> anyhow::Result<Client> {
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
        && std::env::var_os("KUBECONFIG").is_none();
    let config = if in_cluster {
        Config::incluster_env()?
    } else {
        Config::infer().await?
    };
    info!(api_server = %config.cluster_url, "connecting to the Kubernetes API");
    Ok(Client::try_from(config)?)
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
