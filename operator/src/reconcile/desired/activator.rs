//! The activator of a model that scales to zero (`autoscaling.minReplicas: 0`): one small pod
//! in the model's namespace, from the operator's own image (`iris-operator activator`), which
//! the model's Service selects while the model has no ready pod. It holds the connections that
//! arrive, scales the Deployment from 0 to 1 itself (no wait for the operator's next sample),
//! and forwards them to the first pod that accepts. It must be a pod in the model's namespace:
//! `kubectl port-forward service/NAME` picks a pod by the Service's selector there.
//!
//! Its rights are its model's only: a Role that may read and patch the scale of that one
//! Deployment and list and watch the namespace's pods (it watches its model's, by their
//! label selector), bound to a ServiceAccount of its own.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, HTTPGetAction, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::child_meta;
use super::deployment::{
    container_port, pull_secrets, restricted_container, restricted_pod, surge_one,
};
use crate::context::ActivatorSettings;
use crate::names::{
    activator_labels, activator_name, activator_selector_labels, selector_string, ADMIN_PORT_NAME,
    GRPC_PORT_NAME, PORT_NAME,
};
use crate::reconcile::resolve::Resolved;

/// Port of the activator's /healthz, /readyz and /metrics, unless the model uses it (then the
/// next free one).
pub(crate) const ADMIN_PORT: i32 = 9091;
/// Name of its container.
pub(crate) const CONTAINER_NAME: &str = "activator";
/// Seconds the pod has to finish after SIGTERM beyond the longest hold: what it holds when a
/// restart begins is still answered.
const GRACE_BEYOND_HOLD_SECONDS: i64 = 10;

/// The activator's objects, applied together (the RBAC first, so its pod can start).
#[derive(Clone, Debug)]
pub(crate) struct Activator {
    pub(crate) deployment: Deployment,
    pub(crate) service_account: ServiceAccount,
    pub(crate) role: Role,
    pub(crate) role_binding: RoleBinding,
}

/// The activator of a model that scales to zero; None for any other model.
pub(crate) fn build(resolved: &Resolved) -> Option<Activator> {
    let settings = resolved.activator.as_ref()?;
    Some(Activator {
        deployment: deployment(resolved, settings),
        service_account: ServiceAccount {
            metadata: meta(resolved),
            ..ServiceAccount::default()
        },
        role: role(resolved),
        role_binding: role_binding(resolved),
    })
}

fn meta(resolved: &Resolved) -> ObjectMeta {
    ObjectMeta {
        name: Some(activator_name(&resolved.name)),
        labels: Some(activator_labels(&resolved.name)),
        ..child_meta(resolved)
    }
}

fn role(resolved: &Resolved) -> Role {
    Role {
        metadata: meta(resolved),
        rules: Some(vec![
            PolicyRule {
                api_groups: Some(vec!["apps".to_string()]),
                resources: Some(vec!["deployments/scale".to_string()]),
                resource_names: Some(vec![resolved.name.clone()]),
                verbs: vec!["get".to_string(), "patch".to_string()],
                ..PolicyRule::default()
            },
            PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["pods".to_string()]),
                verbs: vec!["list".to_string(), "watch".to_string()],
                ..PolicyRule::default()
            },
        ]),
    }
}

fn role_binding(resolved: &Resolved) -> RoleBinding {
    let name = activator_name(&resolved.name);
    RoleBinding {
        metadata: meta(resolved),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_string(),
            kind: "Role".to_string(),
            name: name.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_string(),
            name,
            namespace: Some(resolved.namespace.clone()),
            ..Subject::default()
        }]),
    }
}

/// The admin port: [`ADMIN_PORT`] or the first port above it the model does not use.
fn admin_port(resolved: &Resolved) -> i32 {
    (ADMIN_PORT..)
        .find(|p| *p != resolved.port && *p != resolved.grpc_port)
        .unwrap_or(ADMIN_PORT)
}

fn deployment(resolved: &Resolved, settings: &ActivatorSettings) -> Deployment {
    let name = activator_name(&resolved.name);
    let admin = admin_port(resolved);
    let args = [
        "activator".to_string(),
        format!("--namespace={}", resolved.namespace),
        format!("--deployment={}", resolved.name),
        format!("--selector={}", selector_string(&resolved.name)),
        format!("--listen={PORT_NAME}={}", resolved.port),
        format!("--listen={GRPC_PORT_NAME}={}", resolved.grpc_port),
        format!("--admin-addr=0.0.0.0:{admin}"),
        format!("--max-held={}", settings.max_held),
        format!("--hold-timeout-seconds={}", settings.hold_timeout_seconds),
        "--log-format=json".to_string(),
    ];
    let quantity = |q: &str| Quantity(q.to_string());
    Deployment {
        metadata: meta(resolved),
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(activator_selector_labels(&resolved.name)),
                match_expressions: None,
            },
            // A new activator is ready before the old one stops taking connections.
            strategy: Some(surge_one()),
            revision_history_limit: Some(3),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(activator_labels(&resolved.name)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: CONTAINER_NAME.to_string(),
                        image: Some(settings.image.clone()),
                        image_pull_policy: Some("IfNotPresent".to_string()),
                        args: Some(args.to_vec()),
                        ports: Some(vec![
                            container_port(PORT_NAME, resolved.port),
                            container_port(GRPC_PORT_NAME, resolved.grpc_port),
                            ContainerPort {
                                name: Some(ADMIN_PORT_NAME.to_string()),
                                container_port: admin,
                                protocol: Some("TCP".to_string()),
                                ..ContainerPort::default()
                            },
                        ]),
                        // A few MiB of memory (its one cache: its model's pods, trimmed).
                        resources: Some(ResourceRequirements {
                            requests: Some(
                                [
                                    ("cpu".to_string(), quantity("10m")),
                                    ("memory".to_string(), quantity("16Mi")),
                                ]
                                .into(),
                            ),
                            limits: Some([("memory".to_string(), quantity("64Mi"))].into()),
                            ..ResourceRequirements::default()
                        }),
                        readiness_probe: Some(probe("/readyz", 1)),
                        liveness_probe: Some(probe("/healthz", 10)),
                        security_context: Some(restricted_container()),
                        termination_message_policy: Some("FallbackToLogsOnError".to_string()),
                        ..Container::default()
                    }],
                    service_account_name: Some(name),
                    automount_service_account_token: Some(true),
                    enable_service_links: Some(false),
                    termination_grace_period_seconds: Some(
                        i64::from(settings.hold_timeout_seconds) + GRACE_BEYOND_HOLD_SECONDS,
                    ),
                    security_context: Some(restricted_pod(resolved)),
                    // The operator's image comes from where the model server's does.
                    image_pull_secrets: pull_secrets(resolved),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

fn probe(path: &str, period_seconds: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String(ADMIN_PORT_NAME.to_string()),
            scheme: Some("HTTP".to_string()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period_seconds),
        timeout_seconds: Some(1),
        success_threshold: Some(1),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}
