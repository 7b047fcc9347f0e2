//! Payload logging: each prediction's request and response posted as CloudEvents to a sink.
//! The optional headers Secret is named only: the operator never reads it.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Post each prediction's request and response (every route: /predict_iris, KServe v1, Open
/// Inference Protocol v2 REST and gRPC) as CloudEvents in HTTP binary mode, with KServe's
/// attributes: `ce-type` `org.kubeflow.serving.inference.request` or `.response`, one `ce-id`
/// for both, the model's name and namespace as the extensions `inferenceservicename` and
/// `namespace`. Asynchronous: a slow or dead sink never delays or fails a prediction; what
/// cannot be queued is dropped and counted (`model_server_payload_log_dropped_total`), and
/// a sink that keeps failing shows in the metrics and the logs of the pods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoggingSpec {
    /// The receiver: `http://host[:port][/path]`, e.g. a Knative Broker
    /// (`http://broker-ingress.knative-eventing.svc.cluster.local/<namespace>/<broker>`), an
    /// Argo Events webhook or any CloudEvents HTTP receiver. Plain HTTP only: HTTPS sinks are
    /// not supported yet. No credentials in the URL: use `headersSecretRef`.
    #[schemars(length(min = 8, max = 2048))]
    #[x_kube(validation = Rule::new("!self.startsWith('https://')").message("spec.logging.url: https sinks are not supported yet; use an http:// URL (a receiver in the cluster, or a proxy that adds TLS)"))]
    #[x_kube(validation = Rule::new("self.matches('^http://[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?(:[0-9]{1,5})?(/[^\\\\s?#]*)?([?][^\\\\s#]*)?$')").message("spec.logging.url must be http://host[:port][/path], without credentials (user:password@) or spaces"))]
    pub url: String,

    /// Which events to post: `all` (the request and the response), `request` or `response`.
    /// Default all.
    #[serde(default)]
    pub mode: LoggingMode,

    /// Share of predictions logged, 0 to 100 (each prediction decided at random). Default 100.
    #[serde(default = "default_sample_percent")]
    #[schemars(range(min = 0, max = 100))]
    pub sample_percent: i32,

    /// A key of a Secret in the IrisModel's namespace holding extra HTTP headers for every
    /// post (e.g. `Authorization: Bearer <token>`), one `Name: value` a line (blank lines and
    /// lines starting with `#` ignored). Mounted into the pods as a file, never read by the
    /// operator; read by the server when it starts. A missing Secret or key shows as
    /// Degraded, reason SecretNotFound or SecretKeyNotFound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers_secret_ref: Option<SecretKeyRef>,
}

/// Which events of a prediction are posted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LoggingMode {
    /// The request and the response.
    #[default]
    All,
    /// The request only.
    Request,
    /// The response only.
    Response,
}

impl LoggingMode {
    /// The name used on the wire and in the model server's flags.
    pub fn as_str(self) -> &'static str {
        match self {
            LoggingMode::All => "all",
            LoggingMode::Request => "request",
            LoggingMode::Response => "response",
        }
    }
}

/// A key of a Secret in the IrisModel's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')").message("spec.logging.headersSecretRef.name must be a Secret name: lowercase letters, digits, '-' and '.'"))]
    pub name: String,

    /// The key holding the headers.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[-._a-zA-Z0-9]+$') && !self.startsWith('..')").message("spec.logging.headersSecretRef.key must be a Secret key: letters, digits, '-', '_' and '.', not starting with '..'"))]
    pub key: String,
}

fn default_sample_percent() -> i32 {
    100
}
