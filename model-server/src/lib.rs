//! The Iris model server: training on the embedded Iris data with linfa-logistic, a
//! versioned and digest-checked JSON model artifact, and an HTTP API speaking the tutorial's
//! `/predict_iris` contract, KServe v1 and the Open Inference Protocol v2 (REST with the
//! binary tensor data extension, and gRPC).
//!
//! The operator depends on this library for the artifact format ([`ModelArtifact`]), the
//! training parameters ([`TrainingParams`]) and the names of the server's flags and
//! environment variables ([`mod@config::env`]).

pub mod config;
pub mod grpc;
pub mod http;
pub mod iris;
pub mod model;
pub mod oip;
pub mod server;
pub mod source;

pub use model::{
    train, ArtifactError, IrisClass, ModelArtifact, Prediction, Predictor, Task, TrainError,
    TrainingParams,
};
pub use source::ModelSource;
