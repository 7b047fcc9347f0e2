//! Where the model server's pods run when nodes come and go: spread over nodes and zones, and
//! moved off a node that stopped answering sooner than Kubernetes' default five minutes.

use k8s_openapi::api::core::v1::{Toleration, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::names::selector_labels;

/// The node label of the spread across nodes.
pub(crate) const HOSTNAME_KEY: &str = "kubernetes.io/hostname";
/// The node label of the spread across zones (ignored by nodes that lack it).
pub(crate) const ZONE_KEY: &str = "topology.kubernetes.io/zone";
/// The taints the node controller puts on a node that stopped reporting or is not ready.
pub(crate) const NODE_FAILURE_TAINTS: [&str; 2] = [
    "node.kubernetes.io/unreachable",
    "node.kubernetes.io/not-ready",
];
/// How long a pod stays bound to a failed node before it is evicted and replaced elsewhere:
/// a model server holds no state, so 30 s instead of the 300 s the API server adds by default.
pub(crate) const NODE_FAILURE_TOLERATION_SECONDS: i64 = 30;

/// One pod per node and per zone as far as the nodes allow, as a preference
/// (`ScheduleAnyway`): a cluster of one node, or nodes full on one side, still runs every
/// replica. `pod-template-hash` keeps the spread per revision, so a rollout's surge pod
/// is placed by the new pods only.
pub(crate) fn spread(name: &str) -> Vec<TopologySpreadConstraint> {
    [HOSTNAME_KEY, ZONE_KEY]
        .into_iter()
        .map(|key| TopologySpreadConstraint {
            max_skew: 1,
            topology_key: key.to_string(),
            when_unsatisfiable: "ScheduleAnyway".to_string(),
            label_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(name)),
                match_expressions: None,
            }),
            match_label_keys: Some(vec!["pod-template-hash".to_string()]),
            ..TopologySpreadConstraint::default()
        })
        .collect()
}

/// The user's tolerations, plus a short `NoExecute` toleration of each node-failure taint the
/// user did not tolerate themselves (theirs win, whatever they say).
pub(crate) fn tolerations(user: Option<&[Toleration]>) -> Vec<Toleration> {
    let mut all = user.map(<[Toleration]>::to_vec).unwrap_or_default();
    for key in NODE_FAILURE_TAINTS {
        if !all.iter().any(|t| t.key.as_deref() == Some(key)) {
            all.push(Toleration {
                key: Some(key.to_string()),
                operator: Some("Exists".to_string()),
                effect: Some("NoExecute".to_string()),
                toleration_seconds: Some(NODE_FAILURE_TOLERATION_SECONDS),
                value: None,
            });
        }
    }
    all
}
