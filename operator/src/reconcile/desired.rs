//! The build step: every object an IrisModel owns, from the resolved inputs. Pure (no
//! client), one builder per child kind, so tests compare whole objects.

pub(crate) mod activator;
pub(crate) mod canary;
pub(crate) mod deployment;
pub(crate) mod hpa;
pub(crate) mod logging;
pub(crate) mod pdb;
pub(crate) mod placement;
pub(crate) mod security;
pub(crate) mod service;
pub(crate) mod volume;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{EnvVar, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::names::labels;
use crate::reconcile::resolve::Resolved;

/// The whole desired set of children; an optional child that is None must not exist.
pub(crate) struct Desired {
    pub(crate) deployment: Deployment,
    pub(crate) service: Service,
    pub(crate) hpa: Option<HorizontalPodAutoscaler>,
    pub(crate) pdb: Option<PodDisruptionBudget>,
    /// The activator of a model that scales to zero.
    pub(crate) activator: Option<activator::Activator>,
}

/// Builds every child of the resolved IrisModel.
pub(crate) fn build(resolved: &Resolved) -> Desired {
    Desired {
        deployment: deployment::build(resolved),
        service: service::build(resolved),
        hpa: hpa::build(resolved),
        pdb: pdb::build(resolved),
        activator: activator::build(resolved),
    }
}

/// A plain environment variable of a container.
pub(crate) fn env_var(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// Metadata of a child: same name and namespace as the IrisModel, standard labels, and the
/// controller owner reference (so deleting the IrisModel garbage-collects the child).
pub(crate) fn child_meta(resolved: &Resolved) -> ObjectMeta {
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

#[cfg(test)]
mod tests;
