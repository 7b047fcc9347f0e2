//! Horizontal autoscaling: on CPU by a HorizontalPodAutoscaler, or on the request rate by the
//! operator, down to zero pods.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

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
