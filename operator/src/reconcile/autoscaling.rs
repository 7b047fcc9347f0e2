//! What the autoscaler says, in the IrisModel's status: the `Autoscaling` condition, from the
//! HorizontalPodAutoscaler's own conditions. A HorizontalPodAutoscaler that cannot read its
//! metric (no metrics API, pods without a CPU request) keeps the replica count where it is
//! and says so only in its own status; the IrisModel repeats it, with the HPA's reason and
//! message, so `kubectl get irismodel` does not show a model that looks autoscaled but is not.

use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition,
};

use crate::rate::Facts;
use crate::reconcile::conditions::{Verdict, AUTOSCALING};
use crate::reconcile::conditions::{REASON_ACTIVATOR_NOT_READY, REASON_SCALED_TO_ZERO};
use crate::reconcile::resolve::Resolved;
use crate::reconcile::rootcause::bound;

/// Reason while the HorizontalPodAutoscaler has not reported yet (just created).
pub(crate) const REASON_STARTING: &str = "AutoscalerStarting";
/// Reason of Autoscaling=True.
pub(crate) const REASON_ACTIVE: &str = "ScalingActive";
/// The HPA's reason for a replica count pinned at maxReplicas while the target is exceeded.
pub(crate) const REASON_AT_MAXIMUM: &str = "TooManyReplicas";

/// The Autoscaling condition of an autoscaled model, from its HorizontalPodAutoscaler; None
/// when the model does not autoscale.
pub(crate) fn verdict(
    resolved: &Resolved,
    hpa: Option<&HorizontalPodAutoscaler>,
) -> Option<Verdict> {
    let autoscaling = resolved.autoscaling.as_ref()?;
    let target = autoscaling.target_cpu_utilization_percentage;
    let status = hpa.and_then(|h| h.status.as_ref());
    let conditions = status
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let condition = |type_: &str| conditions.iter().find(|c| c.type_ == type_);
    let hpa_says = |c: &HorizontalPodAutoscalerCondition| {
        (
            c.reason.clone().unwrap_or_else(|| c.type_.clone()),
            c.message.clone().unwrap_or_default(),
        )
    };
    let Some(active) = condition("ScalingActive") else {
        return Some(Verdict::new(
            AUTOSCALING,
            false,
            REASON_STARTING,
            "the HorizontalPodAutoscaler has not reported yet",
        ));
    };
    if active.status != "True" {
        let (reason, message) = hpa_says(active);
        return Some(Verdict::new(
            AUTOSCALING,
            false,
            reason,
            bound(&format!(
                "the HorizontalPodAutoscaler cannot act, the replica count stays as it is: {message}"
            )),
        ));
    }
    let current = status.map(|s| s.current_replicas.unwrap_or(0)).unwrap_or(0);
    let desired = status.map(|s| s.desired_replicas).unwrap_or(0);
    let cpu = status
        .and_then(|s| s.current_metrics.as_deref())
        .unwrap_or_default()
        .iter()
        .find_map(|m| m.resource.as_ref()?.current.average_utilization);
    let cpu = cpu.map_or_else(|| "unknown".to_string(), |c| format!("{c}%"));
    let figures = format!(
        "cpu {cpu} of the {target}% target, {current} replicas (desired {desired}, between {} and {})",
        autoscaling.min_replicas, autoscaling.max_replicas
    );
    if let Some(limited) = condition("ScalingLimited")
        .filter(|c| c.status == "True" && c.reason.as_deref() == Some(REASON_AT_MAXIMUM))
    {
        let (reason, message) = hpa_says(limited);
        return Some(Verdict::new(
            AUTOSCALING,
            false,
            reason,
            bound(&format!(
                "at autoscaling.maxReplicas ({}) while the target is exceeded: {figures}; {message}",
                autoscaling.max_replicas
            )),
        ));
    }
    Some(Verdict::new(AUTOSCALING, true, REASON_ACTIVE, figures))
}

/// Reason of Autoscaling=False when no ready pod's request counters could be read.
pub(crate) const REASON_NO_COUNTERS: &str = "RequestCountersUnavailable";

/// The verdict of a model at, going to, or held from zero pods; None otherwise.
fn zero_verdict(autoscaling: &crate::crd::AutoscalingSpec, facts: &Facts) -> Option<Verdict> {
    // Stable while the model stays idle: a message that counted the seconds would rewrite
    // the status of every idle model on each sample.
    let idle = format!(
        "no prediction request for idleSeconds ({} s)",
        autoscaling.idle_window()
    );
    if facts.current == 0 {
        return Some(Verdict::new(
            AUTOSCALING,
            true,
            REASON_SCALED_TO_ZERO,
            format!("scaled to zero pods: {idle}; the activator starts a pod on the next request"),
        ));
    }
    if facts.waiting_for_activator {
        return Some(Verdict::new(
            AUTOSCALING,
            false,
            REASON_ACTIVATOR_NOT_READY,
            format!(
                "{idle}, but the activator has no ready pod: the model keeps {} replicas",
                facts.current
            ),
        ));
    }
    if facts.desired == 0 {
        return Some(Verdict::new(
            AUTOSCALING,
            true,
            REASON_SCALED_TO_ZERO,
            format!("scaling to zero pods: {idle}"),
        ));
    }
    None
}

/// The Autoscaling condition of a model that scales on its request rate, from the operator's
/// own autoscaler ([`crate::reconcile::scaler`]).
pub(crate) fn rate_verdict(resolved: &Resolved, reading: Option<&Facts>) -> Option<Verdict> {
    let autoscaling = resolved.autoscaling.as_ref()?;
    let target = autoscaling.target_requests_per_second?;
    let Some(facts) = reading else {
        return Some(Verdict::new(
            AUTOSCALING,
            false,
            REASON_STARTING,
            "the first sample of the pods' request counters is taken; the rate needs a second",
        ));
    };
    if let Some(verdict) = zero_verdict(autoscaling, facts) {
        return Some(verdict);
    }
    if let Some(why) = &facts.unreadable {
        return Some(Verdict::new(
            AUTOSCALING,
            false,
            REASON_NO_COUNTERS,
            bound(&format!(
                "the request rate cannot be read, the replica count stays at {}: {why}",
                facts.current
            )),
        ));
    }
    if facts.read == 0 {
        // No pod is ready yet (a start, a rollout): Ready says why; nothing to warn about here.
        return Some(Verdict::new(
            AUTOSCALING,
            false,
            REASON_STARTING,
            format!(
                "no pod is ready to read the request rate from; the replica count stays at {}",
                facts.current
            ),
        ));
    }
    let figures = format!(
        "{}: {} replicas (desired {}, between {} and {})",
        facts.rate_phrase(target),
        facts.current,
        facts.desired,
        autoscaling.min_replicas,
        autoscaling.max_replicas
    );
    if facts.wanted > autoscaling.max_replicas {
        return Some(Verdict::new(
            AUTOSCALING,
            false,
            REASON_AT_MAXIMUM,
            bound(&format!(
                "at autoscaling.maxReplicas ({}) while the target is exceeded ({} wanted): {figures}",
                autoscaling.max_replicas, facts.wanted
            )),
        ));
    }
    Some(Verdict::new(AUTOSCALING, true, REASON_ACTIVE, figures))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::BuiltinCache;
    use crate::context::Settings;
    use crate::crd::AutoscalingSpec;
    use crate::fixtures::model;
    use crate::reconcile::resolve::resolve;
    use serde_json::json;

    fn resolved(autoscaling: Option<AutoscalingSpec>) -> Resolved {
        let mut model = model("iris", 1);
        model.spec.autoscaling = autoscaling;
        resolve(&model, &Settings::default(), None, &BuiltinCache::default()).expect("resolves")
    }

    fn builtin() -> Resolved {
        resolved(None)
    }

    fn cpu_model() -> Resolved {
        resolved(Some(AutoscalingSpec {
            min_replicas: 1,
            max_replicas: 3,
            target_cpu_utilization_percentage: 70,
            scale_down_stabilization_seconds: None,
            idle_seconds: None,
            target_requests_per_second: None,
        }))
    }

    fn hpa(status: serde_json::Value) -> HorizontalPodAutoscaler {
        serde_json::from_value(json!({
            "metadata": {"name": "iris"},
            "spec": {"maxReplicas": 3, "scaleTargetRef": {"kind": "Deployment", "name": "iris"}},
            "status": status
        }))
        .expect("an HPA")
    }

    #[test]
    fn no_condition_without_autoscaling() {
        assert_eq!(verdict(&builtin(), None), None);
    }

    #[test]
    fn an_hpa_that_has_not_reported_is_starting() {
        let v = verdict(&cpu_model(), None).expect("a verdict");
        assert_eq!((v.status, v.reason.as_str()), (false, REASON_STARTING));
        let v =
            verdict(&cpu_model(), Some(&hpa(json!({"desiredReplicas": 0})))).expect("a verdict");
        assert_eq!(v.reason, REASON_STARTING);
    }

    #[test]
    fn a_missing_metrics_api_is_reported_with_the_hpa_reason_and_message() {
        let message = "the HPA was unable to compute the replica count: failed to get cpu utilization: unable to get metrics for resource cpu: unable to fetch metrics from resource metrics API: the server could not find the requested resource (get pods.metrics.k8s.io)";
        let no_metrics = hpa(json!({
            "currentReplicas": 1, "desiredReplicas": 0,
            "conditions": [
                {"type": "AbleToScale", "status": "True", "reason": "SucceededGetScale", "message": "the HPA controller was able to get the target's current scale"},
                {"type": "ScalingActive", "status": "False", "reason": "FailedGetResourceMetric", "message": message}
            ]
        }));
        let v = verdict(&cpu_model(), Some(&no_metrics)).expect("a verdict");
        assert!(!v.status);
        assert_eq!(v.reason, "FailedGetResourceMetric");
        assert!(v.message.contains("cannot act"), "{}", v.message);
        assert!(v.message.contains("pods.metrics.k8s.io"), "{}", v.message);
    }

    #[test]
    fn pinned_at_the_maximum_is_reported_and_within_bounds_is_active() {
        let conditions = |limited: serde_json::Value| {
            json!([
                {"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale"},
                {"type": "ScalingActive", "status": "True", "reason": "ValidMetricFound",
                 "message": "the HPA was able to successfully calculate a replica count from cpu resource utilization (percentage of request)"},
                limited
            ])
        };
        let metrics = json!([{"type": "Resource", "resource": {"name": "cpu",
            "current": {"averageUtilization": 240, "averageValue": "120m"}}}]);
        let at_max = hpa(json!({
            "currentReplicas": 3, "desiredReplicas": 3, "currentMetrics": metrics,
            "conditions": conditions(json!({"type": "ScalingLimited", "status": "True",
                "reason": "TooManyReplicas", "message": "the desired replica count is more than the maximum replica count"}))
        }));
        let v = verdict(&cpu_model(), Some(&at_max)).expect("a verdict");
        assert!(!v.status);
        assert_eq!(v.reason, REASON_AT_MAXIMUM);
        assert!(v.message.starts_with("at autoscaling.maxReplicas (3) while the target is exceeded: cpu 240% of the 70% target, 3 replicas"), "{}", v.message);

        // At the minimum with little load: that is normal, the autoscaler acts.
        let idle = hpa(json!({
            "currentReplicas": 1, "desiredReplicas": 1,
            "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 2}}}],
            "conditions": conditions(json!({"type": "ScalingLimited", "status": "True",
                "reason": "TooFewReplicas", "message": "the desired replica count is less than the minimum replica count"}))
        }));
        let v = verdict(&cpu_model(), Some(&idle)).expect("a verdict");
        assert_eq!(
            v,
            Verdict::new(
                AUTOSCALING,
                true,
                REASON_ACTIVE,
                "cpu 2% of the 70% target, 1 replicas (desired 1, between 1 and 3)"
            )
        );
    }

    /// Autoscaled on the request rate, 10/s per pod, between 1 and 2 pods.
    fn rate_model() -> Resolved {
        resolved(Some(AutoscalingSpec {
            min_replicas: 1,
            max_replicas: 2,
            target_cpu_utilization_percentage: 70,
            scale_down_stabilization_seconds: None,
            idle_seconds: None,
            target_requests_per_second: Some(10),
        }))
    }

    #[test]
    fn the_request_rate_autoscaler_says_when_it_starts_and_when_it_is_pinned() {
        let model = rate_model();
        let v = rate_verdict(&model, None).expect("a verdict");
        assert_eq!((v.status, v.reason.as_str()), (false, REASON_STARTING));
        let facts = Facts {
            rate: 45.0,
            read: 2,
            pods: 2,
            current: 2,
            desired: 2,
            wanted: 5,
            unreadable: None,
            idle: 0.0,
            woke: false,
            unusable: false,
            waiting_for_activator: false,
        };
        let v = rate_verdict(&model, Some(&facts)).expect("a verdict");
        assert_eq!((v.status, v.reason.as_str()), (false, REASON_AT_MAXIMUM));
        assert!(
            v.message
                .contains("at autoscaling.maxReplicas (2) while the target is exceeded (5 wanted)"),
            "{}",
            v.message
        );
        assert!(
            v.message.contains("45.0 requests/s over 2 pods"),
            "{}",
            v.message
        );
        // A CPU-autoscaled model has no request-rate verdict.
        assert_eq!(rate_verdict(&cpu_model(), Some(&facts)), None);
    }

    #[test]
    fn no_ready_pod_is_a_start_not_a_warning() {
        let model = rate_model();
        let none_ready = Facts {
            rate: 0.0,
            read: 0,
            pods: 0,
            current: 1,
            desired: 1,
            wanted: 1,
            unreadable: None,
            idle: 0.0,
            woke: false,
            unusable: false,
            waiting_for_activator: false,
        };
        let v = rate_verdict(&model, Some(&none_ready)).expect("a verdict");
        assert_eq!((v.status, v.reason.as_str()), (false, REASON_STARTING));
        assert!(v.message.contains("stays at 1"), "{}", v.message);
        let refused = Facts {
            unreadable: Some("pod iris-1: connection refused".into()),
            ..none_ready
        };
        let v = rate_verdict(&model, Some(&refused)).expect("a verdict");
        assert_eq!((v.status, v.reason.as_str()), (false, REASON_NO_COUNTERS));
        assert!(v.message.contains("connection refused"), "{}", v.message);
    }

    #[test]
    fn a_model_at_zero_pods_says_so_in_words_that_do_not_change_while_it_stays_idle() {
        let mut spec = rate_model();
        if let Some(a) = spec.autoscaling.as_mut() {
            a.min_replicas = 0;
            a.idle_seconds = Some(60);
        }
        let at_zero = |idle| Facts {
            rate: 0.0,
            read: 0,
            pods: 0,
            current: 0,
            desired: 0,
            wanted: 0,
            unreadable: None,
            idle,
            woke: false,
            unusable: false,
            waiting_for_activator: false,
        };
        let first = rate_verdict(&spec, Some(&at_zero(65.0))).expect("a verdict");
        let later = rate_verdict(&spec, Some(&at_zero(3600.0))).expect("a verdict");
        assert_eq!(
            (first.status, first.reason.as_str()),
            (true, REASON_SCALED_TO_ZERO)
        );
        assert_eq!(first.message, later.message);
        assert!(
            first.message.contains("idleSeconds (60 s)"),
            "{}",
            first.message
        );
        let waiting = Facts {
            current: 1,
            desired: 1,
            waiting_for_activator: true,
            ..at_zero(90.0)
        };
        let v = rate_verdict(&spec, Some(&waiting)).expect("a verdict");
        assert_eq!(
            (v.status, v.reason.as_str()),
            (false, REASON_ACTIVATOR_NOT_READY)
        );
        assert!(v.message.contains("keeps 1 replicas"), "{}", v.message);
    }
}
