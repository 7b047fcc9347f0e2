//! The HorizontalPodAutoscaler (autoscaling/v2), when `spec.autoscaling` is set.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HPAScalingRules, HorizontalPodAutoscaler,
    HorizontalPodAutoscalerBehavior, HorizontalPodAutoscalerSpec, MetricSpec, MetricTarget,
    ResourceMetricSource,
};
use kube::Resource;

use super::child_meta;
use crate::reconcile::resolve::Resolved;

/// Builds the autoscaler of the Deployment, or None when autoscaling on CPU is not requested
/// (on the request rate the operator is the autoscaler, see [`crate::reconcile::scaler`]).
pub(crate) fn build(resolved: &Resolved) -> Option<HorizontalPodAutoscaler> {
    let autoscaling = resolved
        .autoscaling
        .as_ref()
        .filter(|a| a.target_requests_per_second.is_none())?;
    let target = autoscaling.target_cpu_utilization_percentage;
    Some(HorizontalPodAutoscaler {
        metadata: child_meta(resolved),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some(Deployment::api_version(&()).to_string()),
                kind: Deployment::kind(&()).to_string(),
                name: resolved.name.clone(),
            },
            min_replicas: Some(autoscaling.min_replicas),
            max_replicas: autoscaling.max_replicas,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".to_string(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".to_string(),
                    target: MetricTarget {
                        type_: "Utilization".to_string(),
                        average_utilization: Some(target),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            // Only the scale-down window is the user's; the rest are the HPA's defaults.
            behavior: Some(HorizontalPodAutoscalerBehavior {
                scale_down: Some(HPAScalingRules {
                    stabilization_window_seconds: Some(autoscaling.scale_down_window()),
                    ..HPAScalingRules::default()
                }),
                scale_up: None,
            }),
        }),
        status: None,
    })
}
