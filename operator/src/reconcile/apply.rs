//! The apply step: the desired children against what was observed. A child whose name is
//! taken by an object this IrisModel does not control is refused; each other child is written
//! with server-side apply under one field manager, forcing conflicts, and only when the object
//! in the cluster is not already what we would apply, so an unchanged reconcile writes nothing.
//! A child no longer wanted is deleted.

mod compare;

use std::fmt::Debug;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;

use compare::contains;
pub(crate) use compare::stamp;

use crate::error::Error;
use crate::metrics::{Metrics, Operation, Written};
use crate::names::{activator_name, canary_name, MANAGER};
use crate::reconcile::desired::activator::Activator;
use crate::reconcile::desired::{canary, ChildKind, Desired};
use crate::reconcile::observe::{self, Observed};
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
    refuse_foreign(resolved, observed)?;
    let namespace = &resolved.namespace;
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
            desired.deployment.clone(),
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
            // A canary the cache lacks is looked up first: the name may be someone else's.
            let existing = match &observed.canary {
                Some(canary) => Some(canary.clone()),
                None => observe::get(client, namespace, &canary_name(&resolved.name)).await?,
            };
            if existing
                .as_ref()
                .is_some_and(|c| !controlled_by(c, &resolved.owner))
            {
                return Err(Error::ChildConflict {
                    kind: ChildKind::Deployment.as_str(),
                    namespace: namespace.clone(),
                    name: canary_name(&resolved.name),
                });
            }
            let canary = canary::build(&desired.deployment, replicas);
            apply(&deployments, canary, existing.as_ref(), false)
                .await?
                .1
        }
        Plan::Promote => Outcome::Unchanged,
        Plan::Roll | Plan::Hold => delete_stale(&deployments, observed.canary.as_ref()).await?,
    };
    count_write(metrics, ChildKind::Deployment, outcome);
    let services = Api::namespaced(client.clone(), namespace);
    let (_, outcome) = apply(&services, desired.service, observed.service.as_ref(), false).await?;
    count_write(metrics, ChildKind::Service, outcome);
    let hpas = Api::namespaced(client.clone(), namespace);
    let outcome = match desired.hpa {
        Some(hpa) => apply(&hpas, hpa, observed.hpa.as_ref(), false).await?.1,
        None => delete_stale(&hpas, observed.hpa.as_ref()).await?,
    };
    count_write(metrics, ChildKind::HorizontalPodAutoscaler, outcome);
    let pdbs = Api::namespaced(client.clone(), namespace);
    let outcome = match desired.pdb {
        Some(pdb) => apply(&pdbs, pdb, observed.pdb.as_ref(), false).await?.1,
        None => delete_stale(&pdbs, observed.pdb.as_ref()).await?,
    };
    count_write(metrics, ChildKind::PodDisruptionBudget, outcome);
    match desired.activator {
        Some(activator) => {
            apply_activator(
                client,
                namespace,
                activator,
                observed.activator.as_ref(),
                metrics,
            )
            .await?
        }
        None => {
            delete_activator(
                client,
                namespace,
                &resolved.name,
                observed.activator.as_ref(),
                metrics,
            )
            .await?
        }
    }
    Ok(deployment)
}

/// Applies the activator: its RBAC first (its pod needs the ServiceAccount to start), and only
/// when its Deployment is not already as desired, so an unchanged reconcile writes nothing. A
/// ServiceAccount, Role or RoleBinding deleted by hand comes back with the next change of the
/// activator (or of the operator's image).
async fn apply_activator(
    client: &Client,
    namespace: &str,
    activator: Activator,
    observed: Option<&Deployment>,
    metrics: &Metrics,
) -> Result<(), Error> {
    if let Some(observed) = observed {
        if contains(
            Some(&serde_json::to_value(observed)?),
            &serde_json::to_value(stamp(activator.deployment.clone())?)?,
        ) {
            return Ok(());
        }
    }
    let accounts = Api::namespaced(client.clone(), namespace);
    apply(&accounts, activator.service_account, None, true).await?;
    count_write(metrics, ChildKind::ServiceAccount, Outcome::Applied);
    let roles = Api::namespaced(client.clone(), namespace);
    apply(&roles, activator.role, None, true).await?;
    count_write(metrics, ChildKind::Role, Outcome::Applied);
    let bindings = Api::namespaced(client.clone(), namespace);
    apply(&bindings, activator.role_binding, None, true).await?;
    count_write(metrics, ChildKind::RoleBinding, Outcome::Applied);
    let deployments = Api::namespaced(client.clone(), namespace);
    // Compared above already: written without comparing again.
    let (_, outcome) = apply(&deployments, activator.deployment, observed, true).await?;
    count_write(metrics, ChildKind::Deployment, outcome);
    Ok(())
}

/// Deletes the activator of a model that no longer scales to zero (and its RBAC), if it runs.
async fn delete_activator(
    client: &Client,
    namespace: &str,
    name: &str,
    observed: Option<&Deployment>,
    metrics: &Metrics,
) -> Result<(), Error> {
    if observed.is_none() {
        return Ok(());
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let outcome = delete_stale(&deployments, observed).await?;
    count_write(metrics, ChildKind::Deployment, outcome);
    let name = activator_name(name);
    let outcome = delete_named::<RoleBinding>(client, namespace, &name).await?;
    count_write(metrics, ChildKind::RoleBinding, outcome);
    let outcome = delete_named::<Role>(client, namespace, &name).await?;
    count_write(metrics, ChildKind::Role, outcome);
    let outcome = delete_named::<ServiceAccount>(client, namespace, &name).await?;
    count_write(metrics, ChildKind::ServiceAccount, outcome);
    Ok(())
}

/// Deletes an object by name; one already gone is no error.
async fn delete_named<K>(client: &Client, namespace: &str, name: &str) -> Result<Outcome, Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(Outcome::Deleted),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Outcome::Absent),
        Err(e) => Err(Error::kube("delete")(e)),
    }
}

/// A user error when a child's name is taken by an object this IrisModel does not control:
/// the operator never takes over someone else's object.
fn refuse_foreign(resolved: &Resolved, observed: &Observed) -> Result<(), Error> {
    let owner = &resolved.owner;
    let controlled = |kind| match kind {
        ChildKind::Deployment => observed
            .deployment
            .as_ref()
            .map(|o| controlled_by(o, owner)),
        ChildKind::Service => observed.service.as_ref().map(|o| controlled_by(o, owner)),
        ChildKind::HorizontalPodAutoscaler => {
            observed.hpa.as_ref().map(|o| controlled_by(o, owner))
        }
        ChildKind::PodDisruptionBudget => observed.pdb.as_ref().map(|o| controlled_by(o, owner)),
        // The activator's RBAC is named after it, and only applied with it.
        ChildKind::ServiceAccount | ChildKind::Role | ChildKind::RoleBinding => None,
    };
    if let Some(kind) = ChildKind::ALL
        .into_iter()
        .find(|kind| controlled(*kind) == Some(false))
    {
        return Err(Error::ChildConflict {
            kind: kind.as_str(),
            namespace: resolved.namespace.clone(),
            name: resolved.name.clone(),
        });
    }
    if observed
        .activator
        .as_ref()
        .is_some_and(|a| !controlled_by(a, owner))
    {
        return Err(Error::ChildConflict {
            kind: ChildKind::Deployment.as_str(),
            namespace: resolved.namespace.clone(),
            name: activator_name(&resolved.name),
        });
    }
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

fn count_write(metrics: &Metrics, kind: ChildKind, outcome: Outcome) {
    match outcome {
        Outcome::Applied => metrics.write(Written::Child(kind), Operation::Apply),
        Outcome::Deleted => metrics.write(Written::Child(kind), Operation::Delete),
        Outcome::Unchanged | Outcome::Absent => {}
    }
}

/// Whether the object is controlled by the owner (same uid).
pub(crate) fn controlled_by<K: Resource>(obj: &K, owner: &OwnerReference) -> bool {
    obj.owner_references()
        .iter()
        .any(|r| r.controller == Some(true) && r.uid == owner.uid)
}

/// The result of bringing one child to its desired state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Already as desired: no request sent.
    Unchanged,
    /// Written with server-side apply.
    Applied,
    /// Removed because it is no longer wanted.
    Deleted,
    /// Neither wanted nor present.
    Absent,
}

/// Applies `desired` unless `observed` already matches it (or `force` asks for it anyway).
/// Returns the object as the API server now has it.
pub(crate) async fn apply<K>(
    api: &Api<K>,
    desired: K,
    observed: Option<&K>,
    force: bool,
) -> Result<(K, Outcome), Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
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

/// Deletes a child that is no longer wanted, if it exists.
pub(crate) async fn delete_stale<K>(api: &Api<K>, observed: Option<&K>) -> Result<Outcome, Error>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    let Some(observed) = observed else {
        return Ok(Outcome::Absent);
    };
    let params = DeleteParams {
        preconditions: observed.uid().map(|uid| kube::api::Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match api.delete(&observed.name_any(), &params).await {
        Ok(_) => Ok(Outcome::Deleted),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Outcome::Absent),
        Err(e) => Err(Error::kube("delete")(e)),
    }
}
