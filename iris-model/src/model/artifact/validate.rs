//! The invariants the server relies on, checked in this order whenever an artifact is read or
//! trained: the format version, the labels, the scaler, the weights, the hyper-parameters, the
//! evaluation, the training bins, then the digest. The first one broken is the error reported.

use super::{compute_digest, expected_labels, ArtifactError, ModelArtifact, RawArtifact};
use super::{Evaluation, HyperParameters, Scaler, MIN_SCHEMA_VERSION, SCHEMA_VERSION};
use crate::iris::{FEATURE_NAMES, N_FEATURES};
use crate::model::bins;
use crate::model::predict::{Predictor, MAX_CLASSES};
use crate::model::Task;

/// Checks every invariant the server relies on and builds the predictor.
pub(crate) fn validate(raw: RawArtifact) -> Result<ModelArtifact, ArtifactError> {
    if !(MIN_SCHEMA_VERSION..=SCHEMA_VERSION).contains(&raw.schema_version) {
        return Err(ArtifactError::UnsupportedSchemaVersion {
            found: raw.schema_version,
        });
    }
    check_labels(&raw)?;
    let (means, stds) = scaler(&raw.scaler)?;
    let weights = weights(&raw)?;
    check_hyper_parameters(&raw.hyper_parameters)?;
    check_evaluation(&raw.evaluation)?;
    check_training_bins(&raw)?;
    check_digest(&raw)?;
    let predictor = Predictor::new(raw.task, means, stds, &weights, &raw.intercepts);
    Ok(ModelArtifact { raw, predictor })
}

/// The feature names, the positive class against the task, and the class labels.
fn check_labels(raw: &RawArtifact) -> Result<(), ArtifactError> {
    if raw.feature_names != FEATURE_NAMES {
        return Err(ArtifactError::InvalidValue {
            field: "feature_names",
            reason: format!("got {:?}, expected {:?}", raw.feature_names, FEATURE_NAMES),
        });
    }
    match (raw.task, raw.positive_class) {
        (Task::Binary, None) => {
            return Err(ArtifactError::InvalidValue {
                field: "positive_class",
                reason: "a binary model needs a positive class".into(),
            })
        }
        (Task::Multiclass, Some(p)) => {
            return Err(ArtifactError::InvalidValue {
                field: "positive_class",
                reason: format!("a multiclass model has no positive class, got {p}"),
            })
        }
        _ => {}
    }
    let labels = expected_labels(raw.task, raw.positive_class);
    if raw.class_labels != labels {
        return Err(ArtifactError::InvalidValue {
            field: "class_labels",
            reason: format!("got {:?}, expected {labels:?}", raw.class_labels),
        });
    }
    Ok(())
}

/// The scaler's means and standard deviations, one finite value per feature, deviations > 0.
fn scaler(scaler: &Scaler) -> Result<([f64; N_FEATURES], [f64; N_FEATURES]), ArtifactError> {
    let means = features_row("scaler.means", &scaler.means)?;
    let stds = features_row("scaler.stds", &scaler.stds)?;
    if let Some(i) = stds.iter().position(|s| *s <= 0.0) {
        return Err(ArtifactError::InvalidValue {
            field: "scaler.stds",
            reason: format!("scaler.stds[{i}] is {}, must be > 0", stds[i]),
        });
    }
    Ok((means, stds))
}

/// The coefficient rows (one per output of the task, finite) and the intercepts (as many,
/// finite).
fn weights(raw: &RawArtifact) -> Result<Vec<[f64; N_FEATURES]>, ArtifactError> {
    let outputs = match raw.task {
        Task::Binary => 1,
        Task::Multiclass => MAX_CLASSES,
    };
    if raw.coefficients.len() != outputs {
        return Err(ArtifactError::Shape(format!(
            "coefficients has {} rows, expected {outputs} for a {} model",
            raw.coefficients.len(),
            raw.task
        )));
    }
    if raw.intercepts.len() != outputs {
        return Err(ArtifactError::Shape(format!(
            "intercepts has {} values, expected {outputs} for a {} model",
            raw.intercepts.len(),
            raw.task
        )));
    }
    let mut weights = Vec::with_capacity(outputs);
    for (k, row) in raw.coefficients.iter().enumerate() {
        weights.push(features_row(&format!("coefficients[{k}]"), row)?);
    }
    for (k, b) in raw.intercepts.iter().enumerate() {
        finite(|| format!("intercepts[{k}]"), *b)?;
    }
    Ok(weights)
}

/// A finite, non-negative L2 penalty and a test fraction strictly between 0 and 1.
fn check_hyper_parameters(h: &HyperParameters) -> Result<(), ArtifactError> {
    finite(|| "hyper_parameters.l2_penalty".into(), h.l2_penalty)?;
    finite(|| "hyper_parameters.test_fraction".into(), h.test_fraction)?;
    if h.l2_penalty < 0.0 {
        return Err(ArtifactError::InvalidValue {
            field: "hyper_parameters.l2_penalty",
            reason: format!("{} is negative", h.l2_penalty),
        });
    }
    if !(h.test_fraction > 0.0 && h.test_fraction < 1.0) {
        return Err(ArtifactError::InvalidValue {
            field: "hyper_parameters.test_fraction",
            reason: format!("{} is not strictly between 0 and 1", h.test_fraction),
        });
    }
    Ok(())
}

/// A held-out accuracy in [0, 1].
fn check_evaluation(e: &Evaluation) -> Result<(), ArtifactError> {
    let accuracy = finite(
        || "evaluation.held_out_accuracy".into(),
        e.held_out_accuracy,
    )?;
    if !(0.0..=1.0).contains(&accuracy) {
        return Err(ArtifactError::InvalidValue {
            field: "evaluation.held_out_accuracy",
            reason: format!("{accuracy} is outside [0, 1]"),
        });
    }
    Ok(())
}

/// Bins only from schema version 2 on, and then well formed ([`bins::check`]).
fn check_training_bins(raw: &RawArtifact) -> Result<(), ArtifactError> {
    match &raw.training_bins {
        None => Ok(()),
        Some(_) if raw.schema_version < 2 => Err(ArtifactError::InvalidValue {
            field: "training_bins",
            reason: format!(
                "schema_version {} has no training bins; they need schema_version 2",
                raw.schema_version
            ),
        }),
        Some(b) => bins::check(b),
    }
}

/// A recorded digest, shaped like a sha256, that matches the content.
fn check_digest(raw: &RawArtifact) -> Result<(), ArtifactError> {
    if raw.digest.is_empty() {
        return Err(ArtifactError::MissingDigest);
    }
    if raw.digest.len() != 64
        || !raw
            .digest
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(ArtifactError::InvalidValue {
            field: "digest",
            reason: format!(
                "{:?} is not a sha256 digest (64 lowercase hex characters)",
                raw.digest
            ),
        });
    }
    let computed = compute_digest(raw);
    if computed != raw.digest {
        return Err(ArtifactError::DigestMismatch {
            recorded: raw.digest.clone(),
            computed,
        });
    }
    Ok(())
}

fn finite(field: impl FnOnce() -> String, v: f64) -> Result<f64, ArtifactError> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(ArtifactError::NonFinite { field: field() })
    }
}

fn features_row(name: &str, row: &[f64]) -> Result<[f64; N_FEATURES], ArtifactError> {
    if row.len() != N_FEATURES {
        return Err(ArtifactError::Shape(format!(
            "{name} has {} values, expected {N_FEATURES} (one per feature)",
            row.len()
        )));
    }
    let mut out = [0.0; N_FEATURES];
    for (i, v) in row.iter().enumerate() {
        out[i] = finite(|| format!("{name}[{i}]"), *v)?;
    }
    Ok(out)
}
