//! The model server's Deployment.

use std::collections::BTreeMap;

use iris_model::env;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, KeyToPath, LocalObjectReference, ObjectFieldSelector, PodSecurityContext,
    PodSpec, PodTemplateSpec, Probe, SeccompProfile, SecurityContext, Sysctl, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sha2::{Digest, Sha256};

use super::{child_meta, env_var, placement, security};
use crate::crd::Task;
use crate::names::{labels, selector_labels, GRPC_PORT_NAME, MODEL_HASH_ANNOTATION, PORT_NAME};
use crate::reconcile::resolve::{Resolved, ResolvedSource};

/// The uid and gid the model-server image runs as (distroless "nonroot").
pub(crate) const RUN_AS: i64 = 65532;
/// Where a ConfigMap source is mounted.
pub(crate) const MODELS_DIR: &str = "/models";
/// Name of the model-server container.
pub(crate) const CONTAINER_NAME: &str = "model-server";
const MODEL_VOLUME: &str = "model";
/// Seconds a terminating pod keeps accepting requests (within the 30s grace period).
pub(crate) const SHUTDOWN_DELAY_SECONDS: u32 = 5;
/// The namespaced ("safe") sysctl that lets a non-root process bind ports from its value up.
pub(crate) const UNPRIVILEGED_PORT_SYSCTL: &str = "net.ipv4.ip_unprivileged_port_start";
/// Ports below this one need the sysctl (or a capability the non-root server cannot use).
const FIRST_UNPRIVILEGED_PORT: i32 = 1024;

/// Builds the Deployment of the model server.
pub(crate) fn build(resolved: &Resolved) -> Deployment {
    let mut template = pod_template(resolved);
    let hash = model_hash(&template, resolved);
    template
        .metadata
        .get_or_insert_with(ObjectMeta::default)
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(MODEL_HASH_ANNOTATION.to_string(), hash);

    Deployment {
        metadata: child_meta(resolved),
        spec: Some(DeploymentSpec {
            replicas: resolved.replicas,
            selector: LabelSelector {
                match_labels: Some(selector_labels(&resolved.name)),
                match_expressions: None,
            },
            template,
            // A model change (or a broken one) never stops the old version from serving.
            strategy: Some(surge_one()),
            revision_history_limit: Some(3),
            progress_deadline_seconds: Some(300),
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// A rolling update that surges one pod and never drops below the desired count.
pub(crate) fn surge_one() -> DeploymentStrategy {
    DeploymentStrategy {
        type_: Some("RollingUpdate".to_string()),
        rolling_update: Some(RollingUpdateDeployment {
            max_surge: Some(IntOrString::Int(1)),
            max_unavailable: Some(IntOrString::Int(0)),
        }),
    }
}

/// Hash of everything that shapes the pods: the template itself (image, model flags, port,
/// resources, scheduling) and the artifact bytes of a ConfigMap source, whose change would
/// otherwise not reach running pods. Labels of the IrisModel are not in it.
pub(crate) fn model_hash(template: &PodTemplateSpec, resolved: &Resolved) -> String {
    let mut hasher = Sha256::new();
    // Serialising k8s-openapi types cannot fail (string keys, no non-finite floats).
    hasher.update(serde_json::to_vec(template).unwrap_or_default());
    if let ResolvedSource::ConfigMap { content_hash, .. } = &resolved.source {
        hasher.update(content_hash.as_bytes());
    }
    hex::encode(hasher.finalize())[..16].to_string()
}

fn pod_template(resolved: &Resolved) -> PodTemplateSpec {
    let (mut volumes, mut mounts) = match &resolved.source {
        ResolvedSource::ConfigMap { name, key, .. } => (
            vec![Volume {
                name: MODEL_VOLUME.to_string(),
                config_map: Some(ConfigMapVolumeSource {
                    name: name.clone(),
                    items: Some(vec![KeyToPath {
                        key: key.clone(),
                        path: key.clone(),
                        mode: None,
                    }]),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            }],
            vec![VolumeMount {
                name: MODEL_VOLUME.to_string(),
                mount_path: MODELS_DIR.to_string(),
                read_only: Some(true),
                ..VolumeMount::default()
            }],
        ),
        _ => (Vec::new(), Vec::new()),
    };
    let (secret_volumes, secret_mounts) = security::volumes(resolved);
    volumes.extend(secret_volumes);
    mounts.extend(secret_mounts);
    let scheme = security::http_scheme(resolved);

    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(&resolved.name)),
            annotations: Some(scrape_annotations(resolved)),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: CONTAINER_NAME.to_string(),
                image: Some(resolved.image.clone()),
                image_pull_policy: Some("IfNotPresent".to_string()),
                ports: Some(vec![
                    container_port(PORT_NAME, resolved.port),
                    container_port(GRPC_PORT_NAME, resolved.grpc_port),
                ]),
                env: Some(env(resolved)),
                resources: Some(resolved.resources.clone()),
                // Over HTTPS with TLS: the kubelet does not verify the certificate, and the
                // health routes need no token.
                liveness_probe: Some(probe("/v2/health/live", scheme, 10, 3)),
                // Polled every 2s so a new pod turns Ready (and the IrisModel with it) quickly.
                readiness_probe: Some(probe("/v2/health/ready", scheme, 2, 2)),
                security_context: Some(restricted_container()),
                volume_mounts: (!mounts.is_empty()).then_some(mounts),
                // A server that exits at start-up says why in its last log lines; with this
                // they become lastState.terminated.message, which the status reports.
                termination_message_policy: Some("FallbackToLogsOnError".to_string()),
                ..Container::default()
            }],
            // The server never talks to the Kubernetes API.
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            security_context: Some(PodSecurityContext {
                // Secret files are mode 0440: the server reads them as their group.
                fs_group: security::mounts_secrets(resolved).then_some(RUN_AS),
                ..restricted_pod(resolved)
            }),
            node_selector: resolved.node_selector.clone(),
            tolerations: Some(placement::tolerations(resolved.tolerations.as_deref())),
            affinity: resolved.affinity.clone(),
            topology_spread_constraints: Some(placement::spread(&resolved.name)),
            volumes: (!volumes.is_empty()).then_some(volumes),
            // Names only: the kubelet reads the Secrets, the operator never does.
            image_pull_secrets: pull_secrets(resolved),
            ..PodSpec::default()
        }),
    }
}

/// The `prometheus.io/*` annotations of the pods, for a Prometheus that discovers pods by
/// them (kubernetes_sd): /metrics on the HTTP port, over HTTPS with spec.tls. They are part of
/// the template (and of its hash).
pub(crate) fn scrape_annotations(resolved: &Resolved) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::from([
        ("prometheus.io/scrape".to_string(), "true".to_string()),
        ("prometheus.io/port".to_string(), resolved.port.to_string()),
        ("prometheus.io/path".to_string(), "/metrics".to_string()),
    ]);
    if security::http_scheme(resolved) == "HTTPS" {
        annotations.insert("prometheus.io/scheme".to_string(), "https".to_string());
    }
    annotations
}

/// The container security of Pod Security "restricted": non-root, no privilege escalation, no
/// capabilities, a read-only root file system.
pub(crate) fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS),
        run_as_group: Some(RUN_AS),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_string()]),
            add: None,
        }),
        ..SecurityContext::default()
    }
}

/// The pod security of Pod Security "restricted", with the sysctl the model's ports need.
pub(crate) fn restricted_pod(resolved: &Resolved) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS),
        run_as_group: Some(RUN_AS),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_string(),
            localhost_profile: None,
        }),
        sysctls: low_port_sysctls(resolved),
        ..PodSecurityContext::default()
    }
}

/// The pods' image pull Secrets (names only: the kubelet reads the Secrets).
pub(crate) fn pull_secrets(resolved: &Resolved) -> Option<Vec<LocalObjectReference>> {
    (!resolved.image_pull_secrets.is_empty()).then(|| {
        resolved
            .image_pull_secrets
            .iter()
            .map(|name| LocalObjectReference { name: name.clone() })
            .collect()
    })
}

pub(crate) fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_string()),
        container_port: port,
        protocol: Some("TCP".to_string()),
        ..ContainerPort::default()
    }
}

/// A non-root process cannot bind ports below 1024, and `capabilities.add: [NET_BIND_SERVICE]`
/// does not help it (a non-root exec gets no effective capabilities without file capabilities,
/// which the scratch image has none of). The namespaced sysctl lowers the limit for the pod's
/// network namespace only; Pod Security "restricted" allows it. Set only when needed, so pods
/// on higher ports keep their template (and do not roll).
fn low_port_sysctls(resolved: &Resolved) -> Option<Vec<Sysctl>> {
    let lowest = resolved.port.min(resolved.grpc_port);
    (lowest < FIRST_UNPRIVILEGED_PORT).then(|| {
        vec![Sysctl {
            name: UNPRIVILEGED_PORT_SYSCTL.to_string(),
            value: lowest.to_string(),
        }]
    })
}

fn probe(path: &str, scheme: &str, period_seconds: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String(PORT_NAME.to_string()),
            scheme: Some(scheme.to_string()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period_seconds),
        timeout_seconds: Some(1),
        success_threshold: Some(1),
        failure_threshold: Some(failure_threshold),
        ..Probe::default()
    }
}

/// The model server's configuration, as the environment variables it reads.
pub(crate) fn env(resolved: &Resolved) -> Vec<EnvVar> {
    let mut env = vec![
        env_var(env::MODEL_NAME, resolved.name.clone()),
        // The pod's own namespace (the downward API), for the request log lines.
        EnvVar {
            name: env::NAMESPACE.to_string(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    // As the API server defaults it, so the no-op comparison sees no change.
                    api_version: Some("v1".to_string()),
                    field_path: "metadata.namespace".to_string(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        env_var(env::PORT, resolved.port.to_string()),
        env_var(env::GRPC_PORT, resolved.grpc_port.to_string()),
        // Keep serving for a few seconds after SIGTERM (readiness already failing) so the pod
        // leaves the Service's endpoints before its listener closes: no failed request while
        // a rollout replaces pods.
        env_var(
            env::SHUTDOWN_DELAY_SECONDS,
            SHUTDOWN_DELAY_SECONDS.to_string(),
        ),
    ];
    match &resolved.source {
        ResolvedSource::Builtin(training) => {
            env.push(env_var(env::SOURCE, "builtin"));
            env.push(env_var(env::TASK, resolved.task.as_str()));
            if let (Task::Binary, Some(class)) = (resolved.task, resolved.positive_class) {
                env.push(env_var(env::POSITIVE_CLASS, class.as_str()));
            }
            env.push(env_var(
                env::MAX_ITERATIONS,
                training.max_iterations.to_string(),
            ));
            env.push(env_var(env::L2_PENALTY, training.l2_penalty.to_string()));
            env.push(env_var(
                env::TEST_FRACTION,
                training.test_fraction.to_string(),
            ));
            env.push(env_var(env::SEED, training.seed.to_string()));
        }
        ResolvedSource::ConfigMap { key, .. } => {
            env.push(env_var(env::SOURCE, format!("file:{MODELS_DIR}/{key}")));
        }
        ResolvedSource::File(path) => {
            env.push(env_var(env::SOURCE, format!("file:{path}")));
        }
    }
    env.extend(security::env(resolved));
    env.extend(super::logging::env(resolved));
    env
}
