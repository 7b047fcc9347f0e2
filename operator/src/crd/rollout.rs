//! How a model change reaches the pods: the quality gate, the strategy, the canary's steps and
//! its analysis.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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

    /// Seconds the canary pods have to become ready and measurable, from the start of a step;
    /// past it a canary whose pods are not ready, or whose metrics cannot be read (no answer,
    /// or an unusable page), is rolled back. Default 120.
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

/// Most pods a canary may run: a step whose weight would need more, beside the most stable pods
/// the spec allows, is refused at apply (a CEL rule on the spec holds the same figure).
pub const MAX_CANARY_REPLICAS: i32 = 100;

/// One canary step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStep {
    /// Share of the pods (and so of the traffic), in percent, that run the new model. Beside S
    /// stable pods (`replicas`, or `autoscaling.maxReplicas`) a weight W takes
    /// ceil(S*W/(100-W)) canary pods, at most 100: 99 beside one stable pod is 99 canary pods,
    /// and beside 100 stable pods the weight may be at most 50.
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
