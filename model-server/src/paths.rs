//! The route templates of the HTTP API, shared by the router (`http`) and the `route` label
//! of the request metrics (`metrics`).

/// `POST /predict_iris`, the tutorial's contract.
pub const PREDICT_IRIS: &str = iris_model::contract::PREDICT_IRIS;
/// KServe v1 model status (GET) and prediction (POST `{name}:predict`).
pub const V1_MODEL: &str = "/v1/models/{name}";
/// OIP v2 server metadata.
pub const V2: &str = "/v2";
/// OIP v2 liveness.
pub const V2_LIVE: &str = "/v2/health/live";
/// OIP v2 readiness.
pub const V2_READY: &str = "/v2/health/ready";
/// OIP v2 model metadata.
pub const V2_MODEL: &str = "/v2/models/{name}";
/// OIP v2 model metadata of one version.
pub const V2_MODEL_VERSION: &str = "/v2/models/{name}/versions/{version}";
/// OIP v2 model readiness.
pub const V2_MODEL_READY: &str = "/v2/models/{name}/ready";
/// OIP v2 model readiness of one version.
pub const V2_MODEL_VERSION_READY: &str = "/v2/models/{name}/versions/{version}/ready";
/// OIP v2 inference.
pub const V2_INFER: &str = iris_model::contract::V2_INFER;
/// OIP v2 inference on one version.
pub const V2_MODEL_VERSION_INFER: &str = iris_model::contract::V2_VERSION_INFER;
/// A constant body, the HTTP ceiling for benchmarks.
pub const CONSTANT: &str = "/constant";
/// Prometheus text.
pub const METRICS: &str = "/metrics";
