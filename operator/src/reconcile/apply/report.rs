//! Telling the user, in one place: the status (written only when it changed), Events on its
//! transitions, and errors mapped to the status and a Warning Event.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::Resource;
use serde_json::json;
use tracing::{info, warn};

use crate::context::{object_key, Context};
use crate::crd::{IrisModel, IrisModelStatus};
use crate::error::Error;
use crate::metrics::{Operation, Written};
use crate::names::MANAGER;
use crate::reconcile::autoscaling;
use crate::reconcile::conditions::{find, AUTOSCALING, DEGRADED, READY};
use crate::reconcile::resolve::name_and_namespace;
use crate::reconcile::rollout::{Action, Decision, ACTION_ANNOTATION};
use crate::reconcile::status;

/// Writes the status when it changed, and tells the user about transitions with Events.
pub(crate) async fn publish_status(
    model: &IrisModel,
    status: IrisModelStatus,
    ctx: &Context,
) -> Result<(), Error> {
    let previous = model
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or(&[]);
    let event = transition_event(previous, &status.conditions);
    let autoscaler = autoscaling_event(previous, &status.conditions);
    write_status(model, &status, ctx).await?;
    for (type_, reason, note) in event.into_iter().chain(autoscaler) {
        publish_event(model, ctx, type_, &reason, note).await;
    }
    Ok(())
}

/// Tells the user of a rollout's transition (an Event; a rollback also counts in a metric),
/// and removes the by-hand action annotation once it has been acted on.
pub(crate) async fn rollout(
    model: &IrisModel,
    decision: &Decision,
    ctx: &Context,
) -> Result<(), Error> {
    if let Some((warning, reason, message)) = &decision.notice {
        let repeated = decision.refused.is_some()
            && model
                .status
                .as_ref()
                .and_then(|s| find(&s.conditions, DEGRADED))
                .is_some_and(|c| c.reason == *reason);
        if !repeated {
            if matches!(*reason, "CanaryRolledBack" | "CanaryAborted") {
                ctx.metrics.rollback(reason);
            }
            let type_ = if *warning {
                EventType::Warning
            } else {
                EventType::Normal
            };
            publish_event(model, ctx, type_, reason, message.clone()).await;
        }
    }
    let Some(action) = model
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ACTION_ANNOTATION))
    else {
        return Ok(());
    };
    if Action::parse(Some(action)).is_none() {
        publish_event(
            model,
            ctx,
            EventType::Warning,
            "UnknownRolloutAction",
            format!(
                "annotation {ACTION_ANNOTATION}={action:?} is not one of pause, resume, promote, abort: ignored and removed"
            ),
        )
        .await;
    }
    let (name, namespace) = name_and_namespace(model)?;
    let api: Api<IrisModel> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = json!({"metadata": {"annotations": {ACTION_ANNOTATION: null}}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::kube("remove the rollout annotation"))?;
    ctx.metrics.write(Written::Model, Operation::Apply);
    Ok(())
}

/// Reports an error the user must fix (or a child the API server refused) in the status
/// (Ready=False with the error's category) and as a Warning Event; other errors are only
/// retried. The error goes on to the backoff either way.
pub(crate) async fn failure(
    model: &IrisModel,
    error: Error,
    deployment: Option<&Deployment>,
    ctx: &Context,
    now: &Time,
) -> Error {
    if error.reported_in_status() {
        let status = status::failed(model, &error, deployment, now);
        if let Err(write_error) = write_status(model, &status, ctx).await {
            return write_error;
        }
        publish_event(
            model,
            ctx,
            EventType::Warning,
            error.category(),
            error.to_string(),
        )
        .await;
    }
    error
}

/// The Event a change of the Ready condition deserves: Normal when it turns Ready, Warning
/// when it turns Degraded.
pub(crate) fn transition_event(
    previous: &[Condition],
    current: &[Condition],
) -> Option<(EventType, String, String)> {
    let now = find(current, READY)?;
    let before = find(previous, READY);
    if before.is_some_and(|b| b.status == now.status && b.reason == now.reason) {
        return None;
    }
    if now.status == "True" {
        return Some((EventType::Normal, now.reason.clone(), now.message.clone()));
    }
    let degraded = find(current, DEGRADED).filter(|c| c.status == "True")?;
    Some((
        EventType::Warning,
        degraded.reason.clone(),
        degraded.message.clone(),
    ))
}

/// The Event a change of the Autoscaling condition deserves: Warning when the autoscaler
/// cannot act or is pinned at its maximum (with the HPA's reason), Normal when it acts again.
/// Its start (the HPA has not reported yet) is no news.
pub(crate) fn autoscaling_event(
    previous: &[Condition],
    current: &[Condition],
) -> Option<(EventType, String, String)> {
    let now = find(current, AUTOSCALING)?;
    let before = find(previous, AUTOSCALING);
    if now.reason == autoscaling::REASON_STARTING
        || before.is_some_and(|b| b.status == now.status && b.reason == now.reason)
    {
        return None;
    }
    if now.status == "True" {
        // Acting from the start is what was asked: only a recovery is news.
        let recovered = before.is_some_and(|b| b.reason != autoscaling::REASON_STARTING);
        return recovered.then(|| {
            (
                EventType::Normal,
                "AutoscalingActive".to_string(),
                now.message.clone(),
            )
        });
    }
    Some((EventType::Warning, now.reason.clone(), now.message.clone()))
}

pub(crate) async fn write_status(
    model: &IrisModel,
    status: &IrisModelStatus,
    ctx: &Context,
) -> Result<(), Error> {
    let (name, namespace) = name_and_namespace(model)?;
    // Set even when the status is unchanged: a restarted operator has no series yet.
    ctx.metrics
        .models
        .set(&namespace, &name, desired_replicas(model, status), status);
    if model.status.as_ref() == Some(status) {
        return Ok(());
    }
    let api: Api<IrisModel> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = json!({
        "apiVersion": IrisModel::api_version(&()),
        "kind": IrisModel::kind(&()),
        "status": status,
    });
    api.patch_status(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(Error::kube("status patch"))?;
    ctx.metrics.write(Written::Status, Operation::Apply);
    let ready = find(&status.conditions, READY);
    info!(
        irismodel = %format!("{namespace}/{name}"),
        ready = ready.map(|c| c.status.as_str()).unwrap_or("Unknown"),
        reason = ready.map(|c| c.reason.as_str()).unwrap_or(""),
        "status updated"
    );
    Ok(())
}

/// The pods a model should have: its spec, or the autoscaler's choice (the pods there are).
fn desired_replicas(model: &IrisModel, status: &IrisModelStatus) -> i32 {
    if model.spec.autoscaling.is_some() {
        status.replicas
    } else {
        model.spec.replicas
    }
}

/// Publishes an Event; a failure to do so is logged, never fatal.
pub(crate) async fn publish_event(
    model: &IrisModel,
    ctx: &Context,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: "Reconcile".to_string(),
        secondary: None,
    };
    match ctx.recorder.publish(&event, &model.object_ref(&())).await {
        Ok(()) => ctx.metrics.write(Written::Event, Operation::Create),
        Err(e) => warn!(irismodel = %object_key(model), "could not publish event: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::conditions::{at, merge, Verdict};

    #[test]
    fn events_on_transitions_only() {
        let rolling = merge(
            &[],
            vec![
                Verdict::new(READY, false, "RollingOut", "0 of 1"),
                Verdict::new(DEGRADED, false, "AsExpected", ""),
            ],
            Some(1),
            &at(1),
        );
        let ready = merge(
            &rolling,
            vec![
                Verdict::new(READY, true, "Ready", "1 of 1"),
                Verdict::new(DEGRADED, false, "AsExpected", ""),
            ],
            Some(1),
            &at(2),
        );
        let crashing = merge(
            &ready,
            vec![
                Verdict::new(READY, false, "CrashLoop", "pod x"),
                Verdict::new(DEGRADED, true, "CrashLoop", "pod x"),
            ],
            Some(2),
            &at(3),
        );
        assert_eq!(transition_event(&[], &rolling), None);
        let became_ready = transition_event(&rolling, &ready).expect("an event");
        assert_eq!(
            (became_ready.0, became_ready.1.as_str()),
            (EventType::Normal, "Ready")
        );
        assert_eq!(transition_event(&ready, &ready), None);
        let failing = transition_event(&ready, &crashing).expect("an event");
        assert_eq!(
            (failing.0, failing.1.as_str()),
            (EventType::Warning, "CrashLoop")
        );
        assert_eq!(transition_event(&crashing, &crashing), None);
    }

    #[test]
    fn autoscaler_events_on_failure_and_recovery_not_on_start() {
        let conditions = |status, reason| {
            merge(
                &[],
                vec![Verdict::new(AUTOSCALING, status, reason, "m")],
                Some(1),
                &at(1),
            )
        };
        let starting = conditions(false, autoscaling::REASON_STARTING);
        let active = conditions(true, autoscaling::REASON_ACTIVE);
        let no_metrics = conditions(false, "FailedGetResourceMetric");
        let at_max = conditions(false, autoscaling::REASON_AT_MAXIMUM);
        assert_eq!(autoscaling_event(&[], &starting), None);
        assert_eq!(autoscaling_event(&starting, &active), None);
        assert_eq!(autoscaling_event(&active, &active), None);
        let failed = autoscaling_event(&active, &no_metrics).expect("an event");
        assert_eq!(
            (failed.0, failed.1.as_str()),
            (EventType::Warning, "FailedGetResourceMetric")
        );
        assert_eq!(autoscaling_event(&no_metrics, &no_metrics), None);
        // From the start without a metrics API: said at once.
        assert!(autoscaling_event(&starting, &no_metrics).is_some());
        let limited = autoscaling_event(&no_metrics, &at_max).expect("an event");
        assert_eq!(limited.1, autoscaling::REASON_AT_MAXIMUM);
        let recovered = autoscaling_event(&at_max, &active).expect("an event");
        assert_eq!(
            (recovered.0, recovered.1.as_str()),
            (EventType::Normal, "AutoscalingActive")
        );
        // A model without autoscaling has no such condition, and no such Event.
        assert_eq!(autoscaling_event(&active, &[]), None);
    }
}
