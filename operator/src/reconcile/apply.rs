//! The apply step: the desired children against what was observed. Every write and delete
//! goes through the ownership rule of [`owned`]: a child whose name is taken by an object this
//! IrisModel does not control is refused, never changed; each other child is written with
//! server-side apply under one field manager, forcing conflicts, and only when the object in
//! the cluster is not already what we would apply, so an unchanged reconcile writes nothing.
//! A child no longer wanted is deleted only when it is ours, with a uid precondition.

mod compare;
pub(crate) mod owned;

use std::fmt::Debug;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;

use compare::contains;
pub(crate) use compare::stamp;
pub(crate) use owned::Outcome;

use crate::error::Error;
use crate::metrics::{Metrics, Operation, Written};
use crate::names::{activator_name, canary_name, MANAGER};
use crate::reconcile::desired::activator::Activator;
use crate::reconcile::desired::{canary, ChildKind, Desired};
use crate::reconcile::observe::Observed;
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
            // A canary the cache lacks (or holds as someone else's) is looked up first: the
            // name may be taken.
            let existing = match &observed.canary {
                Some(canary) => Some(canary.clone()),
                None => owned::read(client, namespace, &canary_name(&resolved.name)).await?,
            };
            let canary = canary::build(&desired.deployment, replicas);
            apply(&deployments, owner, canary, existing.as_ref(), false)
                .await?
                .1
        }
        Plan::Promote => Outcome::Unchanged,
        Plan::Roll | Plan::Hold => {
            owned::delete(&deployments, observed.canary.as_ref(), owner).await?
        }
    };
    count_write(metrics, ChildKind::Deployment, outcome);
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
    let outcome = match desired.hpa {
        Some(hpa) => {
            apply(&hpas, owner, hpa, observed.hpa.as_ref(), false)
                .await?
                .1
        }
        None => owned::delete(&hpas, observed.hpa.as_ref(), owner).await?,
    };
    count_write(metrics, ChildKind::HorizontalPodAutoscaler, outcome);
    let pdbs = Api::namespaced(client.clone(), namespace);
    let outcome = match desired.pdb {
        Some(pdb) => {
            apply(&pdbs, owner, pdb, observed.pdb.as_ref(), false)
                .await?
                .1
        }
        None => owned::delete(&pdbs, observed.pdb.as_ref(), owner).await?,
    };
    count_write(metrics, ChildKind::PodDisruptionBudget, outcome);
    match desired.activator {
        Some(activator) => {
            apply_activator(
                client,
                (namespace, owner),
                activator,
                observed.activator.as_ref(),
                metrics,
            )
            .await?
        }
        None => {
            delete_activator(
                client,
                (namespace, owner),
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
/// when its Deployment is not already as desired, so an unchanged reconcile writes nothing. The
/// ServiceAccount, Role and RoleBinding are read first and all three checked against the
/// ownership rule before any is written: a Role or RoleBinding of someone else's under the
/// activator's name is never changed (a ResourceConflict names it). One deleted by hand comes
/// back with the next change of the activator (or of the operator's image).
async fn apply_activator(
    client: &Client,
    (namespace, owner): (&str, &OwnerReference),
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
    let name = activator.deployment.name_any();
    let account: Option<ServiceAccount> = owned::read(client, namespace, &name).await?;
    let role: Option<Role> = owned::read(client, namespace, &name).await?;
    let binding: Option<RoleBinding> = owned::read(client, namespace, &name).await?;
    owned::claim(account.as_ref(), owner)?;
    owned::claim(role.as_ref(), owner)?;
    owned::claim(binding.as_ref(), owner)?;
    owned::claim(observed, owner)?;
    let accounts = Api::namespaced(client.clone(), namespace);
    let (_, outcome) = apply(
        &accounts,
        owner,
        activator.service_account,
        account.as_ref(),
        false,
    )
    .await?;
    count_write(metrics, ChildKind::ServiceAccount, outcome);
    let roles = Api::namespaced(client.clone(), namespace);
    let (_, outcome) = apply(&roles, owner, activator.role, role.as_ref(), false).await?;
    count_write(metrics, ChildKind::Role, outcome);
    let bindings = Api::namespaced(client.clone(), namespace);
    let (_, outcome) = apply(
        &bindings,
        owner,
        activator.role_binding,
        binding.as_ref(),
        false,
    )
    .await?;
    count_write(metrics, ChildKind::RoleBinding, outcome);
    let deployments = Api::namespaced(client.clone(), namespace);
    // Compared above already: written without comparing again.
    let (_, outcome) = apply(&deployments, owner, activator.deployment, observed, true).await?;
    count_write(metrics, ChildKind::Deployment, outcome);
    Ok(())
}

/// Deletes the activator of a model that no longer scales to zero (and its RBAC), if it runs:
/// each only when it is ours, with a uid precondition.
async fn delete_activator(
    client: &Client,
    (namespace, owner): (&str, &OwnerReference),
    name: &str,
    observed: Option<&Deployment>,
    metrics: &Metrics,
) -> Result<(), Error> {
    if observed.is_none() {
        return Ok(());
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let outcome = owned::delete(&deployments, observed, owner).await?;
    count_write(metrics, ChildKind::Deployment, outcome);
    let name = activator_name(name);
    let outcome = owned::delete_named::<RoleBinding>(client, namespace, &name, owner).await?;
    count_write(metrics, ChildKind::RoleBinding, outcome);
    let outcome = owned::delete_named::<Role>(client, namespace, &name, owner).await?;
    count_write(metrics, ChildKind::Role, outcome);
    let outcome = owned::delete_named::<ServiceAccount>(client, namespace, &name, owner).await?;
    count_write(metrics, ChildKind::ServiceAccount, outcome);
    Ok(())
}

/// Before anything is written: a child under the model's own name (Deployment, Service, HPA,
/// PDB) or the activator's that this IrisModel does not control is refused, so a reconcile
/// that cannot finish writes nothing. (Each write checks again through [`owned::claim`].)
fn refuse_foreign(resolved: &Resolved, observed: &Observed) -> Result<(), Error> {
    let owner = &resolved.owner;
    owned::claim(observed.deployment.as_ref(), owner)?;
    owned::claim(observed.service.as_ref(), owner)?;
    owned::claim(observed.hpa.as_ref(), owner)?;
    owned::claim(observed.pdb.as_ref(), owner)?;
    owned::claim(observed.activator.as_ref(), owner)
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
