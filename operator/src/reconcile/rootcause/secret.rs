//! A Secret volume that cannot be mounted: which Secret, named in which spec field. The
//! operator never reads Secrets, so the kubelet's FailedMount Event is how it learns that one
//! is missing; the pod's own volumes say which Secret the volume is.

use k8s_openapi::api::core::v1::{Event, Pod};

use crate::reconcile::desired::logging::HEADERS_VOLUME;
use crate::reconcile::desired::security::{spec_field_of_volume, AUTH_VOLUME};

/// A Secret named in the spec does not exist.
pub(crate) const REASON_SECRET_NOT_FOUND: &str = "SecretNotFound";
/// A Secret named in the spec lacks a key the pods need.
pub(crate) const REASON_SECRET_KEY_NOT_FOUND: &str = "SecretKeyNotFound";

/// The kubelet's text for a missing key of a Secret volume with `items`.
const MISSING_KEY: &str = "references non-existent secret key: ";

/// A FailedMount Event about one of the Secret volumes the operator mounts, as (reason,
/// message); None for any other volume or failure.
pub(crate) fn explain(pod: &Pod, pod_name: &str, event: &Event) -> Option<(&'static str, String)> {
    let message = event.message.as_deref()?.trim();
    // "MountVolume.SetUp failed for volume \"tls\" : secret \"x\" not found"
    let volume = quoted_after(message, "for volume ")?;
    let field = spec_field_of_volume(volume)?;
    let secret = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .and_then(|vs| vs.iter().find(|v| v.name == volume))
        .and_then(|v| v.secret.as_ref()?.secret_name.clone())
        .or_else(|| {
            quoted_after(message, "secret ")
                .or_else(|| quoted_after(message, "secrets "))
                .map(str::to_string)
        })?;
    let cause = format!(
        "pod {pod_name}: {}: {message}",
        event.reason.as_deref().unwrap_or("")
    );
    // The kubelet's Secret cache says `secret "x" not found`; an API error would say
    // `secrets "x" not found`.
    if message.ends_with(&format!("\"{secret}\" not found")) {
        return Some((
            REASON_SECRET_NOT_FOUND,
            format!("Secret {secret} named in {field} does not exist: {cause}"),
        ));
    }
    if let Some(key) = message.split(MISSING_KEY).nth(1).map(str::trim) {
        let key_field = match volume {
            AUTH_VOLUME => " (spec.auth.key)",
            HEADERS_VOLUME => " (spec.logging.headersSecretRef.key)",
            _ => "",
        };
        return Some((
            REASON_SECRET_KEY_NOT_FOUND,
            format!("Secret {secret} named in {field} has no key {key}{key_field}: {cause}"),
        ));
    }
    None
}

/// The text between the double quotes that follow `prefix` in `text`.
fn quoted_after<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = &text[text.find(&format!("{prefix}\""))? + prefix.len() + 1..];
    Some(&rest[..rest.find('"')?])
}
