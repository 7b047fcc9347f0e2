//! The build step: every object an IrisModel owns, from the resolved inputs. Pure (no
//! client), one builder per child kind, so tests compare whole objects.

pub mod deployment;
pub mod hpa;
pub mod pdb;
pub mod service;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::reconcile::resolve::Resolved;

/// The whole desired set of children; an optional child that is None must not exist.
pub(crate) struct Desired {
    pub(crate) deployment: Deployment,
    pub(crate) service: Service,
    pub(crate) hpa: Option<HorizontalPodAutoscaler>,
    pub(crate) pdb: Option<PodDisruptionBudget>,
}

/// Builds every child of the resolved IrisModel.
pub(crate) fn build(resolved: &Resolved) -> Desired {
    Desired {
        deployment: deployment::build(resolved),
        service: service::build(resolved),
        hpa: hpa::build(resolved),
        pdb: pdb::build(resolved),
    }
}

/// `app.kubernetes.io/name` of everything the operator creates.
pub const APP_NAME: &str = "model-server";
/// Field manager of every server-side apply, and `app.kubernetes.io/managed-by`.
pub const MANAGER: &str = "iris-operator";
/// Label selector of the children the operator watches (and only those).
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=iris-operator";
/// Pod-template annotation with the hash of everything that shapes the pods.
pub const MODEL_HASH_ANNOTATION: &str = "serving.iris.dev/model-hash";
/// Name of the HTTP container port and Service port (also their application protocol).
pub const PORT_NAME: &str = "http";
/// Name of the gRPC container port and Service port (also their application protocol).
pub const GRPC_PORT_NAME: &str = "grpc";

/// The labels that select an IrisModel's pods (Deployment, Service, PDB selectors).
pub fn selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/instance".to_string(), name.to_string()),
        ("app.kubernetes.io/name".to_string(), APP_NAME.to_string()),
    ])
}

/// The selector labels as a label-selector string, for the scale subresource and pod lists.
pub fn selector_string(name: &str) -> String {
    selector_labels(name)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// All standard labels of a child object and of the pods.
pub fn labels(name: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(name);
    labels.extend([
        (
            "app.kubernetes.io/component".to_string(),
            "predictor".to_string(),
        ),
        (
            "app.kubernetes.io/part-of".to_string(),
            "iris-operator".to_string(),
        ),
        (
            "app.kubernetes.io/managed-by".to_string(),
            MANAGER.to_string(),
        ),
    ]);
    labels
}

/// Metadata of a child: same name and namespace as the IrisModel, standard labels, and the
/// controller owner reference (so deleting the IrisModel garbage-collects the child).
pub fn child_meta(resolved: &Resolved) -> ObjectMeta {
    ObjectMeta {
        name: Some(resolved.name.clone()),
        namespace: Some(resolved.namespace.clone()),
        labels: Some(labels(&resolved.name)),
        owner_references: Some(vec![owner_reference(&resolved.owner)]),
        ..ObjectMeta::default()
    }
}

fn owner_reference(owner: &OwnerReference) -> OwnerReference {
    OwnerReference {
        controller: Some(true),
        ..owner.clone()
    }
}

/// The pods' URL inside the cluster.
pub fn endpoint(name: &str, namespace: &str, port: i32, cluster_domain: &str) -> String {
    format!("http://{name}.{namespace}.svc.{cluster_domain}:{port}")
}

#[cfg(test)]
mod tests;
