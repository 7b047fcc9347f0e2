//! Why a container of a pod does not run: its waiting reason, its last termination, an image
//! its registry will not give.

use k8s_openapi::api::core::v1::{
    ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, Event,
};

use super::{
    earliest, from_event, last_log_line, REASON_CONTAINER_CONFIG_ERROR, REASON_CRASH_LOOP,
    REASON_IMAGE_PULL_FAILED, REASON_IMAGE_PULL_UNAUTHORIZED, REASON_OOM_KILLED,
    REASON_PROBE_FAILED,
};

/// A failure told by a container's status.
pub(super) fn container_failure(
    cs: &ContainerStatus,
    pod: &str,
    events: &[Event],
    pull_secrets: &[&str],
) -> Option<(&'static str, String)> {
    let state = cs.state.as_ref();
    let last = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref());
    // A container its liveness probe kills exits too: the probe is the cause then, told the
    // same way as while it runs (the first Unhealthy Event).
    let killed_by_probe = events.iter().any(|e| {
        e.reason.as_deref() == Some("Unhealthy")
            && e.message
                .as_deref()
                .is_some_and(|m| m.starts_with("Liveness probe failed"))
    });
    let oom_or_crash = |t: &ContainerStateTerminated| {
        if t.reason.as_deref() == Some("OOMKilled") {
            return (REASON_OOM_KILLED, exited(pod, &cs.name, t));
        }
        match earliest(events, |e| e.reason.as_deref() == Some("Unhealthy")) {
            Some(e) if killed_by_probe => (REASON_PROBE_FAILED, from_event(pod, e)),
            _ => (REASON_CRASH_LOOP, exited(pod, &cs.name, t)),
        }
    };
    if let Some(waiting) = state.and_then(|s| s.waiting.as_ref()) {
        let detail = waiting.message.as_deref().filter(|m| !m.is_empty());
        match waiting.reason.as_deref().unwrap_or("") {
            // The back-off message ("back-off 20s restarting failed container") changes at each
            // restart: the last termination says why instead.
            "CrashLoopBackOff" => {
                return Some(match last {
                    Some(t) => oom_or_crash(t),
                    None => (
                        REASON_CRASH_LOOP,
                        format!("pod {pod} container {} keeps exiting", cs.name),
                    ),
                })
            }
            "RunContainerError" | "StartError" => {
                return Some((
                    REASON_CRASH_LOOP,
                    format!(
                        "pod {pod} container {} cannot start: {}",
                        cs.name,
                        detail.unwrap_or("RunContainerError")
                    ),
                ))
            }
            "ImagePullBackOff" | "ErrImagePull" | "ErrImageNeverPull" | "InvalidImageName" => {
                return Some(pull_failure(cs, pod, events, waiting, pull_secrets));
            }
            "CreateContainerConfigError" | "CreateContainerError" => {
                return Some((
                    REASON_CONTAINER_CONFIG_ERROR,
                    format!(
                        "pod {pod} container {}: {}: {}",
                        cs.name,
                        waiting.reason.as_deref().unwrap_or(""),
                        detail.unwrap_or("")
                    ),
                ))
            }
            _ => {}
        }
    }
    if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
        if t.exit_code != 0 || t.reason.as_deref() == Some("OOMKilled") {
            return Some(oom_or_crash(t));
        }
    }
    // Restarted after a failure and not ready again yet: still the same failure (so the
    // condition does not flap between restarts).
    if state.and_then(|s| s.running.as_ref()).is_some() && !cs.ready && cs.restart_count > 0 {
        if let Some(t) =
            last.filter(|t| t.exit_code != 0 || t.reason.as_deref() == Some("OOMKilled"))
        {
            return Some(oom_or_crash(t));
        }
    }
    None
}

/// Why the image cannot be pulled. The waiting reason alternates between ErrImagePull and
/// ImagePullBackOff: the pull failure's Event says why, the same way each time.
fn pull_failure(
    cs: &ContainerStatus,
    pod: &str,
    events: &[Event],
    waiting: &ContainerStateWaiting,
    pull_secrets: &[&str],
) -> (&'static str, String) {
    let detail = waiting.message.as_deref().filter(|m| !m.is_empty());
    let mut message = format!(
        "pod {pod} container {} cannot pull image {:?}",
        cs.name, cs.image
    );
    let pull_error = earliest(events, |e| {
        e.reason.as_deref() == Some("Failed")
            && e.message
                .as_deref()
                .is_some_and(|m| m.starts_with("Failed to pull image"))
    })
    .and_then(|e| e.message.as_deref());
    match (pull_error, waiting.reason.as_deref()) {
        (Some(error), _) => push_detail(&mut message, error),
        (None, Some(r @ ("ErrImageNeverPull" | "InvalidImageName"))) => {
            push_detail(&mut message, &format!("{r}: {}", detail.unwrap_or("")))
        }
        (None, _) => {}
    }
    if pull_error.is_some_and(is_unauthorized) {
        message.push_str(&credentials_hint(pull_secrets));
        return (REASON_IMAGE_PULL_UNAUTHORIZED, message);
    }
    (REASON_IMAGE_PULL_FAILED, message)
}

/// Whether a pull error is the registry refusing the credentials, or asking for some (the
/// texts of containerd and of the registries: 401/403, `unauthorized`, `authorization
/// failed`, `pull access denied`).
fn is_unauthorized(error: &str) -> bool {
    let error = error.to_ascii_lowercase();
    [
        "401 unauthorized",
        "403 forbidden",
        "unauthorized",
        "authorization failed",
        "authentication required",
        "pull access denied",
        "no basic auth credentials",
        "denied: ",
    ]
    .iter()
    .any(|text| error.contains(text))
}

/// What to do about refused credentials: which Secrets the pods pull with, if any.
fn credentials_hint(pull_secrets: &[&str]) -> String {
    if pull_secrets.is_empty() {
        " (the pods have no image pull Secret: create a kubernetes.io/dockerconfigjson Secret \
         for the registry and name it in spec.imagePullSecrets)"
            .to_string()
    } else {
        format!(
            " (the registry refuses the credentials of spec.imagePullSecrets {}: check that \
             each Secret exists in the namespace and holds a login for this registry)",
            pull_secrets.join(", ")
        )
    }
}

/// "pod P container C exited with code N (Reason): <its last log line>".
pub(super) fn exited(pod: &str, container: &str, t: &ContainerStateTerminated) -> String {
    let mut message = format!(
        "pod {pod} container {container} exited with code {}",
        t.exit_code
    );
    if let Some(reason) = t.reason.as_deref().filter(|r| !r.is_empty()) {
        message.push_str(&format!(" ({reason})"));
    }
    if let Some(line) = t.message.as_deref().and_then(last_log_line) {
        push_detail(&mut message, &line);
    }
    message
}

fn push_detail(message: &mut String, detail: &str) {
    let detail = detail.trim();
    if !detail.is_empty() {
        message.push_str(": ");
        message.push_str(detail);
    }
}
