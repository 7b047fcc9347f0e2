//! The rollout step: how a model change reaches the pods. Pure: from the spec, what the
//! cluster holds (the stable and canary Deployments, the canary's traffic) and the last
//! status, it decides what the apply step does with the Deployments ([`Plan`]) and what the
//! status says of the rollout. Nothing is kept in memory, so an operator restarted mid-step
//! resumes the same rollout.
//!
//! - The quality gate (`minAccuracy`), for every strategy: a model below it gets no pod.
//! - `RollingUpdate`: the stable Deployment takes the new template.
//! - `Canary`: a change first runs in `<name>-canary` pods next to the stable ones behind the
//!   one Service, step by step; each step holds its weight for its time and passes once the
//!   analysis of the canary's own metrics passes; a failed analysis, or canary pods not ready
//!   within the deadline, rolls back (the canary goes, the stable pods were never touched) and
//!   the change is not retried until the spec changes. All steps passed: the stable
//!   Deployment takes the new template (a surge-one rolling update, so no request fails), and
//!   the canary goes once that is complete.

mod phases;

pub(crate) use phases::canary_replicas;
use phases::{at_step, canary, decision, ended, promoting, rollback, running, short, summarised};

use std::ops::ControlFlow;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::crd::{CanarySpec, RolloutSpec, RolloutStatus, RolloutStrategy};
use crate::reconcile::analysis::{self, Traffic, Verdict};
use crate::reconcile::progress::{rollout as deployment_rollout, template_hash};

/// Annotation on an IrisModel that steers a canary by hand: `pause`, `resume`, `promote` or
/// `abort`. The operator acts on it once and removes it.
pub(crate) const ACTION_ANNOTATION: &str = "serving.iris.dev/rollout";

/// Phases of `status.rollout.phase`.
pub(crate) const PHASE_CANARY: &str = "Canary";
pub(crate) const PHASE_PAUSED: &str = "Paused";
pub(crate) const PHASE_PROMOTING: &str = "Promoting";
pub(crate) const PHASE_PROMOTED: &str = "Promoted";
pub(crate) const PHASE_ROLLED_BACK: &str = "RolledBack";
pub(crate) const PHASE_ABORTED: &str = "Aborted";

/// How often a running canary is looked at: its step times are seconds, and its pods' metrics
/// change without any watch event.
pub(crate) const REQUEUE_CANARY: Duration = Duration::from_secs(5);

/// What a user asked for with [`ACTION_ANNOTATION`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Pause,
    Resume,
    Promote,
    Abort,
}

impl Action {
    /// The action named by the annotation's value; None for no or an unknown value.
    pub(crate) fn parse(value: Option<&str>) -> Option<Action> {
        match value?.trim().to_ascii_lowercase().as_str() {
            "pause" => Some(Action::Pause),
            "resume" => Some(Action::Resume),
            "promote" => Some(Action::Promote),
            "abort" => Some(Action::Abort),
            _ => None,
        }
    }
}

/// What the apply step does with the Deployments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// The stable Deployment takes the desired template; a canary left over goes.
    Roll,
    /// The stable Deployment stays as it is; the canary runs with this many pods.
    Canary { replicas: i32 },
    /// The stable Deployment takes the desired template; the canary stays as it is until that
    /// rollout is complete.
    Promote,
    /// The stable Deployment stays as it is (none is created); a canary goes.
    Hold,
}

impl Plan {
    /// Whether the stable Deployment is applied.
    pub(crate) fn applies_stable(self) -> bool {
        matches!(self, Plan::Roll | Plan::Promote)
    }
}

/// A rollout event worth telling the user: (warning?, reason, message).
pub(crate) type Notice = (bool, &'static str, String);

/// The decision of one reconcile.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Decision {
    pub(crate) plan: Plan,
    /// `status.rollout`.
    pub(crate) status: Option<RolloutStatus>,
    /// A transition the user should hear of (an Event), and for a rollback its reason (a
    /// metric).
    pub(crate) notice: Option<Notice>,
    /// The quality gate refused the desired model: (reason, message) for the status.
    pub(crate) refused: Option<(&'static str, String)>,
}

/// The canary's observations: its pods' traffic, and why its pods are not ready, if known.
#[derive(Clone, Debug, Default)]
pub(crate) struct CanaryFacts {
    /// The canary pods' traffic summed (None when no canary pod answered a scrape).
    pub(crate) canary: Option<Traffic>,
    /// The stable pods' traffic summed.
    pub(crate) stable: Traffic,
    /// A canary pod's root cause of not being ready, when there is one.
    pub(crate) failure: Option<String>,
}

/// Everything a decision is taken from.
pub(crate) struct Facts<'a> {
    pub(crate) spec: &'a RolloutSpec,
    /// Held-out accuracy of the desired model, where known.
    pub(crate) accuracy: Option<f64>,
    /// Template hash and digest of the desired model.
    pub(crate) desired_hash: &'a str,
    pub(crate) desired_digest: Option<&'a str>,
    /// status.model.digest as last written: the serving model's, when a canary starts.
    pub(crate) served_digest: Option<&'a str>,
    pub(crate) stable: Option<&'a Deployment>,
    pub(crate) canary: Option<&'a Deployment>,
    pub(crate) previous: Option<&'a RolloutStatus>,
    pub(crate) action: Option<Action>,
    pub(crate) observed: &'a CanaryFacts,
    pub(crate) now: &'a Time,
}

/// Decides the plan and the rollout status.
pub(crate) fn decide(facts: &Facts<'_>) -> Decision {
    let stable_hash = facts.stable.and_then(template_hash);
    let changing = stable_hash.is_some_and(|h| h != facts.desired_hash);
    if let Some(refused) = quality_gate(facts, changing) {
        return refused;
    }
    let previous = facts.previous;
    let Some(stable_hash) = stable_hash.filter(|_| facts.spec.strategy == RolloutStrategy::Canary)
    else {
        // A rolling update; also the first deployment of a canary model (nothing to compare
        // it with). A rollout status of a past canary stays as history.
        return decision(Plan::Roll, previous.cloned(), None);
    };
    if !changing {
        return settled(facts, stable_hash);
    }
    change(facts, stable_hash)
}

/// The quality gate: a model below minAccuracy gets no pod, whatever the strategy (unless it
/// already serves: then there is nothing to keep it from).
fn quality_gate(facts: &Facts<'_>, changing: bool) -> Option<Decision> {
    if let (Some(min), Some(accuracy)) = (facts.spec.min_accuracy, facts.accuracy) {
        if accuracy < min && (changing || facts.stable.is_none()) {
            let message = format!("held-out accuracy {accuracy:.2} < minAccuracy {min:.2}");
            return Some(Decision {
                plan: Plan::Hold,
                status: facts.previous.cloned(),
                notice: Some((true, "BelowMinAccuracy", message.clone())),
                refused: Some(("BelowMinAccuracy", message)),
            });
        }
    }
    None
}

/// The stable pods run the desired model: a promotion finishing, or nothing to do.
fn settled(facts: &Facts<'_>, stable_hash: &str) -> Decision {
    let previous = facts.previous;
    let stable = facts.stable.map(deployment_rollout).unwrap_or_default();
    match previous {
        Some(p) if p.phase == PHASE_PROMOTING && !stable.complete => {
            decision(Plan::Promote, Some(p.clone()), None)
        }
        Some(p) if p.phase == PHASE_PROMOTING => {
            let status = RolloutStatus {
                phase: PHASE_PROMOTED.to_string(),
                summary: format!("Promoted {}", short(p.canary_digest.as_deref())),
                stable_hash: Some(stable_hash.to_string()),
                stable_digest: p.canary_digest.clone(),
                intended_weight: 100,
                achieved_weight: 100,
                step_started_at: None,
                message: "every step passed: the new model serves on all pods".to_string(),
                ..p.clone()
            };
            let notice = (false, "CanaryPromoted", status.message.clone());
            decision(Plan::Roll, Some(status), Some(notice))
        }
        Some(p) if facts.canary.is_some() && running(p) => {
            let status = ended(
                p,
                PHASE_ABORTED,
                "the spec went back to the stable model: canary removed",
            );
            decision(Plan::Roll, Some(status), None)
        }
        _ => decision(Plan::Roll, previous.cloned(), None),
    }
}

/// A change is pending: held, started, acted on by hand, or its step judged.
fn change(facts: &Facts<'_>, stable_hash: &str) -> Decision {
    let previous = facts.previous;
    if previous.is_some_and(|p| p.failed_hash.as_deref() == Some(facts.desired_hash)) {
        return decision(Plan::Hold, previous.cloned(), None);
    }
    let canary_spec = &facts.spec.canary;
    let this_one = previous.filter(|p| p.canary_hash.as_deref() == Some(facts.desired_hash));
    let current = match this_one {
        Some(p) if p.phase == PHASE_PROMOTING => {
            return decision(Plan::Promote, Some(p.clone()), None);
        }
        Some(p) if running(p) => p.clone(),
        _ => {
            // A new change (or another one in the middle of a canary): start at step 1.
            let status = at_step(
                RolloutStatus {
                    phase: PHASE_CANARY.to_string(),
                    stable_hash: Some(stable_hash.to_string()),
                    canary_hash: Some(facts.desired_hash.to_string()),
                    stable_digest: facts.served_digest.map(str::to_string),
                    canary_digest: facts.desired_digest.map(str::to_string),
                    steps: canary_spec.steps.len() as i32,
                    failed_hash: previous.and_then(|p| p.failed_hash.clone()),
                    ..RolloutStatus::default()
                },
                1,
                facts,
            );
            let notice = (
                false,
                "CanaryStarted",
                format!(
                    "canary of {} started next to {}",
                    short(facts.desired_digest),
                    short(facts.served_digest)
                ),
            );
            return canary(status, Some(notice), facts);
        }
    };

    let current = match by_hand(current, facts) {
        ControlFlow::Break(acted) => return acted,
        ControlFlow::Continue(current) => current,
    };
    if current.phase == PHASE_PAUSED {
        return canary(current, None, facts);
    }
    judge_step(current, facts)
}

/// The by-hand action of the annotation, if any applies: its decision, or the status as it was.
fn by_hand(current: RolloutStatus, facts: &Facts<'_>) -> ControlFlow<Decision, RolloutStatus> {
    match facts.action {
        Some(Action::Abort) => {
            ControlFlow::Break(rollback(&current, PHASE_ABORTED, "aborted by hand", facts))
        }
        Some(Action::Promote) => {
            let status = promoting(&current, "promoted by hand");
            let notice = (false, "CanaryPromoting", status.message.clone());
            ControlFlow::Break(decision(Plan::Promote, Some(status), Some(notice)))
        }
        Some(Action::Pause) if current.phase != PHASE_PAUSED => {
            let status = RolloutStatus {
                phase: PHASE_PAUSED.to_string(),
                message: format!("paused by hand at step {}", current.step),
                ..current
            };
            ControlFlow::Break(canary(summarised(status), None, facts))
        }
        Some(Action::Resume) if current.phase == PHASE_PAUSED => {
            // The step starts again: its hold and deadline count from the resume.
            let status = RolloutStatus {
                phase: PHASE_CANARY.to_string(),
                step_started_at: Some(facts.now.clone()),
                message: format!("resumed by hand at step {}", current.step),
                ..current
            };
            ControlFlow::Break(canary(summarised(status), None, facts))
        }
        _ => ControlFlow::Continue(current),
    }
}

/// Whether the canary of the desired model has the pods its step wants, all ready.
fn canary_ready(current: &RolloutStatus, facts: &Facts<'_>) -> bool {
    let wanted = canary_replicas(facts.stable, current.intended_weight);
    match facts.canary {
        Some(c) if template_hash(c) == Some(facts.desired_hash) => {
            c.status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0)
                >= wanted
        }
        _ => false,
    }
}

/// Ready pods whose metrics cannot be read (no answer, or a page that is no evidence) are given
/// the same deadline as pods that do not become ready: a canary that cannot be judged is never
/// promoted, and not left running either. The rollback past that deadline, if it is past.
fn unjudged(current: &RolloutStatus, facts: &Facts<'_>, elapsed: Duration) -> Option<Decision> {
    let deadline = u64::try_from(facts.spec.canary.ready_deadline_seconds).unwrap_or(0);
    let why = match &facts.observed.canary {
        None => Some("no canary pod answered a metrics scrape".to_string()),
        Some(traffic) => traffic.unusable.clone(),
    }?;
    (elapsed.as_secs() >= deadline).then(|| {
        let message = format!("canary not judged within readyDeadlineSeconds {deadline}: {why}");
        rollback(current, PHASE_ROLLED_BACK, &message, facts)
    })
}

/// Judges the running step from the canary's readiness and traffic: wait, hold, pass to the
/// next step or promote, or roll back.
fn judge_step(current: RolloutStatus, facts: &Facts<'_>) -> Decision {
    let canary_spec = &facts.spec.canary;
    let ready = canary_ready(&current, facts);
    let elapsed = current
        .step_started_at
        .as_ref()
        .map(|t| facts.now.0.duration_since(t.0))
        .and_then(|d| Duration::try_from(d).ok())
        .unwrap_or_default();
    if !ready {
        if elapsed.as_secs() >= canary_spec.ready_deadline_seconds as u64 {
            let cause = facts
                .observed
                .failure
                .clone()
                .unwrap_or_else(|| "no failure reported by the pods".to_string());
            let message = format!(
                "canary pods not ready within readyDeadlineSeconds {}: {cause}",
                canary_spec.ready_deadline_seconds
            );
            return rollback(&current, PHASE_ROLLED_BACK, &message, facts);
        }
        let status = RolloutStatus {
            message: "waiting for the canary pods to become ready".to_string(),
            ..current
        };
        return canary(status, None, facts);
    }
    if let Some(rolled_back) = unjudged(&current, facts, elapsed) {
        return rolled_back;
    }
    let Some(traffic) = &facts.observed.canary else {
        let status = RolloutStatus {
            message: "no canary pod answered a metrics scrape yet".to_string(),
            ..current
        };
        return canary(status, None, facts);
    };
    let (verdict, message, figures) =
        analysis::judge(traffic, &facts.observed.stable, &canary_spec.analysis);
    let current = RolloutStatus {
        analysis: Some(figures),
        message: message.clone(),
        ..current
    };
    let hold = canary_spec
        .steps
        .get((current.step - 1).max(0) as usize)
        .map_or(60, |s| s.hold_seconds) as u64;
    match verdict {
        Verdict::Fail => rollback(&current, PHASE_ROLLED_BACK, &message, facts),
        Verdict::Pass if elapsed.as_secs() >= hold => {
            if (current.step as usize) < canary_spec.steps.len() {
                let status = at_step(current.clone(), current.step + 1, facts);
                let notice = (
                    false,
                    "CanaryStepPassed",
                    format!(
                        "step {} of {} passed: {message}",
                        current.step, current.steps
                    ),
                );
                canary(status, Some(notice), facts)
            } else {
                let status = promoting(&current, &format!("every step passed: {message}"));
                let notice = (false, "CanaryPromoting", status.message.clone());
                decision(Plan::Promote, Some(status), Some(notice))
            }
        }
        Verdict::Pass | Verdict::Hold => canary(current, None, facts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{CanaryAnalysis, CanaryStep};
    use crate::names::MODEL_HASH_ANNOTATION;
    use crate::reconcile::conditions::at;
    use serde_json::json;

    const OLD: &str = "hash-old";
    const NEW: &str = "hash-new";
    const T0: i64 = 1_800_000_000;

    /// A Deployment running `hash` with `replicas` pods of which `ready` are ready.
    fn deployment(name: &str, hash: &str, replicas: i32, ready: i32) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": name, "generation": 1},
            "spec": {"replicas": replicas, "selector": {},
                "template": {"metadata": {"annotations": {MODEL_HASH_ANNOTATION: hash}}}},
            "status": {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
                "readyReplicas": ready, "availableReplicas": ready}
        }))
        .expect("deployment")
    }

    fn canary_spec() -> RolloutSpec {
        RolloutSpec {
            min_accuracy: None,
            strategy: RolloutStrategy::Canary,
            canary: CanarySpec {
                steps: vec![
                    CanaryStep {
                        weight: 25,
                        hold_seconds: 30,
                    },
                    CanaryStep {
                        weight: 50,
                        hold_seconds: 30,
                    },
                ],
                analysis: CanaryAnalysis {
                    max_error_rate: 0.01,
                    max_p99_latency_ms: 100,
                    min_requests: 20,
                },
                ready_deadline_seconds: 60,
            },
        }
    }

    /// Traffic of `requests` of which `errors` failed, all within `le` seconds.
    fn traffic(requests: u64, errors: u64, le: f64) -> Option<Traffic> {
        let text = format!(
            "model_server_http_requests_total{{route=\"/predict_iris\",code=\"200\"}} {}\n\
             model_server_http_requests_total{{route=\"/predict_iris\",code=\"500\"}} {errors}\n\
             model_server_http_request_duration_seconds_bucket{{route=\"/predict_iris\",code=\"200\",le=\"{le}\"}} {requests}\n\
             model_server_http_request_duration_seconds_bucket{{route=\"/predict_iris\",code=\"200\",le=\"+Inf\"}} {requests}\n",
            requests - errors
        );
        Some(Traffic::parse(&text))
    }

    struct World {
        spec: RolloutSpec,
        stable: Option<Deployment>,
        canary: Option<Deployment>,
        previous: Option<RolloutStatus>,
        action: Option<Action>,
        observed: CanaryFacts,
        accuracy: Option<f64>,
        desired: &'static str,
        now: i64,
    }

    impl World {
        /// A model serving OLD on 2 pods, whose spec now asks for NEW with a canary.
        fn changed() -> Self {
            World {
                spec: canary_spec(),
                stable: Some(deployment("iris", OLD, 2, 2)),
                canary: None,
                previous: None,
                action: None,
                observed: CanaryFacts::default(),
                accuracy: Some(1.0),
                desired: NEW,
                now: T0,
            }
        }

        fn decide(&self) -> Decision {
            let now = at(self.now);
            decide(&Facts {
                spec: &self.spec,
                accuracy: self.accuracy,
                desired_hash: self.desired,
                desired_digest: Some("sha256:new"),
                served_digest: Some("sha256:old"),
                stable: self.stable.as_ref(),
                canary: self.canary.as_ref(),
                previous: self.previous.as_ref(),
                action: self.action,
                observed: &self.observed,
                now: &now,
            })
        }

        /// Carries a decision's status into the next reconcile, `secs` later; the canary
        /// Deployment as the apply would leave it, with `ready` pods ready.
        fn next(&mut self, decision: &Decision, secs: i64, ready: i32) {
            self.previous = decision.status.clone();
            self.now += secs;
            self.action = None;
            self.canary = match decision.plan {
                Plan::Canary { replicas } => Some(deployment("iris-canary", NEW, replicas, ready)),
                Plan::Promote => self.canary.clone(),
                Plan::Roll | Plan::Hold => None,
            };
        }
    }

    fn phase(decision: &Decision) -> &str {
        decision.status.as_ref().map_or("", |s| s.phase.as_str())
    }

    #[test]
    fn a_rolling_update_or_a_first_deployment_just_rolls() {
        let mut world = World::changed();
        world.spec.strategy = RolloutStrategy::RollingUpdate;
        assert_eq!(world.decide().plan, Plan::Roll);
        let mut world = World::changed();
        world.stable = None;
        let decision = world.decide();
        assert_eq!((decision.plan, decision.status), (Plan::Roll, None));
    }

    #[test]
    fn a_model_below_min_accuracy_gets_no_pod_with_either_strategy() {
        for strategy in [RolloutStrategy::RollingUpdate, RolloutStrategy::Canary] {
            let mut world = World::changed();
            world.spec.strategy = strategy;
            world.spec.min_accuracy = Some(0.9);
            world.accuracy = Some(0.8);
            let decision = world.decide();
            assert_eq!(decision.plan, Plan::Hold, "{strategy:?}");
            let (reason, message) = decision.refused.expect("refused");
            assert_eq!(reason, "BelowMinAccuracy");
            assert_eq!(message, "held-out accuracy 0.80 < minAccuracy 0.90");
            assert!(decision.notice.expect("an event").0, "a Warning");
            // No model yet: none is created either.
            world.stable = None;
            assert_eq!(world.decide().plan, Plan::Hold);
            // Fixing the spec clears it.
            world.spec.min_accuracy = Some(0.8);
            assert_eq!(world.decide().refused, None);
        }
    }

    #[test]
    fn a_good_canary_goes_through_every_step_and_is_promoted() {
        let mut world = World::changed();
        // Start: step 1 at 25%, the stable Deployment untouched.
        let start = world.decide();
        assert_eq!(start.plan, Plan::Canary { replicas: 1 });
        let status = start.status.clone().expect("status");
        assert_eq!(
            (status.phase.as_str(), status.step, status.steps),
            ("Canary", 1, 2)
        );
        assert_eq!(status.intended_weight, 25);
        assert_eq!(status.canary_hash.as_deref(), Some(NEW));
        assert_eq!(status.stable_digest.as_deref(), Some("sha256:old"));
        assert_eq!(start.notice.as_ref().map(|n| n.1), Some("CanaryStarted"));

        // Ready, traffic good but the hold not over: hold, and the weight achieved is 1 of 3.
        world.next(&start, 10, 1);
        world.observed.canary = traffic(100, 0, 0.005);
        let held = world.decide();
        assert_eq!(held.plan, Plan::Canary { replicas: 1 });
        let status = held.status.clone().expect("status");
        assert_eq!((status.step, status.achieved_weight), (1, 33));
        assert_eq!(
            status.analysis.as_ref().map(|a| a.verdict.as_str()),
            Some("Pass")
        );
        assert_eq!(status.summary, "Canary 1/2 33% (25% intended)");
        assert_eq!(held.notice, None);

        // Hold over: step 2 at 50%: two canary pods next to two stable ones.
        world.next(&held, 25, 1);
        let passed = world.decide();
        assert_eq!(passed.plan, Plan::Canary { replicas: 2 });
        assert_eq!(passed.status.as_ref().map(|s| s.step), Some(2));
        assert_eq!(
            passed.notice.as_ref().map(|n| n.1),
            Some("CanaryStepPassed")
        );

        // The last step's hold over: promote.
        world.next(&passed, 31, 2);
        let promote = world.decide();
        assert_eq!(
            (promote.plan, phase(&promote)),
            (Plan::Promote, "Promoting")
        );

        // The stable Deployment now has the new template but is still rolling: keep the
        // canary; once complete, the canary goes.
        world.next(&promote, 5, 2);
        world.stable = Some(deployment("iris", NEW, 2, 1));
        let mut rolling = world.stable.clone().expect("stable");
        rolling.status.as_mut().expect("status").available_replicas = Some(1);
        world.stable = Some(rolling);
        let promoting = world.decide();
        assert_eq!(
            (promoting.plan, phase(&promoting)),
            (Plan::Promote, "Promoting")
        );
        world.next(&promoting, 5, 2);
        world.stable = Some(deployment("iris", NEW, 2, 2));
        let done = world.decide();
        assert_eq!((done.plan, phase(&done)), (Plan::Roll, "Promoted"));
        let status = done.status.clone().expect("status");
        assert_eq!(status.stable_digest.as_deref(), Some("sha256:new"));
        assert_eq!(done.notice.as_ref().map(|n| n.1), Some("CanaryPromoted"));
        // And after that, nothing more happens.
        world.next(&done, 5, 0);
        let after = world.decide();
        assert_eq!((after.plan, after.notice), (Plan::Roll, None));
    }

    #[test]
    fn too_few_requests_hold_the_step_past_its_time() {
        let mut world = World::changed();
        let start = world.decide();
        world.next(&start, 300, 1);
        world.observed.canary = traffic(5, 0, 0.001);
        let decision = world.decide();
        assert_eq!(decision.plan, Plan::Canary { replicas: 1 });
        let status = decision.status.expect("status");
        assert_eq!(status.step, 1);
        assert_eq!(status.analysis.expect("figures").verdict, "Hold");
        assert!(status.message.contains("5 of the 20"), "{}", status.message);
    }

    #[test]
    fn a_slow_canary_is_rolled_back_on_latency_and_not_retried() {
        let mut world = World::changed();
        let start = world.decide();
        world.next(&start, 5, 1);
        world.observed.canary = traffic(100, 0, 0.5);
        let decision = world.decide();
        assert_eq!(
            (decision.plan, phase(&decision)),
            (Plan::Hold, "RolledBack")
        );
        let status = decision.status.clone().expect("status");
        assert!(status.message.contains("p99 latency"), "{}", status.message);
        assert!(
            status.message.contains("> maxP99LatencyMs 100 ms"),
            "{}",
            status.message
        );
        assert!(
            status
                .analysis
                .expect("figures")
                .canary_p99_ms
                .expect("p99")
                > 100.0
        );
        assert_eq!(status.failed_hash.as_deref(), Some(NEW));
        let (warning, reason, message) = decision.notice.clone().expect("event");
        assert!(warning);
        assert_eq!(reason, "CanaryRolledBack");
        assert!(
            message.contains("the stable model sha256:old keeps serving"),
            "{message}"
        );
        // The same spec is not tried again...
        world.next(&decision, 60, 0);
        let again = world.decide();
        assert_eq!((again.plan, again.notice), (Plan::Hold, None));
        // ...until it changes.
        world.desired = "hash-newer";
        assert_eq!(phase(&world.decide()), "Canary");
    }

    #[test]
    fn errors_roll_back_and_name_the_figure() {
        let mut world = World::changed();
        let start = world.decide();
        world.next(&start, 5, 1);
        world.observed.canary = traffic(100, 10, 0.001);
        let decision = world.decide();
        assert_eq!(phase(&decision), "RolledBack");
        let message = decision.status.expect("status").message;
        assert!(
            message.contains("error rate 0.1000 > maxErrorRate 0.01"),
            "{message}"
        );
    }

    #[test]
    fn canary_pods_not_ready_by_the_deadline_roll_back_with_the_cause() {
        let mut world = World::changed();
        let start = world.decide();
        world.next(&start, 30, 0);
        world.observed.failure = Some("ImagePullFailed: cannot pull image".to_string());
        // Before the deadline: wait.
        assert_eq!(world.decide().plan, Plan::Canary { replicas: 1 });
        world.now += 31;
        let decision = world.decide();
        assert_eq!(
            (decision.plan, phase(&decision)),
            (Plan::Hold, "RolledBack")
        );
        let message = decision.status.expect("status").message;
        assert!(
            message.contains("not ready within readyDeadlineSeconds 60"),
            "{message}"
        );
        assert!(
            message.contains("ImagePullFailed: cannot pull image"),
            "{message}"
        );
    }

    #[test]
    fn a_canary_that_cannot_be_judged_by_the_deadline_rolls_back() {
        for observed in [
            // Ready pods whose scrapes all fail.
            None,
            // A page that is no evidence (a hostile or broken /metrics).
            Some(Traffic::unusable(
                "pod iris-canary-1: metrics page unusable: line 1 is not a sample".to_string(),
            )),
        ] {
            let mut world = World::changed();
            let start = world.decide();
            world.next(&start, 30, 1);
            world.observed.canary = observed.clone();
            // Before the deadline: the step holds, neither promoted nor rolled back.
            let held = world.decide();
            assert_eq!(held.plan, Plan::Canary { replicas: 1 }, "{observed:?}");
            world.now += 31;
            let decision = world.decide();
            assert_eq!(
                (decision.plan, phase(&decision)),
                (Plan::Hold, "RolledBack"),
                "{observed:?}"
            );
            let message = decision.status.expect("status").message;
            assert!(
                message.contains("canary not judged within readyDeadlineSeconds 60"),
                "{message}"
            );
            if observed.is_some() {
                assert!(message.contains("line 1 is not a sample"), "{message}");
            }
        }
    }

    #[test]
    fn pause_freezes_the_step_and_resume_restarts_its_clock() {
        let mut world = World::changed();
        let start = world.decide();
        world.next(&start, 5, 1);
        world.action = Some(Action::Pause);
        world.observed.canary = traffic(100, 0, 0.001);
        let paused = world.decide();
        assert_eq!(phase(&paused), "Paused");
        assert_eq!(paused.plan, Plan::Canary { replicas: 1 });
        // Paused, long past the hold and with good figures: still step 1.
        world.next(&paused, 600, 1);
        let still = world.decide();
        assert_eq!(
            (phase(&still), still.status.as_ref().map(|s| s.step)),
            ("Paused", Some(1))
        );
        world.action = Some(Action::Resume);
        let resumed = world.decide();
        assert_eq!(phase(&resumed), "Canary");
        assert_eq!(
            resumed
                .status
                .as_ref()
                .and_then(|s| s.step_started_at.clone()),
            Some(at(world.now))
        );
        // The hold counts from the resume.
        world.next(&resumed, 10, 1);
        assert_eq!(world.decide().status.map(|s| s.step), Some(1));
        world.now += 25;
        assert_eq!(world.decide().status.map(|s| s.step), Some(2));
    }

    #[test]
    fn promote_and_abort_by_hand() {
        let mut world = World::changed();
        let start = world.decide();
        world.next(&start, 1, 0);
        world.action = Some(Action::Promote);
        let promoted = world.decide();
        assert_eq!(
            (promoted.plan, phase(&promoted)),
            (Plan::Promote, "Promoting")
        );

        let mut world = World::changed();
        let start = world.decide();
        world.next(&start, 1, 0);
        world.action = Some(Action::Abort);
        let aborted = world.decide();
        assert_eq!((aborted.plan, phase(&aborted)), (Plan::Hold, "Aborted"));
        assert_eq!(aborted.notice.map(|n| n.1), Some("CanaryAborted"));
    }

    #[test]
    fn a_restarted_operator_resumes_the_same_step_from_the_status() {
        let mut world = World::changed();
        let start = world.decide();
        world.next(&start, 31, 1);
        world.observed.canary = traffic(100, 0, 0.001);
        let step2 = world.decide();
        // A new operator process knows only the status and the cluster: the same facts give
        // the same step, and the step's clock is the one in the status.
        world.next(&step2, 10, 1);
        let resumed = world.decide();
        let (before, after) = (step2.status.expect("s"), resumed.status.expect("s"));
        assert_eq!((after.step, after.phase.as_str()), (2, "Canary"));
        assert_eq!(after.step_started_at, before.step_started_at);
        assert_eq!(resumed.notice, None, "no second CanaryStarted");
    }

    #[test]
    fn a_spec_back_to_the_stable_model_removes_the_canary() {
        let mut world = World::changed();
        let start = world.decide();
        world.next(&start, 5, 1);
        world.desired = OLD;
        let decision = world.decide();
        assert_eq!((decision.plan, phase(&decision)), (Plan::Roll, "Aborted"));
    }

    #[test]
    fn canary_pods_make_up_the_weight_next_to_the_stable_ones() {
        let stable = |n| deployment("iris", OLD, n, n);
        assert_eq!(canary_replicas(Some(&stable(1)), 25), 1);
        assert_eq!(canary_replicas(Some(&stable(3)), 25), 1);
        assert_eq!(canary_replicas(Some(&stable(3)), 50), 3);
        assert_eq!(canary_replicas(Some(&stable(4)), 20), 1);
        assert_eq!(canary_replicas(Some(&stable(1)), 90), 9);
        // Capped whatever a stored spec asks (the CRD refuses it in new ones).
        assert_eq!(canary_replicas(Some(&stable(100)), 99), 100);
        assert_eq!(Action::parse(Some(" Promote ")), Some(Action::Promote));
        assert_eq!(Action::parse(Some("go")), None);
    }
}
