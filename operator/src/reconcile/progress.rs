//! A Deployment's progress as its controller reports it: the rollout state and the current
//! pod-template hash. Read by the rollout decision, the status and observe.

use k8s_openapi::api::apps::v1::Deployment;

use crate::names::MODEL_HASH_ANNOTATION;
use crate::reconcile::rootcause::bound;

/// What the Deployment reports about its rollout.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Rollout {
    /// Pods the Deployment wants.
    pub(crate) desired: i32,
    pub(crate) replicas: i32,
    pub(crate) ready: i32,
    pub(crate) updated: i32,
    pub(crate) available: i32,
    /// The controller has seen the current spec, all pods run it, no old pod is left, and all
    /// are available.
    pub(crate) complete: bool,
    /// A Deployment condition that will not fix itself (deadline exceeded, replica failure).
    pub(crate) failure: Option<(String, String)>,
}

/// Reads the rollout state of a Deployment as written by the Deployment controller.
pub(crate) fn rollout(deployment: &Deployment) -> Rollout {
    let desired = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let status = deployment.status.clone().unwrap_or_default();
    let replicas = status.replicas.unwrap_or(0);
    let ready = status.ready_replicas.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let seen = match (status.observed_generation, deployment.metadata.generation) {
        (Some(observed), Some(generation)) => observed >= generation,
        (_, None) => true,
        (None, Some(_)) => false,
    };
    let complete = seen && updated == desired && replicas == updated && available >= desired;

    let conditions = status.conditions.unwrap_or_default();
    let failure = conditions.iter().find_map(|c| {
        let stuck = (c.type_ == "Progressing"
            && c.status == "False"
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded"))
            || (c.type_ == "ReplicaFailure" && c.status == "True");
        stuck.then(|| {
            (
                c.reason.clone().unwrap_or_else(|| c.type_.clone()),
                bound(c.message.as_deref().unwrap_or_default()),
            )
        })
    });
    Rollout {
        desired,
        replicas,
        ready,
        updated,
        available,
        complete,
        failure,
    }
}

/// The current pod-template hash of a Deployment.
pub(crate) fn template_hash(deployment: &Deployment) -> Option<&str> {
    deployment
        .spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(MODEL_HASH_ANNOTATION)
        .map(String::as_str)
}
