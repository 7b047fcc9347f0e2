//! Why pods of the current version do not become ready, from their status and their Warning
//! Events: a reason (the condition reason) and a message that carries the cause.
//!
//! Messages change only when the cause changes, so an unchanged failure writes no status: they
//! leave out what Kubernetes updates on its own (back-off delays, Event counts, log time stamps).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::names::MODEL_HASH_ANNOTATION;
use container::{container_failure, exited};

/// The pod's sandbox (network, cgroup) cannot be created: `FailedCreatePodSandBox` Events.
pub(crate) const REASON_SANDBOX_FAILED: &str = "SandboxFailed";
/// A volume cannot be mounted or attached: `FailedMount`, `FailedAttachVolume` Events.
pub(crate) const REASON_MOUNT_FAILED: &str = "MountFailed";
/// An init container fails.
pub(crate) const REASON_INIT_FAILED: &str = "InitFailed";
/// The container keeps exiting (crash loop, or it cannot be started).
pub(crate) const REASON_CRASH_LOOP: &str = "CrashLoop";
/// The container was killed for exceeding its memory limit.
pub(crate) const REASON_OOM_KILLED: &str = "OOMKilled";
/// The image cannot be pulled.
pub(crate) const REASON_IMAGE_PULL_FAILED: &str = "ImagePullFailed";
/// The registry refuses the pull for lack of (valid) credentials: spec.imagePullSecrets.
pub(crate) const REASON_IMAGE_PULL_UNAUTHORIZED: &str = "ImagePullUnauthorized";
/// The container cannot be created from its configuration.
pub(crate) const REASON_CONTAINER_CONFIG_ERROR: &str = "ContainerConfigError";
/// Probes fail on a running container: `Unhealthy` Events.
pub(crate) const REASON_PROBE_FAILED: &str = "ProbeFailed";
/// The pod was evicted by its node (memory or disk pressure...).
pub(crate) const REASON_EVICTED: &str = "Evicted";
/// No node can take the pod.
pub(crate) const REASON_UNSCHEDULABLE: &str = "Unschedulable";
/// The pod's node stopped reporting: the node controller marked the pod not ready.
pub(crate) const REASON_NODE_NOT_READY: &str = "NodeNotReady";

/// Longest condition message; longer ones are cut on a character boundary with an ellipsis.
pub(crate) const MAX_MESSAGE_CHARS: usize = 1000;
/// Events of at most this many not-ready pods are read per reconcile.
pub(crate) const MAX_PODS_EXPLAINED: usize = 3;
/// Warning Events read per pod.
pub(crate) const MAX_EVENTS_PER_POD: u32 = 50;
/// A running container failing its probes this long after it started is failing, not starting.
pub(crate) const PROBE_GRACE: Duration = Duration::from_secs(20);

/// Warning Events by the name of the pod they are about.
pub(crate) type PodEvents = BTreeMap<String, Vec<Event>>;

/// The field selector of the Warning Events about pod `name`.
pub(crate) fn event_selector(pod: &str) -> String {
    format!("involvedObject.kind=Pod,involvedObject.name={pod},type=Warning")
}

fn current<'a>(pods: &'a [Pod], current_hash: &'a str) -> impl Iterator<Item = &'a Pod> + 'a {
    let mut pods: Vec<&Pod> = pods
        .iter()
        .filter(move |pod| {
            pod.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(MODEL_HASH_ANNOTATION))
                .is_some_and(|h| h == current_hash)
                && pod.metadata.deletion_timestamp.is_none()
        })
        .collect();
    // A stable order, so the same failure of several pods always names the same pod.
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    pods.into_iter()
}

pub(crate) fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The not-ready, not-finished pods of the current version whose Events may explain them (at
/// most [`MAX_PODS_EXPLAINED`]).
pub(crate) fn pods_to_explain(pods: &[Pod], current_hash: &str) -> Vec<String> {
    current(pods, current_hash)
        .filter(|pod| !is_ready(pod))
        .filter(|pod| {
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Failed" | "Succeeded"))
        })
        .filter_map(|pod| pod.metadata.name.clone())
        .take(MAX_PODS_EXPLAINED)
        .collect()
}

/// The first failure of a pod of the current version, as (reason, message).
pub(crate) fn pod_failure(
    pods: &[Pod],
    current_hash: &str,
    events: &PodEvents,
    now: &Time,
) -> Option<(String, String)> {
    current(pods, current_hash).find_map(|pod| {
        let name = pod.metadata.name.as_deref().unwrap_or("<pod>");
        let none = Vec::new();
        let events = events.get(name).unwrap_or(&none);
        explain(pod, name, events, now)
            .map(|(reason, message)| (reason.to_string(), bound(&message)))
    })
}

fn explain(pod: &Pod, name: &str, events: &[Event], now: &Time) -> Option<(&'static str, String)> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() == Some("Failed") && status.reason.as_deref() == Some("Evicted") {
        return Some((
            REASON_EVICTED,
            format!(
                "pod {name} was evicted: {}",
                status.message.as_deref().unwrap_or("no message")
            ),
        ));
    }
    if is_ready(pod) {
        return None;
    }
    // The kubelet of a lost node reports nothing more: its last container statuses still say
    // running, so the node controller's Event is the cause.
    if events
        .iter()
        .any(|e| e.reason.as_deref() == Some("NodeNotReady"))
    {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or("<node>");
        return Some((
            REASON_NODE_NOT_READY,
            format!(
                "pod {name} is on node {node}, which is not ready (lost or unreachable): the pod \
                 is replaced on another node once its toleration of the node's taint ends"
            ),
        ));
    }
    let unschedulable = status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    });
    if let Some(c) = unschedulable {
        return Some((
            REASON_UNSCHEDULABLE,
            format!(
                "pod {name} cannot be scheduled: {}",
                c.message.as_deref().unwrap_or("")
            ),
        ));
    }
    let pull_secrets = pull_secret_names(pod);
    let init = status
        .init_container_statuses
        .iter()
        .flatten()
        .find_map(|cs| {
            container_failure(cs, name, events, &pull_secrets)
                .or_else(|| {
                    let done = cs.state.as_ref()?.terminated.as_ref()?;
                    (done.exit_code != 0).then(|| (REASON_CRASH_LOOP, exited(name, &cs.name, done)))
                })
                .map(|(_, message)| (REASON_INIT_FAILED, format!("init container: {message}")))
        });
    if init.is_some() {
        return init;
    }
    let container = status
        .container_statuses
        .iter()
        .flatten()
        .find_map(|cs| container_failure(cs, name, events, &pull_secrets));
    if container.is_some() {
        return container;
    }
    event_failure(pod, name, events, now)
}

/// The names of the pod's image pull Secrets.
fn pull_secret_names(pod: &Pod) -> Vec<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.as_ref())
        .into_iter()
        .flatten()
        .map(|r| r.name.as_str())
        .collect()
}

/// A failure told only by the pod's Warning Events.
fn event_failure(
    pod: &Pod,
    name: &str,
    events: &[Event],
    now: &Time,
) -> Option<(&'static str, String)> {
    let by_reason = |reasons: &[&str]| {
        earliest(events, |e| {
            reasons.contains(&e.reason.as_deref().unwrap_or(""))
        })
    };
    // Once a container has started, the sandbox and the volumes are there: an earlier failure
    // of theirs (a transient CNI or kubelet hiccup) is no longer the cause.
    if !any_container_started(pod) {
        if let Some(e) = by_reason(&["FailedCreatePodSandBox"]) {
            return Some((REASON_SANDBOX_FAILED, from_event(name, e)));
        }
        // A missing Secret of spec.tls or spec.auth, named with its field, before any other
        // mount failure (the first-seen FailedMount may be of another volume).
        let secret = events
            .iter()
            .filter(|e| e.reason.as_deref() == Some("FailedMount"))
            .filter_map(|e| secret::explain(pod, name, e).map(|found| (e, found)))
            .min_by(|(a, _), (b, _)| {
                first_seen(a)
                    .cmp(&first_seen(b))
                    .then_with(|| a.metadata.name.cmp(&b.metadata.name))
            });
        if let Some((_, found)) = secret {
            return Some(found);
        }
        if let Some(e) = by_reason(&["FailedMount", "FailedAttachVolume", "FailedMapVolume"]) {
            return Some((REASON_MOUNT_FAILED, from_event(name, e)));
        }
    }
    if probes_should_pass(pod, now) {
        if let Some(e) = by_reason(&["Unhealthy"]) {
            return Some((REASON_PROBE_FAILED, from_event(name, e)));
        }
    }
    None
}

fn any_container_started(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    let statuses = status.and_then(|s| s.container_statuses.as_ref());
    let init = status.and_then(|s| s.init_container_statuses.as_ref());
    statuses.into_iter().chain(init).flatten().any(|cs| {
        let state = cs.state.as_ref();
        cs.restart_count > 0 || state.is_some_and(|s| s.running.is_some() || s.terminated.is_some())
    })
}

/// Whether a container runs long enough (or restarted) for failing probes to be a failure
/// rather than a start-up.
fn probes_should_pass(pod: &Pod, now: &Time) -> bool {
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref());
    statuses.into_iter().flatten().any(|cs| {
        let running = cs.state.as_ref().and_then(|s| s.running.as_ref());
        let started = running.and_then(|r| r.started_at.as_ref());
        let long_enough = started.is_some_and(|t| {
            let since = now.0.duration_since(t.0);
            Duration::try_from(since).is_ok_and(|d| d >= PROBE_GRACE)
        });
        !cs.ready && running.is_some() && (long_enough || cs.restart_count > 0)
    })
}

fn from_event(pod: &str, e: &Event) -> String {
    format!(
        "pod {pod}: {}: {}",
        e.reason.as_deref().unwrap_or(""),
        e.message.as_deref().unwrap_or("").trim()
    )
}

/// The first-seen Event that matches: the one whose message stays while the failure lasts
/// (Events of the same reason may alternate, e.g. readiness and liveness probes).
fn earliest(events: &[Event], matches: impl Fn(&Event) -> bool) -> Option<&Event> {
    events.iter().filter(|e| matches(e)).min_by(|a, b| {
        first_seen(a)
            .cmp(&first_seen(b))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    })
}

fn first_seen(e: &Event) -> Option<k8s_openapi::jiff::Timestamp> {
    e.first_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// The last non-empty line of a termination message (with FallbackToLogsOnError, the tail of
/// the log), without the time stamp a log line starts with, which differs at each restart.
pub(crate) fn last_log_line(message: &str) -> Option<String> {
    let line = message
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())?;
    if line.starts_with('{') {
        // A JSON log line: its level and message.
        if let Ok(serde_json::Value::Object(fields)) = serde_json::from_str(line) {
            let text = |k: &str| fields.get(k).and_then(|v| v.as_str()).map(str::to_string);
            if let Some(msg) = text("message").or_else(|| text("msg")) {
                return Some(match text("level") {
                    Some(level) => format!("{level} {msg}"),
                    None => msg,
                });
            }
        }
    }
    let mut words = line.splitn(2, char::is_whitespace);
    let first = words.next().unwrap_or("");
    let looks_like_time = first.len() >= 10
        && first.as_bytes()[..4].iter().all(u8::is_ascii_digit)
        && first.as_bytes()[4] == b'-';
    Some(match (looks_like_time, words.next()) {
        (true, Some(rest)) => rest.trim().to_string(),
        _ => line.to_string(),
    })
}

/// Cuts a message to [`MAX_MESSAGE_CHARS`] characters, on a character boundary, ending with an
/// ellipsis when cut.
pub(crate) fn bound(message: &str) -> String {
    if message.chars().count() <= MAX_MESSAGE_CHARS {
        return message.to_string();
    }
    let mut cut: String = message.chars().take(MAX_MESSAGE_CHARS - 1).collect();
    cut.push('…');
    cut
}

mod container;
mod secret;

#[cfg(test)]
mod tests;
