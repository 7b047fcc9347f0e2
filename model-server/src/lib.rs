//! The Iris model server: training on the embedded Iris data with linfa-logistic, a
//! versioned and digest-checked JSON model artifact, and an HTTP API speaking the tutorial's
//! `/predict_iris` contract, KServe v1 and the Open Inference Protocol v2 (REST with the
//! binary tensor data extension, and gRPC).
//!
//! The model itself (data, training, artifact, prediction) is the `iris-model` crate, which
//! the operator uses without this server; it is re-exported here as [`model`] and [`iris`].

//!
//! Modules from the top down; each uses only those below it:
//! - `server` (bind, serve, shut down), `security` (re-read TLS and tokens files), `config`;
//! - the transports: `http` (axum) and `grpc` (tonic), and `auth` and `tls` around them;
//! - `oip`: the Open Inference Protocol model and the tensor codec both transports use;
//! - what everything shares: `state` ([`state::AppState`], [`state::Limits`]), `error`
//!   ([`error::ApiError`], mapped to HTTP statuses and gRPC codes), `metrics` (the registry
//!   both transports record into), `conn` (connection bounds), `paths` (route templates),
//!   `proto` (the generated gRPC messages), `source` (where the model comes from);
//! - `payload_log`: sampled requests and responses posted as CloudEvents, off the request path.

pub mod auth;
pub mod config;
pub mod conn;
pub mod drift;
pub mod error;
pub mod grpc;
pub mod http;
mod metrics;
pub mod oip;
pub mod paths;
pub mod payload_log;
pub mod proto;
pub mod security;
pub mod server;
pub mod source;
pub mod state;
#[cfg(test)]
mod test_models;
pub mod tls;

pub use iris_model::{iris, model};
pub use model::{
    train, ArtifactError, IrisClass, ModelArtifact, Prediction, Predictor, Task, TrainError,
    TrainingParams,
};
pub use source::ModelSource;
