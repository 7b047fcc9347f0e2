//! Autoscaling on the request rate, by the operator itself: no metrics adapter, no KEDA, no
//! HorizontalPodAutoscaler. Every [`SCALE_INTERVAL`] the reconcile of a model with
//! `spec.autoscaling.targetRequestsPerSecond` samples each ready pod's own prediction counters
//! (observe reads them), and this step decides, without a request of its own, the replica count
//! the rate asks for ([`crate::rate`]: the HorizontalPodAutoscaler's rule over the samples);
//! apply writes it to the Deployment's scale subresource, which stays the one source of the
//! count (as it is for the HPA, and for `kubectl scale`). A model that scales to zero has its
//! Service pointed at its activator in the same apply, before the count goes to zero.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::crd::IrisModel;
use crate::rate::{Reading, Sample, Scalers};
use crate::reconcile::desired::service;
use crate::reconcile::resolve::Resolved;

/// How often a model autoscaled on its request rate is sampled (its requeue).
pub(crate) const SCALE_INTERVAL: Duration = Duration::from_secs(5);
/// Reason of the Event of a change of the replica count.
pub(crate) const REASON_RESCALED: &str = "Rescaled";
/// Reason of the Event of a model going to zero pods.
pub(crate) const REASON_SCALED_TO_ZERO: &str = "ScaledToZero";
/// Reason of the Event of a model woken from zero pods by its activator.
pub(crate) const REASON_WOKEN: &str = "Woken";

/// What the scaler decided in this reconcile.
#[derive(Debug, PartialEq)]
pub(crate) struct Scale {
    /// What it saw and decided, for the status.
    pub(crate) reading: Reading,
    /// The replica count to write, with the reason and note of its Event.
    pub(crate) write: Option<(i32, &'static str, String)>,
    /// The note of the Event of a model woken from zero pods (told once).
    pub(crate) woke: Option<String>,
    /// The count goes to zero: the Service selects the activator, in the same apply.
    pub(crate) to_zero: bool,
}

/// Whether the model scales on its request rate (the operator is its autoscaler).
pub(crate) fn on_request_rate(model: &IrisModel) -> bool {
    model
        .spec
        .autoscaling
        .as_ref()
        .is_some_and(|a| a.target_requests_per_second.is_some())
}

/// Seconds since the epoch, the scaler's clock.
pub(crate) fn seconds(time: &Time) -> f64 {
    time.0.as_millisecond() as f64 / 1000.0
}

/// The request-rate step: from the sample observe took (None when the model has no
/// Deployment yet), the replica count to write, if it changes. None when the model does not
/// scale on its request rate (its series is then forgotten). Zero pods only with a ready
/// activator: without one a Service with no pod behind it would refuse connections, so the
/// model keeps its pods until the activator is ready.
pub(crate) fn decide(
    scalers: &Scalers,
    resolved: &Resolved,
    sample: Option<Sample>,
    activator_ready: bool,
) -> Option<Scale> {
    let key = format!("{}/{}", resolved.namespace, resolved.name);
    let Some((spec, target)) = resolved
        .autoscaling
        .as_ref()
        .and_then(|a| Some((a, a.target_requests_per_second?)))
    else {
        scalers.forget(&key);
        return None;
    };
    let mut reading = scalers.sample(&key, sample?, spec, f64::from(target));
    let woke = reading.as_ref().filter(|f| f.woke).map(|facts| {
        format!(
            "0 -> {} replicas: a request reached the activator of the scaled-to-zero model",
            facts.current
        )
    });
    let mut to_zero = false;
    if let Some(facts) = reading.as_mut().filter(|f| f.desired == 0 && f.current > 0) {
        if activator_ready && resolved.activator.is_some() {
            to_zero = true;
        } else {
            facts.desired = facts.current;
            facts.waiting_for_activator = true;
        }
    }
    let write = reading
        .as_ref()
        .filter(|f| f.desired != f.current)
        .map(|facts| {
            if facts.desired == 0 {
                let note = format!(
                    "{} -> 0 replicas: no prediction request for {:.0} s (idleSeconds {}); the \
                     activator takes the Service's connections and starts a pod on the next one",
                    facts.current,
                    facts.idle,
                    spec.idle_window()
                );
                (0, REASON_SCALED_TO_ZERO, note)
            } else {
                let note = format!(
                    "{} -> {} replicas: {}",
                    facts.current,
                    facts.desired,
                    facts.rate_phrase(target)
                );
                (facts.desired, REASON_RESCALED, note)
            }
        });
    Some(Scale {
        reading,
        write,
        woke,
        to_zero,
    })
}

/// Whether a scale-to-zero model's Service should select its activator: while the Deployment
/// asks for no pod, and (once it selects the activator) until a pod the activator asked for
/// is ready. A model whose pods all fail while serving keeps its own selector.
pub(crate) fn through_activator(
    resolved: &Resolved,
    deployment: Option<&Deployment>,
    service: Option<&Service>,
) -> bool {
    let Some(deployment) = deployment.filter(|_| resolved.activator.is_some()) else {
        return false;
    };
    let replicas = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let ready = deployment
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    replicas == 0
        || (ready == 0 && service.is_some_and(|s| service::selects_activator(s, &resolved.name)))
}

/// Whether the activator has a ready pod.
pub(crate) fn activator_ready(activator: Option<&Deployment>) -> bool {
    activator
        .and_then(|d| d.status.as_ref())
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
        > 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::BuiltinCache;
    use crate::context::Settings;
    use crate::crd::AutoscalingSpec;
    use crate::fixtures::model;
    use crate::rate::PodCount;
    use crate::reconcile::resolve::resolve;

    fn resolved(min: i32, idle: Option<i32>) -> Resolved {
        let mut model = model("iris", 1);
        model.spec.autoscaling = Some(AutoscalingSpec {
            min_replicas: min,
            max_replicas: 5,
            target_cpu_utilization_percentage: 70,
            scale_down_stabilization_seconds: Some(0),
            idle_seconds: idle,
            target_requests_per_second: Some(10),
        });
        resolve(&model, &Settings::default(), None, &BuiltinCache::default()).expect("resolves")
    }

    fn sample(now: f64, requests: u64, current: i32) -> Option<Sample> {
        Some(Sample {
            now,
            counts: vec![PodCount {
                pod: "p1".into(),
                requests,
                started: Some(0.0),
            }],
            unreadable: None,
            unusable: None,
            unscraped: 0,
            current,
        })
    }

    #[test]
    fn a_rate_over_the_target_writes_the_count_with_its_event() {
        let (scalers, resolved) = (Scalers::default(), resolved(1, None));
        let first = decide(&scalers, &resolved, sample(0.0, 0, 1), true).expect("autoscaled");
        assert_eq!((first.reading, first.write), (None, None));
        let second = decide(&scalers, &resolved, sample(10.0, 300, 1), true).expect("autoscaled");
        let (replicas, reason, note) = second.write.expect("a new count");
        assert_eq!((replicas, reason), (3, REASON_RESCALED));
        assert_eq!(
            note,
            "1 -> 3 replicas: 30.0 requests/s over 1 pod against a target of 10/s per pod"
        );
        assert!(!second.to_zero && second.woke.is_none());
    }

    #[test]
    fn zero_pods_only_with_a_ready_activator_and_the_service_moves_first() {
        let resolved = resolved(0, Some(30));
        for ready in [false, true] {
            let scalers = Scalers::default();
            decide(&scalers, &resolved, sample(0.0, 5, 1), ready);
            let idle = decide(&scalers, &resolved, sample(40.0, 5, 1), ready).expect("autoscaled");
            let facts = idle.reading.as_ref().expect("a reading");
            if ready {
                assert!(idle.to_zero);
                assert_eq!(
                    idle.write.as_ref().map(|w| (w.0, w.1)),
                    Some((0, REASON_SCALED_TO_ZERO))
                );
            } else {
                assert!(!idle.to_zero && idle.write.is_none());
                assert!(facts.waiting_for_activator);
                assert_eq!(facts.desired, 1);
            }
        }
    }

    #[test]
    fn a_wake_is_told_and_a_model_no_longer_rate_autoscaled_is_forgotten() {
        let (scalers, resolved) = (Scalers::default(), resolved(0, Some(30)));
        decide(&scalers, &resolved, sample(0.0, 0, 0), true);
        let woke = decide(&scalers, &resolved, sample(10.0, 0, 1), true).expect("autoscaled");
        assert_eq!(
            woke.woke.as_deref(),
            Some("0 -> 1 replicas: a request reached the activator of the scaled-to-zero model")
        );
        let mut plain = resolved.clone();
        plain.autoscaling = None;
        assert_eq!(decide(&scalers, &plain, sample(20.0, 0, 1), true), None);
        // Forgotten: the next sample starts a new series and decides nothing.
        let again = decide(&scalers, &resolved, sample(30.0, 0, 1), true).expect("autoscaled");
        assert_eq!(again.reading, None);
    }
}
