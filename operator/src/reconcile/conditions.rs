//! metav1 Conditions the way Kubernetes documents them: each carries observedGeneration, and
//! lastTransitionTime moves only when the status flips.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The model answers requests: the current version's pods are all available.
pub(crate) const READY: &str = "Ready";
/// A rollout of the current version is under way.
pub(crate) const PROGRESSING: &str = "Progressing";
/// Something needs attention: pods of the current version fail, or the spec cannot be served.
pub(crate) const DEGRADED: &str = "Degraded";

/// With autoscaling on CPU: the autoscaler can act and is not pinned at its maximum.
pub(crate) const AUTOSCALING: &str = "Autoscaling";

/// With the Canary strategy: the last model change goes (or went) as planned.
pub(crate) const ROLLOUT: &str = "Rollout";

// The reasons of the conditions, shared by the steps that set them.

/// Reason of Ready=True.
pub(crate) const REASON_READY: &str = "Ready";
/// Reason while pods of the current version are starting or replacing old ones.
pub(crate) const REASON_ROLLING_OUT: &str = "RollingOut";
/// Reason of Progressing=False once the rollout is done.
pub(crate) const REASON_ROLLOUT_COMPLETE: &str = "RolloutComplete";
/// Reason of Ready=False with zero replicas.
pub(crate) const REASON_SCALED_TO_ZERO: &str = "ScaledToZero";
/// Ready=True of a scale-to-zero model whose activator holds requests while a pod starts.
pub(crate) const REASON_WAKING: &str = "Waking";
/// Ready=False of a scale-to-zero model with no ready pod and no ready activator.
pub(crate) const REASON_ACTIVATOR_NOT_READY: &str = "ActivatorNotReady";
/// Reason of Degraded=False.
pub(crate) const REASON_AS_EXPECTED: &str = "AsExpected";
/// Degraded=True of a model whose pods' metrics pages are no evidence (NaN or negative
/// counters, lines that are not the Prometheus text format, a page over 1 MiB or not sent
/// in full in time...): its autoscaler holds.
pub(crate) const REASON_METRICS_UNUSABLE: &str = "MetricsUnusable";
/// Degraded=True of a model whose payload log (`spec.logging`) keeps failing to reach its sink:
/// predictions are answered, their events are lost.
pub(crate) const REASON_PAYLOAD_SINK_FAILING: &str = "PayloadSinkFailing";

/// A condition without its transition time: what the operator decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub(crate) type_: &'static str,
    pub(crate) status: bool,
    pub(crate) reason: String,
    pub(crate) message: String,
}

impl Verdict {
    pub(crate) fn new(
        type_: &'static str,
        status: bool,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

fn status_str(status: bool) -> &'static str {
    if status {
        "True"
    } else {
        "False"
    }
}

/// Finds a condition by type.
pub(crate) fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Turns verdicts into conditions, keeping each previous lastTransitionTime when the status of
/// that type did not change, so an unchanged verdict yields an identical condition.
pub(crate) fn merge(
    previous: &[Condition],
    verdicts: Vec<Verdict>,
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    verdicts
        .into_iter()
        .map(|v| {
            let status = status_str(v.status);
            let last_transition_time = match find(previous, v.type_) {
                Some(old) if old.status == status => old.last_transition_time.clone(),
                _ => now.clone(),
            };
            Condition {
                type_: v.type_.to_string(),
                status: status.to_string(),
                reason: v.reason,
                message: v.message,
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// A fixed instant, `secs` after the epoch, for tests of transition times.
#[cfg(test)]
pub(crate) fn at(secs: i64) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(secs).expect("valid timestamp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let first = merge(
            &[],
            vec![Verdict::new(READY, false, "RollingOut", "0 of 1")],
            Some(1),
            &at(100),
        );
        assert_eq!(first[0].last_transition_time, at(100));

        let same_status = merge(
            &first,
            vec![Verdict::new(READY, false, "CrashLoop", "pod failing")],
            Some(1),
            &at(200),
        );
        assert_eq!(same_status[0].last_transition_time, at(100));
        assert_eq!(same_status[0].reason, "CrashLoop");

        let flipped = merge(
            &same_status,
            vec![Verdict::new(READY, true, "Ready", "1 of 1")],
            Some(2),
            &at(300),
        );
        assert_eq!(flipped[0].last_transition_time, at(300));
        assert_eq!(flipped[0].status, "True");
        assert_eq!(flipped[0].observed_generation, Some(2));
    }
}
