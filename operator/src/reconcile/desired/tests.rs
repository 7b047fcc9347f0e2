//! Whole-object tests of the builders: each expected object is written out in full.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HPAScalingRules, HorizontalPodAutoscaler,
    HorizontalPodAutoscalerBehavior, HorizontalPodAutoscalerSpec, MetricSpec, MetricTarget,
    ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, KeyToPath, LocalObjectReference, ObjectFieldSelector, PodSecurityContext,
    PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecurityContext,
    Service, ServicePort, ServiceSpec as CoreServiceSpec, Sysctl, Toleration,
    TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::deployment::model_hash;
use super::{deployment, hpa, pdb, service};
use crate::crd::{
    AutoscalingSpec, IrisClass, ModelStatus, ServiceSpec, ServiceType, Task, TrainingSpec,
};
use crate::reconcile::resolve::{resources_or_default, Resolved, ResolvedSource};

fn owner() -> OwnerReference {
    OwnerReference {
        api_version: "serving.iris.dev/v1alpha1".into(),
        kind: "IrisModel".into(),
        name: "iris".into(),
        uid: "uid-1".into(),
        controller: Some(true),
        block_owner_deletion: None,
    }
}

/// A builtin binary model with the defaults of the API.
fn builtin() -> Resolved {
    Resolved {
        name: "iris".into(),
        namespace: "ml".into(),
        generation: Some(1),
        owner: owner(),
        image: "iris-operator/model-server:0.1.0".into(),
        image_pull_secrets: Vec::new(),
        port: 5001,
        grpc_port: 8081,
        task: Task::Binary,
        positive_class: Some(IrisClass::Setosa),
        source: ResolvedSource::Builtin(TrainingSpec::default()),
        replicas: Some(1),
        autoscaling: None,
        service: ServiceSpec::default(),
        resources: resources_or_default(None),
        node_selector: None,
        tolerations: None,
        affinity: None,
        model_status: ModelStatus {
            task: "binary".into(),
            source: "builtin".into(),
            digest: None,
            accuracy: None,
        },
        endpoint: "http://iris.ml.svc.cluster.local:5001".into(),
        tls_secret: None,
        auth: None,
        logging: None,
        activator: None,
    }
}

fn string_map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn all_labels() -> BTreeMap<String, String> {
    string_map(&[
        ("app.kubernetes.io/component", "predictor"),
        ("app.kubernetes.io/instance", "iris"),
        ("app.kubernetes.io/managed-by", "iris-operator"),
        ("app.kubernetes.io/name", "model-server"),
        ("app.kubernetes.io/part-of", "iris-operator"),
    ])
}

fn selector() -> BTreeMap<String, String> {
    string_map(&[
        ("app.kubernetes.io/instance", "iris"),
        ("app.kubernetes.io/name", "model-server"),
    ])
}

fn meta() -> ObjectMeta {
    ObjectMeta {
        name: Some("iris".into()),
        namespace: Some("ml".into()),
        labels: Some(all_labels()),
        owner_references: Some(vec![owner()]),
        ..ObjectMeta::default()
    }
}

/// The env of `pairs`, with the pod's namespace from the downward API after MODEL_NAME (every
/// model server gets it, for its request log).
fn env(pairs: &[(&str, &str)]) -> Vec<EnvVar> {
    let mut env = Vec::new();
    for (k, v) in pairs {
        env.push(EnvVar {
            name: k.to_string(),
            value: Some(v.to_string()),
            value_from: None,
        });
        if *k == "MODEL_NAME" {
            env.push(EnvVar {
                name: "MODEL_NAMESPACE".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        api_version: Some("v1".into()),
                        field_path: "metadata.namespace".into(),
                    }),
                    ..EnvVarSource::default()
                }),
            });
        }
    }
    env
}

fn probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            scheme: Some("HTTP".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(1),
        success_threshold: Some(1),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

/// The expected Deployment, with the given env, volumes and replicas, hashed as the builder must.
/// The user's tolerations, then 30 s ones for an unreachable or not-ready node.
fn with_node_failure_tolerations(user: Option<Vec<Toleration>>) -> Vec<Toleration> {
    let mut all = user.unwrap_or_default();
    for key in [
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/not-ready",
    ] {
        all.push(Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: Some(30),
            value: None,
        });
    }
    all
}

fn spread_over_nodes_and_zones() -> Vec<TopologySpreadConstraint> {
    ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
        .into_iter()
        .map(|key| TopologySpreadConstraint {
            max_skew: 1,
            topology_key: key.into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            label_selector: Some(LabelSelector {
                match_labels: Some(selector()),
                match_expressions: None,
            }),
            match_label_keys: Some(vec!["pod-template-hash".into()]),
            ..TopologySpreadConstraint::default()
        })
        .collect()
}

#[allow(clippy::too_many_lines)] // the whole expected Deployment, field by field, is the point of the test
fn expected_deployment(
    resolved: &Resolved,
    env: Vec<EnvVar>,
    volumes: Option<Vec<Volume>>,
    mounts: Option<Vec<VolumeMount>>,
    scheduling: (Option<BTreeMap<String, String>>, Option<Vec<Toleration>>),
) -> Deployment {
    let port = resolved.port.to_string();
    let mut template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(all_labels()),
            annotations: Some(string_map(&[
                ("prometheus.io/path", "/metrics"),
                ("prometheus.io/port", &port),
                ("prometheus.io/scrape", "true"),
            ])),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "model-server".into(),
                image: Some(resolved.image.clone()),
                image_pull_policy: Some("IfNotPresent".into()),
                ports: Some(vec![
                    ContainerPort {
                        name: Some("http".into()),
                        container_port: resolved.port,
                        protocol: Some("TCP".into()),
                        ..ContainerPort::default()
                    },
                    ContainerPort {
                        name: Some("grpc".into()),
                        container_port: resolved.grpc_port,
                        protocol: Some("TCP".into()),
                        ..ContainerPort::default()
                    },
                ]),
                env: Some(env),
                resources: Some(resolved.resources.clone()),
                liveness_probe: Some(probe("/v2/health/live", 10, 3)),
                readiness_probe: Some(probe("/v2/health/ready", 2, 2)),
                security_context: Some(SecurityContext {
                    allow_privilege_escalation: Some(false),
                    read_only_root_filesystem: Some(true),
                    run_as_non_root: Some(true),
                    run_as_user: Some(65532),
                    run_as_group: Some(65532),
                    capabilities: Some(Capabilities {
                        drop: Some(vec!["ALL".into()]),
                        add: None,
                    }),
                    ..SecurityContext::default()
                }),
                volume_mounts: mounts,
                termination_message_policy: Some("FallbackToLogsOnError".into()),
                ..Container::default()
            }],
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(65532),
                run_as_group: Some(65532),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    localhost_profile: None,
                }),
                ..PodSecurityContext::default()
            }),
            node_selector: scheduling.0,
            tolerations: Some(with_node_failure_tolerations(scheduling.1)),
            topology_spread_constraints: Some(spread_over_nodes_and_zones()),
            volumes,
            ..PodSpec::default()
        }),
    };
    let hash = model_hash(&template, resolved);
    if let Some(annotations) = template
        .metadata
        .as_mut()
        .and_then(|m| m.annotations.as_mut())
    {
        annotations.insert("serving.iris.dev/model-hash".into(), hash);
    }
    Deployment {
        metadata: meta(),
        spec: Some(DeploymentSpec {
            replicas: resolved.replicas,
            selector: LabelSelector {
                match_labels: Some(selector()),
                match_expressions: None,
            },
            template,
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            revision_history_limit: Some(3),
            progress_deadline_seconds: Some(300),
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

#[test]
fn deployment_of_a_builtin_model() {
    let resolved = builtin();
    let expected = expected_deployment(
        &resolved,
        env(&[
            ("MODEL_NAME", "iris"),
            ("MODEL_SERVER_PORT", "5001"),
            ("MODEL_SERVER_GRPC_PORT", "8081"),
            ("MODEL_SERVER_SHUTDOWN_DELAY_SECONDS", "5"),
            ("MODEL_SOURCE", "builtin"),
            ("MODEL_TASK", "binary"),
            ("MODEL_POSITIVE_CLASS", "setosa"),
            ("MODEL_MAX_ITERATIONS", "100"),
            ("MODEL_L2_PENALTY", "1"),
            ("MODEL_TEST_FRACTION", "0.2"),
            ("MODEL_SEED", "42"),
        ]),
        None,
        None,
        (None, None),
    );
    assert_eq!(deployment::build(&resolved), expected);
    // The default resources are small and set no CPU limit (no throttling).
    assert_eq!(
        resolved.resources,
        ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".into(), Quantity("50m".into())),
                ("memory".into(), Quantity("32Mi".into())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".into(),
                Quantity("128Mi".into())
            )])),
            claims: None,
        }
    );
}

#[test]
fn deployment_of_a_configmap_model_mounts_the_artifact_read_only() {
    let resolved = Resolved {
        task: Task::Multiclass,
        positive_class: None,
        source: ResolvedSource::ConfigMap {
            name: "iris-v2".into(),
            key: "model.json".into(),
            content_hash: "abc".into(),
        },
        replicas: Some(3),
        node_selector: Some(string_map(&[("disk", "ssd")])),
        tolerations: Some(vec![Toleration {
            key: Some("gpu".into()),
            operator: Some("Exists".into()),
            ..Toleration::default()
        }]),
        ..builtin()
    };
    let expected = expected_deployment(
        &resolved,
        env(&[
            ("MODEL_NAME", "iris"),
            ("MODEL_SERVER_PORT", "5001"),
            ("MODEL_SERVER_GRPC_PORT", "8081"),
            ("MODEL_SERVER_SHUTDOWN_DELAY_SECONDS", "5"),
            ("MODEL_SOURCE", "file:/models/model.json"),
        ]),
        Some(vec![Volume {
            name: "model".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: "iris-v2".into(),
                items: Some(vec![KeyToPath {
                    key: "model.json".into(),
                    path: "model.json".into(),
                    mode: None,
                }]),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        }]),
        Some(vec![VolumeMount {
            name: "model".into(),
            mount_path: "/models".into(),
            read_only: Some(true),
            ..VolumeMount::default()
        }]),
        (resolved.node_selector.clone(), resolved.tolerations.clone()),
    );
    assert_eq!(deployment::build(&resolved), expected);
}

#[test]
fn deployment_of_a_file_model_in_a_custom_image() {
    let resolved = Resolved {
        image: "example.com/iris-custom:1".into(),
        port: 8080,
        source: ResolvedSource::File("/opt/iris.json".into()),
        ..builtin()
    };
    let expected = expected_deployment(
        &resolved,
        env(&[
            ("MODEL_NAME", "iris"),
            ("MODEL_SERVER_PORT", "8080"),
            ("MODEL_SERVER_GRPC_PORT", "8081"),
            ("MODEL_SERVER_SHUTDOWN_DELAY_SECONDS", "5"),
            ("MODEL_SOURCE", "file:/opt/iris.json"),
        ]),
        None,
        None,
        (None, None),
    );
    assert_eq!(deployment::build(&resolved), expected);
}

#[test]
fn a_private_image_is_pulled_with_the_named_secrets_in_order() {
    let pinned = "registry.example.com/iris/model-server@sha256:\
        0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let resolved = Resolved {
        image: pinned.into(),
        image_pull_secrets: vec!["regcred".into(), "backup-cred".into()],
        ..builtin()
    };
    let without_secrets = Resolved {
        image_pull_secrets: Vec::new(),
        ..resolved.clone()
    };
    let built = deployment::build(&resolved);
    let pod = built
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("a pod spec");
    assert_eq!(pod.containers[0].image.as_deref(), Some(pinned));
    assert_eq!(
        pod.image_pull_secrets,
        Some(vec![
            LocalObjectReference {
                name: "regcred".into()
            },
            LocalObjectReference {
                name: "backup-cred".into()
            },
        ])
    );
    // Naming a Secret changes the pods (a new rollout pulls with it), and nothing else.
    assert_ne!(hash_of(&resolved), hash_of(&without_secrets));
    let mut rest = built.clone();
    let template = &mut rest.spec.as_mut().expect("spec").template;
    template.spec.as_mut().expect("pod").image_pull_secrets = None;
    template
        .metadata
        .as_mut()
        .and_then(|m| m.annotations.as_mut())
        .expect("annotations")
        .insert(
            "serving.iris.dev/model-hash".into(),
            hash_of(&without_secrets),
        );
    assert_eq!(rest, deployment::build(&without_secrets));
    // Without Secrets the pod spec has no imagePullSecrets at all.
    let plain = deployment::build(&builtin());
    let plain_pod = plain
        .spec
        .and_then(|s| s.template.spec)
        .expect("a pod spec");
    assert_eq!(plain_pod.image_pull_secrets, None);
}

#[test]
fn ports_below_1024_lower_the_unprivileged_port_start_of_the_pod_only() {
    let sysctls = |port, grpc_port| {
        deployment::build(&Resolved {
            port,
            grpc_port,
            ..builtin()
        })
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.security_context)
        .and_then(|s| s.sysctls)
    };
    assert_eq!(sysctls(5001, 8081), None);
    assert_eq!(sysctls(1024, 8081), None);
    let expected = |value: &str| {
        Some(vec![Sysctl {
            name: "net.ipv4.ip_unprivileged_port_start".into(),
            value: value.into(),
        }])
    };
    assert_eq!(sysctls(80, 8081), expected("80"));
    assert_eq!(sysctls(8080, 443), expected("443"));
}

#[test]
fn deployment_leaves_replicas_to_the_autoscaler() {
    let resolved = Resolved {
        replicas: None,
        autoscaling: Some(AutoscalingSpec {
            min_replicas: 2,
            max_replicas: 5,
            target_cpu_utilization_percentage: 70,
            scale_down_stabilization_seconds: None,
            idle_seconds: None,
            target_requests_per_second: None,
        }),
        ..builtin()
    };
    let built = deployment::build(&resolved);
    assert_eq!(built.spec.and_then(|s| s.replicas), None);
}

fn hash_of(resolved: &Resolved) -> String {
    deployment::build(resolved)
        .spec
        .and_then(|s| s.template.metadata)
        .and_then(|m| m.annotations)
        .and_then(|a| a.get("serving.iris.dev/model-hash").cloned())
        .expect("the pod template carries the model hash")
}

#[test]
fn model_hash_follows_what_shapes_the_pods_only() {
    let base = builtin();
    let same = hash_of(&base);
    assert_eq!(same, hash_of(&builtin()), "deterministic");
    assert_eq!(same.len(), 16);

    let changes = [
        Resolved {
            image: "other:1".into(),
            ..builtin()
        },
        Resolved {
            port: 6000,
            ..builtin()
        },
        Resolved {
            grpc_port: 9000,
            ..builtin()
        },
        Resolved {
            positive_class: Some(IrisClass::Virginica),
            ..builtin()
        },
        Resolved {
            source: ResolvedSource::Builtin(TrainingSpec {
                seed: 7,
                ..TrainingSpec::default()
            }),
            ..builtin()
        },
        Resolved {
            resources: ResourceRequirements {
                limits: Some(BTreeMap::from([("memory".into(), Quantity("1Gi".into()))])),
                ..ResourceRequirements::default()
            },
            ..builtin()
        },
    ];
    for changed in &changes {
        assert_ne!(hash_of(changed), same, "{changed:?}");
    }

    // The artifact bytes of a ConfigMap source roll the pods although the template is equal.
    let artifact = |content_hash: &str| Resolved {
        source: ResolvedSource::ConfigMap {
            name: "cm".into(),
            key: "model.json".into(),
            content_hash: content_hash.into(),
        },
        ..builtin()
    };
    assert_ne!(hash_of(&artifact("v1")), hash_of(&artifact("v2")));

    // What does not shape the pods does not roll them: replica count, service type, status.
    let unrelated = Resolved {
        replicas: Some(4),
        service: ServiceSpec {
            type_: ServiceType::NodePort,
            node_port: Some(30080),
        },
        generation: Some(9),
        endpoint: "elsewhere".into(),
        ..builtin()
    };
    assert_eq!(hash_of(&unrelated), same);
}

#[test]
fn service_of_each_type() {
    let expected = |type_: &str, node_port: Option<i32>| Service {
        metadata: meta(),
        spec: Some(CoreServiceSpec {
            type_: Some(type_.into()),
            selector: Some(selector()),
            ports: Some(vec![
                ServicePort {
                    name: Some("http".into()),
                    port: 5001,
                    target_port: Some(IntOrString::String("http".into())),
                    protocol: Some("TCP".into()),
                    app_protocol: Some("http".into()),
                    node_port,
                },
                ServicePort {
                    name: Some("grpc".into()),
                    port: 8081,
                    target_port: Some(IntOrString::String("grpc".into())),
                    protocol: Some("TCP".into()),
                    app_protocol: Some("grpc".into()),
                    ..ServicePort::default()
                },
            ]),
            ..CoreServiceSpec::default()
        }),
        status: None,
    };
    assert_eq!(service::build(&builtin()), expected("ClusterIP", None));

    let node_port = Resolved {
        service: ServiceSpec {
            type_: ServiceType::NodePort,
            node_port: Some(30080),
        },
        ..builtin()
    };
    assert_eq!(
        service::build(&node_port),
        expected("NodePort", Some(30080))
    );

    let load_balancer = Resolved {
        service: ServiceSpec {
            type_: ServiceType::LoadBalancer,
            node_port: None,
        },
        ..builtin()
    };
    assert_eq!(
        service::build(&load_balancer),
        expected("LoadBalancer", None)
    );
}

#[test]
fn autoscaler_only_when_asked() {
    assert_eq!(hpa::build(&builtin()), None);
    let resolved = Resolved {
        replicas: None,
        autoscaling: Some(AutoscalingSpec {
            min_replicas: 1,
            max_replicas: 5,
            target_cpu_utilization_percentage: 70,
            scale_down_stabilization_seconds: None,
            idle_seconds: None,
            target_requests_per_second: None,
        }),
        ..builtin()
    };
    let expected = HorizontalPodAutoscaler {
        metadata: meta(),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: "iris".into(),
            },
            min_replicas: Some(1),
            max_replicas: 5,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".into(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".into(),
                    target: MetricTarget {
                        type_: "Utilization".into(),
                        average_utilization: Some(70),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            behavior: Some(HorizontalPodAutoscalerBehavior {
                scale_down: Some(HPAScalingRules {
                    stabilization_window_seconds: Some(300),
                    ..HPAScalingRules::default()
                }),
                scale_up: None,
            }),
        }),
        status: None,
    };
    assert_eq!(hpa::build(&resolved), Some(expected));

    // The user's scale-down window goes to the HPA's behavior.
    let mut short = resolved.clone();
    if let Some(a) = short.autoscaling.as_mut() {
        a.scale_down_stabilization_seconds = Some(15);
    }
    let window =
        hpa::build(&short).and_then(|h| h.spec?.behavior?.scale_down?.stabilization_window_seconds);
    assert_eq!(window, Some(15));
}

#[test]
fn disruption_budget_from_two_replicas() {
    assert_eq!(pdb::build(&builtin()), None);
    let expected = PodDisruptionBudget {
        metadata: meta(),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector()),
                match_expressions: None,
            }),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    };
    let two = Resolved {
        replicas: Some(2),
        ..builtin()
    };
    assert_eq!(pdb::build(&two), Some(expected.clone()));

    // With an autoscaler, its minimum decides.
    let scaled = |min_replicas| Resolved {
        replicas: None,
        autoscaling: Some(AutoscalingSpec {
            min_replicas,
            max_replicas: 5,
            target_cpu_utilization_percentage: 70,
            scale_down_stabilization_seconds: None,
            idle_seconds: None,
            target_requests_per_second: None,
        }),
        ..builtin()
    };
    assert_eq!(pdb::build(&scaled(1)), None);
    assert_eq!(pdb::build(&scaled(2)), Some(expected));
}

#[test]
fn selector_string_is_the_scale_subresource_selector() {
    assert_eq!(
        crate::names::selector_string("iris"),
        "app.kubernetes.io/instance=iris,app.kubernetes.io/name=model-server"
    );
    assert_eq!(
        crate::reconcile::resolve::endpoint("iris", "ml", 5001, "cluster.local", false),
        "http://iris.ml.svc.cluster.local:5001"
    );
}

#[test]
fn a_users_toleration_of_a_node_failure_taint_replaces_the_default() {
    let forever = Toleration {
        key: Some("node.kubernetes.io/unreachable".into()),
        operator: Some("Exists".into()),
        effect: Some("NoExecute".into()),
        ..Toleration::default()
    };
    let resolved = Resolved {
        tolerations: Some(vec![forever.clone()]),
        ..builtin()
    };
    let built = deployment::build(&resolved);
    let tolerations = built
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.tolerations)
        .expect("tolerations");
    assert_eq!(
        tolerations,
        vec![
            forever,
            Toleration {
                key: Some("node.kubernetes.io/not-ready".into()),
                operator: Some("Exists".into()),
                effect: Some("NoExecute".into()),
                toleration_seconds: Some(30),
                value: None,
            }
        ]
    );
}

#[test]
#[allow(clippy::too_many_lines)] // the activator's four objects checked whole
fn an_activator_only_for_a_model_that_scales_to_zero_with_rights_to_its_own_deployment() {
    assert!(super::activator::build(&builtin()).is_none());
    let resolved = Resolved {
        replicas: None,
        autoscaling: Some(AutoscalingSpec {
            min_replicas: 0,
            max_replicas: 3,
            target_cpu_utilization_percentage: 70,
            scale_down_stabilization_seconds: None,
            idle_seconds: Some(60),
            target_requests_per_second: Some(10),
        }),
        activator: Some(crate::context::ActivatorSettings::default()),
        ..builtin()
    };
    let activator = super::activator::build(&resolved).expect("an activator");
    let deployment = &activator.deployment;
    assert_eq!(deployment.metadata.name.as_deref(), Some("iris-activator"));
    assert_eq!(
        deployment.metadata.owner_references,
        meta().owner_references
    );
    let spec = deployment.spec.as_ref().expect("spec");
    let selector = string_map(&[
        ("app.kubernetes.io/instance", "iris"),
        ("app.kubernetes.io/name", "iris-activator"),
    ]);
    assert_eq!(spec.selector.match_labels.as_ref(), Some(&selector));
    let pod = spec.template.spec.as_ref().expect("pod spec");
    let container = &pod.containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some("iris-operator/operator:0.1.0")
    );
    let args = container.args.clone().unwrap_or_default();
    for arg in [
        "activator",
        "--deployment=iris",
        "--namespace=ml",
        "--selector=app.kubernetes.io/instance=iris,app.kubernetes.io/name=model-server",
        "--listen=http=5001",
        "--listen=grpc=8081",
        "--max-held=1000",
        "--hold-timeout-seconds=30",
    ] {
        assert!(args.iter().any(|a| a == arg), "{arg} in {args:?}");
    }
    // The Service's named target ports reach it as they reach the model's pods.
    let ports: Vec<_> = container
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.as_deref().unwrap_or_default(), p.container_port))
        .collect();
    assert_eq!(ports, [("http", 5001), ("grpc", 8081), ("admin", 9091)]);
    // Restricted like the model server, and given longer than a hold to finish.
    let model_pod = deployment::build(&resolved)
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod");
    assert_eq!(
        container.security_context,
        model_pod.containers[0].security_context
    );
    assert_eq!(pod.termination_grace_period_seconds, Some(40));
    assert_eq!(pod.service_account_name.as_deref(), Some("iris-activator"));
    // Its Role: the scale of its own model's Deployment, and a list and watch of pods.
    let rules = activator.role.rules.clone().unwrap_or_default();
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].resources, Some(vec!["deployments/scale".into()]));
    assert_eq!(rules[0].resource_names, Some(vec!["iris".into()]));
    assert_eq!(rules[0].verbs, ["get", "patch"]);
    assert_eq!(rules[1].resources, Some(vec!["pods".into()]));
    assert_eq!(rules[1].verbs, ["list", "watch"]);
    let subjects = activator.role_binding.subjects.clone().unwrap_or_default();
    assert_eq!(subjects[0].name, "iris-activator");
    assert_eq!(activator.role_binding.role_ref.name, "iris-activator");

    // The Service switches between the model's pods and the activator's.
    let mut svc = service::build(&resolved);
    assert!(!service::selects_activator(&svc, "iris"));
    service::select_activator(&mut svc, "iris");
    assert!(service::selects_activator(&svc, "iris"));
    assert_eq!(svc.spec.and_then(|s| s.selector), Some(selector));

    // A model on the admin port moves the activator's admin port out of its way.
    let on_admin_port = Resolved {
        port: 9091,
        grpc_port: 9092,
        ..resolved
    };
    let activator = super::activator::build(&on_admin_port).expect("an activator");
    let container = &activator
        .deployment
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod")
        .containers[0];
    assert!(
        container
            .args
            .iter()
            .flatten()
            .any(|a| a == "--admin-addr=0.0.0.0:9093"),
        "{:?}",
        container.args
    );
}
