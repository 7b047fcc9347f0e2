//! Reconcile of an IrisModel as a pipeline: read -> validate -> build -> apply -> status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, warn};

use crate::apply::{apply, controlled_by, delete_stale, get, Outcome};
use crate::artifact::BuiltinCache;
use crate::builders::{self, selector_string, MANAGER};
use crate::conditions::{find, READY};
use crate::crd::IrisModel;
use crate::error::{backoff, Error};
use crate::metrics::Metrics;
use crate::report::{publish_event, publish_status, write_status};
use crate::resolve::{name_and_namespace, resolve, Resolved, Settings};
use crate::rootcause::{self, PodEvents};
use crate::status;

/// Requeue of a Ready IrisModel: a periodic check for drift nobody told us about.
pub const REQUEUE_READY: Duration = Duration::from_secs(300);
/// First requeue while an IrisModel is not Ready. Pods are not watched (Deployment changes are),
/// so a pod that starts failing is only seen by looking again.
pub const REQUEUE_NOT_READY: Duration = Duration::from_secs(5);
/// Longest requeue while not Ready: a model stuck for minutes is looked at twice a minute, so
/// a pod failure Kubernetes reports shows in the status within 30s.
pub const REQUEUE_NOT_READY_MAX: Duration = Duration::from_secs(30);
/// Field manager used once to share `spec.replicas` before handing it to an autoscaler.
pub const HANDOFF_MANAGER: &str = "iris-operator-handoff";

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub recorder: Recorder,
    pub metrics: Metrics,
    pub builtin: BuiltinCache,
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// A context publishing Events as `iris-operator` (and `instance`, e.g. the pod name).
    pub fn new(
        client: Client,
        settings: Settings,
        metrics: Metrics,
        instance: Option<String>,
    ) -> Self {
        let reporter = Reporter {
            controller: MANAGER.to_string(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            metrics,
            builtin: BuiltinCache::default(),
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub fn object_key(model: &IrisModel) -> String {
    format!(
        "{}/{}",
        model.namespace().unwrap_or_default(),
        model.name_any()
    )
}

/// Reconciles one IrisModel. Errors go to [`error_policy`], which backs off.
pub async fn reconcile(model: Arc<IrisModel>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started();
    let result = reconcile_model(&model, &ctx).await;
    if result.is_ok() {
        ctx.failures().remove(&object_key(&model));
    }
    result
}

/// Backs off exponentially per IrisModel; the watches still trigger a reconcile as soon as the
/// IrisModel or a ConfigMap it names changes, so a fix is picked up at once.
pub fn error_policy(model: Arc<IrisModel>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(error.category());
    let failures = {
        let mut failures = ctx.failures();
        let count = failures.entry(object_key(&model)).or_insert(0);
        *count = count.saturating_add(1);
        *count
    };
    let delay = backoff(failures);
    warn!(
        irismodel = %object_key(&model),
        category = error.category(),
        retry_in_s = delay.as_secs(),
        "reconcile failed: {error}"
    );
    Action::requeue(delay)
}

async fn reconcile_model(model: &IrisModel, ctx: &Context) -> Result<Action, Error> {
    let (name, namespace) = name_and_namespace(model)?;
    let client = ctx.client.clone();
    if model.metadata.deletion_timestamp.is_some() {
        // Being deleted: garbage collection removes the children; applying them again would
        // fight it (foreground deletion keeps the IrisModel around until they are gone).
        return Ok(Action::await_change());
    }
    debug!(irismodel = %format!("{namespace}/{name}"), "reconciling");

    // read
    let config_map = match &model.spec.model.source.config_map {
        Some(source) => {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
            get(&api, &source.name).await?
        }
        None => None,
    };
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let observed_deployment = get(&deployments, &name).await?;

    // validate
    let resolved = match resolve(model, &ctx.settings, config_map.as_ref(), &ctx.builtin) {
        Ok(resolved) => resolved,
        Err(error) => return fail(model, error, observed_deployment.as_ref(), ctx).await,
    };

    let observed = Observed {
        deployment: observed_deployment,
        service: get(&Api::namespaced(client.clone(), &namespace), &name).await?,
        hpa: get(&Api::namespaced(client.clone(), &namespace), &name).await?,
        pdb: get(&Api::namespaced(client.clone(), &namespace), &name).await?,
    };
    if let Some(error) = observed.conflict(&resolved) {
        return fail(model, error, observed.deployment.as_ref(), ctx).await;
    }

    // build + apply
    let deployment = match converge(&resolved, &observed, &client, ctx).await {
        Ok(deployment) => deployment,
        Err(error) => return fail(model, error, observed.deployment.as_ref(), ctx).await,
    };

    // status: pods are only listed while the rollout is incomplete, to explain why, and the
    // Warning Events of the few that are not ready
    let (pods, events) = if status::rollout(&deployment).complete {
        (Vec::new(), PodEvents::new())
    } else {
        let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let pods = api
            .list(
                &ListParams::default()
                    .labels(&selector_string(&name))
                    .match_any(),
            )
            .await
            .map_err(Error::kube("list pods"))?
            .items;
        let events = match status::template_hash(&deployment) {
            Some(hash) => pod_events(&client, &namespace, &pods, hash).await?,
            None => PodEvents::new(),
        };
        (pods, events)
    };
    let status = status::served(
        model,
        &resolved,
        &status::Observed {
            deployment: Some(&deployment),
            pods: &pods,
            events: &events,
        },
        &now(),
    );
    let action = requeue_after(&status.conditions, &now());
    publish_status(model, status, ctx).await?;
    Ok(action)
}

/// The Warning Events of the not-ready pods of the current version (a few of them): one list
/// per pod, by field selector and with a limit (which the watch cache would ignore, so these
/// are read from etcd). No watch.
async fn pod_events(
    client: &Client,
    namespace: &str,
    pods: &[Pod],
    current_hash: &str,
) -> Result<PodEvents, Error> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    let mut events = PodEvents::new();
    for pod in rootcause::pods_to_explain(pods, current_hash) {
        let list = api
            .list(
                &ListParams::default()
                    .fields(&rootcause::event_selector(&pod))
                    .limit(rootcause::MAX_EVENTS_PER_POD),
            )
            .await
            .map_err(Error::kube("list pod events"))?;
        events.insert(pod, list.items);
    }
    Ok(events)
}

/// When to look again: every 5 minutes when Ready; when not, after as long as it has not been
/// Ready (5s to 30s): a failing pod is noticed within twice its onset, and hundreds of stuck
/// models do not poll the API server every few seconds.
pub fn requeue_after(conditions: &[Condition], now: &Time) -> Action {
    let Some(ready) = find(conditions, READY) else {
        return Action::requeue(REQUEUE_NOT_READY);
    };
    if ready.status == "True" {
        return Action::requeue(REQUEUE_READY);
    }
    let since = now.0.duration_since(ready.last_transition_time.0);
    let since = Duration::try_from(since).unwrap_or_default();
    Action::requeue(since.clamp(REQUEUE_NOT_READY, REQUEUE_NOT_READY_MAX))
}

/// The children as read at the start of the reconcile.
struct Observed {
    deployment: Option<Deployment>,
    service: Option<Service>,
    hpa: Option<HorizontalPodAutoscaler>,
    pdb: Option<PodDisruptionBudget>,
}

impl Observed {
    /// A user error when a child's name is taken by an object this IrisModel does not control:
    /// the operator never takes over someone else's object.
    fn conflict(&self, resolved: &Resolved) -> Option<Error> {
        let owner = &resolved.owner;
        let foreign = [
            (
                "Deployment",
                self.deployment.as_ref().map(|o| controlled_by(o, owner)),
            ),
            (
                "Service",
                self.service.as_ref().map(|o| controlled_by(o, owner)),
            ),
            (
                "HorizontalPodAutoscaler",
                self.hpa.as_ref().map(|o| controlled_by(o, owner)),
            ),
            (
                "PodDisruptionBudget",
                self.pdb.as_ref().map(|o| controlled_by(o, owner)),
            ),
        ];
        foreign
            .into_iter()
            .find(|(_, owned)| *owned == Some(false))
            .map(|(kind, _)| Error::ChildConflict {
                kind,
                namespace: resolved.namespace.clone(),
                name: resolved.name.clone(),
            })
    }
}

/// Builds the desired children and applies what differs; returns the Deployment as the API
/// server has it now.
async fn converge(
    resolved: &Resolved,
    observed: &Observed,
    client: &Client,
    ctx: &Context,
) -> Result<Deployment, Error> {
    let namespace = &resolved.namespace;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), namespace);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), namespace);

    let handoff = resolved.replicas.is_none()
        && observed
            .deployment
            .as_ref()
            .is_some_and(|d| owns_replicas(d, MANAGER));
    if let (true, Some(current)) = (handoff, observed.deployment.as_ref()) {
        hand_off_replicas(&deployments, current).await?;
        ctx.metrics.write("Deployment", "apply");
    }
    let (deployment, outcome) = apply(
        &deployments,
        builders::deployment::build(resolved),
        observed.deployment.as_ref(),
        handoff,
    )
    .await?;
    count_write(ctx, "Deployment", outcome);
    let (_, outcome) = apply(
        &services,
        builders::service::build(resolved),
        observed.service.as_ref(),
        false,
    )
    .await?;
    count_write(ctx, "Service", outcome);
    let outcome = match builders::hpa::build(resolved) {
        Some(hpa) => apply(&hpas, hpa, observed.hpa.as_ref(), false).await?.1,
        None => delete_stale(&hpas, observed.hpa.as_ref()).await?,
    };
    count_write(ctx, "HorizontalPodAutoscaler", outcome);
    let outcome = match builders::pdb::build(resolved) {
        Some(pdb) => apply(&pdbs, pdb, observed.pdb.as_ref(), false).await?.1,
        None => delete_stale(&pdbs, observed.pdb.as_ref()).await?,
    };
    count_write(ctx, "PodDisruptionBudget", outcome);
    Ok(deployment)
}

fn now() -> Time {
    Time(Timestamp::now())
}

/// Reports an error the user must fix in the status (Ready=False with the error's category) and
/// as a Warning Event, then hands the error to the backoff.
async fn fail(
    model: &IrisModel,
    error: Error,
    deployment: Option<&Deployment>,
    ctx: &Context,
) -> Result<Action, Error> {
    if error.reported_in_status() {
        let status = status::failed(model, &error, deployment, &now());
        write_status(model, &status, ctx).await?;
        publish_event(
            model,
            ctx,
            EventType::Warning,
            error.category(),
            error.to_string(),
        )
        .await;
    }
    Err(error)
}

/// Whether `manager` owns `spec.replicas` of the Deployment through an apply.
pub fn owns_replicas(deployment: &Deployment, manager: &str) -> bool {
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

fn count_write(ctx: &Context, kind: &'static str, outcome: Outcome) {
    match outcome {
        Outcome::Applied => ctx.metrics.write(kind, "apply"),
        Outcome::Deleted => ctx.metrics.write(kind, "delete"),
        Outcome::Unchanged | Outcome::Absent => {}
    }
}

/// The IrisModels in the ConfigMap's namespace whose source names it: what a ConfigMap change
/// must reconcile.
pub fn models_using_config_map<'a>(
    models: impl IntoIterator<Item = &'a IrisModel>,
    namespace: Option<&str>,
    name: Option<&str>,
) -> Vec<kube::runtime::reflector::ObjectRef<IrisModel>> {
    models
        .into_iter()
        .filter(|m| m.namespace().as_deref() == namespace)
        .filter(|m| {
            m.spec
                .model
                .source
                .config_map
                .as_ref()
                .is_some_and(|s| Some(s.name.as_str()) == name)
        })
        .map(kube::runtime::reflector::ObjectRef::from_obj)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditions::{at, merge, Verdict};

    #[test]
    fn requeue_slows_down_the_longer_a_model_is_not_ready() {
        let not_ready = merge(
            &[],
            vec![Verdict::new(READY, false, "RollingOut", "")],
            Some(1),
            &at(1000),
        );
        let delay = |now| requeue_after(&not_ready, &at(now));
        assert_eq!(delay(1000), Action::requeue(Duration::from_secs(5)));
        assert_eq!(delay(1010), Action::requeue(Duration::from_secs(10)));
        assert_eq!(delay(1020), Action::requeue(Duration::from_secs(20)));
        assert_eq!(delay(5000), Action::requeue(Duration::from_secs(30)));
        let ready = merge(
            &[],
            vec![Verdict::new(READY, true, "Ready", "")],
            Some(1),
            &at(1000),
        );
        assert_eq!(
            requeue_after(&ready, &at(1001)),
            Action::requeue(REQUEUE_READY)
        );
    }
}
