//! Tenants that do not play nice, on a real cluster:
//!
//! - hostile model images (`$HOSTILE_IMAGE`, e2e/src/bin/hostile-model.rs: healthy probes, a
//!   `/metrics` page of `}{`, of 10 MiB, of 100,000 buckets, of NaN counters, or trickling over
//!   10 s), autoscaled on their request rate or rolled out as a canary, neither crash the
//!   operator nor disturb another namespace's model under a steady load, and each ends with a
//!   condition that names what is wrong;
//! - names taken by someone else: a model named like a child (`foo-canary`, `x-activator`) is
//!   refused by the CRD; a foreign Deployment `foo-canary` and a foreign Role and RoleBinding
//!   `x-activator` are never taken over, the models say ResourceConflict instead;
//! - a slow-loris through a model's Service does not stop predictions, and the server closes
//!   the half-open connections;
//! - an image outside the installation's allowed prefixes is refused at admission (when the
//!   cluster has the chart's ValidatingAdmissionPolicy).
//!
//! Each test works in its own namespaces; every wait is bounded, every load bounded in count
//! and time and sent only to the cluster's own addresses (the API server's Service proxy,
//! `kubectl port-forward`).
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::cluster::{self, with_temp_ns};
use e2e::portforward::PortForward;
use e2e::serving::{self, ClientLoop, ServiceProxy};
use e2e::{iris, kubectl};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::DynamicObject;
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const READY_WITHIN: Duration = Duration::from_secs(90);
/// How long a hostile model may take to be called out in its status.
const NAMED_WITHIN: Duration = Duration::from_secs(150);
/// The bystander's steady load lasts at least this long.
const BYSTANDER_WINDOW: Duration = Duration::from_secs(40);
/// How long the operator may take to report a name conflict.
const CONFLICT_WITHIN: Duration = Duration::from_secs(120);
/// The hostile modes (the start of a model's name chooses its mode).
const MODES: [&str; 5] = ["brace", "huge", "buckets", "nan", "slow"];
/// The half-open connections of the slow-loris.
const LORIS_CONNECTIONS: usize = 200;
/// The server closes a connection whose request head has not come within 10 s: allow for
/// the port-forward's own delays.
const LORIS_CLOSED_WITHIN: Duration = Duration::from_secs(17);
/// A prediction during the slow-loris is answered within this.
const ANSWERED_WITHIN: Duration = Duration::from_secs(2);

/// `$HOSTILE_IMAGE`, or the name e2e/run-suite.sh gives it.
fn hostile_image() -> String {
    std::env::var("HOSTILE_IMAGE")
        .ok()
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| "iris-e2e/hostile-model:e2e".to_string())
}

/// An IrisModel `name` (builtin, binary setosa, seed 42) with these further spec fields.
fn model(name: &str, spec: Value) -> String {
    let mut manifest = json!({
        "apiVersion": "serving.iris.dev/v1alpha1",
        "kind": "IrisModel",
        "metadata": {"name": name},
        "spec": {"model": {"task": "binary", "positiveClass": "setosa",
                           "source": {"builtin": {}}, "training": {"seed": 42}}}
    });
    if let (Some(into), Value::Object(fields)) = (manifest["spec"].as_object_mut(), spec) {
        into.extend(fields);
    }
    manifest.to_string()
}

/// Autoscaled on its request rate, between 1 and 2 pods.
fn rate_autoscaling() -> Value {
    json!({"minReplicas": 1, "maxReplicas": 2, "targetRequestsPerSecond": 10,
           "scaleDownStabilizationSeconds": 10})
}

/// The Canary strategy: one step at 50% held 10 s.
fn canary_rollout() -> Value {
    json!({"strategy": "Canary", "canary": {
        "steps": [{"weight": 50, "holdSeconds": 10}],
        "analysis": {"minRequests": 20, "maxP99LatencyMs": 250, "maxErrorRate": 0.01},
        "readyDeadlineSeconds": 60
    }})
}

fn field<'a>(c: &'a Value, k: &str) -> &'a str {
    c[k].as_str().unwrap_or("")
}

fn conditions(obj: &DynamicObject) -> Vec<Value> {
    iris::status(obj)["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A condition that reports a problem: Degraded=True, Ready, Autoscaling or Rollout False, or
/// Progressing False short of a complete rollout. The autoscaler's first sample
/// (`AutoscalerStarting`: no rate yet) is not one.
fn is_bad(c: &Value) -> bool {
    if field(c, "reason") == "AutoscalerStarting" {
        return false;
    }
    match (field(c, "type"), field(c, "status")) {
        ("Degraded", "True") => true,
        ("Ready" | "Autoscaling" | "Rollout", "False") => true,
        ("Progressing", "False") => field(c, "reason") != "RolloutComplete",
        _ => false,
    }
}

/// Words that name a metrics page the operator could not use.
fn names_the_metrics(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    ["metrics", "unusable", "counters"]
        .iter()
        .any(|w| text.contains(w))
}

/// The first problem condition whose reason or message names the metrics, as
/// "Type=Status Reason: message"; or a held or rolled-back canary whose message does.
fn metrics_complaint(obj: &DynamicObject) -> Option<String> {
    let from_conditions = conditions(obj).into_iter().find_map(|c| {
        let said = format!("{} {}", field(&c, "reason"), field(&c, "message"));
        (is_bad(&c) && names_the_metrics(&said)).then(|| {
            format!(
                "{}={} {}: {}",
                field(&c, "type"),
                field(&c, "status"),
                field(&c, "reason"),
                field(&c, "message")
            )
        })
    });
    from_conditions.or_else(|| {
        let rollout = &iris::status(obj)["rollout"];
        let message = field(rollout, "message");
        // A canary held ("canary not judged: ... unusable") or rolled back, saying why.
        let phase = field(rollout, "phase");
        (!phase.is_empty() && phase != "Promoted" && names_the_metrics(message))
            .then(|| format!("rollout {phase}: {message}"))
    })
}

/// Degraded=True for the current generation with `reason`; its message.
fn degraded_because(obj: &DynamicObject, reason: &str) -> Option<String> {
    let gen = iris::generation(obj);
    iris::condition(obj, "Degraded")
        .filter(|c| {
            c["status"] == "True" && c["reason"] == reason && c["observedGeneration"] == gen
        })
        .map(|c| field(c, "message").to_string())
}

/// The operator's pods and the restarts of each.
async fn operator_restarts(client: &Client) -> BTreeMap<String, i32> {
    cluster::operator_pod_list(client)
        .await
        .into_iter()
        .map(|p| {
            let restarts = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .map(|cs| cs.iter().map(|c| c.restart_count).sum())
                .unwrap_or(0);
            (p.name_any(), restarts)
        })
        .collect()
}

/// The uid and resourceVersion of `name` once it stopped changing (3 equal reads a second
/// apart; its controllers write a status once after creation), at most 30 s.
async fn settled<K>(api: &Api<K>, name: &str) -> (String, String)
where
    K: Resource + Clone + std::fmt::Debug + DeserializeOwned,
{
    let mut last = String::new();
    let mut same = 0;
    for _ in 0..30 {
        let obj = api.get(name).await.expect("get the foreign object");
        let rv = obj.resource_version().unwrap_or_default();
        same = if rv == last { same + 1 } else { 0 };
        if same >= 2 {
            return (obj.uid().unwrap_or_default(), rv);
        }
        last = rv;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("{name} kept changing for 30 s after it was created");
}

async fn uid_and_version<K>(api: &Api<K>, name: &str) -> (String, String)
where
    K: Resource + Clone + std::fmt::Debug + DeserializeOwned,
{
    let obj = api
        .get_opt(name)
        .await
        .expect("get")
        .unwrap_or_else(|| panic!("{name} was deleted"));
    (
        obj.uid().unwrap_or_default(),
        obj.resource_version().unwrap_or_default(),
    )
}

/// Watches a model's Ready condition every 2 s until stopped; counts the reads that were not
/// Ready for the current generation.
struct ReadyWatch {
    stop: Arc<AtomicBool>,
    reads: Arc<AtomicU64>,
    not_ready: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl ReadyWatch {
    fn start(api: Api<DynamicObject>, name: &str) -> ReadyWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let (reads, not_ready) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let task = {
            let (stop, reads, not_ready) = (stop.clone(), reads.clone(), not_ready.clone());
            let name = name.to_string();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    // A read the API server did not answer says nothing about the model.
                    if let Ok(obj) = api.get(&name).await {
                        reads.fetch_add(1, Ordering::Relaxed);
                        if !iris::is_ready_now(&obj) {
                            not_ready.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            })
        };
        ReadyWatch {
            stop,
            reads,
            not_ready,
            task,
        }
    }

    /// (reads, reads not Ready)
    async fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        (
            self.reads.load(Ordering::Relaxed),
            self.not_ready.load(Ordering::Relaxed),
        )
    }
}

/// A hostile model autoscaled on its request rate: it ends with a condition naming its
/// metrics, and the operator never scales it past its bounds.
async fn hostile_rate_model(client: Client, ns: String, mode: &'static str) {
    let name = format!("{mode}-rate");
    let spec = json!({"image": hostile_image(), "autoscaling": rate_autoscaling()});
    kubectl::apply(&ns, &model(&name, spec)).expect("apply the hostile model");
    let api = iris::api(&client, &ns);
    let t0 = Instant::now();
    let named = iris::wait_for(
        &api,
        &name,
        NAMED_WITHIN,
        "a condition naming its unusable metrics",
        |o| metrics_complaint(o).is_some(),
    )
    .await;
    let complaint = metrics_complaint(&named).unwrap_or_default();
    println!(
        "tenants: hostile /metrics ({mode}) with request-rate autoscaling, named after {:.1} s: {complaint}",
        t0.elapsed().as_secs_f64()
    );
    {
        // Every mode is a page the model's own pods answer (garbage, NaN, 100,000 buckets, over
        // 1 MiB, or not finished in time): the model is Degraded, naming the page (a scrape that
        // gets no answer at all only holds the count).
        let degraded = iris::wait_for(
            &api,
            &name,
            NAMED_WITHIN,
            "Degraded=True MetricsUnusable",
            |o| degraded_because(o, "MetricsUnusable").is_some(),
        )
        .await;
        let why = degraded_because(&degraded, "MetricsUnusable").unwrap_or_default();
        assert!(why.contains("metrics page unusable"), "{name}: {why}");
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let replicas = deployments
        .get_opt(&name)
        .await
        .expect("get the Deployment")
        .and_then(|d| d.spec)
        .and_then(|s| s.replicas);
    assert!(
        replicas.is_none_or(|r| (1..=2).contains(&r)),
        "{name}: {replicas:?} replicas, outside autoscaling 1..=2"
    );
}

/// A model rolled out as a canary to the hostile image serving NaN counters: the canary is
/// not promoted, the stable Deployment keeps the image it had, and the model says why.
async fn hostile_canary(client: Client, ns: String) {
    let name = "nan-rollout";
    kubectl::apply(&ns, &model(name, json!({"rollout": canary_rollout()}))).expect("apply");
    let api = iris::api(&client, &ns);
    iris::wait_ready(&api, name, READY_WITHIN).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let image_of = |d: Option<Deployment>| {
        d.and_then(|d| d.spec)
            .and_then(|s| s.template.spec)
            .and_then(|s| s.containers.into_iter().next())
            .and_then(|c| c.image)
            .unwrap_or_default()
    };
    let stable_image = image_of(deployments.get_opt(name).await.expect("get"));

    let t0 = Instant::now();
    kubectl::patch_model(
        &ns,
        name,
        &json!({"spec": {"image": hostile_image()}}).to_string(),
    );
    let named = iris::wait_for(
        &api,
        name,
        NAMED_WITHIN,
        "the NaN canary called out (not promoted)",
        |o| metrics_complaint(o).is_some(),
    )
    .await;
    println!(
        "tenants: a canary serving NaN counters, named after {:.1} s: {}; rollout {}",
        t0.elapsed().as_secs_f64(),
        metrics_complaint(&named).unwrap_or_default(),
        iris::status(&named)["rollout"]
    );
    let phase = field(&iris::status(&named)["rollout"], "phase").to_string();
    assert_ne!(
        phase, "Promoted",
        "a canary with NaN counters is never promoted"
    );
    assert_eq!(
        image_of(deployments.get_opt(name).await.expect("get")),
        stable_image,
        "the stable Deployment keeps its image"
    );
}

/// Runs `test` in its own namespace on its own task; the panic, if any, comes back as Err.
fn spawn_in_ns<F, Fut>(prefix: String, test: F) -> tokio::task::JoinHandle<()>
where
    F: FnOnce(Client, String) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move { with_temp_ns(&prefix, &[], test).await })
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_metrics_neither_crash_the_operator_nor_disturb_another_tenant() {
    with_temp_ns("tenants-bystander", &[], |client, ns| async move {
        let restarts_before = operator_restarts(&client).await;
        assert!(!restarts_before.is_empty(), "no operator pod");

        // The bystander: a normal model under a steady load, watched throughout.
        kubectl::apply(&ns, &model("iris", json!({}))).expect("apply the bystander");
        let api = iris::api(&client, &ns);
        iris::wait_ready(&api, "iris", READY_WITHIN).await;
        let looper = ClientLoop::start(ServiceProxy::new(client.clone(), &ns, "iris", "5001"));
        let watch = ReadyWatch::start(api.clone(), "iris");

        // The hostile tenants, side by side, each in its own namespace.
        let t0 = Instant::now();
        let mut tenants: Vec<(String, tokio::task::JoinHandle<()>)> = MODES
            .iter()
            .map(|&mode| {
                (
                    format!("{mode}-rate"),
                    spawn_in_ns(format!("hostile-{mode}"), move |c, n| {
                        hostile_rate_model(c, n, mode)
                    }),
                )
            })
            .collect();
        tenants.push((
            "nan-rollout".to_string(),
            spawn_in_ns("hostile-canary".to_string(), hostile_canary),
        ));
        let mut failed = Vec::new();
        for (name, task) in tenants {
            if let Err(e) = task.await {
                failed.push(name.clone());
                if e.is_panic() {
                    eprintln!("tenants: the hostile tenant {name} failed (see above)");
                }
            }
        }
        println!(
            "tenants: {} hostile tenants done after {:.1} s",
            MODES.len() + 1,
            t0.elapsed().as_secs_f64()
        );

        // The bystander is watched for a fixed window however quickly the hostile tenants are
        // told apart, so its load is a steady one, not a handful of requests.
        tokio::time::sleep(BYSTANDER_WINDOW.saturating_sub(t0.elapsed())).await;
        let (reads, not_ready) = watch.stop().await;
        let (report, _) = looper.stop().await;
        let restarts_after = operator_restarts(&client).await;
        println!(
            "tenants: the bystander answered {} requests ({} failed), Ready in {}/{reads} reads; operator restarts {restarts_before:?} -> {restarts_after:?}",
            report.ok,
            report.failed,
            reads - not_ready
        );
        assert!(failed.is_empty(), "hostile tenants failed: {failed:?}");
        assert_eq!(
            restarts_after, restarts_before,
            "the operator's pods restarted (or were replaced) while reading hostile metrics"
        );
        assert_eq!(report.failed, 0, "the bystander failed requests: {report:?}");
        assert!(report.ok >= 100, "the bystander's loop barely ran: {report:?}");
        assert_eq!(not_ready, 0, "the bystander was not Ready in {not_ready} of {reads} reads");
        assert!(iris::is_ready_now(&api.get("iris").await.expect("the bystander")));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_deployment_named_like_a_canary_is_never_taken_over() {
    with_temp_ns("tenants-canary-name", &[], |client, ns| async move {
        // The CRD refuses models named like the children of another model.
        for (name, suffix) in [("foo-canary", "-canary"), ("foo-activator", "-activator")] {
            let refused = kubectl::apply(&ns, &model(name, json!({})));
            let message = refused.expect_err("a model named like a child is refused");
            println!("tenants: applying model {name}: {}", message.trim());
            // The reason, not only the name kubectl quotes, mentions the suffix.
            assert!(message.replace(name, "").contains(suffix), "{message}");
        }

        // Someone else's Deployment `foo-canary` (no pod: 0 replicas).
        let foreign = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "foo-canary", "labels": {"owner": "someone-else"}},
            "spec": {"replicas": 0,
                     "selector": {"matchLabels": {"app": "someone-else"}},
                     "template": {"metadata": {"labels": {"app": "someone-else"}},
                                  "spec": {"containers": [{"name": "app", "image": hostile_image()}]}}}
        });
        kubectl::apply(&ns, &foreign.to_string()).expect("apply the foreign Deployment");
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let before = settled(&deployments, "foo-canary").await;

        // The model `foo`, rolled out as a canary; a change of its spec wants `foo-canary`.
        kubectl::apply(&ns, &model("foo", json!({"rollout": canary_rollout()}))).expect("apply foo");
        let api = iris::api(&client, &ns);
        iris::wait_for(&api, "foo", READY_WITHIN, "its first generation observed", |o| {
            iris::status(o)["observedGeneration"] == iris::generation(o)
        })
        .await;
        kubectl::patch_model(&ns, "foo", r#"{"spec":{"model":{"training":{"seed":7}}}}"#);
        let conflict = iris::wait_for(
            &api,
            "foo",
            CONFLICT_WITHIN,
            "Degraded ResourceConflict naming foo-canary",
            |o| degraded_because(o, "ResourceConflict").is_some_and(|m| m.contains("foo-canary")),
        )
        .await;
        println!(
            "tenants: foo with a foreign foo-canary: Degraded ResourceConflict: {}",
            degraded_because(&conflict, "ResourceConflict").unwrap_or_default()
        );
        assert_ne!(field(&iris::status(&conflict)["rollout"], "phase"), "Promoted");
        let after = uid_and_version(&deployments, "foo-canary").await;
        assert_eq!(after, before, "the foreign Deployment foo-canary was changed");
        let labels = deployments.get("foo-canary").await.expect("get").labels().clone();
        assert_eq!(labels.get("owner").map(String::as_str), Some("someone-else"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_role_and_binding_named_like_an_activator_are_never_taken_over() {
    with_temp_ns("tenants-activator-name", &[], |client, ns| async move {
        let rbac = json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
             "metadata": {"name": "x-activator"},
             "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": "x-activator"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "x-activator"},
             "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]}
        ]});
        kubectl::apply(&ns, &rbac.to_string()).expect("apply the foreign Role and RoleBinding");
        let roles: Api<Role> = Api::namespaced(client.clone(), &ns);
        let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &ns);
        let role_before = uid_and_version(&roles, "x-activator").await;
        let binding_before = uid_and_version(&bindings, "x-activator").await;

        // The model `x` scales to zero: it wants an activator named x-activator.
        let to_zero = json!({"autoscaling": {"minReplicas": 0, "maxReplicas": 1,
                                             "targetRequestsPerSecond": 50, "idleSeconds": 60,
                                             "scaleDownStabilizationSeconds": 0}});
        kubectl::apply(&ns, &model("x", to_zero)).expect("apply x");
        let api = iris::api(&client, &ns);
        let conflict = iris::wait_for(
            &api,
            "x",
            CONFLICT_WITHIN,
            "Degraded ResourceConflict naming x-activator",
            |o| degraded_because(o, "ResourceConflict").is_some_and(|m| m.contains("x-activator")),
        )
        .await;
        println!(
            "tenants: x with a foreign x-activator Role and RoleBinding: Degraded ResourceConflict: {}",
            degraded_because(&conflict, "ResourceConflict").unwrap_or_default()
        );
        assert_eq!(uid_and_version(&roles, "x-activator").await, role_before, "the Role changed");
        assert_eq!(
            uid_and_version(&bindings, "x-activator").await,
            binding_before,
            "the RoleBinding changed"
        );

        // Without scale to zero the model needs no activator: it serves, and the operator
        // (which deletes its own activator's objects then) leaves the foreign ones be.
        // (idleSeconds goes with minReplicas 0 only.)
        kubectl::patch_model(
            &ns,
            "x",
            r#"{"spec":{"autoscaling":{"minReplicas":1,"idleSeconds":null}}}"#,
        );
        iris::wait_ready(&api, "x", READY_WITHIN).await;
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        cluster::wait_until(
            &deployments,
            "x-activator",
            READY_WITHIN,
            "no activator Deployment",
            |d: Option<&Deployment>| d.is_none(),
        )
        .await;
        let binding = bindings.get("x-activator").await.expect("the RoleBinding is still there");
        assert_eq!(
            (binding.uid().unwrap_or_default(), binding.resource_version().unwrap_or_default()),
            binding_before,
            "the RoleBinding changed"
        );
        let subjects: Vec<String> = binding
            .subjects
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(subjects, ["alice"]);
        assert_eq!(
            uid_and_version(&roles, "x-activator").await,
            role_before,
            "the Role changed"
        );
    })
    .await;
}

/// One KServe v1 prediction of the first Iris row through `url`, and how long it took.
async fn timed_prediction(url: &str) -> (Result<String, String>, Duration) {
    let t0 = Instant::now();
    let answer = async {
        let text = serving::try_kserve_v1_first_row(url).await?;
        if text.contains("\"predictions\"") {
            Ok(text)
        } else {
            Err(format!("no predictions: {text}"))
        }
    }
    .await;
    (answer, t0.elapsed())
}

/// Opens a connection to 127.0.0.1:`port`, sends half a request line, and waits (at most
/// LORIS_CLOSED_WITHIN after sending) until the other side closes it; how long that took,
/// or None when it stayed open.
async fn half_request(port: u16) -> Result<Option<Duration>, String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .write_all(b"POST /v1/models/iris:pre")
        .await
        .map_err(|e| format!("write: {e}"))?;
    let sent = Instant::now();
    let mut buf = [0u8; 1024];
    let closed = async {
        loop {
            match stream.read(&mut buf).await {
                // An answer (a 408, say) may come first; then the close.
                Ok(n) if n > 0 => continue,
                _ => return sent.elapsed(),
            }
        }
    };
    Ok(tokio::time::timeout(LORIS_CLOSED_WITHIN, closed).await.ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_loris_through_the_service_neither_stops_predictions_nor_keeps_its_connections() {
    with_temp_ns("tenants-loris", &[], |client, ns| async move {
        kubectl::apply(&ns, &model("iris", json!({}))).expect("apply");
        iris::wait_ready(&iris::api(&client, &ns), "iris", READY_WITHIN).await;
        let forward = PortForward::start(&ns, "service/iris", 5001);
        let (warm, took) = timed_prediction(&forward.url()).await;
        warm.expect("a prediction before the slow-loris");
        println!("tenants: a prediction before the slow-loris: {:.3} s", took.as_secs_f64());

        let port = forward.port;
        let loris: Vec<_> = (0..LORIS_CONNECTIONS)
            .map(|_| tokio::spawn(half_request(port)))
            .collect();
        // Let kubectl open every stream to the pod.
        tokio::time::sleep(Duration::from_secs(2)).await;
        for i in 0..3 {
            let (answer, took) = timed_prediction(&forward.url()).await;
            println!(
                "tenants: prediction {i} during the slow-loris: {:.3} s",
                took.as_secs_f64()
            );
            answer.expect("a prediction during the slow-loris");
            assert!(
                took < ANSWERED_WITHIN,
                "a prediction took {took:?} with {LORIS_CONNECTIONS} half-open connections"
            );
        }

        let (mut closed, mut open, mut errors, mut slowest) = (0, 0, Vec::new(), Duration::ZERO);
        for task in loris {
            match task.await.expect("slow-loris task") {
                Ok(Some(after)) => {
                    closed += 1;
                    slowest = slowest.max(after);
                }
                Ok(None) => open += 1,
                Err(e) => errors.push(e),
            }
        }
        println!(
            "tenants: slow-loris of {LORIS_CONNECTIONS} half requests: {closed} closed by the server (the last after {:.1} s), {open} still open after {LORIS_CLOSED_WITHIN:?}, {} not opened",
            slowest.as_secs_f64(),
            errors.len()
        );
        assert!(errors.is_empty(), "connections not opened: {:?}", &errors[..errors.len().min(5)]);
        assert_eq!(open, 0, "{open} half-open connections were kept past {LORIS_CLOSED_WITHIN:?}");
        let (after, _) = timed_prediction(&forward.url()).await;
        after.expect("a prediction after the slow-loris");
    })
    .await;
}

/// The names of the ValidatingAdmissionPolicies with "iris" in them.
fn iris_admission_policies() -> Result<Vec<String>, String> {
    let out = kubectl::run(&["get", "validatingadmissionpolicies", "-o", "name"], None);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("iris"))
        .map(str::to_string)
        .collect())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_outside_the_allowed_prefixes_is_refused_at_admission() {
    match iris_admission_policies() {
        Ok(found) if !found.is_empty() => println!("tenants: admission policies: {found:?}"),
        Ok(_) => {
            println!("tenants: skipped the refused-image test: no ValidatingAdmissionPolicy named like *iris* in the cluster");
            return;
        }
        Err(e) => {
            println!("tenants: skipped the refused-image test: cannot list ValidatingAdmissionPolicies: {e}");
            return;
        }
    }
    with_temp_ns("tenants-image", &[], |client, ns| async move {
        let refused = kubectl::apply(&ns, &model("evil", json!({"image": "evil.example/x:1"})));
        let message = refused.expect_err("an image outside allowedImagePrefixes is refused");
        println!(
            "tenants: applying a model with image evil.example/x:1: {}",
            message.trim()
        );
        assert!(message.contains("allowedImagePrefixes"), "{message}");
        assert!(
            iris::api(&client, &ns)
                .get_opt("evil")
                .await
                .expect("get")
                .is_none(),
            "the refused model was stored"
        );
    })
    .await;
}
