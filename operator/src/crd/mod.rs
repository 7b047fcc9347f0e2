//! The `IrisModel` API (`serving.iris.dev/v1alpha1`).
//!
//! Doc comments on these types become the CRD's field descriptions, so they are written for
//! the user reading `kubectl explain irismodel.spec`. Cross-field rules are CEL
//! (`x-kubernetes-validations`) so that `kubectl apply` of a bad manifest fails with a message.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// API group of the IrisModel resource.
pub const GROUP: &str = "serving.iris.dev";
/// Full CRD name, as `kubectl get crd` shows it.
pub const CRD_NAME: &str = "irismodels.serving.iris.dev";

mod autoscaling;
mod logging;
mod model;
mod rollout;
mod security;
mod service;
mod status;

pub use autoscaling::{AutoscalingSpec, DEFAULT_IDLE_SECONDS, DEFAULT_SCALE_DOWN_STABILIZATION};
pub use logging::{LoggingMode, LoggingSpec, SecretKeyRef};
pub use model::{
    BuiltinSource, ConfigMapSource, IrisClass, ModelSource, ModelSpec, Task, TrainingSpec,
};
pub use rollout::{
    CanaryAnalysis, CanarySpec, CanaryStep, RolloutSpec, RolloutStrategy, MAX_CANARY_REPLICAS,
};
pub use security::{AuthSpec, PullSecretRef, TlsSpec};
pub use service::{ServiceSpec, ServiceType};
pub use status::{AnalysisStatus, ImageStatus, IrisModelStatus, ModelStatus, RolloutStatus};

/// Desired state of an IrisModel: which model to serve, how many replicas, and how to reach it.
/// The operator turns it into a Deployment of the model server, a Service, and, when asked,
/// a HorizontalPodAutoscaler and a PodDisruptionBudget, all named like the IrisModel.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[allow(
    clippy::duplicated_attributes,
    reason = "each printcolumn(...) repeats keys such as type_ = \"string\", which the lint mistakes for duplicates"
)]
#[kube(
    group = "serving.iris.dev",
    version = "v1alpha1",
    kind = "IrisModel",
    plural = "irismodels",
    singular = "irismodel",
    shortname = "im",
    category = "iris",
    namespaced,
    status = "IrisModelStatus",
    derive = "PartialEq",
    // The name becomes the name of the Service (a DNS-1035 label) and a label value of the
    // pods: refuse at apply what the API server would refuse for the children.
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message("metadata.name must start with a lowercase letter and contain only lowercase letters, digits and '-' (ending with a letter or digit): it names the model's Service, a DNS-1035 label"),
    // Two models' children must not collide by construction: `foo`'s canary and activator are
    // `foo-canary` and `foo-activator`, so no model may take such a name.
    validation = Rule::new("!self.metadata.name.endsWith('-canary') && !self.metadata.name.endsWith('-activator')").message("metadata.name must not end in -canary or -activator: the operator names a model's canary Deployment <name>-canary and its activator <name>-activator, so a model with such a name could collide with another model's children"),
    validation = Rule::new("size(self.metadata.name) <= 63").message("metadata.name must be at most 63 characters: it names the model's Service, a DNS-1035 label"),
    doc = "An Iris classifier served over HTTP (KServe v1, Open Inference Protocol v2 and /predict_iris).",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Task", type_ = "string", json_path = ".spec.model.task"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".status.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".status.endpoint"),
    printcolumn(
        name = "Status",
        type_ = "string",
        description = "Reason of the Ready condition",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Rollout",
        type_ = "string",
        description = "Where the last canary rollout stands",
        json_path = ".status.rollout.summary"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.port) ? self.port : 5001) != (has(self.grpcPort) ? self.grpcPort : 8081)").message("spec.grpcPort must differ from spec.port"))]
#[x_kube(validation = Rule::new("!(has(self.auth) && has(self.auth.protectMetrics) && self.auth.protectMetrics && has(self.rollout) && has(self.rollout.strategy) && self.rollout.strategy == 'Canary')").message("spec.auth.protectMetrics cannot be used with spec.rollout.strategy Canary: the canary analysis reads the pods' /metrics, and the operator holds no token (it never reads Secrets)"))]
// A canary's pods carry its weight (pods are the traffic split): beside S stable pods a weight W
// takes ceil(S*W/(100-W)) canary pods, 99 times S at 99%. Refuse a step that would need more
// than MAX_CANARY_REPLICAS (100, the bound of `replicas`): S*W <= 100*(100-W).
#[x_kube(validation = Rule::new("!has(self.rollout) || !has(self.rollout.canary) || !has(self.rollout.canary.steps) || self.rollout.canary.steps.all(s, (has(self.autoscaling) ? self.autoscaling.maxReplicas : (has(self.replicas) ? self.replicas : 1)) * s.weight <= 100 * (100 - s.weight))").message("spec.rollout.canary.steps[].weight needs more than 100 canary pods: beside S stable pods (spec.replicas, or spec.autoscaling.maxReplicas) a step of weight W runs ceil(S*W/(100-W)) canary pods, and a canary may have at most 100, like spec.replicas; lower the weight or the replicas"))]
pub struct IrisModelSpec {
    /// Number of model-server pods. Ignored when `autoscaling` is set (the autoscaler owns the
    /// count then). `kubectl scale irismodel/<name> --replicas=N` changes this field.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,

    /// The model to serve: its task and where it comes from.
    #[serde(default)]
    pub model: ModelSpec,

    /// Model-server image: `host/repo:tag`, or `host/repo@sha256:<64 hex digits>` (or
    /// `repo:tag@sha256:...`) to pin the exact bits; `status.image.digest` then shows the digest
    /// the pods run. Empty means the image the operator was installed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new("self == '' || self.matches('^[^\\\\s@]+(@sha256:[a-f0-9]{64})?$')").message("spec.image must be an image reference without spaces, like registry.example.com/iris/model-server:0.1.0, or pinned by digest: registry.example.com/iris/model-server@sha256:<64 lowercase hex digits>"))]
    pub image: Option<String>,

    /// Secrets (type `kubernetes.io/dockerconfigjson`, as `kubectl create secret
    /// docker-registry` makes) the kubelet uses to pull `image` from a private registry. Names
    /// only: the operator never reads them. When unset, the default of the operator's
    /// installation applies (chart value `modelServer.imagePullSecrets`); an empty list means
    /// none. A pull refused for lack of credentials shows as Degraded, reason
    /// ImagePullUnauthorized, naming the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub image_pull_secrets: Option<Vec<PullSecretRef>>,

    /// Port of the model server's HTTP API: the container port and the Service port, both
    /// named `http`. Ports below 1024 work: the pods then set the namespaced sysctl
    /// `net.ipv4.ip_unprivileged_port_start` to the lower of `port` and `grpcPort`, so the
    /// non-root server may bind them (allowed by Pod Security "restricted").
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,

    /// Port of the model server's gRPC API (Open Inference Protocol v2): the container port
    /// and the Service port, both named `grpc`. Must differ from `port`; below 1024 works as
    /// for `port`.
    #[serde(default = "default_grpc_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub grpc_port: i32,

    /// How the model is exposed: the Service's type, and its node port for NodePort.
    #[serde(default)]
    pub service: ServiceSpec,

    /// CPU and memory of the model-server container. When empty, small defaults apply:
    /// requests cpu 50m and memory 32Mi, limit memory 128Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Scale on CPU utilisation with a HorizontalPodAutoscaler. When set, `replicas` is ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,

    /// Node labels the model-server pods must run on (passed to the pod spec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,

    /// Tolerations of the model-server pods (passed to the pod spec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,

    /// Affinity of the model-server pods (passed to the pod spec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// How a model change reaches the pods: a quality gate for every strategy, and either the
    /// rolling update of a Deployment (the default) or a measured canary that promotes or
    /// rolls back on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutSpec>,

    /// Serve HTTPS on `port` and gRPC over TLS on `grpcPort` (plain HTTP is then refused),
    /// with the certificate of a `kubernetes.io/tls` Secret. The Secret is mounted into the
    /// pods, never read by the operator; a renewed certificate (cert-manager) is picked up by
    /// the running pods within seconds, without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,

    /// Require `Authorization: Bearer <token>` on every prediction and metadata route (HTTP)
    /// and method (gRPC); health checks stay open, and `/metrics` unless `protectMetrics`.
    /// The tokens come from a Secret mounted into the pods (never read by the operator);
    /// editing it takes effect within seconds, without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,

    /// Payload logging: each prediction's request and response posted as CloudEvents to a
    /// receiver (KServe's logger format).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<LoggingSpec>,
}

fn default_replicas() -> i32 {
    1
}

fn default_port() -> i32 {
    5001
}

fn default_grpc_port() -> i32 {
    8081
}

impl IrisModel {
    /// The positive class of a binary model (setosa when not given); None for multiclass.
    pub fn positive_class(&self) -> Option<IrisClass> {
        match self.spec.model.task {
            Task::Binary => Some(self.spec.model.positive_class.unwrap_or_default()),
            Task::Multiclass => None,
        }
    }
}
