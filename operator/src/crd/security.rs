//! Who may reach the model server and what it pulls with: registry credentials, TLS, bearer
//! tokens. Secrets are named only: the operator never reads them.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

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
