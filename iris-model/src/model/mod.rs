//! The model: what is trained ([`train`]), what is stored ([`ModelArtifact`]), what
//! predicts ([`Predictor`]) and how a prediction is explained ([`Explanation`]).

mod artifact;
pub mod bins;
mod error;
mod explain;
mod predict;
#[cfg(test)]
mod tests;
mod train;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use artifact::{
    ArtifactError, Evaluation, HyperParameters, ModelArtifact, Scaler, MIN_SCHEMA_VERSION,
    SCHEMA_VERSION,
};
pub use bins::FeatureBins;
pub use explain::{ClassExplanation, Explanation};
pub use predict::{Prediction, Predictor, MAX_CLASSES};
pub use train::{train, TrainError};

/// What the model answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// "Is it the positive class?": one class against the other two (one vs rest).
    Binary,
    /// Which of the three species it is.
    Multiclass,
}

impl Task {
    /// The lowercase name used in flags, JSON and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Task::Binary => "binary",
            Task::Multiclass => "multiclass",
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Task {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "binary" => Ok(Task::Binary),
            "multiclass" => Ok(Task::Multiclass),
            _ => Err(UnknownName {
                kind: "task",
                name: s.to_owned(),
                expected: "binary, multiclass",
            }),
        }
    }
}

/// The three Iris species, in the order of their class indices (0, 1, 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum IrisClass {
    /// Iris setosa (class index 0).
    Setosa,
    /// Iris versicolor (class index 1).
    Versicolor,
    /// Iris virginica (class index 2).
    Virginica,
}

impl IrisClass {
    /// All species in class-index order.
    pub const ALL: [IrisClass; 3] = [
        IrisClass::Setosa,
        IrisClass::Versicolor,
        IrisClass::Virginica,
    ];

    /// The lowercase name used in flags, JSON, labels and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            IrisClass::Setosa => "setosa",
            IrisClass::Versicolor => "versicolor",
            IrisClass::Virginica => "virginica",
        }
    }

    /// The class index (0 setosa, 1 versicolor, 2 virginica).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The species with this class index, if any.
    pub const fn from_index(index: usize) -> Option<IrisClass> {
        match index {
            0 => Some(IrisClass::Setosa),
            1 => Some(IrisClass::Versicolor),
            2 => Some(IrisClass::Virginica),
            _ => None,
        }
    }
}

impl fmt::Display for IrisClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IrisClass {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IrisClass::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownName {
                kind: "iris class",
                name: s.to_owned(),
                expected: "setosa, versicolor, virginica",
            })
    }
}

/// A name that is not one of the accepted values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {name:?}; expected one of: {expected}")]
pub struct UnknownName {
    kind: &'static str,
    name: String,
    expected: &'static str,
}

/// Everything that determines a trained model. Same parameters, same artifact, byte for byte.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingParams {
    /// Binary (one vs rest) or multiclass.
    pub task: Task,
    /// The class a binary model recognises; required for binary, ignored for multiclass.
    pub positive_class: Option<IrisClass>,
    /// Upper bound on L-BFGS iterations (at least 1).
    pub max_iterations: u64,
    /// L2 regularisation strength on the weights (`alpha` in linfa-logistic); finite, >= 0.
    pub l2_penalty: f64,
    /// Share of each class held out for the accuracy estimate; strictly between 0 and 1.
    pub test_fraction: f64,
    /// Seed of the train/test split.
    pub seed: u64,
}

impl Default for TrainingParams {
    /// Binary "is it setosa?", 100 iterations, L2 penalty 1.0, 20% held out, seed 42.
    fn default() -> Self {
        TrainingParams {
            task: Task::Binary,
            positive_class: Some(IrisClass::Setosa),
            max_iterations: 100,
            l2_penalty: 1.0,
            test_fraction: 0.2,
            seed: 42,
        }
    }
}
