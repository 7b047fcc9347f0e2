//! The Iris model, apart from any server: the data set compiled in ([`iris`]), training with
//! linfa-logistic ([`train`]), the versioned, digest-checked JSON artifact ([`ModelArtifact`]),
//! prediction ([`Predictor`]) and its exact explanation ([`Explanation`]), the environment variable names of the model server
//! ([`mod@env`]) and its `/metrics` contract with the operator ([`contract`]).
//!
//! The model server serves it; the operator trains builtin models and checks artifacts with it
//! (so it knows a model's digest and accuracy before any pod runs) without compiling the HTTP
//! stack; the e2e tests train the same models to know what a served model must answer.

pub mod contract;
pub mod env;
pub mod iris;
pub mod model;

pub use model::{
    train, ArtifactError, ClassExplanation, Explanation, IrisClass, ModelArtifact, Prediction,
    Predictor, Task, TrainError, TrainingParams,
};
