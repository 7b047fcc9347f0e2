//! The `IrisModel` API (`serving.iris.dev/v1alpha1`).
//!
//! Doc comments on these types become the CRD's field descriptions, so they are written for
//! the user reading `kubectl explain irismodel.spec`. Cross-field rules are CEL
//! (`x-kubernetes-validations`) so that `kubectl apply` of a bad manifest fails with a message.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of the IrisModel resource.
pub const GROUP: &str = "serving.iris.dev";
/// Full CRD name, as `kubectl get crd` shows it.
pub const CRD_NAME: &str = "irismodels.serving.iris.dev";

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
}

/// A Secret in the IrisModel's namespace holding registry credentials.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PullSecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')").message("spec.imagePullSecrets[].name must be a Secret name: lowercase letters, digits, '-' and '.'"))]
    pub name: String,
}

/// TLS on the model server's ports.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// Name of a Secret in the IrisModel's namespace with keys `tls.crt` (the certificate
    /// chain, PEM) and `tls.key` (its private key, PEM): a `kubernetes.io/tls` Secret as
    /// `kubectl create secret tls` and cert-manager make. A missing Secret or key shows as
    /// Degraded, reason SecretNotFound or SecretKeyNotFound.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')").message("spec.tls.secretName must be a Secret name: lowercase letters, digits, '-' and '.'"))]
    pub secret_name: String,
}

/// Bearer-token authentication on the model server's ports.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Name of a Secret in the IrisModel's namespace whose `key` holds the accepted tokens,
    /// one per line (blank lines and lines starting with `#` ignored). A missing Secret or
    /// key shows as Degraded, reason SecretNotFound or SecretKeyNotFound.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')").message("spec.auth.secretName must be a Secret name: lowercase letters, digits, '-' and '.'"))]
    pub secret_name: String,

    /// Key of the Secret holding the tokens. Default `tokens`.
    #[serde(default = "default_auth_key")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[-._a-zA-Z0-9]+$') && !self.startsWith('..')").message("spec.auth.key must be a Secret key: letters, digits, '-', '_' and '.', not starting with '..'"))]
    pub key: String,

    /// Also require a token on `/metrics`. Not allowed with the Canary rollout strategy, whose
    /// analysis reads the pods' `/metrics` without a token. Default false.
    #[serde(default)]
    pub protect_metrics: bool,
}

fn default_auth_key() -> String {
    "tokens".to_string()
}

/// How a model change is rolled out.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// Quality gate: a model whose held-out accuracy (known before any pod runs: measured by
    /// the operator for a builtin model, read from a ConfigMap artifact) is below this gets no
    /// pod; the model already serving keeps serving and the status says why (Degraded, reason
    /// BelowMinAccuracy). Not checked for a `file` source, whose accuracy the operator cannot
    /// read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_accuracy: Option<f64>,

    /// `RollingUpdate` (default): the Deployment's surge-one rolling update. `Canary`: a
    /// model change first runs in canary pods next to the serving (stable) ones, behind the
    /// same Service, through `canary.steps`; each step's analysis of the canary pods' own
    /// metrics passes, holds or fails it; all steps passed promotes the new model, a failed
    /// one rolls back.
    #[serde(default)]
    pub strategy: RolloutStrategy,

    /// Steps and analysis of the `Canary` strategy (defaults apply when empty).
    #[serde(default)]
    pub canary: CanarySpec,
}

/// How a model change is rolled out.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RolloutStrategy {
    /// The Deployment's rolling update (surge one pod, never below the desired count).
    #[default]
    RollingUpdate,
    /// Canary pods measured step by step, then promoted or rolled back.
    Canary,
}

/// The canary: its steps and how each is judged. Without a service mesh the traffic weight is
/// carried by the ratio of canary pods to stable pods behind the one Service (kube-proxy
/// spreads connections evenly over ready pods), so the weight achieved is a ratio of pod
/// counts: `status.rollout.achievedWeight` reports it next to the intended one.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanarySpec {
    /// The steps, in order, each a traffic weight and how long to hold it. Default: 25% for
    /// 60 s, then 50% for 60 s.
    #[serde(default = "default_canary_steps")]
    #[schemars(length(min = 1, max = 10))]
    pub steps: Vec<CanaryStep>,

    /// Thresholds a step's analysis must meet.
    #[serde(default)]
    pub analysis: CanaryAnalysis,

    /// Seconds the canary pods have to become ready, from the start of a step; past it the
    /// canary is rolled back. Default 120.
    #[serde(default = "default_ready_deadline")]
    #[schemars(range(min = 10, max = 1800))]
    pub ready_deadline_seconds: i32,
}

impl Default for CanarySpec {
    fn default() -> Self {
        Self {
            steps: default_canary_steps(),
            analysis: CanaryAnalysis::default(),
            ready_deadline_seconds: default_ready_deadline(),
        }
    }
}

fn default_canary_steps() -> Vec<CanaryStep> {
    vec![
        CanaryStep {
            weight: 25,
            hold_seconds: 60,
        },
        CanaryStep {
            weight: 50,
            hold_seconds: 60,
        },
    ]
}

fn default_ready_deadline() -> i32 {
    120
}

/// One canary step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStep {
    /// Share of the pods (and so of the traffic), in percent, that run the new model.
    #[schemars(range(min = 1, max = 99))]
    pub weight: i32,

    /// Seconds to hold the weight before the step may pass (it passes only once the
    /// analysis does too).
    #[serde(default = "default_hold_seconds")]
    #[schemars(range(min = 10, max = 3600))]
    pub hold_seconds: i32,
}

fn default_hold_seconds() -> i32 {
    60
}

/// What a step's analysis requires of the canary pods (their requests since they started,
/// read from their own /metrics: prediction routes over HTTP and gRPC).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryAnalysis {
    /// Highest share of the canary's requests that may fail with a 5xx (or a gRPC error
    /// other than a client's), 0-1. Default 0.01.
    #[serde(default = "default_max_error_rate")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_error_rate: f64,

    /// Highest 99th-percentile latency of the canary's requests, in milliseconds. Default 500.
    #[serde(default = "default_max_p99")]
    #[schemars(range(min = 1, max = 60000))]
    pub max_p99_latency_ms: i64,

    /// Requests the canary must have served before a step may pass (or fail on its figures).
    /// Default 20.
    #[serde(default = "default_min_requests")]
    #[schemars(range(min = 1, max = 1000000))]
    pub min_requests: i64,
}

impl Default for CanaryAnalysis {
    fn default() -> Self {
        Self {
            max_error_rate: default_max_error_rate(),
            max_p99_latency_ms: default_max_p99(),
            min_requests: default_min_requests(),
        }
    }
}

fn default_max_error_rate() -> f64 {
    0.01
}

fn default_max_p99() -> i64 {
    500
}

fn default_min_requests() -> i64 {
    20
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

/// The model: what it predicts and where its weights come from.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.positiveClass) || !has(self.task) || self.task == 'binary'").message("positiveClass is only allowed when task is binary"))]
pub struct ModelSpec {
    /// `binary`: "is it <positiveClass>?" (one class against the rest); `multiclass`: which of
    /// setosa, versicolor or virginica.
    #[serde(default)]
    pub task: Task,

    /// For `binary` only: the class the model answers "yes" for. Defaults to setosa.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positive_class: Option<IrisClass>,

    /// Where the model comes from; exactly one of builtin, configMap or file.
    #[serde(default)]
    pub source: ModelSource,

    /// Hyper-parameters for a builtin model, trained when the server starts.
    #[serde(default)]
    pub training: TrainingSpec,
}

/// What the model predicts.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// One class against the rest.
    #[default]
    Binary,
    /// One of the three Iris species.
    Multiclass,
}

impl Task {
    /// The name used on the wire and in the model server's flags.
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Binary => "binary",
            Task::Multiclass => "multiclass",
        }
    }
}

// An Iris species (no doc comment: it would replace the description of the field using it).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IrisClass {
    /// Iris setosa.
    #[default]
    Setosa,
    /// Iris versicolor.
    Versicolor,
    /// Iris virginica.
    Virginica,
}

impl IrisClass {
    /// The name used on the wire and in the model server's flags.
    pub fn as_str(self) -> &'static str {
        match self {
            IrisClass::Setosa => "setosa",
            IrisClass::Versicolor => "versicolor",
            IrisClass::Virginica => "virginica",
        }
    }
}

/// Where the model comes from. Set exactly one field.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.builtin) ? 1 : 0) + (has(self.configMap) ? 1 : 0) + (has(self.file) ? 1 : 0) == 1").message("set exactly one of source.builtin, source.configMap or source.file"))]
pub struct ModelSource {
    /// Train at start-up on the Iris data compiled into the server, with `training`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<BuiltinSource>,

    /// A model artifact (the output of `model-server train --out`) stored in a ConfigMap in the
    /// IrisModel's namespace. A change to its content rolls the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapSource>,

    /// Absolute path of a model artifact inside the image (for a custom image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("file must be an absolute path"))]
    pub file: Option<String>,
}

impl Default for ModelSource {
    fn default() -> Self {
        Self {
            builtin: Some(BuiltinSource {}),
            config_map: None,
            file: None,
        }
    }
}

/// Train the model when the server starts. Takes no fields: `builtin: {}`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct BuiltinSource {}

/// A model artifact in a ConfigMap of the IrisModel's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapSource {
    /// Name of the ConfigMap.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Key holding the artifact JSON.
    #[serde(default = "default_configmap_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_configmap_key() -> String {
    "model.json".to_string()
}

/// Hyper-parameters of a builtin model. The same values give the same model (and digest).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrainingSpec {
    /// Maximum iterations of the logistic-regression solver.
    #[serde(default = "default_max_iterations")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_iterations: i64,

    /// L2 regularisation strength (0 turns it off).
    #[serde(default = "default_l2_penalty")]
    #[schemars(range(min = 0.0, max = 1000.0))]
    pub l2_penalty: f64,

    /// Share of the data held out to measure accuracy, strictly between 0 and 1.
    #[serde(default = "default_test_fraction")]
    #[schemars(extend("minimum" = 0.0, "exclusiveMinimum" = true, "maximum" = 1.0, "exclusiveMaximum" = true))]
    pub test_fraction: f64,

    /// Seed of the train/test split.
    #[serde(default = "default_seed")]
    #[schemars(range(min = 0))]
    pub seed: i64,
}

impl Default for TrainingSpec {
    fn default() -> Self {
        Self {
            max_iterations: default_max_iterations(),
            l2_penalty: default_l2_penalty(),
            test_fraction: default_test_fraction(),
            seed: default_seed(),
        }
    }
}

fn default_max_iterations() -> i64 {
    100
}

fn default_l2_penalty() -> f64 {
    1.0
}

fn default_test_fraction() -> f64 {
    0.2
}

fn default_seed() -> i64 {
    42
}

/// How the model is exposed inside (ClusterIP) or outside (NodePort, LoadBalancer) the cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.nodePort) || self.type == 'NodePort' || self.type == 'LoadBalancer'").message("service.nodePort requires service.type NodePort or LoadBalancer"))]
pub struct ServiceSpec {
    /// Service type.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,

    /// Node port of the HTTP port for NodePort (or LoadBalancer), in Kubernetes' default
    /// node-port range 30000-32767; picked by Kubernetes when empty (the gRPC port always gets
    /// a picked one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 30000, max = 32767))]
    pub node_port: Option<i32>,
}

/// Kubernetes Service type.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    /// Reachable inside the cluster only.
    #[default]
    ClusterIP,
    /// Also reachable on every node's IP at the node port.
    NodePort,
    /// Also reachable through a cloud load balancer.
    LoadBalancer,
}

impl ServiceType {
    /// The Kubernetes name of the type.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// Horizontal autoscaling, on CPU utilisation by a HorizontalPodAutoscaler, or on the request
/// rate by the operator itself (`targetRequestsPerSecond`); either way the Deployment's scale
/// subresource holds the one replica count.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.minReplicas) || self.minReplicas <= self.maxReplicas").message("autoscaling.minReplicas must not exceed autoscaling.maxReplicas"))]
#[x_kube(validation = Rule::new("!has(self.minReplicas) || self.minReplicas > 0 || has(self.targetRequestsPerSecond)").message("autoscaling.minReplicas 0 (scale to zero) needs autoscaling.targetRequestsPerSecond: the operator sees idleness in the pods' request counters"))]
#[x_kube(validation = Rule::new("!has(self.idleSeconds) || (has(self.minReplicas) && self.minReplicas == 0)").message("autoscaling.idleSeconds applies only with autoscaling.minReplicas 0"))]
pub struct AutoscalingSpec {
    /// Fewest pods. 0 scales the model to zero after `idleSeconds` without a prediction
    /// request (needs `targetRequestsPerSecond`): an activator pod then holds the requests
    /// that arrive, starts a pod and forwards them to it.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 0, max = 100))]
    pub min_replicas: i32,

    /// Most pods.
    #[schemars(range(min = 1, max = 100))]
    pub max_replicas: i32,

    /// Average CPU use, in percent of the CPU request, that the autoscaler aims for. Ignored
    /// when `targetRequestsPerSecond` is set.
    #[serde(
        default = "default_target_cpu",
        rename = "targetCPUUtilizationPercentage"
    )]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: i32,

    /// Prediction requests per second per pod that the autoscaler aims for, over HTTP and
    /// gRPC together. When set, the operator scales on the request rate it reads from the
    /// pods' own counters (every 5 s) instead of a HorizontalPodAutoscaler on CPU, which is a
    /// poor signal for a server that spends microseconds of CPU per request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub target_requests_per_second: Option<i32>,

    /// How long the load must have stayed low before pods are removed: the autoscaler keeps
    /// the highest replica count it recommended over this window (the HorizontalPodAutoscaler's
    /// behavior.scaleDown.stabilizationWindowSeconds). Default 300; 0 scales down at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3600))]
    pub scale_down_stabilization_seconds: Option<i32>,

    /// With `minReplicas: 0`: seconds without a prediction request after which the model
    /// goes to zero pods. Default 300 (5 minutes), at least 10, at most 86400 (a day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 86400))]
    pub idle_seconds: Option<i32>,
}

impl AutoscalingSpec {
    /// Whether the model goes to zero pods when idle.
    pub fn scales_to_zero(&self) -> bool {
        self.min_replicas == 0 && self.target_requests_per_second.is_some()
    }

    /// The idle time before going to zero pods, in seconds.
    pub fn idle_window(&self) -> i32 {
        self.idle_seconds.unwrap_or(DEFAULT_IDLE_SECONDS)
    }

    /// The scale-down stabilization window, in seconds.
    pub fn scale_down_window(&self) -> i32 {
        self.scale_down_stabilization_seconds
            .unwrap_or(DEFAULT_SCALE_DOWN_STABILIZATION)
    }
}

/// Scale-down stabilization window given none, in seconds: the HorizontalPodAutoscaler's.
pub const DEFAULT_SCALE_DOWN_STABILIZATION: i32 = 300;

/// Idle time before a `minReplicas: 0` model goes to zero pods, given none, in seconds.
pub const DEFAULT_IDLE_SECONDS: i32 = 300;

fn default_min_replicas() -> i32 {
    1
}

fn default_target_cpu() -> i32 {
    70
}

/// Observed state, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct IrisModelStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Pods of the model server, of any version.
    #[serde(default)]
    pub replicas: i32,

    /// Pods passing their readiness probe.
    #[serde(default)]
    pub ready_replicas: i32,

    /// Pods running the current version.
    #[serde(default)]
    pub updated_replicas: i32,

    /// Pods available to serve.
    #[serde(default)]
    pub available_replicas: i32,

    /// Label selector of the pods, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,

    /// In-cluster URL of the model's HTTP API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,

    /// The model being served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelStatus>,

    /// The model-server image of the current version's pods, and the digest they run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageStatus>,

    /// The last canary rollout, while it runs and after it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,

    /// Ready, Progressing and Degraded; Rollout with the Canary strategy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// Where a canary rollout stands. Every decision is taken from this and from the cluster, so
/// an operator restarted in the middle of a step resumes the same rollout.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// Canary (running its steps), Paused, Promoting (the stable pods take the new model),
    /// Promoted, RolledBack or Aborted.
    pub phase: String,

    /// One line for `kubectl get`: the step and the weights, or how it ended.
    pub summary: String,

    /// Pod-template hash of the stable (serving) model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_hash: Option<String>,

    /// Pod-template hash of the canary's model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_hash: Option<String>,

    /// Digest of the stable model's artifact, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_digest: Option<String>,

    /// Digest of the canary model's artifact, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_digest: Option<String>,

    /// The current step, from 1.
    #[serde(default)]
    pub step: i32,

    /// Steps in all.
    #[serde(default)]
    pub steps: i32,

    /// When the current step started (its hold and the ready deadline count from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started_at: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,

    /// The step's weight, in percent.
    #[serde(default)]
    pub intended_weight: i32,

    /// Ready canary pods over all ready pods, in percent: the weight kube-proxy gives them.
    #[serde(default)]
    pub achieved_weight: i32,

    /// The figures of the last analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisStatus>,

    /// The pod-template hash of a change that was rolled back or aborted: it is not tried
    /// again until the spec changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_hash: Option<String>,

    /// What happened last, with figures and thresholds.
    #[serde(default)]
    pub message: String,
}

/// The figures of one analysis of the canary (and, for comparison, the stable pods).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisStatus {
    /// Pass, Hold or Fail.
    pub verdict: String,
    /// Prediction requests the canary pods served since they started.
    pub canary_requests: i64,
    /// Share of those that failed (5xx, gRPC server errors).
    pub canary_error_rate: f64,
    /// Their 99th-percentile latency in milliseconds (from the histogram buckets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_p99_ms: Option<f64>,
    /// Prediction requests of the stable pods since they started.
    pub stable_requests: i64,
    /// Share of the stable pods' requests that failed.
    pub stable_error_rate: f64,
    /// The stable pods' 99th-percentile latency in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_p99_ms: Option<f64>,
}

/// The model being served, as far as the operator knows it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelStatus {
    /// binary or multiclass.
    pub task: String,

    /// `builtin`, `configMap:<name>/<key>` or `file:<path>`.
    pub source: String,

    /// sha256 digest of the model artifact, where known (builtin and configMap sources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,

    /// Accuracy on the held-out data, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
}

/// Which bits serve: the image the pods of the current version ask for and what the kubelet
/// reports running (`status.containerStatuses[].imageID`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageStatus {
    /// The image reference of the pod template (spec.image, or the operator's default).
    pub reference: String,

    /// `sha256:...` digest of the image the ready pods run, as pulled from a registry; absent
    /// before a pod is ready, when the ready pods run different digests (a tag pushed again
    /// during a rollout), and for an image loaded into the node without a registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,

    /// The kubelet's image ID of a ready pod (`host/repo@sha256:...` once pulled from a
    /// registry; the image's config digest for an image loaded into the node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
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
