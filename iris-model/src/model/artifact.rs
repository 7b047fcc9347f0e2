//! The versioned JSON model artifact: what `model-server train --out` writes and what
//! `--source file:PATH` reads. Every [`ModelArtifact`] value has passed [`validate`], so a
//! corrupt or mismatched file never reaches the serving path.

use std::fmt::Write as _;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use super::bins::FeatureBins;
pub use super::error::{ArtifactError, MIN_SCHEMA_VERSION, SCHEMA_VERSION};
use super::predict::{Prediction, Predictor};
use super::{IrisClass, Task, TrainingParams};
use crate::iris::N_FEATURES;

mod validate;

pub(crate) use validate::validate;

/// Length of the digest prefix used as the model version (OIP v2 `model_version`).
const SHORT_DIGEST_LEN: usize = 12;

/// Standard scaling fitted on the training rows: `(x - mean) / std` per feature.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scaler {
    /// Per-feature means, in [`FEATURE_NAMES`] order.
    pub means: Vec<f64>,
    /// Per-feature population standard deviations (strictly positive).
    pub stds: Vec<f64>,
}

/// The training hyper-parameters recorded in the artifact.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HyperParameters {
    /// Upper bound on L-BFGS iterations.
    pub max_iterations: u64,
    /// L2 regularisation strength.
    pub l2_penalty: f64,
    /// Share of each class held out for evaluation.
    pub test_fraction: f64,
    /// Seed of the train/test split.
    pub seed: u64,
}

/// How well the model did on rows it did not see during training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evaluation {
    /// Share of held-out rows predicted correctly, in [0, 1].
    pub held_out_accuracy: f64,
    /// Rows used for training.
    pub train_rows: u64,
    /// Rows held out for the accuracy estimate.
    pub test_rows: u64,
}

/// The on-disk form. Field order here is the canonical order that the digest covers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawArtifact {
    pub(crate) schema_version: u64,
    pub(crate) task: Task,
    pub(crate) positive_class: Option<IrisClass>,
    pub(crate) class_labels: Vec<String>,
    pub(crate) feature_names: Vec<String>,
    pub(crate) scaler: Scaler,
    /// One row (binary: the positive class) or one row per class, each of N_FEATURES.
    pub(crate) coefficients: Vec<Vec<f64>>,
    pub(crate) intercepts: Vec<f64>,
    pub(crate) hyper_parameters: HyperParameters,
    pub(crate) evaluation: Evaluation,
    /// Per feature, the training distribution in bins (schema version 2; absent from older
    /// and hand-written artifacts, whose servers then export no drift). Left out of the
    /// JSON, and so of the digest, when absent: a version 1 artifact hashes as it always did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) training_bins: Option<Vec<FeatureBins>>,
    /// sha256 (lowercase hex) of the canonical form: this struct serialized compactly,
    /// in field order, without this field. Empty only while computing it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) digest: String,
}

/// A trained model: the validated artifact plus its ready-to-use [`Predictor`].
#[derive(Clone, Debug)]
pub struct ModelArtifact {
    raw: RawArtifact,
    predictor: Predictor,
}

impl PartialEq for ModelArtifact {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl ModelArtifact {
    /// Parses and validates an artifact. Refuses bad JSON, unknown schema versions, unknown
    /// fields, wrong shapes, non-finite numbers and a digest that does not match the content.
    pub fn from_json(s: &str) -> Result<Self, ArtifactError> {
        /// Reads only the version, so a future format is reported as such rather than as
        /// a list of unknown fields.
        #[derive(Deserialize)]
        struct Probe {
            schema_version: Option<u64>,
        }
        let probe: Probe = serde_json::from_str(s).map_err(classify)?;
        match probe.schema_version {
            Some(MIN_SCHEMA_VERSION..=SCHEMA_VERSION) | None => {}
            Some(found) => return Err(ArtifactError::UnsupportedSchemaVersion { found }),
        }
        let raw: RawArtifact = serde_json::from_str(s).map_err(classify)?;
        validate(raw)
    }

    /// The artifact as indented JSON with a trailing newline (what `train --out` writes).
    pub fn to_json_pretty(&self) -> String {
        // Plain structs of strings and numbers always serialize; the default is unreachable.
        let mut out = serde_json::to_string_pretty(&self.raw).unwrap_or_default();
        out.push('\n');
        out
    }

    /// sha256 of the canonical form, lowercase hex (64 characters).
    pub fn digest(&self) -> &str {
        &self.raw.digest
    }

    /// The first 12 hex characters of the digest: the model version served over OIP v2.
    pub fn short_digest(&self) -> &str {
        &self.raw.digest[..SHORT_DIGEST_LEN]
    }

    /// Held-out accuracy measured at training time, in [0, 1].
    pub fn accuracy(&self) -> f64 {
        self.raw.evaluation.held_out_accuracy
    }

    /// Binary or multiclass.
    pub fn task(&self) -> Task {
        self.raw.task
    }

    /// The positive class of a binary model; `None` for multiclass.
    pub fn positive_class(&self) -> Option<IrisClass> {
        self.raw.positive_class
    }

    /// Label of each class index: `["not_<class>", "<class>"]` for binary,
    /// `["setosa", "versicolor", "virginica"]` for multiclass.
    pub fn class_labels(&self) -> &[String] {
        &self.raw.class_labels
    }

    /// Label of a predicted class index (empty for an index the model does not have).
    pub fn label(&self, class_index: usize) -> &str {
        self.raw
            .class_labels
            .get(class_index)
            .map_or("", String::as_str)
    }

    /// Feature names in input order.
    pub fn feature_names(&self) -> &[String] {
        &self.raw.feature_names
    }

    /// The fitted scaler.
    pub fn scaler(&self) -> &Scaler {
        &self.raw.scaler
    }

    /// Coefficients on scaled features: one row (binary) or one per class (multiclass).
    pub fn coefficients(&self) -> &[Vec<f64>] {
        &self.raw.coefficients
    }

    /// Intercepts, one per coefficient row.
    pub fn intercepts(&self) -> &[f64] {
        &self.raw.intercepts
    }

    /// Hyper-parameters used for training.
    pub fn hyper_parameters(&self) -> &HyperParameters {
        &self.raw.hyper_parameters
    }

    /// Held-out evaluation recorded at training time.
    pub fn evaluation(&self) -> &Evaluation {
        &self.raw.evaluation
    }

    /// Per feature (in [`FEATURE_NAMES`](crate::iris::FEATURE_NAMES) order), the bins of the
    /// training distribution; `None` for an artifact that has none (schema version 1, or
    /// written by hand without them).
    pub fn training_bins(&self) -> Option<&[FeatureBins]> {
        self.raw.training_bins.as_deref()
    }

    /// The parameters that reproduce this artifact with [`super::train`].
    pub fn training_params(&self) -> TrainingParams {
        let h = &self.raw.hyper_parameters;
        TrainingParams {
            task: self.raw.task,
            positive_class: self.raw.positive_class,
            max_iterations: h.max_iterations,
            l2_penalty: h.l2_penalty,
            test_fraction: h.test_fraction,
            seed: h.seed,
        }
    }

    /// The allocation-free predictor used by the server.
    pub fn predictor(&self) -> &Predictor {
        &self.predictor
    }

    /// Predicts one row of raw measurements (sepal length, sepal width, petal length,
    /// petal width, in cm). Inputs must be finite.
    pub fn predict_one(&self, features: &[f64; N_FEATURES]) -> Prediction {
        self.predictor.predict(features)
    }

    /// Predicts many rows.
    pub fn predict(&self, rows: &[[f64; N_FEATURES]]) -> Vec<Prediction> {
        rows.iter().map(|r| self.predictor.predict(r)).collect()
    }

    /// A few lines for people: what `model-server inspect` prints.
    pub fn summary(&self) -> String {
        let r = &self.raw;
        let h = &r.hyper_parameters;
        let e = &r.evaluation;
        let task = match r.positive_class {
            Some(p) => format!("{} (is it {p}? one vs rest)", r.task),
            None => r.task.to_string(),
        };
        let mut out = String::new();
        let _ = writeln!(out, "schema version:    {}", r.schema_version);
        let _ = writeln!(out, "digest:            sha256:{}", r.digest);
        let _ = writeln!(out, "version:           {}", self.short_digest());
        let _ = writeln!(out, "task:              {task}");
        let _ = writeln!(out, "classes:           {}", r.class_labels.join(", "));
        let _ = writeln!(out, "features:          {}", r.feature_names.join(", "));
        let _ = writeln!(
            out,
            "held-out accuracy: {:.4} ({} test rows, {} training rows)",
            e.held_out_accuracy, e.test_rows, e.train_rows
        );
        let _ = writeln!(
            out,
            "hyper-parameters:  max_iterations={} l2_penalty={} test_fraction={} seed={}",
            h.max_iterations, h.l2_penalty, h.test_fraction, h.seed
        );
        let bins = match &r.training_bins {
            Some(bins) => {
                let per_feature: Vec<String> = bins.iter().map(|b| b.len().to_string()).collect();
                format!("{} per feature (drift is exported)", per_feature.join(", "))
            }
            None => "none (drift is not exported)".to_owned(),
        };
        let _ = writeln!(out, "training bins:     {bins}");
        out
    }
}

impl Serialize for ModelArtifact {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.raw.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ModelArtifact {
    /// Deserializing validates exactly like [`ModelArtifact::from_json`].
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawArtifact::deserialize(deserializer)?;
        validate(raw).map_err(serde::de::Error::custom)
    }
}

fn classify(e: serde_json::Error) -> ArtifactError {
    match e.classify() {
        serde_json::error::Category::Data => ArtifactError::Schema(e),
        _ => ArtifactError::Syntax(e),
    }
}

/// The labels for a task: binary `["not_<p>", "<p>"]`, multiclass the three species.
pub(crate) fn expected_labels(task: Task, positive: Option<IrisClass>) -> Vec<String> {
    match (task, positive) {
        (Task::Binary, Some(p)) => vec![format!("not_{p}"), p.to_string()],
        _ => IrisClass::ALL.iter().map(ToString::to_string).collect(),
    }
}

/// sha256 hex of the canonical form (compact JSON, fixed field order, digest left out).
pub(crate) fn compute_digest(raw: &RawArtifact) -> String {
    let mut canonical = raw.clone();
    canonical.digest.clear();
    // A struct of strings and numbers always serializes; an empty input cannot match.
    let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}
