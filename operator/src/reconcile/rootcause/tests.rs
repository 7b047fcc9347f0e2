//! Each way a pod fails to become ready, as Kubernetes reports it, gives its reason and a
//! message with the cause, the same message while the cause stays.

use serde_json::{json, Value};

use super::*;
use crate::reconcile::conditions::at;

const HASH: &str = "h1";

fn pod_named(name: &str, hash: &str, status: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": {MODEL_HASH_ANNOTATION: hash}},
        "status": status
    }))
    .expect("a Pod")
}

fn pod(status: Value) -> Pod {
    pod_named("iris-1", HASH, status)
}

/// A pod whose only container has this state and last state.
fn container(state: Value, last: Value, restarts: i32) -> Pod {
    pod(json!({"phase": "Running", "containerStatuses": [{
        "name": "model-server", "ready": false, "restartCount": restarts,
        "image": "iris-operator/model-server:0.1.0", "imageID": "",
        "state": state, "lastState": last}]}))
}

fn warning(reason: &str, message: &str, first_seen: &str, count: i32) -> Event {
    serde_json::from_value(json!({
        "metadata": {"name": format!("iris-1.{reason}.{first_seen}")},
        "involvedObject": {"kind": "Pod", "name": "iris-1"},
        "type": "Warning", "reason": reason, "message": message,
        "firstTimestamp": first_seen, "lastTimestamp": first_seen, "count": count
    }))
    .expect("an Event")
}

fn events(list: Vec<Event>) -> PodEvents {
    BTreeMap::from([("iris-1".to_string(), list)])
}

/// at(1000) is 1970-01-01T00:16:40Z.
fn failure(pod: Pod, events: &PodEvents) -> (String, String) {
    pod_failure(&[pod], HASH, events, &at(1000)).expect("a failure")
}

fn pending() -> Pod {
    pod(json!({"phase": "Pending", "containerStatuses": [{
        "name": "model-server", "ready": false, "restartCount": 0, "image": "x", "imageID": "",
        "state": {"waiting": {"reason": "ContainerCreating"}}}]}))
}

#[test]
fn a_sandbox_that_cannot_be_created() {
    let sandbox = "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to \
        create containerd task: failed to create shim task: OCI runtime create failed: runc \
        create failed: unable to start container process: container init was OOM-killed \
        (memory limit too low?): unknown";
    let (reason, message) = failure(
        pending(),
        &events(vec![warning(
            "FailedCreatePodSandBox",
            sandbox,
            "1970-01-01T00:16:00Z",
            7,
        )]),
    );
    assert_eq!(reason, "SandboxFailed");
    assert!(
        message.contains("iris-1") && message.contains("container init was OOM-killed"),
        "{message}"
    );
    assert!(!message.contains('7'), "no count in the message: {message}");
    // Once the container runs, an earlier sandbox failure was transient.
    let running = container(
        json!({"running": {"startedAt": "1970-01-01T00:16:30Z"}}),
        json!({}),
        0,
    );
    let retried = events(vec![warning(
        "FailedCreatePodSandBox",
        sandbox,
        "1970-01-01T00:16:00Z",
        1,
    )]);
    assert_eq!(pod_failure(&[running], HASH, &retried, &at(1000)), None);
    // Starting without a failing Event is no failure.
    assert_eq!(
        pod_failure(&[pending()], HASH, &events(vec![]), &at(1000)),
        None
    );
}

#[test]
fn a_volume_that_cannot_be_mounted() {
    let (reason, message) = failure(
        pending(),
        &events(vec![warning(
            "FailedMount",
            "MountVolume.SetUp failed for volume \"model\" : configmap \"iris-model\" not found",
            "1970-01-01T00:16:00Z",
            3,
        )]),
    );
    assert_eq!(reason, "MountFailed");
    assert!(
        message.contains("configmap \"iris-model\" not found"),
        "{message}"
    );
}

#[test]
fn a_failing_init_container() {
    let status = json!({"phase": "Pending", "initContainerStatuses": [{
        "name": "fetch", "ready": false, "restartCount": 2, "image": "x", "imageID": "",
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s"}},
        "lastState": {"terminated": {"exitCode": 3, "reason": "Error", "message": "no such key"}}}],
        "containerStatuses": [{"name": "model-server", "ready": false, "restartCount": 0,
        "image": "x", "imageID": "", "state": {"waiting": {"reason": "PodInitializing"}}}]});
    let (reason, message) = failure(pod(status), &events(vec![]));
    assert_eq!(reason, "InitFailed");
    assert!(
        message.contains("fetch")
            && message.contains("exited with code 3")
            && message.contains("no such key"),
        "{message}"
    );
}

#[test]
fn probes_failing_on_a_running_container_after_a_grace() {
    let unhealthy = events(vec![
        warning("Unhealthy", "Readiness probe failed: Get \"http://10.244.1.5:5001/v2/health/ready\": dial tcp 10.244.1.5:5001: connect: connection refused", "1970-01-01T00:16:00Z", 12),
        warning("Unhealthy", "Liveness probe failed: connection refused", "1970-01-01T00:16:20Z", 2),
    ]);
    let running_since = |started: &str, restarts| {
        container(
            json!({"running": {"startedAt": started}}),
            json!({}),
            restarts,
        )
    };
    // Just started: probes failing is starting up.
    assert_eq!(
        pod_failure(
            &[running_since("1970-01-01T00:16:35Z", 0)],
            HASH,
            &unhealthy,
            &at(1000)
        ),
        None
    );
    let (reason, message) = failure(running_since("1970-01-01T00:16:00Z", 0), &unhealthy);
    assert_eq!(reason, "ProbeFailed");
    assert!(
        message.contains("Readiness probe failed") && message.contains("connection refused"),
        "{message}"
    );
    // Restarted (by the liveness probe): failing at once, with the same message.
    let (_, again) = failure(running_since("1970-01-01T00:16:39Z", 1), &unhealthy);
    assert_eq!(again, message);
}

#[test]
fn out_of_memory_kills() {
    let oom = json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}});
    let backing_off = container(
        json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting failed container"}}),
        oom.clone(),
        2,
    );
    let (reason, message) = failure(backing_off, &events(vec![]));
    assert_eq!(reason, "OOMKilled");
    assert!(
        message.contains("exited with code 137 (OOMKilled)"),
        "{message}"
    );
    assert!(!message.contains("back-off"), "{message}");
    // Just killed, or restarted and not ready yet: the same.
    let (reason, same) = failure(container(oom.clone(), json!({}), 0), &events(vec![]));
    assert_eq!(
        (reason.as_str(), same.as_str()),
        ("OOMKilled", message.as_str())
    );
    let restarted = container(
        json!({"running": {"startedAt": "1970-01-01T00:16:39Z"}}),
        oom,
        3,
    );
    assert_eq!(failure(restarted, &events(vec![])).1, message);
}

#[test]
fn evicted_pods() {
    let evicted = pod(json!({"phase": "Failed", "reason": "Evicted",
        "message": "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi."}));
    let (reason, message) = failure(evicted, &events(vec![]));
    assert_eq!(reason, "Evicted");
    assert!(message.contains("low on resource: memory"), "{message}");
}

#[test]
fn crash_loops_carry_the_termination_message_and_not_the_back_off() {
    let last = json!({"terminated": {"exitCode": 1, "reason": "Error", "message":
        "2026-11-30T02:16:35.123456Z  INFO model_server: starting\n\
         2026-11-30T02:16:35.223456Z ERROR model_server: cannot listen on 0.0.0.0:80: Permission denied (os error 13)\n"}});
    let crashing = |backoff: &str, message: &str| {
        let mut last = last.clone();
        last["terminated"]["message"] = json!(message.replace("02:16:35", backoff));
        container(
            json!({"waiting": {"reason": "CrashLoopBackOff", "message": format!("back-off {backoff} restarting failed container")}}),
            last,
            4,
        )
    };
    let text = last["terminated"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let (reason, first) = failure(crashing("10s", &text), &events(vec![]));
    assert_eq!(reason, "CrashLoop");
    assert_eq!(
        first,
        "pod iris-1 container model-server exited with code 1 (Error): ERROR model_server: cannot listen on 0.0.0.0:80: Permission denied (os error 13)"
    );
    // Another restart: other back-off, other time stamps, the same message.
    assert_eq!(failure(crashing("20s", &text), &events(vec![])).1, first);
}

#[test]
fn image_pull_failures_say_why_the_same_way_while_the_reason_alternates() {
    let pull = events(vec![
        warning("Failed", "Error: ErrImagePull", "1970-01-01T00:15:00Z", 1),
        warning(
            "Failed",
            "Failed to pull image \"nope:1\": not found",
            "1970-01-01T00:15:01Z",
            4,
        ),
    ]);
    let waiting = |reason: &str, message: &str| {
        container(
            json!({"waiting": {"reason": reason, "message": message}}),
            json!({}),
            0,
        )
    };
    let (reason, message) = failure(waiting("ErrImagePull", "rpc error: not found"), &pull);
    assert_eq!(reason, "ImagePullFailed");
    assert!(
        message.contains("Failed to pull image \"nope:1\": not found"),
        "{message}"
    );
    let (_, backoff) = failure(
        waiting("ImagePullBackOff", "Back-off pulling image \"nope:1\""),
        &pull,
    );
    assert_eq!(backoff, message);
}

#[test]
fn other_container_failures() {
    let waiting = |reason: &str| {
        container(
            json!({"waiting": {"reason": reason, "message": "secret \"x\" not found"}}),
            json!({}),
            0,
        )
    };
    let (reason, message) = failure(waiting("CreateContainerConfigError"), &events(vec![]));
    assert_eq!(reason, "ContainerConfigError");
    assert!(message.contains("secret \"x\" not found"), "{message}");
    assert_eq!(
        failure(waiting("RunContainerError"), &events(vec![])).0,
        "CrashLoop"
    );

    let unschedulable = pod(
        json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
        "status": "False", "reason": "Unschedulable", "message": "0/1 nodes are available: Insufficient cpu."}]}),
    );
    let (reason, message) = failure(unschedulable, &events(vec![]));
    assert_eq!(reason, "Unschedulable");
    assert!(message.contains("Insufficient cpu"), "{message}");
}

#[test]
fn only_pods_of_the_current_version_count_and_in_a_stable_order() {
    let crash = json!({"phase": "Running", "containerStatuses": [{"name": "model-server",
        "ready": false, "restartCount": 1, "image": "x", "imageID": "",
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 2}}}]});
    let old = pod_named("iris-0", "old", crash.clone());
    assert_eq!(
        pod_failure(
            std::slice::from_ref(&old),
            HASH,
            &PodEvents::new(),
            &at(1000)
        ),
        None
    );
    let b = pod_named("iris-b", HASH, crash.clone());
    let a = pod_named("iris-a", HASH, crash);
    let named = |pods: &[Pod]| pod_failure(pods, HASH, &PodEvents::new(), &at(1000)).map(|f| f.1);
    assert_eq!(
        named(&[b.clone(), a.clone()]),
        named(&[a.clone(), b.clone()])
    );
    assert!(named(&[b.clone(), a.clone()]).is_some_and(|m| m.contains("iris-a")));

    // Events are read for the not-ready pods of the current version, a bounded number of them.
    let many: Vec<Pod> = (0..5)
        .map(|i| pod_named(&format!("iris-{i}"), HASH, json!({"phase": "Pending"})))
        .collect();
    assert_eq!(pods_to_explain(&many, HASH), ["iris-0", "iris-1", "iris-2"]);
    assert_eq!(pods_to_explain(&[old], HASH), Vec::<String>::new());
    let ready =
        pod(json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}));
    assert_eq!(pods_to_explain(&[ready], HASH), Vec::<String>::new());
}

#[test]
fn messages_are_bounded_on_a_character_boundary() {
    let long = "é".repeat(3000);
    let cut = bound(&long);
    assert_eq!(cut.chars().count(), MAX_MESSAGE_CHARS);
    assert!(cut.ends_with('…'));
    assert_eq!(bound("short"), "short");
    let crashing = container(
        json!({"waiting": {"reason": "CrashLoopBackOff"}}),
        json!({"terminated": {"exitCode": 1, "message": long}}),
        1,
    );
    assert_eq!(
        failure(crashing, &events(vec![])).1.chars().count(),
        MAX_MESSAGE_CHARS
    );
}

#[test]
fn the_last_log_line_without_its_time_stamp() {
    assert_eq!(
        last_log_line("a\n2026-11-30T02:16:35.1Z ERROR x: boom\n\n").as_deref(),
        Some("ERROR x: boom")
    );
    assert_eq!(
        last_log_line(r#"{"timestamp":"2026-11-30T02:16:35Z","level":"ERROR","message":"boom"}"#)
            .as_deref(),
        Some("ERROR boom")
    );
    assert_eq!(
        last_log_line("plain failure").as_deref(),
        Some("plain failure")
    );
    assert_eq!(last_log_line(" \n "), None);
}

#[test]
fn a_container_its_liveness_probe_kills_is_a_probe_failure_all_along() {
    let unhealthy = events(vec![
        warning(
            "Unhealthy",
            "Readiness probe failed: connection refused",
            "1970-01-01T00:16:00Z",
            9,
        ),
        warning(
            "Unhealthy",
            "Liveness probe failed: connection refused",
            "1970-01-01T00:16:10Z",
            3,
        ),
    ]);
    let running = container(
        json!({"running": {"startedAt": "1970-01-01T00:16:00Z"}}),
        json!({}),
        0,
    );
    let (reason, message) = failure(running, &unhealthy);
    assert_eq!(reason, "ProbeFailed");
    let completed = json!({"terminated": {"exitCode": 0, "reason": "Completed"}});
    let backing_off = container(
        json!({"waiting": {"reason": "CrashLoopBackOff"}}),
        completed.clone(),
        2,
    );
    assert_eq!(
        failure(backing_off, &unhealthy),
        (reason.clone(), message.clone())
    );
    let restarted = container(
        json!({"running": {"startedAt": "1970-01-01T00:16:39Z"}}),
        completed,
        2,
    );
    assert_eq!(failure(restarted, &unhealthy), (reason, message));
}

/// A pending pod mounting the Secrets of spec.tls and spec.auth.
fn pending_with_secrets() -> Pod {
    let mut pod = pending();
    pod.spec = Some(
        serde_json::from_value(json!({
            "containers": [{"name": "model-server"}],
            "volumes": [
                {"name": "tls", "secret": {"secretName": "iris-tls"}},
                {"name": "auth", "secret": {"secretName": "iris-tokens",
                    "items": [{"key": "list", "path": "tokens"}]}},
                {"name": "payload-log", "secret": {"secretName": "sink-headers",
                    "items": [{"key": "h", "path": "headers"}]}}
            ]
        }))
        .expect("a PodSpec"),
    );
    pod
}

#[test]
fn a_missing_secret_is_named_with_the_spec_field_that_references_it() {
    let (reason, message) = failure(
        pending_with_secrets(),
        &events(vec![warning(
            "FailedMount",
            "MountVolume.SetUp failed for volume \"tls\" : secret \"iris-tls\" not found",
            "1970-01-01T00:16:00Z",
            5,
        )]),
    );
    assert_eq!(reason, "SecretNotFound");
    assert!(
        message
            .starts_with("Secret iris-tls named in spec.tls.secretName does not exist: pod iris-1"),
        "{message}"
    );

    let (reason, message) = failure(
        pending_with_secrets(),
        &events(vec![warning(
            "FailedMount",
            "MountVolume.SetUp failed for volume \"auth\" : secret \"iris-tokens\" not found",
            "1970-01-01T00:16:00Z",
            2,
        )]),
    );
    assert_eq!(reason, "SecretNotFound");
    assert!(
        message.contains("Secret iris-tokens named in spec.auth.secretName"),
        "{message}"
    );
}

#[test]
fn a_missing_secret_key_is_named_with_the_secret_and_the_key() {
    let (reason, message) = failure(
        pending_with_secrets(),
        &events(vec![warning(
            "FailedMount",
            "MountVolume.SetUp failed for volume \"auth\" : references non-existent secret key: list",
            "1970-01-01T00:16:00Z",
            3,
        )]),
    );
    assert_eq!(reason, "SecretKeyNotFound");
    assert!(
        message.starts_with(
            "Secret iris-tokens named in spec.auth.secretName has no key list (spec.auth.key)"
        ),
        "{message}"
    );
    let (reason, message) = failure(
        pending_with_secrets(),
        &events(vec![warning(
            "FailedMount",
            "MountVolume.SetUp failed for volume \"tls\" : references non-existent secret key: tls.key",
            "1970-01-01T00:16:00Z",
            3,
        )]),
    );
    assert_eq!(reason, "SecretKeyNotFound");
    assert!(
        message.starts_with("Secret iris-tls named in spec.tls.secretName has no key tls.key:"),
        "{message}"
    );
}

#[test]
fn a_missing_payload_log_headers_secret_or_key_names_spec_logging() {
    let (reason, message) = failure(
        pending_with_secrets(),
        &events(vec![warning(
            "FailedMount",
            "MountVolume.SetUp failed for volume \"payload-log\" : secret \"sink-headers\" not found",
            "1970-01-01T00:16:00Z",
            2,
        )]),
    );
    assert_eq!(reason, "SecretNotFound");
    assert!(
        message.contains("Secret sink-headers named in spec.logging.headersSecretRef.name"),
        "{message}"
    );
    let (reason, message) = failure(
        pending_with_secrets(),
        &events(vec![warning(
            "FailedMount",
            "MountVolume.SetUp failed for volume \"payload-log\" : references non-existent secret key: h",
            "1970-01-01T00:16:00Z",
            2,
        )]),
    );
    assert_eq!(reason, "SecretKeyNotFound");
    assert!(
        message.contains("has no key h (spec.logging.headersSecretRef.key)"),
        "{message}"
    );
}

#[test]
fn a_secret_failure_comes_before_other_mount_failures_and_other_volumes_stay_mount_failed() {
    let (reason, message) = failure(
        pending_with_secrets(),
        &events(vec![
            warning(
                "FailedMount",
                "MountVolume.SetUp failed for volume \"model\" : configmap \"iris-model\" not found",
                "1970-01-01T00:15:00Z",
                3,
            ),
            warning(
                "FailedMount",
                "MountVolume.SetUp failed for volume \"tls\" : secret \"iris-tls\" not found",
                "1970-01-01T00:16:00Z",
                3,
            ),
        ]),
    );
    assert_eq!(reason, "SecretNotFound", "{message}");

    // Some other failure of the Secret volumes (a timeout) is a mount failure as before.
    let (reason, _) = failure(
        pending_with_secrets(),
        &events(vec![warning(
            "FailedMount",
            "Unable to attach or mount volumes: unmounted volumes=[tls]: timed out waiting for the condition",
            "1970-01-01T00:16:00Z",
            1,
        )]),
    );
    assert_eq!(reason, "MountFailed");
    // Without the pod's spec, the Secret's name comes from the message.
    let (reason, message) = failure(
        pending(),
        &events(vec![warning(
            "FailedMount",
            "MountVolume.SetUp failed for volume \"tls\" : secret \"other\" not found",
            "1970-01-01T00:16:00Z",
            1,
        )]),
    );
    assert_eq!(reason, "SecretNotFound");
    assert!(
        message.starts_with("Secret other named in spec.tls.secretName"),
        "{message}"
    );
    // An API server's wording of the same.
    let (reason, _) = failure(
        pending(),
        &events(vec![warning(
            "FailedMount",
            "MountVolume.SetUp failed for volume \"auth\" : secrets \"other\" not found",
            "1970-01-01T00:16:00Z",
            1,
        )]),
    );
    assert_eq!(reason, "SecretNotFound");
}

/// containerd's text for a pull the registry refuses without credentials.
const UNAUTHORIZED: &str = "Failed to pull image \"localhost:5000/iris/model-server:0.1.0\": \
    rpc error: code = Unknown desc = failed to pull and unpack image \
    \"localhost:5000/iris/model-server:0.1.0\": failed to resolve reference \
    \"localhost:5000/iris/model-server:0.1.0\": pulling from host localhost:5000 failed with \
    status code [manifests 0.1.0]: 401 Unauthorized";

fn private_image_pod(pull_secrets: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "iris-1", "annotations": {MODEL_HASH_ANNOTATION: HASH}},
        "spec": {"containers": [{"name": "model-server"}], "imagePullSecrets": pull_secrets},
        "status": {"phase": "Pending", "containerStatuses": [{
            "name": "model-server", "ready": false, "restartCount": 0,
            "image": "localhost:5000/iris/model-server:0.1.0", "imageID": "",
            "state": {"waiting": {"reason": "ImagePullBackOff",
                "message": "Back-off pulling image \"localhost:5000/iris/model-server:0.1.0\""}}}]}
    }))
    .expect("a Pod")
}

#[test]
fn a_pull_refused_for_credentials_names_the_image_the_error_and_the_pull_secrets() {
    let pull = events(vec![warning(
        "Failed",
        UNAUTHORIZED,
        "1970-01-01T00:15:00Z",
        3,
    )]);
    let (reason, message) = failure(private_image_pod(json!([])), &pull);
    assert_eq!(reason, "ImagePullUnauthorized");
    assert!(
        message.starts_with(
            "pod iris-1 container model-server cannot pull image \
             \"localhost:5000/iris/model-server:0.1.0\": Failed to pull image"
        ) && message.contains("401 Unauthorized"),
        "{message}"
    );
    assert!(
        message.contains("no image pull Secret") && message.contains("spec.imagePullSecrets"),
        "{message}"
    );
    // With a Secret the registry still refuses: the Secret is named.
    let (reason, message) = failure(private_image_pod(json!([{"name": "regcred"}])), &pull);
    assert_eq!(reason, "ImagePullUnauthorized");
    assert!(
        message.contains("spec.imagePullSecrets regcred"),
        "{message}"
    );
    // Other refusals read the same way; a missing image is not a credentials problem.
    for text in [
        "Failed to pull image \"ghcr.io/acme/x:1\": pull access denied, repository does not \
         exist or may require authorization: server message: insufficient_scope: \
         authorization failed",
        "Failed to pull image \"x.dkr.ecr.eu-west-1.amazonaws.com/x:1\": no basic auth credentials",
        "Failed to pull image \"gcr.io/p/x:1\": failed to authorize: 403 Forbidden",
    ] {
        let refused = events(vec![warning("Failed", text, "1970-01-01T00:15:00Z", 1)]);
        assert_eq!(
            failure(private_image_pod(json!([])), &refused).0,
            "ImagePullUnauthorized",
            "{text}"
        );
    }
    let missing = events(vec![warning(
        "Failed",
        "Failed to pull image \"localhost:5000/iris/nope:1\": not found",
        "1970-01-01T00:15:00Z",
        1,
    )]);
    assert_eq!(
        failure(private_image_pod(json!([])), &missing).0,
        "ImagePullFailed"
    );
}

#[test]
fn a_pod_on_a_lost_node() {
    // The kubelet is gone: its last report says running; the node controller marked the pod
    // not ready and said why in an Event.
    let mut lost = container(
        json!({"running": {"startedAt": "1970-01-01T00:10:00Z"}}),
        json!({}),
        0,
    );
    lost.spec = Some(
        serde_json::from_value(json!({"nodeName": "worker-2", "containers": []}))
            .expect("a PodSpec"),
    );
    let (reason, message) = failure(
        lost.clone(),
        &events(vec![warning(
            "NodeNotReady",
            "Node is not ready",
            "1970-01-01T00:16:00Z",
            1,
        )]),
    );
    assert_eq!(reason, "NodeNotReady");
    assert!(
        message.contains("iris-1") && message.contains("worker-2"),
        "{message}"
    );
    // Without the Event, nothing is known yet of the cause.
    assert_eq!(pod_failure(&[lost], HASH, &events(vec![]), &at(1000)), None);
}
