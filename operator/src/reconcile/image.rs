//! Which bits serve: the image of the current version's pods and the digest the kubelet
//! reports for it (`status.containerStatuses[].imageID`), for `status.image`.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Pod;

use crate::crd::ImageStatus;
use crate::names::MODEL_HASH_ANNOTATION;
use crate::reconcile::desired::deployment::CONTAINER_NAME;
use crate::reconcile::rootcause::is_ready;

/// Whether the pods must be read to know the image status: nothing recorded yet for this image
/// reference, or no image ID seen yet (no pod was ready when they were last read).
pub(crate) fn needs_pods(previous: Option<&ImageStatus>, reference: &str) -> bool {
    previous.is_none_or(|p| p.reference != reference || p.image_id.is_none())
}

/// The image status from the pods of the current pod-template hash, when they were read
/// (`pods_read`); otherwise the previous status while it is about the same reference.
pub(crate) fn served(
    reference: &str,
    current_hash: Option<&str>,
    pods: &[Pod],
    pods_read: bool,
    previous: Option<&ImageStatus>,
) -> ImageStatus {
    if !pods_read {
        if let Some(previous) = previous.filter(|p| p.reference == reference) {
            return previous.clone();
        }
        return ImageStatus {
            reference: reference.to_string(),
            ..ImageStatus::default()
        };
    }
    let image_ids: BTreeSet<&str> = pods
        .iter()
        .filter(|pod| is_ready(pod) && pod.metadata.deletion_timestamp.is_none())
        .filter(|pod| {
            let hash = pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(MODEL_HASH_ANNOTATION));
            current_hash.is_some() && hash.map(String::as_str) == current_hash
        })
        .filter_map(|pod| {
            let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
            let cs = statuses.iter().find(|cs| cs.name == CONTAINER_NAME)?;
            Some(cs.image_id.as_str()).filter(|id| !id.is_empty())
        })
        .collect();
    let digests: BTreeSet<&str> = image_ids.iter().filter_map(|id| digest_of(id)).collect();
    let one = |set: &BTreeSet<&str>| match set.len() {
        1 => set.first().map(|s| s.to_string()),
        _ => None,
    };
    ImageStatus {
        reference: reference.to_string(),
        digest: one(&digests),
        // With several, the first in order: still a real one, and the same one each time.
        image_id: image_ids.first().map(|s| s.to_string()),
    }
}

/// The `sha256:...` repository digest of a kubelet image ID (`host/repo@sha256:...`, maybe
/// with a `docker-pullable://` prefix); None for an image known only by its config digest.
pub(crate) fn digest_of(image_id: &str) -> Option<&str> {
    let (_, digest) = image_id.rsplit_once('@')?;
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(digest)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    const REF: &str = "localhost:5000/iris/model-server:0.1.0";
    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn pod(name: &str, hash: &str, ready: bool, image_id: &str) -> Pod {
        let status: Value = json!({
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            "containerStatuses": [{"name": "model-server", "ready": ready, "restartCount": 0,
                "image": REF, "imageID": image_id}]
        });
        serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": {MODEL_HASH_ANNOTATION: hash}},
            "status": status
        }))
        .expect("a Pod")
    }

    #[test]
    fn the_digest_is_the_one_the_ready_pods_of_the_current_version_run() {
        let id = |digest: &str| format!("localhost:5000/iris/model-server@{digest}");
        let pods = [
            pod("a", "h2", true, &id(D1)),
            pod("b", "h2", true, &id(D1)),
            // An old version's pod and a starting one say nothing about the current version.
            pod("c", "h1", true, &id(D2)),
            pod("d", "h2", false, ""),
        ];
        let image = served(REF, Some("h2"), &pods, true, None);
        assert_eq!(
            image,
            ImageStatus {
                reference: REF.into(),
                digest: Some(D1.into()),
                image_id: Some(id(D1)),
            }
        );
        // Ready pods that disagree (a tag pushed again mid-rollout): no single digest.
        let mixed = [pod("a", "h2", true, &id(D1)), pod("b", "h2", true, &id(D2))];
        assert_eq!(served(REF, Some("h2"), &mixed, true, None).digest, None);
        // No ready pod yet: the reference only.
        let starting = served(REF, Some("h2"), &pods[3..], true, None);
        assert_eq!((starting.digest, starting.image_id), (None, None));
    }

    #[test]
    fn without_reading_the_pods_the_previous_status_of_the_same_image_stays() {
        let previous = ImageStatus {
            reference: REF.into(),
            digest: Some(D1.into()),
            image_id: Some(format!("localhost:5000/iris/model-server@{D1}")),
        };
        assert_eq!(
            served(REF, Some("h2"), &[], false, Some(&previous)),
            previous
        );
        assert!(!needs_pods(Some(&previous), REF));
        // Another image: what the previous status says is about other pods.
        let other = served(
            "example.com/iris:2",
            Some("h3"),
            &[],
            false,
            Some(&previous),
        );
        assert_eq!(other.reference, "example.com/iris:2");
        assert_eq!(other.digest, None);
        assert!(needs_pods(Some(&previous), "example.com/iris:2"));
        assert!(needs_pods(None, REF));
        let unseen = ImageStatus {
            reference: REF.into(),
            ..ImageStatus::default()
        };
        assert!(needs_pods(Some(&unseen), REF));
    }

    #[test]
    fn digests_come_from_repository_image_ids_only() {
        let id = format!("docker-pullable://ghcr.io/acme/model-server@{D1}");
        assert_eq!(digest_of(&id), Some(D1));
        // An image loaded into the node (kind load): its config digest, no repository digest.
        assert_eq!(digest_of(D1), None);
        assert_eq!(digest_of("example.com/x@sha256:abc"), None);
        assert_eq!(digest_of("example.com/x@sha512:00"), None);
    }
}
