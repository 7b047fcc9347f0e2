//! The PodDisruptionBudget (policy/v1), when the IrisModel asks for two pods or more.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::child_meta;
use crate::names::selector_labels;
use crate::reconcile::resolve::Resolved;

/// Builds a budget of one voluntary disruption at a time, or None below two replicas (a
/// budget on a single pod would block node drains). With two replicas or more, a drain keeps
/// at least one ready pod. Pods that are not ready may always be evicted (`AlwaysAllow`): they
/// serve nothing, and a broken model must not block a node's drain.
pub(crate) fn build(resolved: &Resolved) -> Option<PodDisruptionBudget> {
    if resolved.min_replicas() < 2 {
        return None;
    }
    Some(PodDisruptionBudget {
        metadata: child_meta(resolved),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&resolved.name)),
                match_expressions: None,
            }),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".to_string()),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    })
}
