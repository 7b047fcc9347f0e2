//! The apply step, the only one that writes: the children (here), the replica count
//! ([`scale`]), and the status, the rollout annotation and the Events ([`report`]). The
//! desired children are applied against what was observed; every write and delete goes
//! through the ownership rule of [`owned`]: a child whose name is taken by an object this
//! IrisModel does not control is refused, never changed; each other child is written with
//! server-side apply under one field manager, forcing conflicts, and only when the object in
//! the cluster is not already what we would apply, so an unchanged reconcile writes nothing.
//! A child no longer wanted is deleted only when it is ours, with a uid precondition.

mod delete;
pub(crate) mod report;
mod scale;

use std::fmt::Debug;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;

pub(crate) use delete::Outcome;
pub(crate) use scale::scale;

use crate::error::Error;
use crate::metrics::{Metrics, Operation, Written};
use crate::names::{ChildKind, MANAGER};
use crate::reconcile::compare::{contains, stamp};
use crate::reconcile::desired::activator::Activator;
use crate::reconcile::desired::{canary, Desired};
use crate::reconcile::observe::{ActivatorRbac, Observed};
use crate::reconcile::owned;
use crate::reconcile::resolve::Resolved;
use crate::reconcile::rollout::Plan;

/// Field manager used once to share `spec.replicas` before handing it to an autoscaler.
pub(crate) const HANDOFF_MANAGER: &str = "iris-operator-handoff";

/// Applies the desired children against what was observed, the Deployments as the rollout's
/// plan says; returns the stable Deployment as the API server has it now (None when the plan
/// holds back a first Deployment).
pub(crate) async fn children(
    client: &Client,
    resolved: &Resolved,
    desired: Desired,
    observed: &Observed,
    metrics: &Metrics,
    plan: Plan,
) -> Result<Option<Deployment>, Error> {
    let (namespace, owner) = (&resolved.namespace, &resolved.owner);
    let deployment = deployments(
        client,
        resolved,
        &desired.deployment,
        observed,
        metrics,
        plan,
    )
    .await?;
    let services = Api::namespaced(client.clone(), namespace);
    let (_, outcome) = apply(
        &services,
        owner,
        desired.service,
        observed.service.as_ref(),
        false,
    )
    .await?;
    count_write(metrics, ChildKind::Service, outcome);
    let hpas = Api::namespaced(client.clone(), namespace);
    let outcome = wanted(&hpas, owner, desired.hpa, observed.hpa.as_ref()).await?;
    count_write(metrics, ChildKind::HorizontalPodAutoscaler, outcome);
    let pdbs = Api::namespaced(client.clone(), namespace);
    let outcome = wanted(&pdbs, owner, desired.pdb, observed.pdb.as_ref()).await?;
    count_write(metrics, ChildKind::PodDisruptionBudget, outcome);
    match (desired.activator, &observed.activator_rbac) {
        // Observe read the activator's RBAC: it is to be written.
        (Some(activator), Some(rbac)) => {
            let observed = observed.activator.as_ref();
            apply_activator(
                client,
                (namespace, owner),
                activator,
                observed,
                rbac,
                metrics,
            )
            .await?
        }
        (None, Some(rbac)) => {
            let observed = observed.activator.as_ref();
            delete_activator(client, (namespace, owner), observed, rbac, metrics).await?
        }
        // As desired already, or neither wanted nor running.
        (_, None) => {}
    }
    Ok(deployment)
}

/// The stable Deployment as the rollout's plan says (with the hand-off of `spec.replicas` to an
/// autoscaler turned on), and the canary's: run with N pods, kept while promoting, or removed.
/// Returns the stable Deployment as the API server has it now.
async fn deployments(
    client: &Client,
    resolved: &Resolved,
    desired: &Deployment,
    observed: &Observed,
    metrics: &Metrics,
    plan: Plan,
) -> Result<Option<Deployment>, Error> {
    let (namespace, owner) = (&resolved.namespace, &resolved.owner);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);

    let deployment = if plan.applies_stable() {
        let handoff = resolved.replicas.is_none()
            && observed
                .deployment
                .as_ref()
                .is_some_and(|d| owns_replicas(d, MANAGER));
        if let (true, Some(current)) = (handoff, observed.deployment.as_ref()) {
            hand_off_replicas(&deployments, current).await?;
            metrics.write(Written::Child(ChildKind::Deployment), Operation::Apply);
        }
        let (deployment, outcome) = apply(
            &deployments,
            owner,
            desired.clone(),
            observed.deployment.as_ref(),
            handoff,
        )
        .await?;
        count_write(metrics, ChildKind::Deployment, outcome);
        Some(deployment)
    } else {
        // A canary runs, or the quality gate holds the change back: the stable pods are left
        // exactly as they are.
        observed.deployment.clone()
    };
    let outcome = match plan {
        Plan::Canary { replicas } => {
            // Ours, or what observe found under the name (the name may be taken).
            let existing = observed.canary.as_ref().or(observed.canary_name.as_ref());
            let canary = canary::build(desired, replicas);
            apply(&deployments, owner, canary, existing, false).await?.1
        }
        Plan::Promote => Outcome::Unchanged,
        Plan::Roll | Plan::Hold => {
            delete::delete(&deployments, observed.canary.as_ref(), owner).await?
        }
    };
    count_write(metrics, ChildKind::Deployment, outcome);
    Ok(deployment)
}

/// Applies a child that is wanted, or deletes one that is not (only when it is ours).
async fn wanted<K>(
    api: &Api<K>,
    owner: &OwnerReference,
    desired: Option<K>,
    observed: Option<&K>,
) -> Result<Outcome, Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    match desired {
        Some(desired) => Ok(apply(api, owner, desired, observed, false).await?.1),
        None => delete::delete(api, observed, owner).await,
    }
}

/// Applies the activator: its RBAC first (its pod needs the ServiceAccount to start). Observe
/// read the ServiceAccount, Role and RoleBinding because the Deployment is not as desired (an
/// unchanged reconcile writes nothing); all of them are checked against the ownership rule
/// before any is written: a Role or RoleBinding of someone else's under the activator's name is
/// never changed (a ResourceConflict names it). One deleted by hand comes back with the next
/// change of the activator (or of the operator's image).
async fn apply_activator(
    client: &Client,
    (namespace, owner): (&str, &OwnerReference),
    activator: Activator,
    observed: Option<&Deployment>,
    rbac: &ActivatorRbac,
    metrics: &Metrics,
) -> Result<(), Error> {
    owned::claim(rbac.account.as_ref(), owner)?;
    owned::claim(rbac.role.as_ref(), owner)?;
    owned::claim(rbac.binding.as_ref(), owner)?;
    owned::claim(observed, owner)?;
    let accounts = Api::namespaced(client.clone(), namespace);
    let account = activator.service_account;
    let (_, outcome) = apply(&accounts, owner, account, rbac.account.as_ref(), false).await?;
    count_write(metrics, ChildKind::ServiceAccount, outcome);
    let roles = Api::namespaced(client.clone(), namespace);
    let (_, outcome) = apply(&roles, owner, activator.role, rbac.role.as_ref(), false).await?;
    count_write(metrics, ChildKind::Role, outcome);
    let bindings = Api::namespaced(client.clone(), namespace);
    let binding = activator.role_binding;
    let (_, outcome) = apply(&bindings, owner, binding, rbac.binding.as_ref(), false).await?;
    count_write(metrics, ChildKind::RoleBinding, outcome);
    let deployments = Api::namespaced(client.clone(), namespace);
    // Compared by observe already: written without comparing again.
    let (_, outcome) = apply(&deployments, owner, activator.deployment, observed, true).await?;
    count_write(metrics, ChildKind::Deployment, outcome);
    Ok(())
}

/// Deletes the activator of a model that no longer scales to zero, and its RBAC: each only
/// when it is ours, with a uid precondition.
async fn delete_activator(
    client: &Client,
    (namespace, owner): (&str, &OwnerReference),
    observed: Option<&Deployment>,
    rbac: &ActivatorRbac,
    metrics: &Metrics,
) -> Result<(), Error> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let outcome = delete::delete(&deployments, observed, owner).await?;
    count_write(metrics, ChildKind::Deployment, outcome);
    let bindings = Api::namespaced(client.clone(), namespace);
    let outcome = delete::delete(&bindings, rbac.binding.as_ref(), owner).await?;
    count_write(metrics, ChildKind::RoleBinding, outcome);
    let roles = Api::namespaced(client.clone(), namespace);
    let outcome = delete::delete(&roles, rbac.role.as_ref(), owner).await?;
    count_write(metrics, ChildKind::Role, outcome);
    let accounts = Api::namespaced(client.clone(), namespace);
    let outcome = delete::delete(&accounts, rbac.account.as_ref(), owner).await?;
    count_write(metrics, ChildKind::ServiceAccount, outcome);
    Ok(())
}

/// Whether `manager` owns `spec.replicas` of the Deployment through an apply.
pub(crate) fn owns_replicas(deployment: &Deployment, manager: &str) -> bool {
    deployment.managed_fields().iter().any(|entry| {
        entry.manager.as_deref() == Some(manager)
            && entry.operation.as_deref() == Some("Apply")
            && entry.subresource.as_deref().unwrap_or("").is_empty()
            && entry
                .fields_v1
                .as_ref()
                .and_then(|f| f.0.get("f:spec"))
                .and_then(|spec| spec.get("f:replicas"))
                .is_some()
    })
}

/// Before the operator stops setting `spec.replicas` (autoscaling was turned on), a second
/// manager applies the current value, so dropping it from the operator's apply does not reset
/// the Deployment to one replica before the autoscaler takes over.
async fn hand_off_replicas(api: &Api<Deployment>, observed: &Deployment) -> Result<(), Error> {
    let replicas = observed.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let patch = json!({
        "apiVersion": Deployment::api_version(&()),
        "kind": Deployment::kind(&()),
        "metadata": {"name": observed.name_any()},
        "spec": {"replicas": replicas},
    });
    api.patch(
        &observed.name_any(),
        &PatchParams::apply(HANDOFF_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(Error::kube("hand off spec.replicas"))?;
    Ok(())
}

pub(crate) fn count_write(metrics: &Metrics, kind: ChildKind, outcome: Outcome) {
    match outcome {
        Outcome::Applied => metrics.write(Written::Child(kind), Operation::Apply),
        Outcome::Deleted => metrics.write(Written::Child(kind), Operation::Delete),
        Outcome::Unchanged | Outcome::Absent => {}
    }
}

/// Applies `desired` unless `observed` already matches it (or `force` asks for it anyway).
/// `observed` is what a read of the child's name found: an object this IrisModel does not
/// control is refused ([`owned::claim`]). Returns the object as the API server now has it.
pub(crate) async fn apply<K>(
    api: &Api<K>,
    owner: &OwnerReference,
    desired: K,
    observed: Option<&K>,
    force: bool,
) -> Result<(K, Outcome), Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    owned::claim(observed, owner)?;
    let desired = stamp(desired)?;
    if let Some(observed) = observed {
        if !force
            && contains(
                Some(&serde_json::to_value(observed)?),
                &serde_json::to_value(&desired)?,
            )
        {
            return Ok((observed.clone(), Outcome::Unchanged));
        }
    }
    let name = desired.name_any();
    let params = PatchParams::apply(MANAGER).force();
    let applied = api
        .patch(&name, &params, &Patch::Apply(&desired))
        .await
        .map_err(|source| Error::Apply {
            kind: K::kind(&()).to_string(),
            source,
        })?;
    Ok((applied, Outcome::Applied))
}
