//! The root cause, every time: each way a model's pods fail to become ready ends in
//! Degraded=True and Ready=False with a specific reason and the cause in the message within
//! 60 s, and editing the IrisModel to fix it makes it Ready. Names Kubernetes would refuse for
//! the children are refused at apply; ports below 1024 serve.
//!
//! Each test runs in its own namespace (deleted afterwards; pods, events and operator logs are
//! printed when it fails). Waits watch the objects with a timeout; no test sleeps.
use std::time::Duration;

use e2e::cluster::with_temp_ns;
use e2e::{iris, kubectl};
use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{DynamicObject, ListParams, Patch, PatchParams};
use kube::Api;
use serde_json::{json, Value};

/// The issue's bar: the cause shows within 60 s of Kubernetes reporting it. Measured here from
/// the apply, which adds scheduling and the first attempt, hence some slack.
const CAUSE_WITHIN: Duration = Duration::from_secs(75);
/// A fix rolls out a new pod and removes the broken one.
const FIXED_WITHIN: Duration = Duration::from_secs(120);

fn manifest(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: serving.iris.dev/v1alpha1\nkind: IrisModel\nmetadata: {{name: {name}}}\nspec:\n  {spec}\n"
    )
}

/// Ready=False and Degraded=True with `reason`, both for the current generation.
fn failing_because(obj: &DynamicObject, reason: &str) -> bool {
    let gen = iris::generation(obj);
    iris::is_not_ready_because(obj, reason)
        && iris::condition(obj, "Degraded").is_some_and(|c| {
            c["status"] == "True" && c["reason"] == reason && c["observedGeneration"] == gen
        })
}

fn message(obj: &DynamicObject, type_: &str) -> String {
    iris::condition(obj, type_)
        .and_then(|c| c["message"].as_str())
        .unwrap_or("")
        .to_string()
}

/// Applies `spec` as IrisModel `name`, waits for `reason` with `cause` in the message of
/// Degraded (and Ready), then merges `fix` into the spec and waits for Ready.
async fn fails_then_recovers(
    prefix: &'static str,
    spec: String,
    reason: &'static str,
    cause: &'static str,
    fix: Value,
) {
    with_temp_ns(prefix, &[], move |client, ns| async move {
        let name = "iris";
        kubectl::apply(&ns, &manifest(name, &spec)).expect("the manifest is valid");
        let api = iris::api(&client, &ns);
        let what = format!("Degraded=True and Ready=False with reason {reason}");
        let obj = iris::wait_for(&api, name, CAUSE_WITHIN, &what, |o| {
            failing_because(o, reason)
        })
        .await;
        for type_ in ["Degraded", "Ready"] {
            let text = message(&obj, type_);
            eprintln!("{reason}: {type_}: {text}");
            assert!(
                text.contains(cause),
                "{type_} message lacks {cause:?}: {text}"
            );
            assert!(text.chars().count() <= 1000, "{type_} message unbounded");
        }

        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "spec": fix })),
        )
        .await
        .expect("fix the IrisModel");
        iris::wait_ready(&api, name, FIXED_WITHIN).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_without_a_sandbox_is_sandbox_failed_with_the_events_message() {
    // So little memory that the runtime's init process is OOM-killed creating the sandbox.
    fails_then_recovers(
        "sandbox",
        "resources: {limits: {memory: 2Mi}}".to_string(),
        "SandboxFailed",
        "FailedCreatePodSandBox",
        json!({"resources": null}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_exits_at_start_up_is_a_crash_loop_with_its_last_log_line() {
    // The server cannot read its artifact and exits; with FallbackToLogsOnError its last log
    // line is the termination message.
    fails_then_recovers(
        "crashloop",
        "model: {source: {file: /nonexistent/model.json}}".to_string(),
        "CrashLoop",
        "cannot read model artifact /nonexistent/model.json",
        json!({"model": {"source": {"file": null, "builtin": {}}}}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_killed_at_its_memory_limit_is_oom_killed() {
    // Reading /dev/zero as the artifact grows without end: killed at the 128Mi default limit.
    fails_then_recovers(
        "oom",
        "model: {source: {file: /dev/zero}}".to_string(),
        "OOMKilled",
        "OOMKilled",
        json!({"model": {"source": {"file": null, "builtin": {}}}}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_that_cannot_be_pulled_is_image_pull_failed() {
    // A registry on the node's own loopback that nothing listens on: the pull fails at once
    // and no request leaves the machine.
    fails_then_recovers(
        "imagepull",
        "image: 127.0.0.1:9/iris-operator/no-such-image:0.0.0".to_string(),
        "ImagePullFailed",
        "127.0.0.1:9/iris-operator/no-such-image:0.0.0",
        json!({"image": null}),
    )
    .await;
}

/// The pause image every node has (the sandboxes' image): it runs and never answers a probe.
async fn pause_image(client: &kube::Client) -> String {
    let nodes: Api<Node> = Api::all(client.clone());
    let nodes = nodes
        .list(&ListParams::default())
        .await
        .expect("list nodes");
    nodes
        .items
        .iter()
        .filter_map(|n| n.status.as_ref()?.images.as_ref())
        .flatten()
        .flat_map(|image| image.names.iter().flatten())
        .find(|name| name.contains("/pause:"))
        .cloned()
        .expect("a node lists the pause image")
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_failing_on_a_running_container_are_probe_failed() {
    let client = e2e::cluster::client().await;
    let image = pause_image(&client).await;
    eprintln!("a container that never answers: {image}");
    fails_then_recovers(
        "probe",
        format!("image: {image}"),
        "ProbeFailed",
        "probe failed",
        json!({"image": null}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn names_the_service_would_refuse_are_refused_and_the_longest_one_serves() {
    with_temp_ns("names", &[], |client, ns| async move {
        let too_long = format!("i{}", "r".repeat(69));
        for (name, needle) in [
            ("1iris", "must start with a lowercase letter"),
            (too_long.as_str(), "at most 63 characters"),
        ] {
            let err = kubectl::apply(&ns, &manifest(name, "model: {source: {builtin: {}}}"))
                .expect_err(&format!("the API server accepted the name {name}"));
            eprintln!("{name}: {}", err.trim());
            assert!(err.contains("metadata.name"), "{name}: {err}");
            assert!(err.contains(needle), "{name}: {err}");
        }
        let err = kubectl::apply(
            &ns,
            &manifest("iris", "service: {type: NodePort, nodePort: 80}"),
        )
        .expect_err("the API server accepted nodePort 80");
        assert!(err.contains("spec.service.nodePort"), "{err}");

        // The longest name Kubernetes accepts for a Service works end to end.
        let longest = format!("i{}", "r".repeat(62));
        kubectl::apply(&ns, &manifest(&longest, "model: {source: {builtin: {}}}"))
            .expect("a 63-character name is accepted");
        iris::wait_ready(&iris::api(&client, &ns), &longest, FIXED_WITHIN).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_port_below_1024_serves_with_http_and_grpc_service_ports() {
    // The sysctl that lets the non-root server bind port 80 is one Pod Security "restricted"
    // allows.
    let restricted = [
        ("pod-security.kubernetes.io/enforce", "restricted"),
        ("pod-security.kubernetes.io/enforce-version", "latest"),
    ];
    with_temp_ns("lowport", &restricted, |client, ns| async move {
        kubectl::apply(&ns, &manifest("iris", "port: 80")).expect("port 80 is accepted");
        iris::wait_ready(&iris::api(&client, &ns), "iris", FIXED_WITHIN).await;
        let services: Api<Service> = Api::namespaced(client.clone(), &ns);
        let service = services.get("iris").await.expect("the model's Service");
        let ports: Vec<(Option<String>, i32, Option<String>)> = service
            .spec
            .and_then(|s| s.ports)
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.name, p.port, p.app_protocol))
            .collect();
        assert_eq!(
            ports,
            [
                (Some("http".into()), 80, Some("http".into())),
                (Some("grpc".into()), 8081, Some("grpc".into())),
            ]
        );
    })
    .await;
}
