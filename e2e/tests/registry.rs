//! A private registry in the loop: the model-server image only in a registry with htpasswd
//! authentication (the one `make registry REGISTRY_AUTH=htpasswd` starts), pulled by the
//! cluster. Without a pull Secret the model is Degraded naming the image; with the Secret named
//! in spec.imagePullSecrets it becomes Ready and answers; pinned by digest it runs that digest
//! and status.image says so; the same build pushed again gives the same digest.
//!
//! e2e/run-suite.sh sets this up when the registry path is on (E2E_REGISTRY=1, or `make e2e
//! REGISTRY_E2E=1`): it starts the registry, wires the cluster to it and pushes the image, then
//! passes E2E_PRIVATE_REGISTRY (host:port as the nodes reach it), its user and password,
//! E2E_PRIVATE_IMAGE (repo:tag there), E2E_PRIVATE_DIGEST and E2E_CRANE. Without them each test
//! says it is skipped, and why.
use std::process::Command;
use std::time::Duration;

use e2e::cluster::with_temp_ns;
use e2e::serving::ServiceProxy;
use e2e::{iris, kubectl};
use kube::api::{DynamicObject, Patch, PatchParams};
use serde_json::{json, Value};

const CAUSE_WITHIN: Duration = Duration::from_secs(90);
const READY_WITHIN: Duration = Duration::from_secs(150);

/// What run-suite.sh passes for the private registry.
struct Private {
    host: String,
    user: String,
    password: String,
    /// host/repo:tag of the model-server image, pushed there only.
    image: String,
    digest: String,
    crane: String,
}

fn private() -> Option<Private> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    Some(Private {
        host: var("E2E_PRIVATE_REGISTRY")?,
        user: var("E2E_PRIVATE_REGISTRY_USER")?,
        password: var("E2E_PRIVATE_REGISTRY_PASSWORD")?,
        image: var("E2E_PRIVATE_IMAGE")?,
        digest: var("E2E_PRIVATE_DIGEST")?,
        crane: var("E2E_CRANE")?,
    })
}

/// The private registry's settings, or None after saying why the test is skipped.
fn private_or_skip(test: &str) -> Option<Private> {
    let found = private();
    if found.is_none() {
        eprintln!(
            "SKIPPED {test}: no private registry (E2E_PRIVATE_REGISTRY and the rest are set by \
             e2e/run-suite.sh with E2E_REGISTRY=1)"
        );
    }
    found
}

fn manifest(name: &str, image: &str, extra: &str) -> String {
    format!(
        "apiVersion: serving.iris.dev/v1alpha1\nkind: IrisModel\nmetadata: {{name: {name}}}\n\
         spec:\n  image: {image:?}\n  model: {{source: {{builtin: {{}}}}}}\n{extra}"
    )
}

/// A `kubernetes.io/dockerconfigjson` Secret for the private registry, as users make it.
fn create_pull_secret(ns: &str, name: &str, p: &Private) {
    kubectl::ok(&[
        "create",
        "secret",
        "docker-registry",
        name,
        "-n",
        ns,
        &format!("--docker-server={}", p.host),
        &format!("--docker-username={}", p.user),
        &format!("--docker-password={}", p.password),
    ]);
}

fn status_image(obj: &DynamicObject) -> &Value {
    &iris::status(obj)["image"]
}

/// The model answers a prediction through its Service.
async fn answers(client: kube::Client, ns: &str) {
    let proxy = ServiceProxy::new(client, ns, "iris", "http");
    let body = json!({"features": [5.1, 3.5, 1.4, 0.2]});
    let reply = proxy
        .post_json("/predict_iris", &body)
        .await
        .expect("a prediction");
    let reply: Value = serde_json::from_str(&reply).expect("JSON");
    assert!(reply.get("prediction").is_some(), "{reply}");
}

#[tokio::test]
async fn a_private_image_is_degraded_without_its_pull_secret_and_ready_with_it() {
    let Some(p) = private_or_skip("a_private_image_is_degraded_without_its_pull_secret") else {
        return;
    };
    with_temp_ns("registry-auth", &[], move |client, ns| async move {
        kubectl::apply(&ns, &manifest("iris", &p.image, "")).expect("valid manifest");
        let api = iris::api(&client, &ns);
        let reason = "ImagePullUnauthorized";
        let obj = iris::wait_for(&api, "iris", CAUSE_WITHIN, reason, |o| {
            iris::is_not_ready_because(o, reason)
                && iris::condition(o, "Degraded")
                    .is_some_and(|c| c["status"] == "True" && c["reason"] == reason)
        })
        .await;
        let message = iris::condition(&obj, "Degraded").expect("Degraded")["message"]
            .as_str()
            .unwrap_or("")
            .to_string();
        eprintln!("{reason}: {message}");
        assert!(message.contains(&p.image), "the image is named: {message}");
        assert!(
            message.contains("spec.imagePullSecrets"),
            "says what to do: {message}"
        );

        create_pull_secret(&ns, "regcred", &p);
        api.patch(
            "iris",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"imagePullSecrets": [{"name": "regcred"}]}})),
        )
        .await
        .expect("name the Secret");
        let obj = iris::wait_ready(&api, "iris", READY_WITHIN).await;
        answers(client.clone(), &ns).await;
        let image = status_image(&obj);
        assert_eq!(image["reference"], p.image.as_str(), "{image}");
        // The status may be written before the kubelet reports the image ID: wait for it.
        let obj = iris::wait_for(&api, "iris", READY_WITHIN, "status.image.digest", |o| {
            status_image(o)["digest"].is_string()
        })
        .await;
        assert_eq!(status_image(&obj)["digest"], p.digest.as_str());
    })
    .await;
}

#[tokio::test]
async fn a_model_pinned_by_digest_runs_that_digest() {
    let Some(p) = private_or_skip("a_model_pinned_by_digest_runs_that_digest") else {
        return;
    };
    with_temp_ns("registry-digest", &[], move |client, ns| async move {
        create_pull_secret(&ns, "regcred", &p);
        let repo = p
            .image
            .rsplit_once(':')
            .map_or(p.image.as_str(), |(r, _)| r);
        let pinned = format!("{repo}@{}", p.digest);
        let extra = "  imagePullSecrets: [{name: regcred}]\n";
        kubectl::apply(&ns, &manifest("iris", &pinned, extra)).expect("a digest reference");
        let api = iris::api(&client, &ns);
        let obj = iris::wait_for(&api, "iris", READY_WITHIN, "Ready with status.image", |o| {
            iris::is_ready_now(o) && status_image(o)["digest"].is_string()
        })
        .await;
        let image = status_image(&obj);
        assert_eq!(image["reference"], pinned.as_str(), "{image}");
        assert_eq!(image["digest"], p.digest.as_str(), "{image}");
        assert!(
            image["imageId"]
                .as_str()
                .is_some_and(|id| id.ends_with(&p.digest)),
            "{image}"
        );
        answers(client.clone(), &ns).await;

        // A malformed digest is refused at apply, naming the field.
        let bad = format!("{repo}@sha256:1234");
        let err = kubectl::apply(&ns, &manifest("bad", &bad, "")).expect_err("refused");
        assert!(err.contains("spec.image"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn the_same_build_pushed_again_has_the_same_digest() {
    let Some(p) = private_or_skip("the_same_build_pushed_again_has_the_same_digest") else {
        return;
    };
    let archive = e2e::cluster::repo_root().join(".build/images/model-server.tar");
    let config = std::env::temp_dir().join(format!("e2e-crane-{}", std::process::id()));
    std::fs::create_dir_all(&config).expect("a credentials directory");
    let crane = |args: &[&str], stdin: Option<&str>| {
        let mut cmd = Command::new(&p.crane);
        cmd.args(args).env("DOCKER_CONFIG", &config);
        if let Some(input) = stdin {
            use std::io::Write;
            let mut child = cmd
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("run crane");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("password");
            child.wait_with_output().expect("crane")
        } else {
            cmd.output().expect("run crane")
        }
    };
    let login = crane(
        &["auth", "login", &p.host, "-u", &p.user, "--password-stdin"],
        Some(&p.password),
    );
    assert!(login.status.success(), "{login:?}");
    let repo = p
        .image
        .rsplit_once(':')
        .map_or(p.image.as_str(), |(r, _)| r);
    for tag in ["repush-1", "repush-2"] {
        let target = format!("{repo}:{tag}");
        let archive = archive.to_str().expect("utf-8 path");
        let out = crane(&["push", "--insecure", archive, &target], None);
        assert!(out.status.success(), "crane push {target}: {out:?}");
        let out = crane(&["digest", "--insecure", &target], None);
        let digest = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(
            digest, p.digest,
            "{target}: the same archive, the same digest"
        );
    }
    let _ = std::fs::remove_dir_all(&config);
}
