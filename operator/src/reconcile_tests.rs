//! Reconcile against a mocked API server: which requests a reconcile sends, and what it writes.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
use kube::runtime::controller::Action;
use serde_json::{json, Value};

use crate::artifact::BuiltinCache;
use crate::cache::testing::holding;
use crate::context::{Context, Settings};
use crate::crd::{AutoscalingSpec, IrisModel, IrisModelStatus, Task};
use crate::fixtures::{configmap_model, model, rolled_out, stored, to_json, UID};
use crate::mock::{context, context_at, finished, Expect, Reply, NOW};
use crate::reconcile::compare::stamp;
use crate::reconcile::conditions::at;
use crate::reconcile::desired::{deployment, hpa, pdb, service};
use crate::reconcile::resolve::resolve;
use crate::reconcile::{error_policy, reconcile, REQUEUE_NOT_READY, REQUEUE_READY};

const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/testns/deployments/iris";
const SERVICE: &str = "/api/v1/namespaces/testns/services/iris";
const HPA: &str = "/apis/autoscaling/v2/namespaces/testns/horizontalpodautoscalers/iris";
const PDB: &str = "/apis/policy/v1/namespaces/testns/poddisruptionbudgets/iris";
const PODS: &str = "/api/v1/namespaces/testns/pods";
const STATUS: &str = "/apis/serving.iris.dev/v1alpha1/namespaces/testns/irismodels/iris/status";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/testns/events";
const CONFIGMAP: &str = "/api/v1/namespaces/testns/configmaps/iris-model";
const POD_EVENTS: &str = "/api/v1/namespaces/testns/events";

/// The list of a pod's Warning Events: by field selector, bounded.
fn pod_events(pod: &str, items: Value) -> Expect {
    let selector = format!(
        "fieldSelector=involvedObject.kind%3DPod%2CinvolvedObject.name%3D{pod}%2Ctype%3DWarning"
    );
    // Leaked: the expectation wants a static string, and a test leaks a few bytes at most.
    let selector: &'static str = Box::leak(selector.into_boxed_str());
    Expect {
        query: vec![selector, "limit=50"],
        ..Expect::get(
            POD_EVENTS,
            Reply::Json(
                json!({"apiVersion": "v1", "kind": "EventList", "metadata": {}, "items": items}),
            ),
        )
    }
}

/// The image ID the kubelet reports for the model-server pods of the tests.
const IMAGE_ID: &str = "docker.io/iris-operator/model-server@sha256:\
    aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// The pod list read once after a complete rollout, while status.image has no image ID yet:
/// one ready pod of the Deployment's current template.
fn running_pods(deployment: &Deployment) -> Expect {
    let hash = crate::reconcile::progress::template_hash(deployment).expect("a template hash");
    Expect::get(
        PODS,
        Reply::Json(
            json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [{
                "metadata": {"name": "iris-1", "namespace": "testns",
                    "annotations": {crate::names::MODEL_HASH_ANNOTATION: hash}},
                "status": {"phase": "Running",
                    "conditions": [{"type": "Ready", "status": "True"}],
                    "containerStatuses": [{"name": "model-server", "ready": true, "restartCount": 0,
                        "image": "iris-operator/model-server:0.1.0", "imageID": IMAGE_ID,
                        "state": {"running": {}}}]}
            }]}),
        ),
    )
}

fn empty_pod_list() -> Reply {
    Reply::Json(json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []}))
}

/// The reply to an apply that created or changed an object: the applied object with the
/// identity and generation the API server adds, no status yet.
fn applied(generation: i64) -> Reply {
    Reply::EchoWith(Box::new(move |mut body| {
        body["metadata"]["uid"] = json!("uid-child");
        body["metadata"]["resourceVersion"] = json!("2");
        body["metadata"]["generation"] = json!(generation);
        body
    }))
}

/// The reply to a status patch: the IrisModel with the status as applied.
fn status_written() -> Reply {
    Reply::EchoWith(Box::new(|body| {
        json!({
            "apiVersion": "serving.iris.dev/v1alpha1",
            "kind": "IrisModel",
            "metadata": {"name": "iris", "namespace": "testns", "uid": UID},
            "spec": {},
            "status": body["status"],
        })
    }))
}

/// The children of `model` as the cluster holds them after a complete rollout.
fn children(model: &IrisModel) -> (Deployment, Service) {
    let resolved =
        resolve(model, &Settings::default(), None, &BuiltinCache::default()).expect("resolves");
    let deployment = rolled_out(&stamp(deployment::build(&resolved)).expect("stamps"), 1);
    let service = stored(&stamp(service::build(&resolved)).expect("stamps"), 1);
    (deployment, service)
}

fn status_of(patch: &Value) -> IrisModelStatus {
    serde_json::from_value(patch["status"].clone()).expect("a status patch")
}

fn condition<'a>(status: &'a IrisModelStatus, type_: &str) -> (&'a str, &'a str, Option<i64>) {
    let c = condition_of(status, type_);
    (c.status.as_str(), c.reason.as_str(), c.observed_generation)
}

/// The message of a condition.
fn message<'a>(status: &'a IrisModelStatus, type_: &str) -> &'a str {
    &condition_of(status, type_).message
}

fn condition_of<'a>(
    status: &'a IrisModelStatus,
    type_: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition"))
}

fn with_status(mut model: IrisModel, status: IrisModelStatus) -> IrisModel {
    model.status = Some(status);
    model
}

#[tokio::test]
async fn first_reconcile_creates_children_and_status() {
    let (ctx, server) = context();
    let model = model("iris", 1);
    let server = server.run(vec![
        // The children the watch caches lack are looked up before they are created, from
        // the API server's watch cache.
        Expect {
            query: vec!["resourceVersion=0"],
            ..Expect::get(DEPLOYMENT, Reply::NotFound)
        },
        Expect::get(SERVICE, Reply::NotFound),
        // No HPA or PDB is wanted: the (synced, empty) caches are enough, no lookup.
        Expect::apply(DEPLOYMENT, applied(1)).checking(|body| {
            assert_eq!(body["spec"]["replicas"], json!(1));
            assert_eq!(body["metadata"]["ownerReferences"][0]["uid"], json!(UID));
            assert_eq!(
                body["metadata"]["ownerReferences"][0]["controller"],
                json!(true)
            );
            let container = &body["spec"]["template"]["spec"]["containers"][0];
            assert_eq!(
                container["image"],
                json!("iris-operator/model-server:0.1.0")
            );
        }),
        Expect::apply(SERVICE, applied(1)).checking(|body| {
            assert_eq!(body["spec"]["type"], json!("ClusterIP"));
            assert_eq!(body["spec"]["ports"][0]["port"], json!(5001));
        }),
        // No pod is listed: no Deployment was observed, so no pod of it can run yet.
        Expect::apply(STATUS, status_written()).checking(|body| {
            let status = status_of(body);
            assert_eq!(status.observed_generation, Some(1));
            assert_eq!(
                condition(&status, "Ready"),
                ("False", "RollingOut", Some(1))
            );
            assert_eq!(
                condition(&status, "Progressing"),
                ("True", "RollingOut", Some(1))
            );
            assert_eq!(
                condition(&status, "Degraded"),
                ("False", "AsExpected", Some(1))
            );
            assert_eq!(
                status.endpoint.as_deref(),
                Some("http://iris.testns.svc.cluster.local:5001")
            );
            assert_eq!(
                status.selector.as_deref(),
                Some("app.kubernetes.io/instance=iris,app.kubernetes.io/name=model-server")
            );
            let served = status.model.expect("model status");
            let expected =
                iris_model::train(&iris_model::TrainingParams::default()).expect("trains");
            assert_eq!(served.digest.as_deref(), Some(expected.digest()));
            assert_eq!(served.source, "builtin");
        }),
    ]);
    let action = reconcile(Arc::new(model), ctx.clone())
        .await
        .expect("reconciles");
    finished(server).await;
    assert_eq!(action, Action::requeue(REQUEUE_NOT_READY));
    assert_eq!(ctx.metrics.writes_total(), 3);
}

#[tokio::test]
async fn unchanged_reconcile_writes_nothing() {
    let model = model("iris", 1);
    let (deployment, service) = children(&model);

    // Once Ready is observed: the status and a Normal event are written.
    let (ctx, server) = context();
    ctx.install_children(holding(
        vec![deployment.clone()],
        vec![service.clone()],
        vec![],
        vec![],
    ));
    let server = server.run(vec![
        running_pods(&deployment),
        Expect::apply(STATUS, status_written()),
        Expect::post(EVENTS, Reply::Echo).checking(|body| {
            assert_eq!(body["type"], json!("Normal"));
            assert_eq!(body["reason"], json!("Ready"));
        }),
    ]);
    let action = reconcile(Arc::new(model.clone()), ctx.clone())
        .await
        .expect("reconciles");
    let bodies = finished(server).await;
    assert_eq!(action, Action::requeue(REQUEUE_READY));
    let status = status_of(&bodies[1]);
    // The pods were read once, for the digest they run.
    let image = status.image.clone().expect("status.image");
    assert_eq!(image.reference, "iris-operator/model-server:0.1.0");
    assert_eq!(image.image_id.as_deref(), Some(IMAGE_ID));
    assert_eq!(
        image.digest.as_deref(),
        IMAGE_ID.split_once('@').map(|(_, d)| d)
    );
    assert_eq!(condition(&status, "Ready"), ("True", "Ready", Some(1)));
    assert_eq!(
        condition(&status, "Progressing"),
        ("False", "RolloutComplete", Some(1))
    );

    // The next reconcile, with that status stored: reads only.
    let (ctx, server) = context();
    ctx.install_children(holding(
        vec![deployment.clone()],
        vec![service.clone()],
        vec![],
        vec![],
    ));
    let server = server.run(vec![]);
    let action = reconcile(Arc::new(with_status(model, status)), ctx.clone())
        .await
        .expect("reconciles");
    finished(server).await;
    assert_eq!(action, Action::requeue(REQUEUE_READY));
    assert_eq!(ctx.metrics.writes_total(), 0);
}

#[tokio::test]
async fn a_missing_configmap_gives_ready_false_an_event_and_a_backoff() {
    let (ctx, server) = context();
    let model = configmap_model("iris", "iris-model", Task::Binary);
    let server = server.run(vec![
        // The children come from the watch caches; only the ConfigMap is read.
        Expect::get(CONFIGMAP, Reply::NotFound),
        Expect::apply(STATUS, status_written()).checking(|body| {
            let status = status_of(body);
            assert_eq!(status.observed_generation, Some(1));
            assert_eq!(
                condition(&status, "Ready"),
                ("False", "ConfigMapNotFound", Some(1))
            );
            assert_eq!(
                condition(&status, "Degraded"),
                ("True", "ConfigMapNotFound", Some(1))
            );
            let message = &status.conditions[0].message;
            assert!(message.contains("testns/iris-model"), "{message}");
        }),
        Expect::post(EVENTS, Reply::Echo).checking(|body| {
            assert_eq!(body["type"], json!("Warning"));
            assert_eq!(body["reason"], json!("ConfigMapNotFound"));
            assert_eq!(body["regarding"]["name"], json!("iris"));
            assert_eq!(body["regarding"]["kind"], json!("IrisModel"));
        }),
    ]);
    let model = Arc::new(model);
    let err = reconcile(model.clone(), ctx.clone())
        .await
        .expect_err("a missing ConfigMap is an error");
    finished(server).await;
    assert_eq!(err.category(), "ConfigMapNotFound");

    // Backoff doubles per failure, and the failure is counted by category.
    assert_eq!(
        error_policy(model.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(2))
    );
    assert_eq!(
        error_policy(model.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(4))
    );
    assert_eq!(ctx.metrics.errors_of("ConfigMapNotFound"), 2);
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // a scenario reads as one list of requests
async fn a_changed_spec_rolls_out_and_bumps_observed_generation() {
    let old = model("iris", 1);
    let (deployment, service) = children(&old);
    let (ctx, server) = context_at(NOW + 60);
    let ready_since = {
        // Status as written for generation 1.
        let (ctx, server) = context_at(NOW);
        ctx.install_children(holding(
            vec![deployment.clone()],
            vec![service.clone()],
            vec![],
            vec![],
        ));
        let server = server.run(vec![
            running_pods(&deployment),
            Expect::apply(STATUS, status_written()),
            Expect::post(EVENTS, Reply::Echo),
        ]);
        reconcile(Arc::new(old.clone()), ctx)
            .await
            .expect("reconciles");
        status_of(&finished(server).await[1])
    };

    let mut changed = with_status(old, ready_since.clone());
    changed.metadata.generation = Some(2);
    changed.spec.replicas = 2;
    let resolved = resolve(
        &changed,
        &Settings::default(),
        None,
        &BuiltinCache::default(),
    )
    .expect("resolves");
    let expected_pdb = stamp(pdb::build(&resolved).expect("a PDB for 2 replicas")).expect("stamps");
    ctx.install_children(holding(
        vec![deployment.clone()],
        vec![service.clone()],
        vec![],
        vec![],
    ));
    let server = server.run(vec![
        // A PDB is now wanted and the cache has none: looked up once before it is created.
        Expect::get(PDB, Reply::NotFound),
        Expect::apply(
            DEPLOYMENT,
            Reply::EchoWith(Box::new(|mut body| {
                // The Deployment controller has not seen generation 2 yet.
                body["metadata"]["generation"] = json!(2);
                body["status"] = json!({"observedGeneration": 1, "replicas": 1,
                    "readyReplicas": 1, "updatedReplicas": 1, "availableReplicas": 1});
                body
            })),
        )
        .checking(|body| assert_eq!(body["spec"]["replicas"], json!(2))),
        Expect::apply(PDB, applied(1)).checking(move |body| {
            assert_eq!(body, &to_json(&expected_pdb));
        }),
        // No pod list: the Deployment was complete when observed; the rollout the apply starts
        // is explained by the reconcile its watch event brings.
        Expect::apply(STATUS, status_written()).checking(|body| {
            let status = status_of(body);
            assert_eq!(status.observed_generation, Some(2));
            assert_eq!(
                condition(&status, "Ready"),
                ("False", "RollingOut", Some(2))
            );
            assert_eq!(
                condition(&status, "Progressing"),
                ("True", "RollingOut", Some(2))
            );
        }),
    ]);
    let action = reconcile(Arc::new(changed), ctx.clone())
        .await
        .expect("reconciles");
    let bodies = finished(server).await;
    assert_eq!(action, Action::requeue(REQUEUE_NOT_READY));
    let status = status_of(&bodies[3]);
    let ready = |status: &IrisModelStatus| {
        let c = status.conditions.iter().find(|c| c.type_ == "Ready");
        c.expect("Ready").last_transition_time.clone()
    };
    assert_eq!(ready(&ready_since), at(NOW), "Ready turned True then");
    assert_eq!(
        ready(&status),
        at(NOW + 60),
        "Ready flipped, so its time moved"
    );
}

#[tokio::test]
async fn crash_looping_pods_make_it_degraded_with_a_warning() {
    let model = model("iris", 1);
    let (deployment, service) = children(&model);
    let mut starting = deployment.clone();
    starting.status = Some(
        serde_json::from_value(json!({
            "observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "unavailableReplicas": 1
        }))
        .expect("status"),
    );
    let hash = crate::reconcile::progress::template_hash(&deployment)
        .expect("hash")
        .to_string();
    let pods = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [{
        "metadata": {"name": "iris-abc", "annotations": {"serving.iris.dev/model-hash": hash}},
        "status": {"containerStatuses": [{
            "name": "model-server", "ready": false, "restartCount": 3, "image": "x", "imageID": "",
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
            "lastState": {"terminated": {"exitCode": 2, "message": "bad flag"}}
        }]}
    }]});
    let (ctx, server) = context();
    ctx.install_children(holding(
        vec![starting.clone()],
        vec![service.clone()],
        vec![],
        vec![],
    ));
    let server = server.run(vec![
        Expect::get(PODS, Reply::Json(pods)),
        pod_events("iris-abc", json!([])),
        Expect::apply(STATUS, status_written()).checking(|body| {
            let status = status_of(body);
            assert_eq!(condition(&status, "Ready"), ("False", "CrashLoop", Some(1)));
            assert_eq!(
                condition(&status, "Degraded"),
                ("True", "CrashLoop", Some(1))
            );
            let message = &status.conditions[2].message;
            assert!(
                message.contains("iris-abc")
                    && message.contains("exited with code 2")
                    && message.contains("bad flag")
                    && !message.contains("back-off"),
                "{message}"
            );
        }),
        Expect::post(EVENTS, Reply::Echo).checking(|body| {
            assert_eq!(body["type"], json!("Warning"));
            assert_eq!(body["reason"], json!("CrashLoop"));
        }),
    ]);
    let action = reconcile(Arc::new(model), ctx).await.expect("reconciles");
    finished(server).await;
    assert_eq!(action, Action::requeue(REQUEUE_NOT_READY));
}

/// A model whose one pod of the current version is stuck as `pod_status` says.
fn stuck(pod_status: Value) -> (IrisModel, Deployment, Service, Value) {
    let model = model("iris", 1);
    let (deployment, service) = children(&model);
    let mut starting = deployment.clone();
    starting.status = Some(
        serde_json::from_value(json!({
            "observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "unavailableReplicas": 1
        }))
        .expect("status"),
    );
    let hash = crate::reconcile::progress::template_hash(&deployment)
        .expect("hash")
        .to_string();
    let pods = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [{
        "metadata": {"name": "iris-abc", "annotations": {"serving.iris.dev/model-hash": hash}},
        "status": pod_status
    }]});
    (model, starting, service, pods)
}

#[tokio::test]
async fn a_pod_without_a_sandbox_is_degraded_with_the_events_message_written_once() {
    let (model, starting, service, pods) = stuck(json!({"phase": "Pending",
        "containerStatuses": [{"name": "model-server", "ready": false, "restartCount": 0,
            "image": "x", "imageID": "", "state": {"waiting": {"reason": "ContainerCreating"}}}]}));
    let sandbox = |count: i32| {
        json!([{"metadata": {"name": "iris-abc.1"}, "type": "Warning",
            "reason": "FailedCreatePodSandBox", "count": count,
            "involvedObject": {"kind": "Pod", "name": "iris-abc"},
            "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:01:00Z",
            "message": "Failed to create pod sandbox: runc create failed: container init was OOM-killed (memory limit too low?): unknown"}])
    };
    let (ctx, server) = context();
    ctx.install_children(holding(
        vec![starting.clone()],
        vec![service.clone()],
        vec![],
        vec![],
    ));
    let server = server.run(vec![
        Expect::get(PODS, Reply::Json(pods.clone())),
        pod_events("iris-abc", sandbox(3)),
        Expect::apply(STATUS, status_written()).checking(|body| {
            let status = status_of(body);
            for type_ in ["Ready", "Degraded"] {
                let (_, reason, _) = condition(&status, type_);
                assert_eq!(reason, "SandboxFailed", "{type_}");
            }
            assert_eq!(condition(&status, "Degraded").0, "True");
            let message = &status.conditions[2].message;
            assert!(
                message.contains("container init was OOM-killed"),
                "{message}"
            );
        }),
        Expect::post(EVENTS, Reply::Echo).checking(|body| {
            assert_eq!(body["type"], json!("Warning"));
            assert_eq!(body["reason"], json!("SandboxFailed"));
        }),
    ]);
    reconcile(Arc::new(model.clone()), ctx)
        .await
        .expect("reconciles");
    let status = status_of(&finished(server).await[2]);

    // Kubernetes retries and counts: the cause is the same, so nothing is written.
    let (ctx, server) = context();
    ctx.install_children(holding(
        vec![starting.clone()],
        vec![service.clone()],
        vec![],
        vec![],
    ));
    let server = server.run(vec![
        Expect::get(PODS, Reply::Json(pods)),
        pod_events("iris-abc", sandbox(9)),
    ]);
    reconcile(Arc::new(with_status(model, status)), ctx.clone())
        .await
        .expect("reconciles");
    finished(server).await;
    assert_eq!(ctx.metrics.writes_total(), 0);
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // a table of failures and their causes
async fn each_pod_failure_becomes_its_reason_with_the_cause() {
    let waiting = |reason: &str, last: Value| {
        json!({"phase": "Running", "containerStatuses": [{"name": "model-server", "ready": false,
            "restartCount": 2, "image": "nope:1", "imageID": "",
            "state": {"waiting": {"reason": reason, "message": "back-off 20s"}}, "lastState": last}]})
    };
    let event = |reason: &str, message: &str| {
        json!([{"metadata": {"name": "e1"}, "type": "Warning", "reason": reason, "count": 4,
            "involvedObject": {"kind": "Pod", "name": "iris-abc"},
            "firstTimestamp": "2026-01-01T00:00:00Z", "message": message}])
    };
    let pending = json!({"phase": "Pending"});
    let cases = [
        (
            "OOMKilled",
            waiting(
                "CrashLoopBackOff",
                json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}),
            ),
            json!([]),
            "exited with code 137 (OOMKilled)",
        ),
        (
            "CrashLoop",
            waiting(
                "CrashLoopBackOff",
                json!({"terminated": {"exitCode": 1, "reason": "Error",
                "message": "2026-01-01T00:00:00Z ERROR model_server: cannot read /models/x.json"}}),
            ),
            json!([]),
            "ERROR model_server: cannot read /models/x.json",
        ),
        (
            "ImagePullFailed",
            waiting("ImagePullBackOff", json!({})),
            event("Failed", "Failed to pull image \"nope:1\": not found"),
            "Failed to pull image \"nope:1\": not found",
        ),
        (
            "MountFailed",
            pending.clone(),
            event(
                "FailedMount",
                "MountVolume.SetUp failed for volume \"model\" : configmap \"cm\" not found",
            ),
            "configmap \"cm\" not found",
        ),
        (
            "SecretNotFound",
            pending.clone(),
            event(
                "FailedMount",
                "MountVolume.SetUp failed for volume \"tls\" : secret \"iris-tls\" not found",
            ),
            "Secret iris-tls named in spec.tls.secretName does not exist",
        ),
        (
            "Evicted",
            json!({"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."}),
            json!([]),
            "low on resource: memory",
        ),
    ];
    for (expected, pod_status, events, cause) in cases {
        let (model, starting, service, pods) = stuck(pod_status);
        let evicted = expected == "Evicted";
        let (ctx, server) = context();
        ctx.install_children(holding(
            vec![starting.clone()],
            vec![service.clone()],
            vec![],
            vec![],
        ));
        let mut scenario = vec![Expect::get(PODS, Reply::Json(pods))];
        if !evicted {
            // An evicted pod is done: its status says all, no Events are read.
            scenario.push(pod_events("iris-abc", events));
        }
        scenario.push(
            Expect::apply(STATUS, status_written()).checking(move |body| {
                let status = status_of(body);
                assert_eq!(condition(&status, "Ready").1, expected);
                assert_eq!(condition(&status, "Degraded"), ("True", expected, Some(1)));
                let message = &status.conditions[2].message;
                assert!(message.contains(cause), "{expected}: {message}");
                assert!(!message.contains("back-off"), "{expected}: {message}");
            }),
        );
        scenario.push(Expect::post(EVENTS, Reply::Echo).checking(move |body| {
            assert_eq!(body["type"], json!("Warning"));
            assert_eq!(body["reason"], json!(expected));
            let note = body["note"].as_str().or(body["message"].as_str());
            assert!(
                note.is_some_and(|n| n.contains(cause)),
                "{expected}: {body}"
            );
        }));
        let server = server.run(scenario);
        reconcile(Arc::new(model), ctx).await.expect("reconciles");
        finished(server).await;
    }
}

#[tokio::test]
async fn drift_is_corrected_and_stale_children_are_deleted() {
    let model = model("iris", 1);
    let (deployment, mut service) = children(&model);
    // Someone pointed the Service elsewhere, and a PDB is left from when replicas was 2.
    if let Some(spec) = service.spec.as_mut() {
        spec.selector = Some([("app".to_string(), "other".to_string())].into());
    }
    let mut two = model.clone();
    two.spec.replicas = 2;
    let resolved_two =
        resolve(&two, &Settings::default(), None, &BuiltinCache::default()).expect("resolves");
    let old_pdb: PodDisruptionBudget = stored(
        &stamp(pdb::build(&resolved_two).expect("pdb")).expect("stamps"),
        1,
    );

    let (ctx, server) = context();
    ctx.install_children(holding(
        vec![deployment.clone()],
        vec![service.clone()],
        vec![],
        vec![old_pdb.clone()],
    ));
    let server = server.run(vec![
        // Every read before any write: the pods (status.image does not know them yet).
        running_pods(&deployment),
        Expect::apply(SERVICE, applied(1)).checking(|body| {
            assert_eq!(
                body["spec"]["selector"],
                json!({"app.kubernetes.io/instance": "iris", "app.kubernetes.io/name": "model-server"})
            );
        }),
        Expect::delete(PDB).checking(|body| {
            assert_eq!(body["preconditions"]["uid"], json!("uid-iris"));
        }),
        Expect::apply(STATUS, status_written()),
        Expect::post(EVENTS, Reply::Echo),
    ]);
    reconcile(Arc::new(model), ctx.clone())
        .await
        .expect("reconciles");
    finished(server).await;
}

#[tokio::test]
async fn turning_on_autoscaling_hands_replicas_to_the_autoscaler() {
    let model = model("iris", 1);
    let (mut deployment, service) = children(&model);
    deployment.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
        manager: Some("iris-operator".into()),
        operation: Some("Apply".into()),
        fields_type: Some("FieldsV1".into()),
        fields_v1: Some(FieldsV1(json!({"f:spec": {"f:replicas": {}}}))),
        ..ManagedFieldsEntry::default()
    }]);
    let mut scaled = model.clone();
    scaled.metadata.generation = Some(2);
    scaled.spec.autoscaling = Some(AutoscalingSpec {
        min_replicas: 1,
        max_replicas: 3,
        target_cpu_utilization_percentage: 70,
        scale_down_stabilization_seconds: None,
        idle_seconds: None,
        target_requests_per_second: None,
    });

    let (ctx, server) = context();
    ctx.install_children(holding(
        vec![deployment.clone()],
        vec![service.clone()],
        vec![],
        vec![],
    ));
    let server = server.run(vec![
        Expect::get(HPA, Reply::NotFound),
        Expect::get(PODS, empty_pod_list()),
        Expect {
            query: vec!["fieldManager=iris-operator-handoff", "force=true"],
            ..Expect::apply(DEPLOYMENT, applied(1))
        }
        .checking(|body| assert_eq!(body["spec"], json!({"replicas": 1}))),
        Expect::apply(DEPLOYMENT, applied(1)).checking(|body| {
            assert!(
                body["spec"].get("replicas").is_none(),
                "the autoscaler owns replicas"
            );
        }),
        Expect::apply(HPA, applied(1)).checking(|body| {
            assert_eq!(body["spec"]["maxReplicas"], json!(3));
        }),
        Expect::apply(STATUS, status_written()),
    ]);
    reconcile(Arc::new(scaled), ctx).await.expect("reconciles");
    finished(server).await;
}

/// An autoscaled model's children as the cluster holds them, the HPA with `hpa_status`.
fn autoscaled_children(
    model: &IrisModel,
    hpa_status: Value,
) -> (Deployment, Service, HorizontalPodAutoscaler) {
    let (deployment, service) = children(model);
    let resolved =
        resolve(model, &Settings::default(), None, &BuiltinCache::default()).expect("resolves");
    let mut hpa = stored(
        &stamp(hpa::build(&resolved).expect("an HPA")).expect("stamps"),
        1,
    );
    hpa.status = Some(serde_json::from_value(hpa_status).expect("an HPA status"));
    (deployment, service, hpa)
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // a scenario reads as one list of requests
async fn an_autoscaler_that_cannot_act_is_in_the_status_and_an_event_and_so_is_its_recovery() {
    let mut model = model("iris", 1);
    model.spec.autoscaling = Some(AutoscalingSpec {
        min_replicas: 1,
        max_replicas: 3,
        target_cpu_utilization_percentage: 70,
        scale_down_stabilization_seconds: Some(30),
        idle_seconds: None,
        target_requests_per_second: None,
    });
    let no_metrics = json!({
        "currentReplicas": 1, "desiredReplicas": 0,
        "conditions": [
            {"type": "AbleToScale", "status": "True", "reason": "SucceededGetScale"},
            {"type": "ScalingActive", "status": "False", "reason": "FailedGetResourceMetric",
             "message": "the HPA was unable to compute the replica count: failed to get cpu utilization: unable to get metrics for resource cpu: unable to fetch metrics from resource metrics API: the server could not find the requested resource (get pods.metrics.k8s.io)"}
        ]
    });
    let (deployment, service, hpa) = autoscaled_children(&model, no_metrics);
    let (ctx, server) = context();
    ctx.install_children(holding(
        vec![deployment.clone()],
        vec![service.clone()],
        vec![hpa],
        vec![],
    ));
    // The children are as desired: only the status and the Events are written (after the one
    // pod read that finds the running image's digest).
    let server = server.run(vec![
        running_pods(&deployment),
        Expect::apply(STATUS, status_written()),
        Expect::post(EVENTS, Reply::Echo).checking(|body| {
            assert_eq!(body["reason"], json!("Ready"));
        }),
        Expect::post(EVENTS, Reply::Echo).checking(|body| {
            assert_eq!(body["type"], json!("Warning"));
            assert_eq!(body["reason"], json!("FailedGetResourceMetric"));
            let note = body["note"].as_str().unwrap_or_default();
            assert!(note.contains("cannot act"), "{note}");
            assert!(note.contains("pods.metrics.k8s.io"), "{note}");
        }),
    ]);
    reconcile(Arc::new(model.clone()), ctx.clone())
        .await
        .expect("reconciles");
    let bodies = finished(server).await;
    let status = status_of(&bodies[1]);
    // Ready is about the pods, which serve; Autoscaling says the count will not move.
    assert_eq!(condition(&status, "Ready"), ("True", "Ready", Some(1)));
    assert_eq!(
        condition(&status, "Autoscaling"),
        ("False", "FailedGetResourceMetric", Some(1))
    );
    assert_eq!(status.replicas, 1);

    // The metrics API is back and the HPA scaled to 2: the status follows, and says so once.
    let active = json!({
        "currentReplicas": 2, "desiredReplicas": 2,
        "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu",
            "current": {"averageUtilization": 64}}}],
        "conditions": [
            {"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale"},
            {"type": "ScalingActive", "status": "True", "reason": "ValidMetricFound"},
            {"type": "ScalingLimited", "status": "False", "reason": "DesiredWithinRange"}
        ]
    });
    let (_, _, hpa) = autoscaled_children(&model, active);
    let mut scaled = deployment.clone();
    if let Some(s) = scaled.status.as_mut() {
        s.replicas = Some(2);
        s.ready_replicas = Some(2);
        s.available_replicas = Some(2);
        s.updated_replicas = Some(2);
    }
    if let Some(s) = scaled.spec.as_mut() {
        s.replicas = Some(2);
    }
    let (ctx, server) = context();
    ctx.install_children(holding(vec![scaled], vec![service], vec![hpa], vec![]));
    let server = server.run(vec![
        Expect::apply(STATUS, status_written()).checking(|body| {
            let status = status_of(body);
            assert_eq!(status.replicas, 2);
            let autoscaling = status
                .conditions
                .iter()
                .find(|c| c.type_ == "Autoscaling")
                .expect("an Autoscaling condition");
            assert_eq!(
                (autoscaling.status.as_str(), autoscaling.reason.as_str()),
                ("True", "ScalingActive")
            );
            assert_eq!(
                autoscaling.message,
                "cpu 64% of the 70% target, 2 replicas (desired 2, between 1 and 3)"
            );
        }),
        Expect::post(EVENTS, Reply::Echo).checking(|body| {
            assert_eq!(body["type"], json!("Normal"));
            assert_eq!(body["reason"], json!("AutoscalingActive"));
        }),
    ]);
    reconcile(Arc::new(with_status(model, status)), ctx)
        .await
        .expect("reconciles");
    finished(server).await;
}

#[tokio::test]
async fn a_foreign_object_with_the_childs_name_is_not_taken_over() {
    let model = model("iris", 1);
    let (mut deployment, _) = children(&model);
    // Someone's own Deployment: no owner, none of the operator's labels, so the watch cache
    // does not hold it; the lookup before creating the child finds it.
    deployment.metadata.owner_references = None;
    deployment.metadata.labels = None;
    let (ctx, server) = context();
    let server = server.run(vec![
        Expect::get(DEPLOYMENT, Reply::Json(to_json(&deployment))),
        Expect::get(SERVICE, Reply::NotFound),
        Expect::apply(STATUS, status_written()).checking(|body| {
            let status = status_of(body);
            assert_eq!(
                condition(&status, "Ready"),
                ("False", "ResourceConflict", Some(1))
            );
        }),
        Expect::post(EVENTS, Reply::Echo),
    ]);
    let err = reconcile(Arc::new(model), ctx).await.expect_err("conflict");
    finished(server).await;
    assert_eq!(err.category(), "ResourceConflict");
}

#[tokio::test]
async fn a_model_being_deleted_is_left_to_garbage_collection() {
    let mut model = model("iris", 1);
    model.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    let (ctx, server) = context();
    let server = server.run(vec![]);
    let action = reconcile(Arc::new(model), ctx).await.expect("reconciles");
    finished(server).await;
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn a_child_the_api_server_refuses_is_reported() {
    let model = model("iris", 1);
    let (deployment, _) = children(&model);
    let (ctx, server) = context();
    ctx.install_children(holding(vec![deployment.clone()], vec![], vec![], vec![]));
    let server = server.run(vec![
        Expect::get(SERVICE, Reply::NotFound),
        Expect::get(PODS, empty_pod_list()),
        Expect::apply(
            SERVICE,
            Reply::Failure(
                500,
                "InternalError",
                "Internal error occurred: failed to allocate a serviceIP: range is full",
            ),
        ),
        Expect::apply(STATUS, status_written()).checking(|body| {
            let status = status_of(body);
            assert_eq!(
                condition(&status, "Ready"),
                ("False", "ApplyFailed", Some(1))
            );
            let message = &status.conditions[0].message;
            assert!(
                message.contains("Service") && message.contains("range is full"),
                "{message}"
            );
        }),
        Expect::post(EVENTS, Reply::Echo).checking(|body| {
            assert_eq!(body["reason"], json!("ApplyFailed"));
        }),
    ]);
    let err = reconcile(Arc::new(model), ctx).await.expect_err("refused");
    finished(server).await;
    assert_eq!(err.category(), "ApplyFailed");
}

#[tokio::test]
async fn a_reconcile_before_the_watch_caches_listed_waits_and_sends_nothing() {
    let (ctx, server) = context();
    // A fresh run of the Controllers: caches installed, not listed yet.
    ctx.install_children(crate::cache::ChildCache::default());
    let server = server.run(vec![]);
    let action = reconcile(Arc::new(model("iris", 1)), ctx.clone())
        .await
        .expect("reconciles");
    finished(server).await;
    assert_eq!(action, Action::requeue(crate::reconcile::REQUEUE_UNSYNCED));
    assert_eq!(ctx.metrics.writes_total(), 0);
}

const CANARY: &str = "/apis/apps/v1/namespaces/testns/deployments/iris-canary";

/// An IrisModel with the canary strategy whose spec changed the model (a new seed) since its
/// stable Deployment was made, with 1 stable pod.
fn canary_change() -> (IrisModel, Deployment, Service, Deployment) {
    let old = model("iris", 1);
    let (stable, service) = children(&old);
    let mut new = model("iris", 2);
    new.spec.model.training.seed = 7;
    new.spec.rollout = Some(
        serde_json::from_value(json!({
            "strategy": "Canary",
            "canary": {"steps": [{"weight": 50, "holdSeconds": 10}],
                       "analysis": {"maxP99LatencyMs": 100, "minRequests": 20}}
        }))
        .expect("rollout spec"),
    );
    let resolved =
        resolve(&new, &Settings::default(), None, &BuiltinCache::default()).expect("resolves");
    let desired = stamp(deployment::build(&resolved)).expect("stamps");
    let canary = rolled_out(
        &stamp(crate::reconcile::desired::canary::build(&desired, 1)).expect("stamps"),
        1,
    );
    (new, stable, service, canary)
}

/// A ready pod with an IP (a documentation address: the scraper in these tests is a table).
fn ready_pod(name: &str, ip: &str, canary: bool) -> Value {
    let mut labels = json!({"app.kubernetes.io/instance": "iris",
        "app.kubernetes.io/name": "model-server"});
    if canary {
        labels["serving.iris.dev/track"] = json!("canary");
    }
    json!({"metadata": {"name": name, "labels": labels},
        "status": {"podIP": ip, "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "model-server", "ready": true, "restartCount": 0,
                "image": "x", "imageID": "", "state": {"running": {}}}]}})
}

#[tokio::test]
async fn a_model_change_starts_a_canary_and_leaves_the_stable_pods_alone() {
    let (model, stable, service, _) = canary_change();
    let (ctx, server) = context();
    ctx.install_children(holding(
        vec![stable.clone()],
        vec![service.clone()],
        vec![],
        vec![],
    ));
    let server = server.run(vec![
        // The canary's name is looked up before it is created; the stable is not applied.
        Expect::get(CANARY, Reply::NotFound),
        running_pods(&stable),
        Expect::apply(CANARY, applied(1)).checking(|body| {
            assert_eq!(body["spec"]["replicas"], json!(1));
            assert_eq!(
                body["spec"]["selector"]["matchLabels"]["serving.iris.dev/track"],
                json!("canary")
            );
            assert_eq!(body["metadata"]["ownerReferences"][0]["uid"], json!(UID));
            let env = &body["spec"]["template"]["spec"]["containers"][0]["env"];
            assert!(env.to_string().contains("\"7\""), "the new seed: {env}");
        }),
        Expect::apply(STATUS, status_written()).checking(|body| {
            let status = status_of(body);
            let rollout = status.rollout.clone().expect("rollout status");
            assert_eq!(
                (rollout.phase.as_str(), rollout.step, rollout.steps),
                ("Canary", 1, 1)
            );
            assert_eq!(rollout.intended_weight, 50);
            // The stable model serves: Ready stays true; the rollout is in progress.
            assert_eq!(condition(&status, "Ready").0, "True");
            assert_eq!(
                condition(&status, "Progressing"),
                ("True", "CanaryProgressing", Some(2))
            );
            assert_eq!(
                condition(&status, "Rollout"),
                ("True", "CanaryProgressing", Some(2))
            );
        }),
        Expect::post(EVENTS, Reply::Echo).checking(|body| {
            assert_eq!(body["reason"], json!("Ready"));
        }),
        Expect::post(EVENTS, Reply::Echo).checking(|body| {
            assert_eq!(body["type"], json!("Normal"));
            assert_eq!(body["reason"], json!("CanaryStarted"));
        }),
    ]);
    let action = reconcile(Arc::new(model), ctx.clone())
        .await
        .expect("reconciles");
    finished(server).await;
    assert_eq!(
        action,
        Action::requeue(crate::reconcile::rollout::REQUEUE_CANARY)
    );
}

/// The model's status one reconcile into a canary of `canary`, `secs` ago.
fn started(model: &IrisModel, canary: &Deployment, secs: i64) -> IrisModel {
    let hash = crate::reconcile::progress::template_hash(canary).map(str::to_string);
    let status: IrisModelStatus = serde_json::from_value(json!({
        "observedGeneration": 2,
        "rollout": {"phase": "Canary", "summary": "", "step": 1, "steps": 1,
            "intendedWeight": 50, "canaryHash": hash, "stableDigest": "sha256:old",
            "canaryDigest": "sha256:new", "stepStartedAt": at(NOW - secs)}
    }))
    .expect("status");
    with_status(model.clone(), status)
}

/// A context scraping from `table`, whose caches hold the stable and canary Deployments and
/// the Service.
fn canary_context(
    table: Arc<crate::scrape::testing::Table>,
    stable: &Deployment,
    canary: &Deployment,
    service: &Service,
) -> (Arc<crate::context::Context>, crate::mock::ApiServer) {
    let (ctx, server) = context();
    let ctx = Arc::new(
        Arc::into_inner(ctx)
            .expect("one reference")
            .with_scraper(table),
    );
    ctx.install_children(holding(
        vec![stable.clone(), canary.clone()],
        vec![service.clone()],
        vec![],
        vec![],
    ));
    (ctx, server)
}

fn pods_and_scraper(canary_metrics: &str) -> (Reply, Arc<crate::scrape::testing::Table>) {
    let pods = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [
        ready_pod("iris-stable", "192.0.2.1", false),
        ready_pod("iris-canary-a", "192.0.2.2", true),
    ]});
    let table = Arc::new(crate::scrape::testing::Table::default());
    table.set(
        "192.0.2.1",
        "model_server_http_requests_total{route=\"/predict_iris\",code=\"200\"} 500\n",
    );
    table.set("192.0.2.2", canary_metrics);
    (Reply::Json(pods), table)
}

#[tokio::test]
async fn a_canary_over_its_latency_threshold_is_rolled_back_and_counted() {
    let (model, stable, service, canary) = canary_change();
    let model = started(&model, &canary, 5);
    // 40 requests, all slower than 0.25 s.
    let slow = "model_server_http_requests_total{route=\"/predict_iris\",code=\"200\"} 40\n\
        model_server_http_request_duration_seconds_bucket{route=\"/predict_iris\",code=\"200\",le=\"0.1\"} 0\n\
        model_server_http_request_duration_seconds_bucket{route=\"/predict_iris\",code=\"200\",le=\"0.25\"} 0\n\
        model_server_http_request_duration_seconds_bucket{route=\"/predict_iris\",code=\"200\",le=\"0.5\"} 40\n\
        model_server_http_request_duration_seconds_bucket{route=\"/predict_iris\",code=\"200\",le=\"+Inf\"} 40\n";
    let (pods, table) = pods_and_scraper(slow);
    let (ctx, server) = canary_context(table, &stable, &canary, &service);
    let server = server.run(vec![
        // One pod list and one scrape serve the analysis and the status.
        Expect::get(PODS, pods),
        Expect::delete(CANARY),
        Expect::apply(STATUS, status_written()).checking(|body| {
            let status = status_of(body);
            let rollout = status.rollout.clone().expect("rollout");
            assert_eq!(rollout.phase, "RolledBack");
            assert!(
                rollout
                    .message
                    .contains("> maxP99LatencyMs 100 ms over 40 requests"),
                "{}",
                rollout.message
            );
            let figures = rollout.analysis.expect("figures");
            assert!(figures.canary_p99_ms.expect("p99") > 250.0);
            assert_eq!(figures.stable_requests, 500);
            assert_eq!(
                condition(&status, "Rollout"),
                ("False", "RolledBack", Some(2))
            );
            assert_eq!(condition(&status, "Ready").0, "True");
        }),
        Expect::post(EVENTS, Reply::Echo).checking(|body| {
            assert_eq!(body["reason"], json!("Ready"));
        }),
        Expect::post(EVENTS, Reply::Echo).checking(|body| {
            assert_eq!(body["type"], json!("Warning"));
            assert_eq!(body["reason"], json!("CanaryRolledBack"));
        }),
    ]);
    reconcile(Arc::new(model), ctx.clone())
        .await
        .expect("reconciles");
    finished(server).await;
    assert_eq!(ctx.metrics.rollbacks_of("CanaryRolledBack"), 1);
}

#[tokio::test]
async fn a_canary_that_passes_its_last_step_promotes_the_stable_deployment() {
    let (model, stable, service, canary) = canary_change();
    let model = started(&model, &canary, 11);
    let fast = "model_server_http_requests_total{route=\"/predict_iris\",code=\"200\"} 40\n\
        model_server_http_request_duration_seconds_bucket{route=\"/predict_iris\",code=\"200\",le=\"0.001\"} 40\n\
        model_server_http_request_duration_seconds_bucket{route=\"/predict_iris\",code=\"200\",le=\"+Inf\"} 40\n";
    let (pods, table) = pods_and_scraper(fast);
    let (ctx, server) = canary_context(table, &stable, &canary, &service);
    let expected_hash = crate::reconcile::progress::template_hash(&canary).map(str::to_string);
    let server = server.run(vec![
        Expect::get(PODS, pods),
        // The stable Deployment takes the canary's model; the canary stays for now.
        Expect::apply(DEPLOYMENT, applied(2)).checking(move |body| {
            assert_eq!(
                body["spec"]["template"]["metadata"]["annotations"]["serving.iris.dev/model-hash"]
                    .as_str()
                    .map(str::to_string),
                expected_hash
            );
        }),
        Expect::apply(STATUS, status_written()).checking(|body| {
            let rollout = status_of(body).rollout.expect("rollout");
            assert_eq!(rollout.phase, "Promoting");
        }),
        // Ready turned False (the stable pods roll) with no failure: no Event for that.
        Expect::post(EVENTS, Reply::Echo).checking(|body| {
            assert_eq!(body["reason"], json!("CanaryPromoting"));
        }),
    ]);
    reconcile(Arc::new(model), ctx.clone())
        .await
        .expect("reconciles");
    finished(server).await;
}

#[tokio::test]
async fn a_by_hand_action_is_acted_on_and_its_annotation_removed() {
    let (model, stable, service, canary) = canary_change();
    let mut model = started(&model, &canary, 1);
    model.metadata.annotations = Some(
        [(
            crate::reconcile::rollout::ACTION_ANNOTATION.to_string(),
            "abort".to_string(),
        )]
        .into(),
    );
    let (pods, table) = pods_and_scraper("");
    let (ctx, server) = canary_context(table, &stable, &canary, &service);
    let server = server.run(vec![
        // One pod list and one scrape serve the analysis and the status.
        Expect::get(PODS, pods),
        Expect::delete(CANARY),
        Expect::apply(STATUS, status_written()).checking(|body| {
            assert_eq!(status_of(body).rollout.expect("rollout").phase, "Aborted");
        }),
        Expect::post(EVENTS, Reply::Echo),
        Expect::post(EVENTS, Reply::Echo).checking(|body| {
            assert_eq!(body["reason"], json!("CanaryAborted"));
        }),
        Expect {
            method: http::Method::PATCH,
            path: "/apis/serving.iris.dev/v1alpha1/namespaces/testns/irismodels/iris".into(),
            query: vec![],
            check: Some(Box::new(|body: &Value| {
                assert_eq!(
                    body,
                    &json!({"metadata": {"annotations": {"serving.iris.dev/rollout": null}}})
                );
            })),
            reply: Reply::Json(json!({"apiVersion": "serving.iris.dev/v1alpha1",
                "kind": "IrisModel", "metadata": {"name": "iris", "namespace": "testns"},
                "spec": {}})),
        },
    ]);
    reconcile(Arc::new(model), ctx.clone())
        .await
        .expect("reconciles");
    finished(server).await;
    assert_eq!(ctx.metrics.rollbacks_of("CanaryAborted"), 1);
}

/// The expected write of `replicas` to the Deployment's scale subresource.
fn scale_to(replicas: i32) -> Expect {
    Expect {
        method: http::Method::PATCH,
        path: format!("{DEPLOYMENT}/scale"),
        query: vec![],
        check: None,
        reply: Reply::Json(json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
            "metadata": {"name": "iris", "namespace": "testns"},
            "spec": {"replicas": replicas}})),
    }
    .checking(move |body| assert_eq!(body, &json!({"spec": {"replicas": replicas}})))
}

/// The scaler's first sample of the model, `ago` seconds before NOW: `requests` counted on
/// the pod `pod-uid-1` of one replica.
fn first_sample(ctx: &Context, model: &IrisModel, ago: i64, requests: u64) {
    ctx.scalers.sample(
        "testns/iris",
        crate::rate::Sample {
            now: (NOW - ago) as f64,
            counts: vec![crate::rate::PodCount {
                pod: "pod-uid-1".into(),
                requests,
                started: None,
            }],
            unreadable: None,
            unusable: None,
            unscraped: 0,
            current: 1,
        },
        model.spec.autoscaling.as_ref().expect("autoscaling"),
        10.0,
    );
}

/// The context, reading this /metrics text at the pod IP 192.0.2.1.
fn scraping(ctx: Arc<Context>, metrics: &str) -> Arc<Context> {
    let table = Arc::new(crate::scrape::testing::Table::default());
    table.set("192.0.2.1", metrics);
    Arc::new(
        Arc::into_inner(ctx)
            .expect("one reference")
            .with_scraper(table),
    )
}

/// A model autoscaled on its request rate, target 10/s per pod, between 1 and 5 pods.
fn rate_autoscaled() -> IrisModel {
    let mut model = model("iris", 1);
    model.spec.autoscaling = Some(AutoscalingSpec {
        min_replicas: 1,
        max_replicas: 5,
        target_cpu_utilization_percentage: 70,
        scale_down_stabilization_seconds: Some(0),
        idle_seconds: None,
        target_requests_per_second: Some(10),
    });
    model
}

#[tokio::test]
async fn a_request_rate_over_the_target_scales_the_deployment_through_its_scale_subresource() {
    let model = rate_autoscaled();
    let (deployment, service) = children(&model);
    let (ctx, server) = context();
    // 350 prediction requests counted now; probes and scrapes do not count.
    let ctx = scraping(
        ctx,
        "model_server_http_requests_total{route=\"/v2/models/{name}/infer\",code=\"200\"} 300\n\
         model_server_grpc_requests_total{method=\"ModelInfer\",code=\"OK\"} 50\n\
         model_server_http_requests_total{route=\"/v2/health/ready\",code=\"200\"} 9000\n",
    );
    ctx.install_children(holding(
        vec![deployment.clone()],
        vec![service.clone()],
        vec![],
        vec![],
    ));
    // The first sample, 10 s ago, counted 50 requests on the same pod: 30 requests/s.
    let mut pod = ready_pod("iris-1", "192.0.2.1", false);
    pod["metadata"]["uid"] = json!("pod-uid-1");
    first_sample(&ctx, &model, 10, 50);
    let pods = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [pod]});
    let server = server.run(vec![
        // No HorizontalPodAutoscaler: the operator is this model's autoscaler. One pod list
        // (status.image has no image ID yet) serves the autoscaler too.
        Expect::get(PODS, Reply::Json(pods)),
        scale_to(3),
        Expect::post(EVENTS, Reply::Echo).checking(|body| {
            assert_eq!(body["reason"], json!("Rescaled"));
            let note = body["note"].as_str().unwrap_or_default();
            assert!(
                note.starts_with("1 -> 3 replicas: 30.0 requests/s"),
                "{note}"
            );
        }),
        Expect::apply(STATUS, status_written()).checking(|body| {
            let status = status_of(body);
            assert_eq!(
                condition(&status, "Autoscaling"),
                ("True", "ScalingActive", Some(1))
            );
            let message = &status
                .conditions
                .iter()
                .find(|c| c.type_ == "Autoscaling")
                .expect("Autoscaling")
                .message;
            assert!(
                message.contains("30.0 requests/s over 1 pod against a target of 10/s per pod"),
                "{message}"
            );
        }),
        Expect::post(EVENTS, Reply::Echo).checking(|body| {
            assert_eq!(body["reason"], json!("Ready"));
        }),
    ]);
    let action = reconcile(Arc::new(model), ctx.clone())
        .await
        .expect("reconciles");
    finished(server).await;
    assert_eq!(
        action,
        Action::requeue(crate::reconcile::scaler::SCALE_INTERVAL)
    );
}

#[tokio::test]
async fn a_rate_autoscaled_model_whose_pods_cannot_be_read_keeps_its_count_and_says_why() {
    // A scrape that fails (the ready pod's /metrics does not answer) is no failure of the model;
    // a page that is no evidence (garbage from the model's own pods) is: Degraded names it.
    for page in [None, Some("}{\n")] {
        rate_unreadable(page).await;
    }
}

async fn rate_unreadable(page: Option<&'static str>) {
    let model = rate_autoscaled();
    let (deployment, service) = children(&model);
    let (ctx, server) = context();
    ctx.install_children(holding(
        vec![deployment.clone()],
        vec![service.clone()],
        vec![],
        vec![],
    ));
    let spec = model.spec.autoscaling.clone().expect("autoscaling");
    ctx.scalers.sample(
        "testns/iris",
        crate::rate::Sample {
            now: (NOW - 10) as f64,
            counts: vec![],
            unreadable: None,
            unusable: None,
            unscraped: 0,
            current: 1,
        },
        &spec,
        10.0,
    );
    let table = Arc::new(crate::scrape::testing::Table::default());
    if let Some(page) = page {
        table.set("192.0.2.9", page);
    }
    let ctx = Arc::new(
        Arc::into_inner(ctx)
            .expect("one reference")
            .with_scraper(table),
    );
    let pods = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {},
        "items": [ready_pod("iris-1", "192.0.2.9", false)]});
    let server = server.run(vec![
        Expect::get(PODS, Reply::Json(pods)),
        // No scale write.
        Expect::apply(STATUS, status_written()).checking(move |body| {
            let status = status_of(body);
            let c = status
                .conditions
                .iter()
                .find(|c| c.type_ == "Autoscaling")
                .expect("Autoscaling");
            assert_eq!(
                (c.status.as_str(), c.reason.as_str()),
                ("False", "RequestCountersUnavailable")
            );
            assert!(c.message.contains("stays at 1"), "{}", c.message);
            let degraded = condition(&status, "Degraded");
            if page.is_some() {
                assert_eq!(degraded, ("True", "MetricsUnusable", Some(1)));
                let why = message(&status, "Degraded");
                assert!(why.contains("pod iris-1: metrics page unusable"), "{why}");
            } else {
                assert!(c.message.contains("192.0.2.9"), "{}", c.message);
                assert_eq!(degraded, ("False", "AsExpected", Some(1)));
            }
        }),
        // Ready turns True either way: the pods serve predictions.
        Expect::post(EVENTS, Reply::Echo).checking(|body| {
            assert_eq!(body["reason"], json!("Ready"));
        }),
        Expect::post(EVENTS, Reply::Echo).checking(|body| {
            assert_eq!(body["type"], json!("Warning"));
            assert_eq!(body["reason"], json!("RequestCountersUnavailable"));
        }),
    ]);
    reconcile(Arc::new(model), ctx.clone())
        .await
        .expect("reconciles");
    finished(server).await;
}

/// A model that scales to zero after 30 s without a request, target 10/s per pod, up to 3.
fn scales_to_zero() -> IrisModel {
    let mut model = rate_autoscaled();
    let autoscaling = model.spec.autoscaling.as_mut().expect("autoscaling");
    autoscaling.min_replicas = 0;
    autoscaling.max_replicas = 3;
    autoscaling.idle_seconds = Some(30);
    model
}

/// Its activator Deployment as the cluster holds it, with a ready pod.
fn activator_of(model: &IrisModel) -> Deployment {
    let resolved =
        resolve(model, &Settings::default(), None, &BuiltinCache::default()).expect("resolves");
    let activator = crate::reconcile::desired::activator::build(&resolved).expect("an activator");
    rolled_out(&stamp(activator.deployment).expect("stamps"), 1)
}

#[tokio::test]
async fn an_idle_model_points_its_service_at_the_activator_before_it_goes_to_zero_pods() {
    let model = scales_to_zero();
    let (deployment, service) = children(&model);
    let (ctx, server) = context();
    let ctx = scraping(
        ctx,
        "model_server_http_requests_total{route=\"/v2/models/{name}/infer\",code=\"200\"} 50\n",
    );
    ctx.install_children(holding(
        vec![deployment.clone(), activator_of(&model)],
        vec![service.clone()],
        vec![],
        vec![],
    ));
    // The series started 40 s ago with the same 50 requests: idle for 40 s (idleSeconds 30).
    let mut pod = ready_pod("iris-1", "192.0.2.1", false);
    pod["metadata"]["uid"] = json!("pod-uid-1");
    first_sample(&ctx, &model, 40, 50);
    let pods = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [pod]});
    let server = server.run(vec![
        Expect::get(PODS, Reply::Json(pods)),
        // First the Service selects the activator, so no connection meets a Service without
        // a pod; then the count goes to zero.
        Expect::apply(SERVICE, Reply::Echo).checking(|body| {
            assert_eq!(
                body["spec"]["selector"],
                json!({"app.kubernetes.io/instance": "iris",
                       "app.kubernetes.io/name": "iris-activator"})
            );
        }),
        scale_to(0),
        Expect::post(EVENTS, Reply::Echo).checking(|body| {
            assert_eq!(body["reason"], json!("ScaledToZero"));
            let note = body["note"].as_str().unwrap_or_default();
            assert!(
                note.starts_with(
                    "1 -> 0 replicas: no prediction request for 40 s (idleSeconds 30)"
                ),
                "{note}"
            );
        }),
        Expect::apply(STATUS, status_written()).checking(|body| {
            let status = status_of(body);
            assert_eq!(
                condition(&status, "Autoscaling"),
                ("True", "ScaledToZero", Some(1))
            );
        }),
        Expect::post(EVENTS, Reply::Echo).checking(|body| {
            assert_eq!(body["reason"], json!("Ready"));
        }),
    ]);
    reconcile(Arc::new(model), ctx.clone())
        .await
        .expect("reconciles");
    finished(server).await;
}

#[tokio::test]
async fn a_model_at_zero_pods_is_ready_through_its_activator_and_says_so() {
    let model = scales_to_zero();
    let (mut deployment, service) = children(&model);
    deployment.spec.as_mut().expect("spec").replicas = Some(0);
    let deployment = rolled_out(&deployment, 1);
    let (ctx, server) = context();
    ctx.install_children(holding(
        vec![deployment, activator_of(&model)],
        vec![service],
        vec![],
        vec![],
    ));
    let no_pods = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []});
    let server = server.run(vec![
        // Every read first: the pods, for the scaler.
        Expect::get(PODS, Reply::Json(no_pods)),
        // The Service still selected the model's pods (they are gone): it now selects the
        // activator's.
        Expect::apply(SERVICE, Reply::Echo).checking(|body| {
            assert_eq!(
                body["spec"]["selector"]["app.kubernetes.io/name"],
                json!("iris-activator")
            );
        }),
        // No scale write: at zero pods the activator wakes the model.
        Expect::apply(STATUS, status_written()).checking(|body| {
            let status = status_of(body);
            assert_eq!(
                condition(&status, "Ready"),
                ("True", "ScaledToZero", Some(1))
            );
            assert_eq!(status.replicas, 0);
            let ready = status
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")
                .expect("Ready");
            assert!(
                ready.message.contains("the activator answers at"),
                "{}",
                ready.message
            );
        }),
        Expect::post(EVENTS, Reply::Echo).checking(|body| {
            assert_eq!(body["reason"], json!("ScaledToZero"));
        }),
    ]);
    reconcile(Arc::new(model), ctx.clone())
        .await
        .expect("reconciles");
    finished(server).await;
}

#[tokio::test]
async fn a_model_that_no_longer_scales_to_zero_loses_its_activator() {
    let model = scales_to_zero();
    let activator = activator_of(&model);
    let model = rate_autoscaled();
    let (deployment, service) = children(&model);
    let (ctx, server) = context();
    ctx.install_children(holding(
        vec![deployment, activator],
        vec![service],
        vec![],
        vec![],
    ));
    // Its RBAC as the cluster holds it (no cache holds these kinds: read before the delete).
    let resolved = resolve(
        &scales_to_zero(),
        &Settings::default(),
        None,
        &BuiltinCache::default(),
    )
    .expect("resolves");
    let rbac = crate::reconcile::desired::activator::build(&resolved).expect("an activator");
    let binding = to_json(&stored(&rbac.role_binding, 1));
    let role = to_json(&stored(&rbac.role, 1));
    let account = to_json(&stored(&rbac.service_account, 1));
    let rbac = "/apis/rbac.authorization.k8s.io/v1/namespaces/testns";
    let server = server.run(vec![
        // Observe reads the activator's RBAC (it is to be deleted) and the pods first.
        Expect::get(
            "/api/v1/namespaces/testns/serviceaccounts/iris-activator",
            Reply::Json(account),
        ),
        Expect::get(format!("{rbac}/roles/iris-activator"), Reply::Json(role)),
        Expect::get(
            format!("{rbac}/rolebindings/iris-activator"),
            Reply::Json(binding),
        ),
        Expect::get(
            PODS,
            Reply::Json(
                json!({"apiVersion": "v1", "kind": "PodList", "metadata": {},
                "items": [ready_pod("iris-1", "192.0.2.1", false)]}),
            ),
        ),
        Expect::delete("/apis/apps/v1/namespaces/testns/deployments/iris-activator"),
        Expect::delete(format!("{rbac}/rolebindings/iris-activator")),
        // Deleted only as the object read: a uid precondition.
        Expect::delete(format!("{rbac}/roles/iris-activator")).checking(|body| {
            assert_eq!(body["preconditions"]["uid"], json!("uid-iris-activator"));
        }),
        Expect::delete("/api/v1/namespaces/testns/serviceaccounts/iris-activator"),
        Expect::apply(STATUS, status_written()),
        Expect::post(EVENTS, Reply::Echo),
    ]);
    reconcile(Arc::new(model), ctx.clone())
        .await
        .expect("reconciles");
    finished(server).await;
}

/// A scraper that panics: stands for any panic a pod's answer could reach in the reconcile.
struct Panicking;

impl crate::scrape::Scrape for Panicking {
    fn metrics(
        &self,
        _ip: &str,
        _port: i32,
        _https: bool,
    ) -> futures::future::BoxFuture<'static, Result<String, crate::scrape::Unread>> {
        Box::pin(async { panic!("slice index starts at 7 but ends at 3") })
    }
}

#[tokio::test]
async fn a_panic_in_a_reconcile_fails_that_reconcile_only_and_says_so() {
    let model = rate_autoscaled();
    let (deployment, service) = children(&model);
    let (ctx, server) = context();
    ctx.install_children(holding(
        vec![deployment.clone()],
        vec![service.clone()],
        vec![],
        vec![],
    ));
    let ctx = Arc::new(
        Arc::into_inner(ctx)
            .expect("one reference")
            .with_scraper(Arc::new(Panicking)),
    );
    let pods = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {},
        "items": [ready_pod("iris-1", "192.0.2.1", false)]});
    let server = server.run(vec![
        Expect::get(PODS, Reply::Json(pods)),
        Expect::apply(STATUS, status_written()).checking(|body| {
            let status = status_of(body);
            assert_eq!(
                condition(&status, "Degraded"),
                ("True", "ReconcilePanicked", Some(1))
            );
            let degraded = message(&status, "Degraded");
            assert!(degraded.contains("slice index starts at 7"), "{degraded}");
            // The replicas come from the cached Deployment, not a zeroed status.
            assert_eq!(status.replicas, 1);
        }),
        Expect::post(EVENTS, Reply::Echo).checking(|body| {
            assert_eq!(body["type"], json!("Warning"));
            assert_eq!(body["reason"], json!("ReconcilePanicked"));
        }),
    ]);
    let err = reconcile(Arc::new(model.clone()), ctx.clone())
        .await
        .expect_err("the panic is this reconcile's error");
    finished(server).await;
    assert_eq!(err.category(), "ReconcilePanicked");
    // The controller's error policy backs off and counts it like any failure.
    let action = error_policy(Arc::new(model), &err, ctx.clone());
    assert_eq!(action, Action::requeue(Duration::from_secs(2)));
    assert_eq!(ctx.metrics.errors_of("ReconcilePanicked"), 1);
}

#[tokio::test]
async fn another_models_deployment_under_the_canary_name_is_never_deleted() {
    // Model `foo-canary` of another team (created before the CRD refused such names): its
    // Deployment carries the operator's labels, so the watch cache holds it.
    let model = model("iris", 1);
    let (deployment, service) = children(&model);
    let mut theirs = deployment.clone();
    theirs.metadata.name = Some("iris-canary".into());
    theirs.metadata.uid = Some("uid-of-another-model".into());
    for reference in theirs.metadata.owner_references.iter_mut().flatten() {
        reference.uid = "uid-of-the-other-irismodel".into();
    }
    let (ctx, server) = context();
    ctx.install_children(holding(
        vec![deployment.clone(), theirs],
        vec![service.clone()],
        vec![],
        vec![],
    ));
    // Nothing to do for `iris`: in particular no DELETE of iris-canary (a stale canary of
    // its own would be deleted here).
    let server = server.run(vec![
        running_pods(&deployment),
        Expect::apply(STATUS, status_written()),
        Expect::post(EVENTS, Reply::Echo),
    ]);
    reconcile(Arc::new(model), ctx).await.expect("reconciles");
    finished(server).await;
}

#[tokio::test]
async fn a_role_of_someone_elses_under_the_activators_name_is_refused_not_overwritten() {
    let model = scales_to_zero();
    let (deployment, service) = children(&model);
    let (ctx, server) = context();
    ctx.install_children(holding(
        vec![deployment.clone()],
        vec![service.clone()],
        vec![],
        vec![],
    ));
    let rbac = "/apis/rbac.authorization.k8s.io/v1/namespaces/testns";
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "iris-activator", "namespace": "testns", "uid": "alices-role",
            "resourceVersion": "7"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]});
    let server = server.run(vec![
        // The activator Deployment the cache lacks is looked up before it is created.
        Expect::get(
            "/apis/apps/v1/namespaces/testns/deployments/iris-activator",
            Reply::NotFound,
        ),
        Expect::get(
            "/api/v1/namespaces/testns/serviceaccounts/iris-activator",
            Reply::NotFound,
        ),
        Expect::get(format!("{rbac}/roles/iris-activator"), Reply::Json(role)),
        Expect::get(
            format!("{rbac}/rolebindings/iris-activator"),
            Reply::NotFound,
        ),
        // No apply of any of the three, nor of the activator: the conflict is reported.
        Expect::apply(STATUS, status_written()).checking(|body| {
            let status = status_of(body);
            assert_eq!(
                condition(&status, "Ready"),
                ("False", "ResourceConflict", Some(1))
            );
            let ready = message(&status, "Ready");
            assert!(ready.starts_with("Role testns/iris-activator "), "{ready}");
        }),
        Expect::post(EVENTS, Reply::Echo),
    ]);
    let err = reconcile(Arc::new(model), ctx).await.expect_err("conflict");
    finished(server).await;
    assert_eq!(err.category(), "ResourceConflict");
}

#[tokio::test]
async fn a_model_whose_payload_log_keeps_failing_is_degraded_naming_the_sink() {
    // 12 events given up in a row is a sink that keeps failing; 3 is a blip.
    for (failing, degraded) in [(12, true), (3, false)] {
        payload_log_failing(failing, degraded).await;
    }
}

async fn payload_log_failing(failing: u64, degraded: bool) {
    let mut model = model("iris", 1);
    model.spec.logging = Some(crate::crd::LoggingSpec {
        url: "http://sink.testns.svc:8080/".into(),
        mode: crate::crd::LoggingMode::All,
        sample_percent: 100,
        headers_secret_ref: None,
    });
    let (deployment, service) = children(&model);
    let (ctx, server) = context();
    ctx.install_children(holding(vec![deployment], vec![service], vec![], vec![]));
    let ctx = scraping(
        ctx,
        &format!("model_server_payload_log_consecutive_failures {failing}\n"),
    );
    let pods = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {},
        "items": [ready_pod("iris-1", "192.0.2.1", false)]});
    let server = server.run(vec![
        Expect::get(PODS, Reply::Json(pods)),
        Expect::apply(STATUS, status_written()).checking(move |body| {
            let status = status_of(body);
            if degraded {
                assert_eq!(
                    condition(&status, "Degraded"),
                    ("True", "PayloadSinkFailing", Some(1))
                );
                let why = message(&status, "Degraded");
                assert!(
                    why.contains("pod iris-1")
                        && why.contains("http://sink.testns.svc:8080/")
                        && why.contains("12 events in a row"),
                    "{why}"
                );
            } else {
                assert_eq!(
                    condition(&status, "Degraded"),
                    ("False", "AsExpected", Some(1))
                );
            }
            assert_eq!(condition(&status, "Ready").0, "True");
        }),
        // One Event, for Ready: the pods serve predictions either way.
        Expect::post(EVENTS, Reply::Echo).checking(|body| {
            assert_eq!(body["reason"], json!("Ready"));
        }),
    ]);
    let action = reconcile(Arc::new(model), ctx.clone())
        .await
        .expect("reconciles");
    finished(server).await;
    // Nothing else tells of the sink: the model is looked at again within a minute.
    assert_eq!(
        action,
        Action::requeue(crate::reconcile::REQUEUE_PAYLOAD_LOG)
    );
}
