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

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_operator_during_a_rollout_converges() {
    with_temp_ns("failover", &[], |client, ns| async move {
        kubectl::apply_file(&ns, &cluster::example("iris-multiclass.yaml"));
        let api = iris::api(&client, &ns);
        iris::wait_ready(&api, "iris-multiclass", Duration::from_secs(60)).await;

        let old_pods = cluster::operator_pods(&client).await;

        // Start a rollout, and kill the operator pod in the middle of it.
        kubectl::ok(&[
            "patch",
            "-n",
            &ns,
            "irismodel/iris-multiclass",
            "--type=merge",
            "-p",
            r#"{"spec":{"model":{"training":{"seed":1234}}}}"#,
        ]);
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

        // The Deployment replaces the pod, the new one takes the Lease over, and the model
        // converges on the new training.
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
        cluster::wait_until(
            &deployments,
            RELEASE,
            LONG,
            "available again",
            |d: Option<&Deployment>| {
                d.and_then(|d| d.status.as_ref()).is_some_and(|s| {
                    s.available_replicas == Some(1) && s.updated_replicas == Some(1)
                })
            },
        )
        .await;

        // A new pod holds the Lease.
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
