//! The user's whole path on a real cluster: helm install, the examples, predictions through
//! port-forward, scaling and rollouts, drift, validation, security.
//!
//! Each test runs in its own namespace (deleted afterwards; pods, events and operator logs are
//! printed when it fails). Waits watch the objects with a timeout; no test sleeps.
use std::time::Duration;

use e2e::cluster::{self, with_temp_ns, OPERATOR_NAMESPACE, RELEASE};
use e2e::{iris, kubectl, serving};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;

/// The issue's bar: an example reaches Ready=True within 60 s.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// Longer operations (rollouts of several pods, garbage collection).
const LONG: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread")]
async fn helm_install_makes_the_operator_ready() {
    cluster::ensure_operator();
    let client = cluster::client().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let deploy = deployments
        .get(RELEASE)
        .await
        .expect("the operator's Deployment");
    let status = deploy.status.expect("Deployment status");
    assert_eq!(
        status.available_replicas,
        deploy.spec.and_then(|s| s.replicas)
    );

    // The active replica holds the Lease (leader election is on by default).
    let leases: Api<Lease> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let lease = leases
        .get("iris-operator-leader")
        .await
        .expect("the leader Lease");
    let holder = lease
        .spec
        .and_then(|s| s.holder_identity)
        .expect("a lease holder");
    let names = cluster::operator_pods(&client).await;
    assert!(
        names.contains(&holder),
        "lease holder {holder} is not one of {names:?}"
    );
}

async fn example_becomes_ready(file: &str, name: &str, prepare: impl FnOnce(&str)) {
    let (file, name) = (file.to_string(), name.to_string());
    let prefix = name.clone();
    with_temp_ns(&prefix, &[], |client, ns| {
        prepare(&ns);
        async move {
            kubectl::apply_file(&ns, &cluster::example(&file));
            let api = iris::api(&client, &ns);
            let obj = iris::wait_ready(&api, &name, READY_WITHIN).await;
            let status = iris::status(&obj);
            assert_eq!(
                status["endpoint"],
                format!("http://{name}.{ns}.svc.cluster.local:5001"),
                "status.endpoint"
            );
            assert!(
                status["readyReplicas"].as_i64().unwrap_or(0) >= 1,
                "{status}"
            );
            let services: Api<Service> = Api::namespaced(client.clone(), &ns);
            services.get(&name).await.expect("the model's Service");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn example_binary_becomes_ready() {
    example_becomes_ready("iris-binary.yaml", "iris", |_| {}).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn example_multiclass_becomes_ready() {
    example_becomes_ready("iris-multiclass.yaml", "iris-multiclass", |_| {}).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn example_configmap_becomes_ready() {
    // The ConfigMap the example's comment tells the user to make, from a trained artifact.
    example_becomes_ready("iris-configmap.yaml", "iris-artifact", |ns| {
        let artifact = serving::train_artifact_json(&serving::params_binary("virginica", 42));
        let path = std::env::temp_dir().join(format!("{ns}-model.json"));
        std::fs::write(&path, artifact).expect("write model.json");
        let from = format!("--from-file=model.json={}", path.display());
        kubectl::ok(&["create", "configmap", "iris-model", "-n", ns, &from]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn example_autoscaled_becomes_ready() {
    example_becomes_ready("iris-autoscaled.yaml", "iris-autoscaled", |_| {}).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn example_rate_autoscaled_becomes_ready() {
    example_becomes_ready("iris-rate-autoscaled.yaml", "iris-rate-autoscaled", |_| {}).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn example_scale_to_zero_becomes_ready() {
    example_becomes_ready("iris-scale-to-zero.yaml", "iris-scale-to-zero", |_| {}).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn example_nodeport_becomes_ready() {
    example_becomes_ready("iris-nodeport.yaml", "iris-nodeport", |_| {}).await;
}

/// Deploys an example, waits for Ready, and checks that every protocol answers for all 150
/// Iris rows exactly as the same model trained here does.
async fn predictions_match(
    file: &'static str,
    name: &'static str,
    params: iris_model::TrainingParams,
) {
    with_temp_ns(name, &[], move |client, ns| async move {
        kubectl::apply_file(&ns, &cluster::example(file));
        let obj = iris::wait_ready(&iris::api(&client, &ns), name, READY_WITHIN).await;
        let expected = serving::Expected::train(&params);
        assert_eq!(
            iris::digest(&obj).as_deref(),
            Some(expected.digest.as_str()),
            "status.model.digest"
        );

        let pf = e2e::portforward::PortForward::start(&ns, &format!("svc/{name}"), 5001);
        let url = pf.url();
        assert_eq!(
            serving::served_digest(&url).await,
            expected.digest,
            "digest in /metrics"
        );
        let rows = serving::iris_rows();
        let tutorial = serving::labels_via_predict_iris(&url, &rows).await;
        let kserve = serving::classes_via_kserve_v1(&url, name, &rows).await;
        let oip = serving::labels_via_oip_v2(&url, name, &rows).await;
        assert_eq!(tutorial, expected.labels, "/predict_iris");
        assert_eq!(kserve, expected.classes, "KServe v1 :predict");
        assert_eq!(oip, expected.labels, "OIP v2 infer");

        // The OIP clients users already run, unchanged, over REST and gRPC, through
        // `kubectl port-forward service/NAME` of both ports.
        let grpc = e2e::portforward::PortForward::start(&ns, &format!("svc/{name}"), 8081);
        let rest = format!("127.0.0.1:{}", pf.port);
        let grpc_addr = format!("127.0.0.1:{}", grpc.port);
        let params_for_clients = params.clone();
        let model_name = name.to_string();
        tokio::task::spawn_blocking(move || {
            e2e::clients::check_all(&rest, &grpc_addr, &model_name, &params_for_clients)
        })
        .await
        .expect("OIP clients check");

        // Accuracy on all 150 rows against the true labels, next to what status reports for
        // the held-out split.
        let reported = iris::status(&obj)["model"]["accuracy"]
            .as_f64()
            .expect("status.model.accuracy");
        let accuracy = expected.accuracy_of(&oip);
        eprintln!("{name}: accuracy on 150 rows {accuracy:.3}, reported held-out {reported:.3}");
        assert!(
            accuracy + 0.05 >= reported,
            "served accuracy {accuracy} far below reported {reported}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_model_answers_all_rows_on_every_protocol() {
    predictions_match(
        "iris-binary.yaml",
        "iris",
        serving::params_binary("setosa", 42),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn multiclass_model_answers_all_rows_on_every_protocol() {
    predictions_match(
        "iris-multiclass.yaml",
        "iris-multiclass",
        serving::params_multiclass(42),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn scale_to_three_then_roll_a_training_change_without_failed_requests() {
    with_temp_ns("rollout", &[], |client, ns| async move {
        kubectl::apply_file(&ns, &cluster::example("iris-binary.yaml"));
        let api = iris::api(&client, &ns);
        iris::wait_ready(&api, "iris", READY_WITHIN).await;

        kubectl::ok(&["scale", "-n", &ns, "irismodel/iris", "--replicas=3"]);
        let obj = iris::wait_for(&api, "iris", LONG, "3 ready replicas", |o| {
            iris::is_ready_now(o) && iris::status(o)["readyReplicas"] == 3
        })
        .await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let ready_pods = pods
            .list(&ListParams::default().labels("app.kubernetes.io/instance=iris"))
            .await
            .expect("pods")
            .items
            .iter()
            .filter(|p| serving::pod_is_ready(p))
            .count();
        assert_eq!(ready_pods, 3);
        let old_digest = iris::digest(&obj).expect("digest");

        // A client loop through the Service while the training change rolls the pods. It goes
        // through the API server's Service proxy, which picks a ready endpoint per request
        // (a `kubectl port-forward` is pinned to one pod and ends when that pod goes).
        let proxy = serving::ServiceProxy::new(client.clone(), &ns, "iris", "http");
        let looper = serving::ClientLoop::start(proxy.clone());

        kubectl::patch_model(&ns, "iris", r#"{"spec":{"model":{"training":{"seed":7}}}}"#);
        let expected = serving::Expected::train(&serving::params_binary("setosa", 7));
        assert_ne!(
            expected.digest, old_digest,
            "seed 7 must give another artifact"
        );
        let obj = iris::wait_for(
            &api,
            "iris",
            LONG,
            "Ready with the new digest and 3 replicas",
            |o| {
                iris::is_ready_now(o)
                    && iris::digest(o).as_deref() == Some(expected.digest.as_str())
                    && iris::status(o)["updatedReplicas"] == 3
                    && iris::status(o)["replicas"] == 3
            },
        )
        .await;
        assert_eq!(iris::status(&obj)["readyReplicas"], 3);

        // Every pod now serves the new model.
        let report = looper.stop_after_seeing(&expected.digest, LONG).await;
        eprintln!("client loop during the rollout: {report:?}");
        assert_eq!(
            report.failed, 0,
            "failed requests during the rollout: {report:?}"
        );
        assert!(report.ok >= 10, "the loop barely ran: {report:?}");
        let pf = e2e::portforward::PortForward::start(&ns, "svc/iris", 5001);
        assert_eq!(serving::served_digest(&pf.url()).await, expected.digest);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
#[allow(clippy::too_many_lines)] // one scenario on the cluster, told in order
async fn deleted_or_edited_children_are_restored_and_deleting_the_model_removes_them() {
    with_temp_ns("drift", &[], |client, ns| async move {
        kubectl::apply_file(&ns, &cluster::example("iris-binary.yaml"));
        let api = iris::api(&client, &ns);
        iris::wait_ready(&api, "iris", READY_WITHIN).await;
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let services: Api<Service> = Api::namespaced(client.clone(), &ns);

        // A deleted Deployment comes back (a new object, so a new uid).
        let old_uid = deployments
            .get("iris")
            .await
            .expect("deployment")
            .metadata
            .uid;
        deployments
            .delete("iris", &DeleteParams::foreground())
            .await
            .expect("delete deployment");
        let restored = wait_object(
            &deployments,
            "iris",
            LONG,
            "recreated",
            move |d: &Deployment| {
                d.metadata.uid != old_uid && d.metadata.deletion_timestamp.is_none()
            },
        )
        .await;
        assert_eq!(
            restored.metadata.labels.as_ref().unwrap()["app.kubernetes.io/managed-by"],
            "iris-operator"
        );

        // A hand-edited Deployment (another image) is put back.
        let image = container_image(&restored);
        kubectl::ok(&[
            "set",
            "image",
            "-n",
            &ns,
            "deployment/iris",
            "model-server=example.invalid/hacked:1",
        ]);
        wait_object(
            &deployments,
            "iris",
            LONG,
            "its image restored",
            move |d: &Deployment| container_image(d) == image,
        )
        .await;

        // A deleted Service comes back; a hand-edited selector is put back.
        services
            .delete("iris", &DeleteParams::default())
            .await
            .expect("delete service");
        let svc = wait_object(&services, "iris", LONG, "recreated", |s: &Service| {
            s.metadata.deletion_timestamp.is_none()
        })
        .await;
        let selector = svc.spec.and_then(|s| s.selector).expect("selector");
        kubectl::ok(&[
            "patch",
            "-n",
            &ns,
            "service/iris",
            "--type=merge",
            "-p",
            r#"{"spec":{"selector":{"app.kubernetes.io/instance":"somebody-else"}}}"#,
        ]);
        wait_object(
            &services,
            "iris",
            LONG,
            "its selector restored",
            move |s: &Service| s.spec.as_ref().and_then(|s| s.selector.as_ref()) == Some(&selector),
        )
        .await;
        iris::wait_ready(&api, "iris", LONG).await;

        // Deleting the IrisModel garbage-collects its children (owner references).
        api.delete("iris", &DeleteParams::background())
            .await
            .expect("delete irismodel");
        wait_gone(&deployments, "iris").await;
        wait_gone(&services, "iris").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_manifests_are_rejected_with_the_field_named() {
    with_temp_ns("validation", &[], |_client, ns| async move {
        let cases = [
            ("negative replicas", "replicas: -1\n  model: {source: {builtin: {}}}", "spec.replicas"),
            ("unknown task", "model: {task: regression, source: {builtin: {}}}", "spec.model.task"),
            (
                "positiveClass with multiclass",
                "model: {task: multiclass, positiveClass: setosa, source: {builtin: {}}}",
                "positiveClass",
            ),
            (
                "two model sources",
                "model: {source: {builtin: {}, file: /models/iris.json}}",
                "source",
            ),
            (
                "minReplicas > maxReplicas",
                "model: {source: {builtin: {}}}\n  autoscaling: {minReplicas: 4, maxReplicas: 2}",
                "minReplicas",
            ),
            (
                "scale to zero without a request-rate target",
                "model: {source: {builtin: {}}}\n  autoscaling: {minReplicas: 0, maxReplicas: 2}",
                "autoscaling.minReplicas 0 (scale to zero) needs autoscaling.targetRequestsPerSecond",
            ),
            (
                "idleSeconds below 10",
                "model: {source: {builtin: {}}}\n  autoscaling: {minReplicas: 0, maxReplicas: 2, targetRequestsPerSecond: 5, idleSeconds: 5}",
                "spec.autoscaling.idleSeconds",
            ),
            (
                "idleSeconds without minReplicas 0",
                "model: {source: {builtin: {}}}\n  autoscaling: {minReplicas: 1, maxReplicas: 2, targetRequestsPerSecond: 5, idleSeconds: 60}",
                "autoscaling.idleSeconds applies only with autoscaling.minReplicas 0",
            ),
            (
                "nodePort outside 30000-32767",
                "model: {source: {builtin: {}}}\n  service: {type: NodePort, nodePort: 80}",
                "spec.service.nodePort",
            ),
            (
                "grpcPort equal to port",
                "model: {source: {builtin: {}}}\n  port: 9000\n  grpcPort: 9000",
                "grpcPort",
            ),
        ];
        for (what, spec, field) in cases {
            let manifest = format!(
                "apiVersion: serving.iris.dev/v1alpha1\nkind: IrisModel\nmetadata: {{name: bad}}\nspec:\n  {spec}\n"
            );
            let err = kubectl::apply(&ns, &manifest)
                .expect_err(&format!("the API server accepted a manifest with {what}"));
            eprintln!("{what}: {}", err.trim());
            assert!(err.contains("is invalid"), "{what}: not a validation error: {err}");
            assert!(err.contains(field), "{what}: the message does not name {field}: {err}");
        }
        // Names the model's Service could not have (a DNS-1035 label of at most 63 characters).
        let too_long = format!("i{}", "r".repeat(69));
        for name in ["1iris", too_long.as_str()] {
            let manifest = format!(
                "apiVersion: serving.iris.dev/v1alpha1\nkind: IrisModel\nmetadata: {{name: {name}}}\nspec: {{}}\n"
            );
            let err = kubectl::apply(&ns, &manifest)
                .expect_err(&format!("the API server accepted the name {name}"));
            eprintln!("name {name}: {}", err.trim());
            assert!(err.contains("is invalid"), "{name}: not a validation error: {err}");
            assert!(err.contains("metadata.name"), "{name}: the message does not name metadata.name: {err}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_configmap_is_reported_then_recovered() {
    with_temp_ns("configmap", &[], |client, ns| async move {
        kubectl::apply_file(&ns, &cluster::example("iris-configmap.yaml"));
        let api = iris::api(&client, &ns);
        let obj = iris::wait_for(
            &api,
            "iris-artifact",
            LONG,
            "Ready=False reason ConfigMapNotFound",
            |o| iris::is_not_ready_because(o, "ConfigMapNotFound"),
        )
        .await;
        let message = iris::condition(&obj, "Ready").unwrap()["message"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(
            message.contains("iris-model"),
            "the message names the ConfigMap: {message}"
        );
        let warning = serving::wait_warning_event(&client, &ns, "iris-artifact", LONG).await;
        eprintln!("warning event: {warning}");

        // A ConfigMap whose artifact is corrupt: InvalidArtifact.
        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let mut cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "iris-model"},
            "data": {"model.json": "{\"schema_version\": 1, \"not\": \"a model\"}"}
        }))
        .unwrap();
        configmaps
            .create(&PostParams::default(), &cm)
            .await
            .expect("create configmap");
        iris::wait_for(
            &api,
            "iris-artifact",
            LONG,
            "Ready=False reason InvalidArtifact",
            |o| iris::is_not_ready_because(o, "InvalidArtifact"),
        )
        .await;

        // The real artifact: Ready, serving it.
        let artifact = serving::train_artifact_json(&serving::params_binary("virginica", 42));
        cm.data = Some([("model.json".to_string(), artifact)].into());
        configmaps
            .patch("iris-model", &PatchParams::default(), &Patch::Merge(&cm))
            .await
            .expect("fix configmap");
        let obj = iris::wait_ready(&api, "iris-artifact", LONG).await;
        let expected = serving::Expected::train(&serving::params_binary("virginica", 42));
        assert_eq!(
            iris::digest(&obj).as_deref(),
            Some(expected.digest.as_str())
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn models_run_under_pod_security_restricted_and_the_operator_cannot_read_secrets() {
    let restricted = [
        ("pod-security.kubernetes.io/enforce", "restricted"),
        ("pod-security.kubernetes.io/enforce-version", "latest"),
    ];
    with_temp_ns("restricted", &restricted, |client, ns| async move {
        kubectl::apply_file(&ns, &cluster::example("iris-multiclass.yaml"));
        iris::wait_ready(&iris::api(&client, &ns), "iris-multiclass", READY_WITHIN).await;

        let sa = format!("system:serviceaccount:{OPERATOR_NAMESPACE}:{RELEASE}");
        for verb in ["get", "list", "watch"] {
            let out = kubectl::run(
                &[
                    "auth",
                    "can-i",
                    verb,
                    "secrets",
                    "--all-namespaces",
                    "--as",
                    &sa,
                ],
                None,
            );
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                "no",
                "the operator can {verb} secrets"
            );
        }
        let out = kubectl::run(
            &[
                "auth",
                "can-i",
                "watch",
                "irismodels.serving.iris.dev",
                "--all-namespaces",
                "--as",
                &sa,
            ],
            None,
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "yes",
            "the operator must watch irismodels"
        );
    })
    .await;
}

/// Waits until the object `name` exists and satisfies `cond`.
async fn wait_object<K>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
    what: &str,
    cond: impl Fn(&K) -> bool,
) -> K
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + serde::Serialize
        + Send
        + Sync
        + 'static,
{
    cluster::wait_until(api, name, timeout, what, move |o| o.is_some_and(&cond))
        .await
        .unwrap_or_else(|| panic!("{name} disappeared while waiting until {what}"))
}

/// Waits until the object `name` no longer exists (garbage-collected).
async fn wait_gone<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + serde::Serialize
        + Send
        + Sync
        + 'static,
{
    cluster::wait_until(api, name, LONG, "garbage-collected", |o: Option<&K>| {
        o.is_none()
    })
    .await;
}

fn container_image(d: &Deployment) -> Option<String> {
    d.spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .first()?
        .image
        .clone()
}
