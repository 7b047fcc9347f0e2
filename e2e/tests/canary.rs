//! Safe model changes on a real cluster: the quality gate, and canaries that promote or roll
//! back on their own while a client loop runs through the model's Service.
//!
//! Each test runs in its own namespace; waits watch the objects with a timeout, no test
//! sleeps. Loads are bounded in count and time and go only to the cluster's own addresses
//! (through the API server's Service proxy).
use std::time::{Duration, Instant};

use e2e::cluster::{self, with_temp_ns};
use e2e::{iris, kubectl, serving};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DynamicObject, ListParams};
use kube::Api;
use serde_json::{json, Value};

const READY_WITHIN: Duration = Duration::from_secs(60);
const LONG: Duration = Duration::from_secs(180);

/// An IrisModel with the Canary strategy: one step at 50% held for the shortest time allowed.
fn canary_model(name: &str, extra_canary: Value) -> String {
    let mut canary = json!({
        "steps": [{"weight": 50, "holdSeconds": 10}],
        "analysis": {"minRequests": 20, "maxP99LatencyMs": 250, "maxErrorRate": 0.01},
        "readyDeadlineSeconds": 30
    });
    if let (Some(c), Some(extra)) = (canary.as_object_mut(), extra_canary.as_object()) {
        c.extend(extra.clone());
    }
    serde_json::to_string(&json!({
        "apiVersion": "serving.iris.dev/v1alpha1",
        "kind": "IrisModel",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "model": {"task": "binary", "positiveClass": "setosa", "source": {"builtin": {}},
                      "training": {"seed": 42}},
            "rollout": {"strategy": "Canary", "canary": canary}
        }
    }))
    .expect("manifest")
}

fn rollout(obj: &DynamicObject) -> &Value {
    &iris::status(obj)["rollout"]
}

fn phase(obj: &DynamicObject) -> &str {
    rollout(obj)["phase"].as_str().unwrap_or("")
}

async fn canary_deployment_gone(client: &kube::Client, ns: &str, name: &str) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    cluster::wait_until(
        &deployments,
        &format!("{name}-canary"),
        LONG,
        "the canary Deployment gone",
        |d: Option<&Deployment>| d.is_none(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_good_canary_goes_through_its_steps_and_is_promoted_with_no_failed_request() {
    with_temp_ns("canary-good", &[], |client, ns| async move {
        kubectl::apply(&ns, &canary_model("iris", json!({}))).expect("apply");
        let api = iris::api(&client, &ns);
        let before = iris::wait_ready(&api, "iris", READY_WITHIN).await;
        let old_digest = iris::digest(&before).expect("digest");

        let proxy = serving::ServiceProxy::new(client.clone(), &ns, "iris", "http");
        let looper = serving::ClientLoop::start(proxy);
        let started = Instant::now();
        kubectl::patch_model(&ns, "iris", r#"{"spec":{"model":{"training":{"seed":7}}}}"#);
        let expected = serving::Expected::train(&serving::params_binary("setosa", 7));
        assert_ne!(expected.digest, old_digest);

        // Under way: a canary next to the stable pod, as `kubectl get` shows it.
        let during = iris::wait_for(&api, "iris", LONG, "a canary at step 1", |o| {
            phase(o) == "Canary" && rollout(o)["achievedWeight"].as_i64() == Some(50)
        })
        .await;
        eprintln!("during: {}", rollout(&during));
        let listed = kubectl::ok(&["get", "irismodels", "-n", &ns]);
        eprintln!("{listed}");
        assert!(listed.contains("Canary 1/1 50% (50% intended)"), "{listed}");
        assert_eq!(
            rollout(&during)["stableDigest"].as_str(),
            Some(old_digest.as_str())
        );
        assert_eq!(
            rollout(&during)["canaryDigest"].as_str(),
            Some(expected.digest.as_str())
        );

        let done = iris::wait_for(&api, "iris", LONG, "Promoted and Ready", |o| {
            phase(o) == "Promoted" && iris::is_ready_now(o)
        })
        .await;
        eprintln!(
            "model change to promotion: {:.1} s; {}",
            started.elapsed().as_secs_f64(),
            rollout(&done)
        );
        let analysis = &rollout(&done)["analysis"];
        assert_eq!(analysis["verdict"], "Pass", "{analysis}");
        assert!(
            analysis["canaryRequests"].as_i64().unwrap_or(0) >= 20,
            "{analysis}"
        );
        let ready = iris::condition(&done, "Rollout").expect("Rollout condition");
        assert_eq!(
            (ready["status"].as_str(), ready["reason"].as_str()),
            (Some("True"), Some("Promoted"))
        );
        canary_deployment_gone(&client, &ns, "iris").await;

        // The loop saw no failed request, and ends on the new digest only.
        let report = looper.stop_after_seeing(&expected.digest, LONG).await;
        eprintln!("client loop during the canary: {report:?}");
        assert_eq!(report.failed, 0, "{report:?}");
        assert!(report.ok >= 20, "the loop barely ran: {report:?}");
        // Garbage collection takes the canary's ReplicaSet and pods after its Deployment.
        let out = kubectl::run(
            &[
                "wait",
                "--for=delete",
                "pod",
                "-n",
                &ns,
                "-l",
                "serving.iris.dev/track=canary",
                "--timeout=90s",
            ],
            None,
        );
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || said.contains("no matching resources"),
            "canary pods left: {said}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canary_whose_pods_never_become_ready_is_rolled_back_with_no_failed_request() {
    with_temp_ns("canary-unready", &[], |client, ns| async move {
        kubectl::apply(&ns, &canary_model("iris", json!({}))).expect("apply");
        let api = iris::api(&client, &ns);
        let before = iris::wait_ready(&api, "iris", READY_WITHIN).await;
        let stable = iris::digest(&before).expect("digest");

        let proxy = serving::ServiceProxy::new(client.clone(), &ns, "iris", "http");
        let looper = serving::ClientLoop::start(proxy);
        // An image no node can pull: a registry on the node's own loopback, where none runs.
        kubectl::patch_model(
            &ns,
            "iris",
            r#"{"spec":{"image":"127.0.0.1:9/iris-operator/no-such-image:0.0.0"}}"#,
        );
        let rolled_back = iris::wait_for(&api, "iris", LONG, "RolledBack", |o| {
            phase(o) == "RolledBack"
        })
        .await;
        let message = rollout(&rolled_back)["message"]
            .as_str()
            .unwrap_or("")
            .to_string();
        eprintln!("rolled back: {message}");
        assert!(
            message.contains("not ready within readyDeadlineSeconds 30"),
            "{message}"
        );
        assert!(message.contains("ImagePullFailed"), "{message}");
        let condition = iris::condition(&rolled_back, "Rollout").expect("Rollout condition");
        assert_eq!(condition["status"], "False");
        assert_eq!(condition["reason"], "RolledBack");
        assert!(
            iris::is_ready_now(&rolled_back),
            "the stable model still serves"
        );
        let event = serving::wait_warning_event(&client, &ns, "iris", LONG).await;
        assert!(event.starts_with("CanaryRolledBack: "), "{event}");
        canary_deployment_gone(&client, &ns, "iris").await;

        let (report, digests) = looper.stop().await;
        eprintln!("client loop during the canary: {report:?}, digests {digests:?}");
        assert_eq!(report.failed, 0, "{report:?}");
        assert_eq!(digests.keys().collect::<Vec<_>>(), vec![&stable]);

        // Not retried while the spec stays as it is: still rolled back a while later, and no
        // canary Deployment came back.
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let later = api.get("iris").await.expect("irismodel");
        assert_eq!(phase(&later), "RolledBack");
        assert!(deployments
            .get_opt("iris-canary")
            .await
            .expect("get")
            .is_none());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canary_too_slow_for_its_load_is_rolled_back_on_p99_latency() {
    with_temp_ns("canary-slow", &[], |client, ns| async move {
        // Judged on its first 10 requests, and a ready deadline long enough that the starved
        // pod's readiness probe (which may time out under the load) does not roll it back
        // first, as "not ready", before its latency is measured.
        let slow = json!({
            "analysis": {"minRequests": 10, "maxP99LatencyMs": 250, "maxErrorRate": 0.01},
            "readyDeadlineSeconds": 300
        });
        kubectl::apply(&ns, &canary_model("iris", slow)).expect("apply");
        let api = iris::api(&client, &ns);
        let before = iris::wait_ready(&api, "iris", READY_WITHIN).await;
        let stable = iris::digest(&before).expect("digest");

        // The new version: a CPU limit far too small for batches of 5,000 rows.
        kubectl::patch_model(
            &ns,
            "iris",
            r#"{"spec":{"resources":{"requests":{"cpu":"10m","memory":"32Mi"},"limits":{"cpu":"10m","memory":"128Mi"}}}}"#,
        );
        iris::wait_for(&api, "iris", LONG, "the canary ready", |o| {
            phase(o) == "Canary" && rollout(o)["achievedWeight"].as_i64() == Some(50)
        })
        .await;

        // The load: at most 400 batch requests or 90 s, 4 at a time, through the Service.
        let proxy = serving::ServiceProxy::new(client.clone(), &ns, "iris", "http");
        let rows: Vec<[f64; 4]> = serving::iris_rows().into_iter().cycle().take(5000).collect();
        let body = json!({"instances": rows});
        let deadline = Instant::now() + Duration::from_secs(90);
        let load = futures::future::join_all((0..4).map(|_| {
            let (proxy, body, api) = (proxy.clone(), body.clone(), api.clone());
            async move {
                let mut sent = 0;
                while sent < 100 && Instant::now() < deadline {
                    let _ = proxy.post_json("/predict_iris", &body).await;
                    sent += 1;
                    if sent % 10 == 0
                        && api.get("iris").await.is_ok_and(|o| phase(&o) == "RolledBack")
                    {
                        break;
                    }
                }
                sent
            }
        }));
        let sent: i32 = load.await.into_iter().sum();
        let rolled_back = iris::wait_for(&api, "iris", LONG, "RolledBack on latency", |o| {
            phase(o) == "RolledBack"
        })
        .await;
        let r = rollout(&rolled_back);
        eprintln!("after {sent} batch requests: {r}");
        let message = r["message"].as_str().unwrap_or("");
        assert!(message.contains("p99 latency"), "{message}");
        assert!(message.contains("> maxP99LatencyMs 250 ms"), "{message}");
        let p99 = r["analysis"]["canaryP99Ms"].as_f64().expect("canary p99");
        assert!(p99 > 250.0, "{r}");
        eprintln!(
            "canary p99 {p99} ms vs stable p99 {} ms",
            r["analysis"]["stableP99Ms"]
        );
        canary_deployment_gone(&client, &ns, "iris").await;
        // The stable pods were never touched: no CPU limit of 10m on them.
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let stable_deployment = deployments.get("iris").await.expect("stable Deployment");
        let limits = stable_deployment
            .spec
            .and_then(|s| s.template.spec)
            .and_then(|s| s.containers.into_iter().next())
            .and_then(|c| c.resources)
            .and_then(|r| r.limits)
            .unwrap_or_default();
        assert!(!limits.contains_key("cpu"), "{limits:?}");
        let pf = e2e::portforward::PortForward::start(&ns, "svc/iris", 5001);
        assert_eq!(serving::served_digest(&pf.url()).await, stable);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_below_min_accuracy_gets_no_pod_until_the_spec_is_fixed() {
    with_temp_ns("quality-gate", &[], |client, ns| async move {
        // versicolor-vs-rest measures 0.80 on the held-out split.
        let manifest = json!({
            "apiVersion": "serving.iris.dev/v1alpha1",
            "kind": "IrisModel",
            "metadata": {"name": "iris"},
            "spec": {
                "model": {"task": "binary", "positiveClass": "versicolor",
                          "source": {"builtin": {}}},
                "rollout": {"minAccuracy": 0.9}
            }
        });
        kubectl::apply(&ns, &manifest.to_string()).expect("apply");
        let api = iris::api(&client, &ns);
        let refused = iris::wait_for(&api, "iris", READY_WITHIN, "refused", |o| {
            iris::condition(o, "Degraded").is_some_and(|c| {
                c["status"] == "True"
                    && c["reason"] == "BelowMinAccuracy"
                    && c["observedGeneration"] == iris::generation(o)
            })
        })
        .await;
        let degraded = iris::condition(&refused, "Degraded").expect("Degraded");
        let message = degraded["message"].as_str().unwrap_or("");
        assert!(
            message.contains("held-out accuracy 0.80 < minAccuracy 0.90"),
            "{message}"
        );
        assert!(iris::is_not_ready_because(&refused, "BelowMinAccuracy"));
        let event = serving::wait_warning_event(&client, &ns, "iris", READY_WITHIN).await;
        assert!(event.starts_with("BelowMinAccuracy: "), "{event}");
        // No pod, not even a Deployment.
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        assert!(deployments.get_opt("iris").await.expect("get").is_none());
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        assert!(pods
            .list(&ListParams::default())
            .await
            .expect("pods")
            .items
            .is_empty());

        // Fixing the spec clears it.
        kubectl::patch_model(&ns, "iris", r#"{"spec":{"rollout":{"minAccuracy":0.75}}}"#);
        let ready = iris::wait_ready(&api, "iris", READY_WITHIN).await;
        let degraded = iris::condition(&ready, "Degraded").expect("Degraded");
        assert_eq!(degraded["status"], "False");
    })
    .await;
}
