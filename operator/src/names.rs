//! The names the operator stamps on everything and looks for everywhere: its field manager,
//! labels, selectors, annotations and port names.

use std::collections::BTreeMap;

/// `app.kubernetes.io/name` of everything the operator creates.
pub(crate) const APP_NAME: &str = "model-server";
/// Field manager of every server-side apply, and `app.kubernetes.io/managed-by`.
pub(crate) const MANAGER: &str = "iris-operator";
/// Label selector of the children the operator watches (and only those).
pub(crate) const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=iris-operator";
/// Pod-template annotation with the hash of everything that shapes the pods.
pub(crate) const MODEL_HASH_ANNOTATION: &str = "serving.iris.dev/model-hash";
/// Label of the canary Deployment's selector and pods.
pub(crate) const TRACK_LABEL: &str = "serving.iris.dev/track";
/// Its value on the canary.
pub(crate) const TRACK_CANARY: &str = "canary";

/// Name of the canary Deployment of an IrisModel.
pub(crate) fn canary_name(name: &str) -> String {
    format!("{name}-canary")
}

/// `app.kubernetes.io/name` of the activator of a scale-to-zero IrisModel.
pub(crate) const ACTIVATOR_APP_NAME: &str = "iris-activator";

/// Name of the activator's Deployment, ServiceAccount, Role and RoleBinding.
pub(crate) fn activator_name(name: &str) -> String {
    format!("{name}-activator")
}

/// The labels that select the activator's pods (its Deployment's selector, and the model's
/// Service selector while the model has no ready pod).
pub(crate) fn activator_selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/instance".to_string(), name.to_string()),
        (
            "app.kubernetes.io/name".to_string(),
            ACTIVATOR_APP_NAME.to_string(),
        ),
    ])
}

/// All labels of the activator's objects and pods.
pub(crate) fn activator_labels(name: &str) -> BTreeMap<String, String> {
    let mut labels = labels(name);
    labels.extend(activator_selector_labels(name));
    labels.insert(
        "app.kubernetes.io/component".to_string(),
        "activator".to_string(),
    );
    labels
}

/// Name of the container port of the activator's health and metrics endpoints.
pub(crate) const ADMIN_PORT_NAME: &str = "admin";

/// Name of the HTTP container port and Service port (also their application protocol).
pub(crate) const PORT_NAME: &str = "http";
/// Name of the gRPC container port and Service port (also their application protocol).
pub(crate) const GRPC_PORT_NAME: &str = "grpc";

/// The labels that select an IrisModel's pods (Deployment, Service, PDB selectors).
pub(crate) fn selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/instance".to_string(), name.to_string()),
        ("app.kubernetes.io/name".to_string(), APP_NAME.to_string()),
    ])
}

/// The selector labels as a label-selector string, for the scale subresource and pod lists.
pub(crate) fn selector_string(name: &str) -> String {
    selector_labels(name)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// All standard labels of a child object and of the pods.
pub(crate) fn labels(name: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(name);
    labels.extend([
        (
            "app.kubernetes.io/component".to_string(),
            "predictor".to_string(),
        ),
        (
            "app.kubernetes.io/part-of".to_string(),
            "iris-operator".to_string(),
        ),
        (
            "app.kubernetes.io/managed-by".to_string(),
            MANAGER.to_string(),
        ),
    ]);
    labels
}

/// The kinds of object an IrisModel owns: the one list the apply step and the write metrics
/// go by, so a new child kind cannot be missed by either.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ChildKind {
    Deployment,
    Service,
    HorizontalPodAutoscaler,
    PodDisruptionBudget,
    /// The activator's ServiceAccount, Role and RoleBinding.
    ServiceAccount,
    Role,
    RoleBinding,
}

impl ChildKind {
    #[cfg(test)]
    pub(crate) const ALL: [ChildKind; 7] = [
        ChildKind::Deployment,
        ChildKind::Service,
        ChildKind::HorizontalPodAutoscaler,
        ChildKind::PodDisruptionBudget,
        ChildKind::ServiceAccount,
        ChildKind::Role,
        ChildKind::RoleBinding,
    ];

    /// The API kind, e.g. `Deployment`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ChildKind::Deployment => <k8s_openapi::api::apps::v1::Deployment as k8s_openapi::Resource>::KIND,
            ChildKind::Service => <k8s_openapi::api::core::v1::Service as k8s_openapi::Resource>::KIND,
            ChildKind::HorizontalPodAutoscaler => {
                <k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler as k8s_openapi::Resource>::KIND
            }
            ChildKind::PodDisruptionBudget => <k8s_openapi::api::policy::v1::PodDisruptionBudget as k8s_openapi::Resource>::KIND,
            ChildKind::ServiceAccount => <k8s_openapi::api::core::v1::ServiceAccount as k8s_openapi::Resource>::KIND,
            ChildKind::Role => <k8s_openapi::api::rbac::v1::Role as k8s_openapi::Resource>::KIND,
            ChildKind::RoleBinding => <k8s_openapi::api::rbac::v1::RoleBinding as k8s_openapi::Resource>::KIND,
        }
    }
}
