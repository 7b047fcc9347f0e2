//! Killing the operator during a rollout: its replacement takes over and the IrisModel
//! converges. In its own test binary (cargo runs binaries one after another) so the other
//! tests never see the operator go away.
use std::time::Duration;

use e2e::cluster::{self, with_temp_ns, OPERATOR_NAMESPACE, OPERATOR_SELECTOR, RELEASE};
use e2e::{iris, kubectl, serving};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

const LONG: Duration = Duration::from_secs(180);

/// The tests here each kill the operator: one at a time (under `cargo test`; nextest runs
/// each test in a process of its own, and .config/nextest.toml runs these alone).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Kills every operator pod at once, without grace.
fn kill_the_operator() {
    kubectl::ok(&[
        "delete",
        "pod",
        "-n",
        OPERATOR_NAMESPACE,
        "-l",
        OPERATOR_SELECTOR,
        "--grace-period=0",
        "--force",
        "--wait=false",
    ]);
}

/// Waits until the operator's Deployment is available again and a pod not in `old_pods`
/// holds the Lease.
async fn a_new_operator_leads(client: &kube::Client, old_pods: Vec<String>) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    cluster::wait_until(
        &deployments,
        RELEASE,
        LONG,
        "available again",
        |d: Option<&Deployment>| {
            d.and_then(|d| d.status.as_ref())
                .is_some_and(|s| s.available_replicas == Some(1) && s.updated_replicas == Some(1))
        },
    )
    .await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    cluster::wait_until(
        &leases,
        "iris-operator-leader",
        LONG,
        "held by a new operator pod",
        move |l: Option<&Lease>| {
            l.and_then(|l| l.spec.as_ref()?.holder_identity.as_ref())
                .is_some_and(|h| !old_pods.contains(h))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_operator_during_a_rollout_converges() {
    let _serial = ONE_AT_A_TIME.lock().await;
    with_temp_ns("failover", &[], |client, ns| async move {
        kubectl::apply_file(&ns, &cluster::example("iris-multiclass.yaml"));
        let api = iris::api(&client, &ns);
        iris::wait_ready(&api, "iris-multiclass", Duration::from_secs(60)).await;

        let old_pods = cluster::operator_pods(&client).await;

        // Start a rollout, and kill the operator pod in the middle of it.
        kubectl::patch_model(
            &ns,
            "iris-multiclass",
            r#"{"spec":{"model":{"training":{"seed":1234}}}}"#,
        );
        kill_the_operator();

        // The Deployment replaces the pod, the new one takes the Lease over, and the model
        // converges on the new training.
        a_new_operator_leads(&client, old_pods).await;

        let expected = serving::Expected::train(&serving::params_multiclass(1234));
        let obj = iris::wait_for(
            &api,
            "iris-multiclass",
            LONG,
            "Ready with the new digest",
            |o| {
                iris::is_ready_now(o)
                    && iris::digest(o).as_deref() == Some(expected.digest.as_str())
            },
        )
        .await;
        assert_eq!(iris::status(&obj)["readyReplicas"], 2);
        assert_eq!(iris::status(&obj)["updatedReplicas"], 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_killed_mid_step_resumes_the_same_canary_step() {
    let _serial = ONE_AT_A_TIME.lock().await;
    with_temp_ns("canary-failover", &[], |client, ns| async move {
        let manifest = serde_json::json!({
            "apiVersion": "serving.iris.dev/v1alpha1",
            "kind": "IrisModel",
            "metadata": {"name": "iris"},
            "spec": {
                "model": {"source": {"builtin": {}}},
                "rollout": {"strategy": "Canary", "canary": {
                    "steps": [{"weight": 50, "holdSeconds": 40}],
                    "analysis": {"minRequests": 20}}}
            }
        });
        kubectl::apply(&ns, &manifest.to_string()).expect("apply");
        let api = iris::api(&client, &ns);
        iris::wait_ready(&api, "iris", Duration::from_secs(60)).await;
        let proxy = serving::ServiceProxy::new(client.clone(), &ns, "iris", "http");
        let looper = serving::ClientLoop::start(proxy);
        kubectl::patch_model(&ns, "iris", r#"{"spec":{"model":{"training":{"seed":7}}}}"#);
        let phase = |o: &kube::api::DynamicObject| {
            iris::status(o)["rollout"]["phase"]
                .as_str()
                .unwrap_or("")
                .to_string()
        };
        let during = iris::wait_for(&api, "iris", LONG, "a canary at step 1, measured", |o| {
            phase(o) == "Canary"
                && iris::status(o)["rollout"]["analysis"]["canaryRequests"]
                    .as_i64()
                    .is_some()
        })
        .await;
        let requests_before = iris::status(&during)["rollout"]["analysis"]["canaryRequests"]
            .as_i64()
            .unwrap_or(0);
        let old_pods = cluster::operator_pods(&client).await;
        let started_at = iris::status(&during)["rollout"]["stepStartedAt"].clone();
        let canary_uid = Api::<Deployment>::namespaced(client.clone(), &ns)
            .get("iris-canary")
            .await
            .expect("the canary Deployment")
            .metadata
            .uid;
        kill_the_operator();

        // The replacement picks the same rollout up: the same step, its clock where it was, the
        // same canary Deployment; then promotes it.
        a_new_operator_leads(&client, old_pods).await;
        // The new operator's own analysis (more requests counted), of the same step: its clock
        // is the one the killed operator started, and the canary Deployment is the same one.
        let resumed = iris::wait_for(&api, "iris", LONG, "analysed by the new operator", |o| {
            let r = &iris::status(o)["rollout"];
            phase(o) != "Canary"
                || r["analysis"]["canaryRequests"].as_i64().unwrap_or(0) > requests_before + 20
        })
        .await;
        let rollout = &iris::status(&resumed)["rollout"];
        eprintln!("after the restart: {rollout}");
        assert_eq!(
            rollout["phase"], "Canary",
            "still in its 40 s step: {rollout}"
        );
        assert_eq!(rollout["step"], 1);
        assert_eq!(
            rollout["stepStartedAt"], started_at,
            "the step's clock was kept"
        );
        let canary = Api::<Deployment>::namespaced(client.clone(), &ns)
            .get("iris-canary")
            .await
            .expect("the canary Deployment");
        assert_eq!(canary.metadata.uid, canary_uid, "the same canary");

        iris::wait_for(&api, "iris", LONG, "Promoted", |o| phase(o) == "Promoted").await;
        let expected = serving::Expected::train(&serving::params_binary("setosa", 7));
        let report = looper.stop_after_seeing(&expected.digest, LONG).await;
        assert_eq!(report.failed, 0, "{report:?}");
    })
    .await;
}
