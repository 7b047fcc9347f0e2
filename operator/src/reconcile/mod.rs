//! The reconcile of an IrisModel, one pipeline: observe (every read) -> decide (pure: resolve,
//! the desired children, the rollout, the scaler) -> apply (every write: children, replica
//! count) -> decide the status from what the apply answered -> apply it (status, annotation,
//! Events); errors reported in one place. Each step is a module with its own input and output.

pub(crate) mod analysis;
pub(crate) mod apply;
pub(crate) mod autoscaling;
pub(crate) mod compare;
pub(crate) mod conditions;
pub(crate) mod decide;
pub(crate) mod desired;
pub(crate) mod image;
pub(crate) mod observe;
pub(crate) mod owned;
pub(crate) mod progress;
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
use crate::crd::{IrisModel, IrisModelStatus};
use crate::error::{backoff, Error};
use apply::report;
use conditions::{find, READY};
use observe::Observed;
use rollout::Decision;

/// Requeue of a Ready IrisModel: a periodic check for drift nobody told us about.
pub(crate) const REQUEUE_READY: Duration = Duration::from_secs(300);
/// Requeue of a Ready IrisModel with `spec.logging`: its pods' pages say whether the sink keeps
/// failing, and nothing else tells.
pub(crate) const REQUEUE_PAYLOAD_LOG: Duration = Duration::from_secs(60);
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
            } else if model.spec.logging.is_some() && action == Action::requeue(REQUEUE_READY) {
                // So are the payload log's failures.
                action = Action::requeue(REQUEUE_PAYLOAD_LOG);
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

/// From what the caches hold to the status: resolve and build the desired children (pure),
/// read the rest, decide, apply, and decide the status from what the apply answered. Returns
/// the status the IrisModel should have, and the rollout's decision (for its Event and the
/// by-hand action).
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
    let desired = desired::build(&resolved);
    let scraper = ctx.scraper.as_ref();
    let wanted = (model, &resolved, &desired);
    observe::rest(&ctx.client, scraper, observed, wanted, now).await?;
    let (desired, mut plan) = decide::plan(model, &resolved, desired, observed, &ctx.scalers, now);
    let deployment = apply::children(
        &ctx.client,
        &resolved,
        desired,
        observed,
        &ctx.metrics,
        plan.rollout.plan,
    )
    .await?;
    if let Some(scale) = &plan.scale {
        apply::scale(ctx, model, &resolved, scale).await?;
    }
    let status = decide::status(
        model,
        &resolved,
        observed,
        deployment.as_ref(),
        &mut plan,
        now,
    );
    Ok((status, plan.rollout))
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
