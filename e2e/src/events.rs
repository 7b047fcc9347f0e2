//! Waits on Kubernetes Events (events.k8s.io/v1): a Warning about an object, or an Event with
//! a given reason about an IrisModel, watched so that one already there counts.
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::events::v1::Event;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};

/// Waits for a Warning Event about the object `name` in `ns` and returns "reason: note".
pub async fn wait_warning_event(
    client: &Client,
    ns: &str,
    name: &str,
    timeout: Duration,
) -> String {
    wait_warning_event_about(client, ns, None, name, timeout).await
}

/// [`wait_warning_event`], about an object of `kind` only when given (children share the
/// IrisModel's name).
pub async fn wait_warning_event_about(
    client: &Client,
    ns: &str,
    kind: Option<&str>,
    name: &str,
    timeout: Duration,
) -> String {
    let what = format!(
        "a Warning event about {}{name}",
        kind.map(|k| format!("{k} ")).unwrap_or_default()
    );
    wait_event(client, ns, &what, timeout, |e| {
        let regarding = e.regarding.as_ref();
        e.type_.as_deref() == Some("Warning")
            && kind.is_none_or(|k| regarding.and_then(|r| r.kind.as_deref()) == Some(k))
            && regarding.and_then(|r| r.name.as_deref()) == Some(name)
    })
    .await
}

/// The first Event with `reason` about the IrisModel `name`, as "reason: note".
pub async fn wait_model_event(
    client: &Client,
    ns: &str,
    reason: &str,
    name: &str,
    timeout: Duration,
) -> String {
    let what = format!("a {reason} event about IrisModel {name}");
    wait_event(client, ns, &what, timeout, |e| {
        let regarding = e.regarding.as_ref();
        e.reason.as_deref() == Some(reason)
            && regarding.and_then(|r| r.kind.as_deref()) == Some("IrisModel")
            && regarding.and_then(|r| r.name.as_deref()) == Some(name)
    })
    .await
}

/// The first Event in `ns` that `hit` accepts (watched, so one already there counts), as
/// "reason: note"; panics naming `what` after `timeout`.
async fn wait_event(
    client: &Client,
    ns: &str,
    what: &str,
    timeout: Duration,
    hit: impl Fn(&Event) -> bool + Send + Sync,
) -> String {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let stream = watcher(events, watcher::Config::default()).applied_objects();
    let found = tokio::time::timeout(
        timeout,
        stream
            .filter_map(|e| async move { e.ok() })
            .filter(|e| std::future::ready(hit(e)))
            .boxed()
            .next(),
    )
    .await;
    match found {
        Ok(Some(e)) => format!(
            "{}: {}",
            e.reason.unwrap_or_default(),
            e.note.unwrap_or_default()
        ),
        _ => panic!("no {what} in {ns} within {timeout:?}"),
    }
}
