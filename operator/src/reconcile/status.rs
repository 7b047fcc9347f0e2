//! The status step: derives an IrisModel's status from the Deployment's real state and its
//! pods, never from what was merely applied.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::crd::{IrisModel, IrisModelStatus, RolloutStatus};
use crate::error::Error;
use crate::names::{activator_name, selector_string};
use crate::reconcile::autoscaling;
use crate::reconcile::conditions::{
    find, merge, Verdict, AUTOSCALING, DEGRADED, PROGRESSING, READY, REASON_ACTIVATOR_NOT_READY,
    REASON_AS_EXPECTED, REASON_METRICS_UNUSABLE, REASON_PAYLOAD_SINK_FAILING, REASON_READY,
    REASON_ROLLING_OUT, REASON_ROLLOUT_COMPLETE, REASON_SCALED_TO_ZERO, REASON_WAKING, ROLLOUT,
};
use crate::reconcile::image;
use crate::reconcile::progress::{rollout, template_hash, Rollout};
use crate::reconcile::resolve::Resolved;
use crate::reconcile::rollout::{
    Decision, PHASE_ABORTED, PHASE_CANARY, PHASE_PAUSED, PHASE_PROMOTED, PHASE_PROMOTING,
};
use crate::reconcile::rootcause::{bound, pod_failure, PodEvents};

/// The observations the status is derived from.
pub(crate) struct Observed<'a> {
    /// The Deployment as the API server has it (after this reconcile's apply).
    pub(crate) deployment: Option<&'a Deployment>,
    /// Pods selected by the IrisModel's selector (empty when they were not listed).
    pub(crate) pods: &'a [Pod],
    /// Whether the pods were listed.
    pub(crate) pods_read: bool,
    /// Warning Events of the pods that are not ready (empty when they were not read).
    pub(crate) events: &'a PodEvents,
    /// The HorizontalPodAutoscaler as the watch cache has it (with its status).
    pub(crate) hpa: Option<&'a HorizontalPodAutoscaler>,
    /// The request-rate autoscaler's reading, when the model scales on its request rate.
    pub(crate) rate: Option<&'a crate::rate::Reading>,
    /// The activator of a model that scales to zero.
    pub(crate) activator: Option<ActivatorView>,
    /// Why the payload log's sink keeps failing, when it does.
    pub(crate) sink_failing: Option<&'a str>,
}

/// What the status says of a scale-to-zero model's activator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ActivatorView {
    /// It has a ready pod.
    pub(crate) ready: bool,
    /// The model's Service selects it (the model has no ready pod).
    pub(crate) serving: bool,
}

/// The status of a served IrisModel, with the rollout's decision (its status, and a model the
/// quality gate refused).
pub(crate) fn served(
    model: &IrisModel,
    resolved: &Resolved,
    observed: &Observed<'_>,
    decision: &Decision,
    now: &Time,
) -> IrisModelStatus {
    let rollout = observed.deployment.map(rollout).unwrap_or_default();
    // What the pods say is the root cause; a Deployment failure (progress deadline, pods it
    // cannot create) only when the pods say nothing.
    let failure = observed
        .deployment
        .and_then(template_hash)
        .and_then(|hash| pod_failure(observed.pods, hash, observed.events, now))
        .or_else(|| rollout.failure.clone());
    let progress = format!(
        "{} of {} updated replicas available",
        rollout.available.min(rollout.updated),
        rollout.desired
    );

    let ready = ready_verdict(
        resolved,
        observed,
        decision,
        (&rollout, &failure),
        &progress,
    );
    let progressing = progressing_verdict(observed, decision, (&rollout, &failure), progress);
    let degraded = degraded_verdict(observed, decision, (&rollout, &failure));

    let previous = model.status.clone().unwrap_or_default();
    let mut verdicts = vec![ready, progressing, degraded];
    verdicts.extend(decision.status.as_ref().map(rollout_verdict));
    verdicts.extend(match observed.rate {
        Some(reading) => autoscaling::rate_verdict(resolved, reading.as_ref()),
        None => autoscaling::verdict(resolved, observed.hpa),
    });
    // A refused model is not the one served: status.model keeps describing the one that is.
    let served_model = match decision.refused {
        Some(_) => previous.model.clone(),
        None => Some(resolved.model_status.clone()),
    };
    IrisModelStatus {
        observed_generation: resolved.generation,
        replicas: rollout.replicas,
        ready_replicas: rollout.ready,
        updated_replicas: rollout.updated,
        available_replicas: rollout.available,
        selector: Some(selector_string(&resolved.name)),
        endpoint: Some(resolved.endpoint.clone()),
        model: served_model,
        image: observed.deployment.map(|deployment| {
            image::served(
                &resolved.image,
                template_hash(deployment),
                observed.pods,
                observed.pods_read,
                previous.image.as_ref(),
            )
        }),
        rollout: decision.status.clone(),
        conditions: merge(&previous.conditions, verdicts, resolved.generation, now),
    }
}

/// The Degraded condition: a model the quality gate refused, pods of the current version that
/// fail, or pods whose own metrics page is no evidence (the request-rate autoscaler then holds
/// the replica count: the model's pods answer garbage, which someone must look at).
fn degraded_verdict(
    observed: &Observed<'_>,
    decision: &Decision,
    (rollout, failure): (&Rollout, &Option<(String, String)>),
) -> Verdict {
    let unusable = observed
        .rate
        .and_then(|reading| reading.as_ref())
        .filter(|facts| facts.unusable)
        .and_then(|facts| facts.unreadable.as_deref());
    match (&decision.refused, failure, rollout.complete) {
        (Some((reason, message)), _, _) => Verdict::new(
            DEGRADED,
            true,
            *reason,
            format!("{message}: the model is not rolled out, what served before keeps serving"),
        ),
        (None, Some((reason, message)), false) => Verdict::new(DEGRADED, true, reason, message),
        _ => match unusable {
            Some(why) => Verdict::new(
                DEGRADED,
                true,
                REASON_METRICS_UNUSABLE,
                bound(&format!(
                    "{why}: the request rate cannot be read, the autoscaler holds the replica count"
                )),
            ),
            None => match observed.sink_failing {
                Some(why) => Verdict::new(DEGRADED, true, REASON_PAYLOAD_SINK_FAILING, bound(why)),
                None => Verdict::new(DEGRADED, false, REASON_AS_EXPECTED, "no failure detected"),
            },
        },
    }
}

/// The Ready condition: refused, not created yet, through the activator, scaled to zero,
/// serving, failing (with the root cause), or rolling out.
fn ready_verdict(
    resolved: &Resolved,
    observed: &Observed<'_>,
    decision: &Decision,
    (rollout, failure): (&Rollout, &Option<(String, String)>),
    progress: &str,
) -> Verdict {
    if let (None, Some((reason, message))) = (observed.deployment, &decision.refused) {
        Verdict::new(READY, false, *reason, message.clone())
    } else if observed.deployment.is_none() {
        Verdict::new(
            READY,
            false,
            REASON_ROLLING_OUT,
            "Deployment not created yet",
        )
    } else if let Some(verdict) = observed
        .activator
        .filter(|a| a.serving && failure.is_none())
        .map(|a| activator_ready_verdict(a, rollout, resolved))
    {
        verdict
    } else if rollout.desired == 0 {
        Verdict::new(
            READY,
            false,
            REASON_SCALED_TO_ZERO,
            "spec.replicas is 0: no pod serves the model",
        )
    } else if rollout.complete {
        Verdict::new(
            READY,
            true,
            REASON_READY,
            format!(
                "{} of {} replicas available at {}",
                rollout.available, rollout.desired, resolved.endpoint
            ),
        )
    } else if let Some((reason, message)) = failure {
        Verdict::new(READY, false, reason, message)
    } else {
        Verdict::new(READY, false, REASON_ROLLING_OUT, progress)
    }
}

/// The Progressing condition: a canary under way is a rollout in progress, whatever the
/// stable Deployment says; otherwise the Deployment's rollout.
fn progressing_verdict(
    observed: &Observed<'_>,
    decision: &Decision,
    (rollout, failure): (&Rollout, &Option<(String, String)>),
    progress: String,
) -> Verdict {
    let progressing = match (failure, rollout.complete && observed.deployment.is_some()) {
        (_, true) => Verdict::new(
            PROGRESSING,
            false,
            REASON_ROLLOUT_COMPLETE,
            "all replicas run the current version",
        ),
        (Some((reason, message)), false) if rollout.failure.is_some() => {
            Verdict::new(PROGRESSING, false, reason, message)
        }
        _ => Verdict::new(PROGRESSING, true, REASON_ROLLING_OUT, progress),
    };

    match decision.status.as_ref().map(|r| r.phase.as_str()) {
        Some(phase @ (PHASE_CANARY | PHASE_PAUSED | PHASE_PROMOTING)) => Verdict::new(
            PROGRESSING,
            true,
            if phase == PHASE_PROMOTING {
                "Promoting"
            } else {
                "CanaryProgressing"
            },
            decision
                .status
                .as_ref()
                .map(|r| r.summary.clone())
                .unwrap_or_default(),
        ),
        _ => progressing,
    }
}

/// Ready of a scale-to-zero model served through its activator: True while the activator is
/// ready (a request is answered, after a cold start), with no pod or with one starting.
fn activator_ready_verdict(
    activator: ActivatorView,
    rollout: &Rollout,
    resolved: &Resolved,
) -> Verdict {
    if !activator.ready {
        return Verdict::new(
            READY,
            false,
            REASON_ACTIVATOR_NOT_READY,
            format!(
                "the model has no ready pod and its activator (Deployment {}) has none either: \
                 connections to the Service are refused",
                activator_name(&resolved.name)
            ),
        );
    }
    if rollout.desired == 0 {
        Verdict::new(
            READY,
            true,
            REASON_SCALED_TO_ZERO,
            format!(
                "no pod runs (idle): the activator answers at {} and starts a pod on the next \
                 request",
                resolved.endpoint
            ),
        )
    } else {
        Verdict::new(
            READY,
            true,
            REASON_WAKING,
            format!(
                "waking from zero pods: {} of {} ready; the activator holds the requests until \
                 one is",
                rollout.ready, rollout.desired
            ),
        )
    }
}

/// The Rollout condition: True while a canary goes as planned or after it was promoted, False
/// once one was rolled back or aborted (the message says which figure failed).
fn rollout_verdict(rollout: &RolloutStatus) -> Verdict {
    let (status, reason) = match rollout.phase.as_str() {
        PHASE_CANARY => (true, "CanaryProgressing"),
        PHASE_PAUSED => (true, "CanaryPaused"),
        PHASE_PROMOTING => (true, "Promoting"),
        PHASE_PROMOTED => (true, "Promoted"),
        PHASE_ABORTED => (false, "Aborted"),
        _ => (false, "RolledBack"),
    };
    Verdict::new(ROLLOUT, status, reason, bound(&rollout.message))
}

/// The status of an IrisModel that cannot be served as specified: Ready=False with the error's
/// category as reason. Counts still describe the pods that run (an older version may serve).
pub(crate) fn failed(
    model: &IrisModel,
    error: &Error,
    deployment: Option<&Deployment>,
    now: &Time,
) -> IrisModelStatus {
    let previous = model.status.clone().unwrap_or_default();
    let rollout = deployment.map(rollout).unwrap_or_default();
    let reason = error.category();
    let message = bound(&error.to_string());
    let generation = model.metadata.generation;
    let name = model.metadata.name.clone().unwrap_or_default();
    IrisModelStatus {
        observed_generation: generation,
        replicas: rollout.replicas,
        ready_replicas: rollout.ready,
        updated_replicas: rollout.updated,
        available_replicas: rollout.available,
        selector: Some(selector_string(&name)),
        endpoint: previous.endpoint.clone(),
        model: previous.model.clone(),
        image: previous.image.clone(),
        rollout: previous.rollout.clone(),
        conditions: merge(
            &previous.conditions,
            vec![
                Verdict::new(READY, false, reason, message.clone()),
                Verdict::new(PROGRESSING, false, reason, message.clone()),
                Verdict::new(DEGRADED, true, reason, message),
            ],
            generation,
            now,
        )
        .into_iter()
        // A rollout's and the autoscaler's conditions stay as they were: the error says
        // nothing about them.
        .chain(find(&previous.conditions, ROLLOUT).cloned())
        .chain(find(&previous.conditions, AUTOSCALING).cloned())
        .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::MODEL_HASH_ANNOTATION;
    use serde_json::json;

    fn deployment(spec_replicas: i32, generation: i64, status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "iris", "generation": generation},
            "spec": {
                "replicas": spec_replicas,
                "selector": {},
                "template": {"metadata": {"annotations": {MODEL_HASH_ANNOTATION: "h1"}}}
            },
            "status": status
        }))
        .expect("a Deployment")
    }

    #[test]
    fn rollout_is_complete_only_when_the_current_generation_is_all_available() {
        let done = json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2,
                          "readyReplicas": 2, "availableReplicas": 2});
        assert!(rollout(&deployment(2, 2, done.clone())).complete);
        // Not yet seen by the Deployment controller.
        assert!(!rollout(&deployment(2, 3, done)).complete);
        // An old pod is still there.
        let old_left = json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2,
                              "availableReplicas": 3});
        assert!(!rollout(&deployment(2, 2, old_left)).complete);
        // Updated but not available.
        let starting = json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2,
                              "availableReplicas": 1});
        assert!(!rollout(&deployment(2, 2, starting)).complete);
    }

    #[test]
    fn stuck_deployments_are_failures() {
        let stuck = json!({"observedGeneration": 1, "conditions": [{
            "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
            "message": "ReplicaSet iris-1 has timed out progressing."}]});
        let r = rollout(&deployment(1, 1, stuck));
        assert_eq!(
            r.failure,
            Some((
                "ProgressDeadlineExceeded".to_string(),
                "ReplicaSet iris-1 has timed out progressing.".to_string()
            ))
        );
        let forbidden = json!({"observedGeneration": 1, "conditions": [{
            "type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
            "message": "pods \"iris-1\" is forbidden: violates PodSecurity"}]});
        let r = rollout(&deployment(1, 1, forbidden));
        assert_eq!(r.failure.map(|f| f.0).as_deref(), Some("FailedCreate"));
    }
}
