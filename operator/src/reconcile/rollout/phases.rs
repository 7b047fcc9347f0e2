//! The rollout statuses and decisions the steps of [`super::decide`] end in: a running
//! canary with its achieved weight, a step started, a promotion, a rollback.

use k8s_openapi::api::apps::v1::Deployment;

use super::*;

/// Whether a rollout status describes a canary that is still running its steps.
pub(super) fn running(status: &RolloutStatus) -> bool {
    status.phase == PHASE_CANARY || status.phase == PHASE_PAUSED
}

pub(super) fn decision(
    plan: Plan,
    status: Option<RolloutStatus>,
    notice: Option<Notice>,
) -> Decision {
    Decision {
        plan,
        status,
        notice,
        refused: None,
    }
}

/// A running canary's decision, with the achieved weight measured.
pub(super) fn canary(status: RolloutStatus, notice: Option<Notice>, facts: &Facts<'_>) -> Decision {
    let replicas = canary_replicas(facts.stable, status.intended_weight);
    let stable_ready = facts
        .stable
        .and_then(|d| d.status.as_ref())
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    let canary_ready = match facts.canary {
        Some(c) if template_hash(c) == Some(facts.desired_hash) => c
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0),
        _ => 0,
    };
    let total = stable_ready + canary_ready;
    let achieved = if total == 0 {
        0
    } else {
        (f64::from(canary_ready) * 100.0 / f64::from(total)).round() as i32
    };
    let status = summarised(RolloutStatus {
        achieved_weight: achieved,
        ..status
    });
    decision(Plan::Canary { replicas }, Some(status), notice)
}

/// The status at the start of step `step` (from 1).
pub(super) fn at_step(status: RolloutStatus, step: i32, facts: &Facts<'_>) -> RolloutStatus {
    let weight = weight_of(&facts.spec.canary, step);
    summarised(RolloutStatus {
        step,
        step_started_at: Some(facts.now.clone()),
        intended_weight: weight,
        analysis: None,
        message: format!("step {step}: holding {weight}% of the pods"),
        ..status
    })
}

pub(super) fn promoting(current: &RolloutStatus, why: &str) -> RolloutStatus {
    summarised(RolloutStatus {
        phase: PHASE_PROMOTING.to_string(),
        message: format!("{why}; the stable pods take the new model"),
        ..current.clone()
    })
}

pub(super) fn rollback(
    current: &RolloutStatus,
    phase: &str,
    why: &str,
    facts: &Facts<'_>,
) -> Decision {
    let status = RolloutStatus {
        failed_hash: Some(facts.desired_hash.to_string()),
        ..ended(current, phase, why)
    };
    let reason = if phase == PHASE_ABORTED {
        "CanaryAborted"
    } else {
        "CanaryRolledBack"
    };
    let message = format!(
        "{} of {} at step {}: {why}; the stable model {} keeps serving",
        if phase == PHASE_ABORTED {
            "canary aborted"
        } else {
            "canary rolled back"
        },
        short(current.canary_digest.as_deref()),
        current.step,
        short(current.stable_digest.as_deref()),
    );
    decision(Plan::Hold, Some(status), Some((true, reason, message)))
}

pub(super) fn ended(current: &RolloutStatus, phase: &str, why: &str) -> RolloutStatus {
    summarised(RolloutStatus {
        phase: phase.to_string(),
        achieved_weight: 0,
        step_started_at: None,
        message: why.to_string(),
        ..current.clone()
    })
}

pub(super) fn summarised(status: RolloutStatus) -> RolloutStatus {
    let summary = match status.phase.as_str() {
        PHASE_CANARY | PHASE_PAUSED => format!(
            "{} {}/{} {}% ({}% intended)",
            status.phase, status.step, status.steps, status.achieved_weight, status.intended_weight
        ),
        PHASE_PROMOTING => "Promoting".to_string(),
        phase => format!("{phase} at step {}", status.step),
    };
    RolloutStatus { summary, ..status }
}

pub(super) fn weight_of(spec: &CanarySpec, step: i32) -> i32 {
    spec.steps
        .get((step - 1).max(0) as usize)
        .map_or(50, |s| s.weight)
}

/// Canary pods for a weight next to the stable Deployment's pods: the fewest (at least one)
/// whose share of all pods reaches the weight. With one stable pod every weight up to 50%
/// is one canary pod, which is 50%: the achieved weight says so.
pub(crate) fn canary_replicas(stable: Option<&Deployment>, weight: i32) -> i32 {
    let stable = stable
        .and_then(|d| d.spec.as_ref())
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(1);
    let weight = weight.clamp(1, 99);
    let needed = (f64::from(stable) * f64::from(weight) / f64::from(100 - weight)).ceil() as i32;
    needed.clamp(1, crate::crd::MAX_CANARY_REPLICAS)
}

/// The first 19 characters of a digest (`sha256:` and 12 hex digits), for messages.
pub(super) fn short(digest: Option<&str>) -> String {
    match digest {
        Some(d) => d.chars().take(19).collect(),
        None => "(unknown digest)".to_string(),
    }
}
