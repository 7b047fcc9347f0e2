//! Reconcile errors. Each has a fixed category: it labels the error metric and names the
//! Warning Event's reason, so neither carries unbounded Debug strings.

use std::time::Duration;

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The ConfigMap named by `spec.model.source.configMap` does not exist.
    #[error("ConfigMap {namespace}/{name} named in spec.model.source.configMap was not found")]
    ConfigMapNotFound { namespace: String, name: String },

    /// The ConfigMap exists but lacks the key.
    #[error("ConfigMap {namespace}/{name} has no key {key:?} (spec.model.source.configMap.key)")]
    ConfigMapKeyNotFound {
        namespace: String,
        name: String,
        key: String,
    },

    /// The artifact in the ConfigMap cannot be served.
    #[error("model artifact in ConfigMap {namespace}/{name} key {key:?} is not valid: {reason}")]
    InvalidArtifact {
        namespace: String,
        name: String,
        key: String,
        reason: String,
    },

    /// The builtin model cannot be trained with these hyper-parameters.
    #[error("builtin model cannot be trained with spec.model.training: {0}")]
    TrainingFailed(String),

    /// An object of the child's kind and name exists and belongs to someone else.
    #[error("{kind} {namespace}/{name} already exists and is not owned by this IrisModel; rename the IrisModel or remove the {kind}")]
    ChildConflict {
        kind: String,
        namespace: String,
        name: String,
    },

    /// The spec cannot be served (rules the CRD could not enforce, e.g. an old CRD version).
    #[error("invalid spec: {0}")]
    InvalidSpec(String),

    /// The object lacks metadata the API server always sets (name, namespace, uid).
    #[error("IrisModel has no {0}")]
    MissingMetadata(&'static str),

    /// The API server refused a child (quota, admission, an exhausted Service IP range...).
    #[error("applying the {kind} failed: {source}")]
    Apply {
        kind: String,
        #[source]
        source: kube::Error,
    },

    /// A call to the Kubernetes API failed.
    #[error("{action} failed: {source}")]
    Kube {
        action: &'static str,
        #[source]
        source: kube::Error,
    },

    /// The reconcile of this IrisModel panicked: an operator bug, reached through what this
    /// model or its pods said. Contained to this reconcile: it fails, backs off and is counted,
    /// while every other model is reconciled as usual.
    #[error("the reconcile panicked (an operator bug, contained to this IrisModel; please report it): {0}")]
    Panicked(String),

    /// An object could not be (de)serialised.
    #[error("serialization failed: {0}")]
    Serialization(#[from] serde_json::Error),
}

impl Error {
    /// A fixed, bounded name: the metric label and the Event reason.
    pub(crate) fn category(&self) -> &'static str {
        match self {
            Error::ConfigMapNotFound { .. } => "ConfigMapNotFound",
            Error::ConfigMapKeyNotFound { .. } => "ConfigMapKeyNotFound",
            Error::InvalidArtifact { .. } => "InvalidArtifact",
            Error::TrainingFailed(_) => "TrainingFailed",
            Error::ChildConflict { .. } => "ResourceConflict",
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::MissingMetadata(_) => "MissingMetadata",
            Error::Apply { .. } => "ApplyFailed",
            Error::Kube { .. } => "KubeApiError",
            Error::Serialization(_) => "SerializationFailed",
            Error::Panicked(_) => "ReconcilePanicked",
        }
    }

    /// Whether the user must change something (the IrisModel or what it references). These are
    /// reported in the status as Ready=False; the others are transient and only retried.
    pub(crate) fn is_user_error(&self) -> bool {
        matches!(
            self,
            Error::ConfigMapNotFound { .. }
                | Error::ConfigMapKeyNotFound { .. }
                | Error::InvalidArtifact { .. }
                | Error::TrainingFailed(_)
                | Error::ChildConflict { .. }
                | Error::InvalidSpec(_)
        )
    }

    /// Whether the error is shown in the status (Ready=False with the category as reason) and as
    /// a Warning Event: what the user must fix, and children the API server refuses.
    pub(crate) fn reported_in_status(&self) -> bool {
        self.is_user_error() || matches!(self, Error::Apply { .. } | Error::Panicked(_))
    }

    /// Wraps a client error with what was being done.
    pub(crate) fn kube(action: &'static str) -> impl FnOnce(kube::Error) -> Error {
        move |source| Error::Kube { action, source }
    }
}

/// First retry delay after a failed reconcile.
pub(crate) const BACKOFF_BASE: Duration = Duration::from_secs(2);
/// Longest retry delay.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Exponential backoff: 2s, 4s, 8s, ... capped at 5 minutes, by consecutive failures.
pub(crate) fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    BACKOFF_BASE.saturating_mul(1u32 << exp).min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(0), Duration::from_secs(2));
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(2), Duration::from_secs(4));
        assert_eq!(backoff(5), Duration::from_secs(32));
        assert_eq!(backoff(9), Duration::from_secs(300));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn categories_are_fixed_and_user_errors_are_flagged() {
        let err = Error::ConfigMapNotFound {
            namespace: "ns".into(),
            name: "cm".into(),
        };
        assert_eq!(err.category(), "ConfigMapNotFound");
        assert!(err.is_user_error());
        assert!(!Error::MissingMetadata("uid").is_user_error());
    }
}
