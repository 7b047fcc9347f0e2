//! The Iris model server: training on the embedded Iris data with linfa-logistic, a
//! versioned and digest-checked JSON model artifact, and an HTTP API speaking the tutorial's
//! `/predict_iris` contract, KServe v1 and the Open Inference Protocol v2 (REST with the
//! binary tensor data extension, and gRPC).
//!
//! The model itself (data, training, artifact, prediction) is the `iris-model` crate, which
//! the operator uses without this server; it is re-exported here as [`model`] and [`iris`].

pub mod auth;
pub mod config;
pub mod conn;
pub mod grpc;
pub mod http;
pub mod oip;
pub mod security;
pub mod server;
pub mod source;
#[cfg(test)]
mod test_models;
pub mod tls;

pub use iris_model::{iris, model};
pub use model::{
    train, ArtifactError, IrisClass, ModelArtifact, Prediction, Predictor, Task, TrainError,
    TrainingParams,
};
pub use source::ModelSource;
