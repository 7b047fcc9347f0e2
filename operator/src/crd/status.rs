//! The observed state the operator writes: replica counts, the model and image serving, the
//! last canary rollout, and the conditions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
