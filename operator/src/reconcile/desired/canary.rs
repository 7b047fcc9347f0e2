//! The canary Deployment: the desired model-server Deployment under the name `<name>-canary`,
//! with its own replica count and a `serving.iris.dev/track: canary` label on its selector
//! and pods. Its pods keep the IrisModel's selector labels, so the one Service sends them
//! their share of the traffic; the stable Deployment's ReplicaSets select by their own
//! pod-template-hash, so they never adopt a canary pod.

use k8s_openapi::api::apps::v1::Deployment;

use crate::names::{canary_name, TRACK_CANARY, TRACK_LABEL};

/// The canary of the desired (stable) Deployment, with `replicas` pods.
pub(crate) fn build(desired: &Deployment, replicas: i32) -> Deployment {
    let mut canary = desired.clone();
    let name = desired.metadata.name.clone().unwrap_or_default();
    canary.metadata.name = Some(canary_name(&name));
    let track = || (TRACK_LABEL.to_string(), TRACK_CANARY.to_string());
    canary
        .metadata
        .labels
        .get_or_insert_with(Default::default)
        .extend([track()]);
    if let Some(spec) = canary.spec.as_mut() {
        spec.replicas = Some(replicas);
        spec.selector
            .match_labels
            .get_or_insert_with(Default::default)
            .extend([track()]);
        spec.template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(Default::default)
            .extend([track()]);
    }
    canary
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::model;
    use crate::names::selector_labels;
    use crate::reconcile::desired::deployment;
    use crate::reconcile::progress::template_hash;
    use crate::reconcile::resolve::resolve;

    #[test]
    fn the_canary_runs_the_same_model_under_its_own_name_and_track() {
        let resolved = resolve(
            &model("iris", 1),
            &Default::default(),
            None,
            &Default::default(),
        )
        .expect("resolves");
        let stable = deployment::build(&resolved);
        let canary = build(&stable, 2);
        assert_eq!(canary.metadata.name.as_deref(), Some("iris-canary"));
        let spec = canary.spec.as_ref().expect("spec");
        assert_eq!(spec.replicas, Some(2));
        let selector = spec.selector.match_labels.as_ref().expect("selector");
        assert_eq!(
            selector.get(TRACK_LABEL).map(String::as_str),
            Some("canary")
        );
        // The Service's selector still matches the canary's pods.
        let pod_labels = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.as_ref());
        let pod_labels = pod_labels.expect("labels");
        for (k, v) in selector_labels("iris") {
            assert_eq!(pod_labels.get(&k), Some(&v));
        }
        // Same model, same hash: the hash names the model, not the track.
        assert_eq!(template_hash(&canary), template_hash(&stable));
        assert_eq!(
            canary.metadata.owner_references,
            stable.metadata.owner_references
        );
    }
}
