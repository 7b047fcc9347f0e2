//! Training on the embedded Iris data with linfa-logistic: a seeded, stratified train/test
//! split, standard scaling fitted on the training rows, L-BFGS logistic regression, and a
//! held-out accuracy. Nothing here reads a clock or an unseeded random source, so the same
//! parameters give a byte-identical artifact.

use linfa::prelude::*;
use linfa_logistic::{LogisticRegression, MultiLogisticRegression};
use ndarray::{Array1, Array2};

use super::artifact::{self, ArtifactError, Evaluation, HyperParameters, RawArtifact, Scaler};
use super::bins;
use super::{IrisClass, ModelArtifact, Task, TrainingParams, SCHEMA_VERSION};
use crate::iris::{self, IrisSample, FEATURE_NAMES, N_FEATURES};
use crate::model::predict::Predictor;

/// Why training did not produce a model.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A binary model was asked for without saying which class is positive.
    #[error("a binary model needs a positive class (setosa, versicolor or virginica)")]
    MissingPositiveClass,
    /// A hyper-parameter is out of range.
    #[error("invalid {name} {value}: {expected}")]
    InvalidParameter {
        /// Parameter name as in the CLI (`max_iterations`, ...).
        name: &'static str,
        /// The value given.
        value: String,
        /// The allowed range.
        expected: &'static str,
    },
    /// linfa-logistic refused the problem or the optimiser failed.
    #[error("logistic regression failed: {0}")]
    Fit(String),
    /// The optimiser produced NaN or infinite weights.
    #[error("training diverged: the fitted coefficients are not finite (try a larger l2_penalty)")]
    Diverged,
    /// The result did not validate as an artifact (a bug, reported rather than hidden).
    #[error("trained model is not a valid artifact: {0}")]
    Artifact(ArtifactError),
}

/// Trains a model on the embedded Iris data.
///
/// Binary trains one class against the other two; multiclass trains a multinomial model
/// (and ignores `positive_class`). Each class is split separately, so train and test sets
/// keep the 1:1:1 class balance; at least one row of each class lands on each side.
pub fn train(params: &TrainingParams) -> Result<ModelArtifact, TrainError> {
    check_params(params)?;
    let positive = match params.task {
        Task::Binary => Some(
            params
                .positive_class
                .ok_or(TrainError::MissingPositiveClass)?,
        ),
        Task::Multiclass => None,
    };
    let data = iris::dataset();
    let (train_idx, test_idx) = stratified_split(data, params.test_fraction, params.seed);
    let (means, stds) = fit_scaler(data, &train_idx);

    let x = Array2::from_shape_fn((train_idx.len(), N_FEATURES), |(r, c)| {
        (data[train_idx[r]].features[c] - means[c]) / stds[c]
    });
    let (coefficients, intercepts) = match positive {
        Some(p) => fit_binary(x, data, &train_idx, p, params)?,
        None => fit_multiclass(x, data, &train_idx, params)?,
    };
    if coefficients
        .iter()
        .flatten()
        .chain(&intercepts)
        .any(|v| !v.is_finite())
    {
        return Err(TrainError::Diverged);
    }

    let weights: Vec<[f64; N_FEATURES]> = coefficients
        .iter()
        .map(|row| {
            let mut w = [0.0; N_FEATURES];
            w.copy_from_slice(row);
            w
        })
        .collect();
    let predictor = Predictor::new(params.task, means, stds, &weights, &intercepts);
    let correct = test_idx
        .iter()
        .filter(|&&i| {
            predictor.predict(&data[i].features).class_index == target(data[i].class, positive)
        })
        .count();
    let accuracy = correct as f64 / test_idx.len() as f64;

    let mut raw = RawArtifact {
        schema_version: SCHEMA_VERSION,
        task: params.task,
        positive_class: positive,
        class_labels: artifact::expected_labels(params.task, positive),
        feature_names: FEATURE_NAMES.iter().map(|s| (*s).to_owned()).collect(),
        scaler: Scaler {
            means: means.to_vec(),
            stds: stds.to_vec(),
        },
        coefficients,
        intercepts,
        hyper_parameters: HyperParameters {
            max_iterations: params.max_iterations,
            l2_penalty: params.l2_penalty,
            test_fraction: params.test_fraction,
            seed: params.seed,
        },
        evaluation: Evaluation {
            held_out_accuracy: accuracy,
            train_rows: train_idx.len() as u64,
            test_rows: test_idx.len() as u64,
        },
        training_bins: Some(bins::fit(data, &train_idx)),
        digest: String::new(),
    };
    raw.digest = artifact::compute_digest(&raw);
    artifact::validate(raw).map_err(TrainError::Artifact)
}

fn check_params(p: &TrainingParams) -> Result<(), TrainError> {
    if p.max_iterations == 0 {
        return Err(TrainError::InvalidParameter {
            name: "max_iterations",
            value: p.max_iterations.to_string(),
            expected: "must be at least 1",
        });
    }
    if !(p.l2_penalty.is_finite() && p.l2_penalty >= 0.0) {
        return Err(TrainError::InvalidParameter {
            name: "l2_penalty",
            value: p.l2_penalty.to_string(),
            expected: "must be a finite number >= 0",
        });
    }
    if !(p.test_fraction > 0.0 && p.test_fraction < 1.0) {
        return Err(TrainError::InvalidParameter {
            name: "test_fraction",
            value: p.test_fraction.to_string(),
            expected: "must be strictly between 0 and 1",
        });
    }
    Ok(())
}

/// Class index a row should get: binary 1 for the positive class, else 0; multiclass the
/// species index.
fn target(class: IrisClass, positive: Option<IrisClass>) -> usize {
    match positive {
        Some(p) => usize::from(class == p),
        None => class.index(),
    }
}

/// Splits each class separately: shuffle its row indices with the seeded generator, hold out
/// `round(n * fraction)` of them (clamped to 1..n-1). Both index lists come back sorted.
fn stratified_split(data: &[IrisSample], fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = SplitMix64(seed);
    let mut train = Vec::new();
    let mut test = Vec::new();
    for class in IrisClass::ALL {
        let mut idx: Vec<usize> = (0..data.len())
            .filter(|&i| data[i].class == class)
            .collect();
        for i in (1..idx.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            idx.swap(i, j);
        }
        let n = idx.len();
        let n_test = ((n as f64 * fraction).round() as usize).clamp(1, n.saturating_sub(1));
        test.extend_from_slice(&idx[..n_test]);
        train.extend_from_slice(&idx[n_test..]);
    }
    train.sort_unstable();
    test.sort_unstable();
    (train, test)
}

/// Means and population standard deviations of the training rows (a constant feature
/// gets std 1, as in scikit-learn's StandardScaler).
fn fit_scaler(data: &[IrisSample], rows: &[usize]) -> ([f64; N_FEATURES], [f64; N_FEATURES]) {
    let n = rows.len() as f64;
    let mut means = [0.0; N_FEATURES];
    let mut stds = [0.0; N_FEATURES];
    for c in 0..N_FEATURES {
        let mean = rows.iter().map(|&i| data[i].features[c]).sum::<f64>() / n;
        let var = rows
            .iter()
            .map(|&i| (data[i].features[c] - mean).powi(2))
            .sum::<f64>()
            / n;
        means[c] = mean;
        stds[c] = if var > 0.0 { var.sqrt() } else { 1.0 };
    }
    (means, stds)
}

type Fitted = (Vec<Vec<f64>>, Vec<f64>);

fn fit_binary(
    x: Array2<f64>,
    data: &[IrisSample],
    rows: &[usize],
    positive: IrisClass,
    p: &TrainingParams,
) -> Result<Fitted, TrainError> {
    let y: Array1<bool> = rows.iter().map(|&i| data[i].class == positive).collect();
    let model = LogisticRegression::default()
        .alpha(p.l2_penalty)
        .max_iterations(p.max_iterations)
        .with_intercept(true)
        .fit(&Dataset::new(x, y))
        .map_err(|e| TrainError::Fit(e.to_string()))?;
    // linfa scores its `labels().pos`, which it picks as the more frequent class: for one vs
    // rest that is usually "rest". Flip the signs so the score is always the positive class's.
    let sign = if model.labels().pos.class { 1.0 } else { -1.0 };
    let w = model.params().iter().map(|v| sign * v).collect();
    Ok((vec![w], vec![sign * model.intercept()]))
}

fn fit_multiclass(
    x: Array2<f64>,
    data: &[IrisSample],
    rows: &[usize],
    p: &TrainingParams,
) -> Result<Fitted, TrainError> {
    let y: Array1<usize> = rows.iter().map(|&i| data[i].class.index()).collect();
    let model = MultiLogisticRegression::default()
        .alpha(p.l2_penalty)
        .max_iterations(p.max_iterations)
        .with_intercept(true)
        .fit(&Dataset::new(x, y))
        .map_err(|e| TrainError::Fit(e.to_string()))?;
    // Columns of params() follow classes(), which linfa sorts; the split keeps every class
    // in the training rows, so this is [0, 1, 2].
    if model.classes() != [0, 1, 2] {
        return Err(TrainError::Fit(format!(
            "expected classes [0, 1, 2], linfa saw {:?}",
            model.classes()
        )));
    }
    let params = model.params();
    let coefficients = (0..IrisClass::ALL.len())
        .map(|k| params.column(k).to_vec())
        .collect();
    Ok((coefficients, model.intercept().to_vec()))
}

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny, well-mixed generator whose output is fixed
/// by the seed on every platform and every version of this crate.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), by rejection so there is no modulo bias.
    fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let v = self.next();
            if v < zone {
                return v % n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scaled(
        data: &[IrisSample],
        idx: &[usize],
        means: &[f64; 4],
        stds: &[f64; 4],
    ) -> Array2<f64> {
        Array2::from_shape_fn((idx.len(), N_FEATURES), |(r, c)| {
            (data[idx[r]].features[c] - means[c]) / stds[c]
        })
    }

    #[test]
    fn split_is_stratified_disjoint_and_seeded() {
        let data = iris::dataset();
        let (train, test) = stratified_split(data, 0.2, 42);
        assert_eq!((train.len(), test.len()), (120, 30));
        for class in IrisClass::ALL {
            assert_eq!(test.iter().filter(|&&i| data[i].class == class).count(), 10);
        }
        let mut all: Vec<usize> = train.iter().chain(&test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..150).collect::<Vec<_>>());
        assert_eq!(
            stratified_split(data, 0.2, 42),
            (train.clone(), test.clone())
        );
        assert_ne!(stratified_split(data, 0.2, 43).1, test);
    }

    #[test]
    fn binary_predictor_agrees_with_linfa() {
        let data = iris::dataset();
        let (train_idx, test_idx) = stratified_split(data, 0.2, 42);
        let (means, stds) = fit_scaler(data, &train_idx);
        let y: Array1<bool> = train_idx
            .iter()
            .map(|&i| data[i].class == IrisClass::Setosa)
            .collect();
        let model = LogisticRegression::default()
            .alpha(1.0)
            .max_iterations(100)
            .fit(&Dataset::new(scaled(data, &train_idx, &means, &stds), y))
            .unwrap();
        // The trap this crate works around: linfa scores the majority class, "rest".
        assert!(!model.labels().pos.class);
        let x_test = scaled(data, &test_idx, &means, &stds);
        let p_rest = model.predict_probabilities(&x_test);
        let classes = model.predict(&x_test);
        let artifact = train(&TrainingParams::default()).unwrap();
        for (k, &i) in test_idx.iter().enumerate() {
            let ours = artifact.predict_one(&data[i].features);
            assert!((ours.probabilities()[1] - (1.0 - p_rest[k])).abs() < 1e-9);
            assert_eq!(ours.class_index == 1, classes[k]);
        }
    }

    #[test]
    fn multiclass_predictor_agrees_with_linfa() {
        let data = iris::dataset();
        let (train_idx, test_idx) = stratified_split(data, 0.2, 42);
        let (means, stds) = fit_scaler(data, &train_idx);
        let y: Array1<usize> = train_idx.iter().map(|&i| data[i].class.index()).collect();
        let model = MultiLogisticRegression::default()
            .alpha(1.0)
            .max_iterations(100)
            .fit(&Dataset::new(scaled(data, &train_idx, &means, &stds), y))
            .unwrap();
        let x_test = scaled(data, &test_idx, &means, &stds);
        let probs = model.predict_probabilities(&x_test);
        let classes = model.predict(&x_test);
        let artifact = train(&TrainingParams {
            task: Task::Multiclass,
            ..TrainingParams::default()
        })
        .unwrap();
        for (k, &i) in test_idx.iter().enumerate() {
            let ours = artifact.predict_one(&data[i].features);
            for c in 0..3 {
                assert!((ours.probabilities()[c] - probs[[k, c]]).abs() < 1e-9);
            }
            assert_eq!(ours.class_index, classes[k]);
        }
    }
}
