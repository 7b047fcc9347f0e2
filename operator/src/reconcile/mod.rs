//! The reconcile of an IrisModel, one straight chain:
//! observe -> resolve -> build the desired children -> apply -> status, and errors reported in
//! one place. Each step is a module with its own input and output.

pub(crate) mod analysis;
pub(crate) mod apply;
pub(crate) mod artifact;
pub(crate) mod autoscaling;
pub(crate) mod conditions;
pub(crate) mod desired;
pub(crate) mod image;
pub(crate) mod observe;
pub(crate) mod report;
pub(crate) mod resolve;
pub(crate) mod rollout;
pub(crate) mod rootcause;
pub(crate) mod scaler;
pub(crate) mod status;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::runtime::controller::Action;
use tracing::{debug, error, warn};

use crate::context::{object_key, Context};
use crate::crd::{IrisModel, IrisModelStatus, RolloutStrategy};
use crate::error::{backoff, Error};
use conditions::{find, READY};
use desired::Desired;
use observe::Observed;
use resolve::Resolved;
use rollout::{CanaryFacts, Decision};

/// Requeue of a Ready IrisModel: a periodic check for drift nobody told us about.
pub(crate) const REQUEUE_READY: Duration = Duration::from_secs(300);
/// First requeue while an IrisModel is not Ready. Pods are not watched (Deployment changes are),
/// so a pod that starts failing is only seen by looking again.
pub(crate) const REQUEUE_NOT_READY: Duration = Duration::from_secs(5);
/// Longest requeue while not Ready: a model stuck for minutes is looked at twice a minute, so
/// a pod failure Kubernetes reports shows in the status within 30s.
pub(crate) const REQUEUE_NOT_READY_MAX: Duration = Duration::from_secs(30);
/// Requeue while the Controllers' watch caches have not listed once (just after a start).
pub(crate) const REQUEUE_UNSYNCED: Duration = Duration::from_secs(1);

/// Reconciles one IrisModel. Errors go to [`error_policy`], which backs off. A panic anywhere
/// in the reconcile is caught here and becomes that reconcile's error ([`Error::Panicked`]):
/// kube-runtime would re-raise it and end the process, stopping every other model's reconcile.
pub(crate) async fn reconcile(model: Arc<IrisModel>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started();
    let result = match AssertUnwindSafe(reconcile_model(&model, &ctx))
        .catch_unwind()
        .await
    {
        Ok(result) => result,
        Err(payload) => Err(contain_panic(&model, &ctx, panic_message(payload.as_ref())).await),
    };
    if result.is_ok() {
        ctx.failures().remove(&object_key(&model));
    }
    result
}

/// The error a panicked reconcile becomes, reported as any other: Degraded with reason
/// `ReconcilePanicked` and the panic's message, a Warning Event, and the backoff and failure
/// count of [`error_policy`]. The unwind left nothing half-written that a retry cannot redo:
/// every write is an idempotent apply or a guarded delete.
async fn contain_panic(model: &IrisModel, ctx: &Context, message: String) -> Error {
    error!(irismodel = %object_key(model), "reconcile panicked: {message}");
    let deployment = match resolve::name_and_namespace(model) {
        Ok((name, namespace)) => ctx.children().deployments.get(&namespace, &name),
        Err(_) => None,
    };
    let now = ctx.now();
    report::failure(
        model,
        Error::Panicked(message),
        deployment.as_ref(),
        ctx,
        &now,
    )
    .await
}

/// The message of a panic's payload (`panic!` gives a `&str` or a `String`).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// Backs off exponentially per IrisModel; the watches still trigger a reconcile as soon as the
/// IrisModel or a ConfigMap it names changes, so a fix is picked up at once.
pub(crate) fn error_policy(model: Arc<IrisModel>, error: &Error, ctx: Arc<Context>) -> Action {
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

/// The driver: observe, then converge; the status is published, or the error reported.
async fn reconcile_model(model: &IrisModel, ctx: &Context) -> Result<Action, Error> {
    let (name, namespace) = resolve::name_and_namespace(model)?;
    if model.metadata.deletion_timestamp.is_some() {
        // Being deleted: garbage collection removes the children; applying them again would
        // fight it (foreground deletion keeps the IrisModel around until they are gone).
        ctx.metrics.models.forget(&namespace, &name);
        ctx.scalers.forget(&object_key(model));
        return Ok(Action::await_change());
    }
    let cache = ctx.children();
    if !cache.synced() {
        // A child missing from a cache that has not listed yet may exist: wait for it.
        debug!(irismodel = %format!("{namespace}/{name}"), "watch caches not synced yet");
        return Ok(Action::requeue(REQUEUE_UNSYNCED));
    }
    debug!(irismodel = %format!("{namespace}/{name}"), "reconciling");
    let mut observed = observe::children(&ctx.client, &cache, model, &name, &namespace).await?;
    let now = ctx.now();
    match converge(model, &mut observed, ctx, &now).await {
        Ok((status, decision)) => {
            let mut action = requeue_after(&status.conditions, &now);
            let running = decision.status.as_ref().is_some_and(|r| {
                [rollout::PHASE_CANARY, rollout::PHASE_PROMOTING].contains(&r.phase.as_str())
            });
            if running {
                // Steps are timed and the canary's metrics change without watch events.
                action = Action::requeue(rollout::REQUEUE_CANARY);
            } else if scaler::on_request_rate(model) {
                // The request rate is sampled on a clock, not on watch events.
                action = Action::requeue(scaler::SCALE_INTERVAL);
            }
            report::publish_status(model, status, ctx).await?;
            report::rollout(model, &decision, ctx).await?;
            Ok(action)
        }
        Err(error) => {
            let deployment = observed.deployment.as_ref();
            Err(report::failure(model, error, deployment, ctx, &now).await)
        }
    }
}

/// resolve -> build -> rollout -> apply -> status: the status the IrisModel should have, and
/// the rollout's decision (for its Event and the by-hand action).
async fn converge(
    model: &IrisModel,
    observed: &mut Observed,
    ctx: &Context,
    now: &Time,
) -> Result<(IrisModelStatus, Decision), Error> {
    let resolved = resolve::resolve(
        model,
        &ctx.settings,
        observed.config_map.as_ref(),
        &ctx.builtin,
    )?;
    let mut desired = desired::build(&resolved);
    observe::unseen(
        &ctx.client,
        observed,
        &desired,
        &resolved.name,
        &resolved.namespace,
    )
    .await?;
    let (name, namespace) = (&resolved.name, &resolved.namespace);
    // A model that scales to zero: its Service selects the activator while it has no pod, and
    // the scaler takes it to zero pods with the Service pointed there first.
    let through_activator = scaler::through_activator(
        &resolved,
        observed.deployment.as_ref(),
        observed.service.as_ref(),
    );
    let zero_service = resolved.activator.is_some().then(|| {
        let mut service = desired.service.clone();
        desired::service::select_activator(&mut service, name);
        service
    });
    if through_activator {
        desired::service::select_activator(&mut desired.service, name);
    }
    let activator_ready = scaler::activator_ready(observed.activator.as_ref());
    let decision = decide(model, &resolved, &desired, observed, ctx, now).await?;
    let deployment = apply::children(
        &ctx.client,
        &resolved,
        desired,
        observed,
        &ctx.metrics,
        decision.plan,
    )
    .await?;
    // The pods are also read once a rollout is complete until status.image knows their digest.
    let previous_image = model.status.as_ref().and_then(|s| s.image.as_ref());
    let image_unknown = image::needs_pods(previous_image, &resolved.image);
    let pods = match &deployment {
        Some(deployment) => {
            observe::pods(&ctx.client, deployment, name, namespace, image_unknown).await?
        }
        None => observe::Pods::default(),
    };
    let rate = match &deployment {
        Some(deployment) => {
            // The pods listed above (while a rollout runs or the image is unknown) serve the
            // autoscaler too: one list a reconcile.
            let listed = pods.read.then_some(pods.pods.as_slice());
            let zero = zero_service.map(|service| scaler::Zero {
                service,
                observed: observed.service.as_ref(),
                activator_ready,
            });
            scaler::scale(ctx, model, &resolved, deployment, listed, zero, now).await?
        }
        None => None,
    };
    let live = status::Observed {
        deployment: deployment.as_ref(),
        pods: &pods.pods,
        pods_read: pods.read,
        events: &pods.events,
        hpa: observed.hpa.as_ref(),
        rate: rate.as_ref(),
        activator: resolved
            .activator
            .is_some()
            .then_some(status::ActivatorView {
                ready: activator_ready,
                serving: through_activator,
            }),
    };
    let status = status::served(model, &resolved, &live, &decision, now);
    let mut decision = decision;
    if decision.refused.is_some()
        && find(&status.conditions, READY).is_some_and(|c| c.status == "False")
    {
        // Ready turns False for the refusal: its transition's Event says it already.
        decision.notice = None;
    }
    Ok((status, decision))
}

/// The rollout step, fed with what it needs from the cluster: the canary's pods and traffic
/// while one runs.
async fn decide(
    model: &IrisModel,
    resolved: &Resolved,
    desired: &Desired,
    observed: &Observed,
    ctx: &Context,
    now: &Time,
) -> Result<Decision, Error> {
    let spec = model.spec.rollout.clone().unwrap_or_default();
    let facts = match &observed.canary {
        Some(canary) if spec.strategy == RolloutStrategy::Canary => {
            observe::canary(&ctx.client, ctx.scraper.as_ref(), canary, resolved, now).await?
        }
        _ => CanaryFacts::default(),
    };
    let desired_hash = status::template_hash(&desired.deployment).unwrap_or_default();
    let previous = model.status.as_ref();
    Ok(rollout::decide(&rollout::Facts {
        spec: &spec,
        accuracy: resolved.model_status.accuracy,
        desired_hash,
        desired_digest: resolved.model_status.digest.as_deref(),
        served_digest: previous
            .and_then(|s| s.model.as_ref())
            .and_then(|m| m.digest.as_deref()),
        stable: observed.deployment.as_ref(),
        canary: observed.canary.as_ref(),
        previous: previous.and_then(|s| s.rollout.as_ref()),
        action: rollout::Action::parse(
            model
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(rollout::ACTION_ANNOTATION))
                .map(String::as_str),
        ),
        observed: &facts,
        now,
    }))
}

/// When to look again: every 5 minutes when Ready; when not, after as long as it has not been
/// Ready (5s to 30s): a failing pod is noticed within twice its onset, and hundreds of stuck
/// models do not poll the API server every few seconds.
pub(crate) fn requeue_after(conditions: &[Condition], now: &Time) -> Action {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::conditions::{at, merge, Verdict};

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
