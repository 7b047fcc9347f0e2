//! The decide step: pure functions of the spec, what observe read and the scaler's memory. Before
//! the apply ([`plan`]): the Service's selector, the rollout's decision and the scaler's; after
//! it ([`status`]): the status, from the Deployment as the API server answered the apply (its
//! new generation says whether a rollout started).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::crd::{IrisModel, IrisModelStatus};
use crate::rate::Scalers;
use crate::reconcile::conditions::{find, READY};
use crate::reconcile::desired::{service, Desired};
use crate::reconcile::observe::Observed;
use crate::reconcile::progress::template_hash;
use crate::reconcile::resolve::Resolved;
use crate::reconcile::rollout::{self, Decision};
use crate::reconcile::scaler::{self, Scale};
use crate::reconcile::status::{self, ActivatorView};

/// What a reconcile decided besides the desired children: what apply writes, and what the
/// status is made of.
pub(crate) struct Plan {
    /// The rollout's decision: how the Deployments are applied, its status and Event.
    pub(crate) rollout: Decision,
    /// The request-rate scaler's decision, when the model scales on its request rate.
    pub(crate) scale: Option<Scale>,
    /// The activator of a model that scales to zero, as the status tells it.
    activator: Option<ActivatorView>,
}

/// The desired children as they are to be applied (the Service pointed at the activator of a
/// model with no pod, or about to have none), and the plan.
pub(crate) fn plan(
    model: &IrisModel,
    resolved: &Resolved,
    mut desired: Desired,
    observed: &Observed,
    scalers: &Scalers,
    now: &Time,
) -> (Desired, Plan) {
    // A model that scales to zero: its Service selects the activator while it has no pod, and
    // before the scaler takes it to zero pods.
    let serving = scaler::through_activator(
        resolved,
        observed.deployment.as_ref(),
        observed.service.as_ref(),
    );
    let ready = scaler::activator_ready(observed.activator.as_ref());
    let rollout = rollout_decision(model, resolved, &desired, observed, now);
    let scale = scaler::decide(scalers, resolved, observed.live.sample.clone(), ready);
    if serving || scale.as_ref().is_some_and(|s| s.to_zero) {
        service::select_activator(&mut desired.service, &resolved.name);
    }
    let activator = resolved
        .activator
        .is_some()
        .then_some(ActivatorView { ready, serving });
    let plan = Plan {
        rollout,
        scale,
        activator,
    };
    (desired, plan)
}

/// The rollout step, from the canary's pods and traffic as observed while one runs.
fn rollout_decision(
    model: &IrisModel,
    resolved: &Resolved,
    desired: &Desired,
    observed: &Observed,
    now: &Time,
) -> Decision {
    let spec = model.spec.rollout.clone().unwrap_or_default();
    let desired_hash = template_hash(&desired.deployment).unwrap_or_default();
    let previous = model.status.as_ref();
    rollout::decide(&rollout::Facts {
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
        // Filled by observe only while a canary of this model runs.
        observed: &observed.live.canary,
        now,
    })
}

/// The status, from the Deployment as the apply left it, the pods as observed and the plan. A
/// refusal that turns Ready False is told by that transition's Event, so the rollout's own
/// notice of it is dropped.
pub(crate) fn status(
    model: &IrisModel,
    resolved: &Resolved,
    observed: &Observed,
    deployment: Option<&Deployment>,
    plan: &mut Plan,
    now: &Time,
) -> IrisModelStatus {
    let live = status::Observed {
        deployment,
        pods: &observed.live.pods,
        pods_read: observed.live.pods_read,
        events: &observed.live.events,
        hpa: observed.hpa.as_ref(),
        rate: plan.scale.as_ref().map(|s| &s.reading),
        activator: plan.activator,
        sink_failing: observed.live.sink_failing.as_deref(),
    };
    let status = status::served(model, resolved, &live, &plan.rollout, now);
    if plan.rollout.refused.is_some()
        && find(&status.conditions, READY).is_some_and(|c| c.status == "False")
    {
        plan.rollout.notice = None;
    }
    status
}
