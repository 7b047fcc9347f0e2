//! The prediction hot path: fixed-size arrays, no allocation, no locks.

use super::Task;
use crate::iris::N_FEATURES;

/// Most classes a model can have (multiclass Iris).
pub const MAX_CLASSES: usize = 3;

/// A validated, ready-to-use logistic-regression model: standard scaling, then a sigmoid
/// (binary) or a softmax (multiclass) over linear scores.
#[derive(Clone, Debug, PartialEq)]
pub struct Predictor {
    task: Task,
    means: [f64; N_FEATURES],
    stds: [f64; N_FEATURES],
    /// Binary: row 0 scores the positive class. Multiclass: one row per class.
    weights: [[f64; N_FEATURES]; MAX_CLASSES],
    intercepts: [f64; MAX_CLASSES],
    n_classes: usize,
}

/// The outcome for one row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prediction {
    /// Index of the predicted class: binary 0 (rest) or 1 (positive class); multiclass 0..3.
    pub class_index: usize,
    probabilities: [f64; MAX_CLASSES],
    n_classes: usize,
}

impl Prediction {
    /// Probability of the predicted class.
    pub fn probability(&self) -> f64 {
        self.probabilities[self.class_index]
    }

    /// Probability of every class, in class-index order (length 2 or 3).
    pub fn probabilities(&self) -> &[f64] {
        &self.probabilities[..self.n_classes]
    }
}

impl Predictor {
    /// Builds a predictor. `weights` has one row (binary) or one per class (multiclass);
    /// the caller (artifact validation or training) has checked shapes and finiteness.
    pub(crate) fn new(
        task: Task,
        means: [f64; N_FEATURES],
        stds: [f64; N_FEATURES],
        weights: &[[f64; N_FEATURES]],
        intercepts: &[f64],
    ) -> Predictor {
        let mut w = [[0.0; N_FEATURES]; MAX_CLASSES];
        let mut b = [0.0; MAX_CLASSES];
        for (dst, src) in w.iter_mut().zip(weights) {
            *dst = *src;
        }
        for (dst, src) in b.iter_mut().zip(intercepts) {
            *dst = *src;
        }
        let n_classes = match task {
            Task::Binary => 2,
            Task::Multiclass => weights.len().min(MAX_CLASSES),
        };
        Predictor {
            task,
            means,
            stds,
            weights: w,
            intercepts: b,
            n_classes,
        }
    }

    /// Number of classes (2 for binary, 3 for multiclass).
    pub fn n_classes(&self) -> usize {
        self.n_classes
    }

    /// Predicts one row of raw (unscaled) measurements. Inputs must be finite (the HTTP
    /// layer rejects anything else before it gets here); for any finite input the
    /// probabilities are finite, because scaled features saturate at +-1e9 standard
    /// deviations instead of overflowing into `inf - inf`.
    #[inline]
    pub fn predict(&self, features: &[f64; N_FEATURES]) -> Prediction {
        let x = self.standardise(features);
        let mut probabilities = [0.0; MAX_CLASSES];
        let class_index = match self.task {
            Task::Binary => {
                let p = sigmoid(self.score(0, &x));
                probabilities[0] = 1.0 - p;
                probabilities[1] = p;
                usize::from(p >= 0.5)
            }
            Task::Multiclass => {
                let mut scores = [0.0; MAX_CLASSES];
                let mut best = 0;
                for k in 0..self.n_classes {
                    scores[k] = self.score(k, &x);
                    if scores[k] > scores[best] {
                        best = k;
                    }
                }
                let max = scores[best];
                let mut sum = 0.0;
                for k in 0..self.n_classes {
                    probabilities[k] = (scores[k] - max).exp();
                    sum += probabilities[k];
                }
                for p in probabilities.iter_mut().take(self.n_classes) {
                    *p /= sum;
                }
                best
            }
        };
        Prediction {
            class_index,
            probabilities,
            n_classes: self.n_classes,
        }
    }

    /// The task: how the linear scores become probabilities.
    pub fn task(&self) -> Task {
        self.task
    }

    /// The inputs as the model sees them: `(x - mean) / std` per feature, saturated at
    /// +-1e9 standard deviations.
    #[inline]
    pub fn standardise(&self, features: &[f64; N_FEATURES]) -> [f64; N_FEATURES] {
        let mut x = [0.0; N_FEATURES];
        for (i, v) in x.iter_mut().enumerate() {
            *v = ((features[i] - self.means[i]) / self.stds[i]).clamp(-SATURATION, SATURATION);
        }
        x
    }

    /// Coefficients and intercept of linear score `k`: binary has one (the positive
    /// class), multiclass one per class.
    pub(super) fn linear(&self, k: usize) -> (&[f64; N_FEATURES], f64) {
        (&self.weights[k], self.intercepts[k])
    }

    /// Linear score `k` of standardised inputs `x`, summed in the order
    /// [`super::Explanation`] documents (intercept first, then features in order).
    #[inline]
    pub(super) fn score(&self, k: usize, x: &[f64; N_FEATURES]) -> f64 {
        let w = &self.weights[k];
        self.intercepts[k] + w[0] * x[0] + w[1] * x[1] + w[2] * x[2] + w[3] * x[3]
    }
}

/// Bound on a scaled feature: far beyond any real flower, small enough that a weighted sum
/// of four of them cannot overflow.
const SATURATION: f64 = 1e9;

#[inline]
fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_probabilities_sum_to_one_and_follow_the_score() {
        let p = Predictor::new(
            Task::Binary,
            [0.0; 4],
            [1.0; 4],
            &[[1.0, 0.0, 0.0, 0.0]],
            &[0.0],
        );
        let hi = p.predict(&[3.0, 0.0, 0.0, 0.0]);
        assert_eq!(hi.class_index, 1);
        assert!((hi.probabilities().iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(hi.probability() > 0.9);
        let lo = p.predict(&[-3.0, 0.0, 0.0, 0.0]);
        assert_eq!(lo.class_index, 0);
        assert!(lo.probability() > 0.9);
        assert_eq!(lo.probabilities().len(), 2);
    }

    #[test]
    fn multiclass_softmax_is_stable_for_large_scores() {
        let w = [[1000.0, 0.0, 0.0, 0.0], [0.0; 4], [-1000.0, 0.0, 0.0, 0.0]];
        let p = Predictor::new(Task::Multiclass, [0.0; 4], [1.0; 4], &w, &[0.0; 3]);
        let out = p.predict(&[1e6, 0.0, 0.0, 0.0]);
        assert_eq!(out.class_index, 0);
        assert_eq!(out.probabilities(), &[1.0, 0.0, 0.0]);
        assert!(out.probabilities().iter().all(|v| v.is_finite()));
    }

    #[test]
    fn huge_finite_inputs_give_finite_probabilities() {
        let w = [
            [3.0, -2.0, 1.0, -1.0],
            [-1.0, 2.0, 0.5, 0.0],
            [0.0, 0.0, -4.0, 1.0],
        ];
        let stds = [0.1, 0.2, 0.3, 0.4];
        for task in [Task::Binary, Task::Multiclass] {
            let p = Predictor::new(task, [0.0; 4], stds, &w, &[0.5, -0.5, 0.0]);
            for row in [
                [f64::MAX, -f64::MAX, f64::MAX, -f64::MAX],
                [1e300, 1e300, 1e300, 1e300],
            ] {
                let out = p.predict(&row);
                assert!(
                    out.probabilities().iter().all(|v| v.is_finite()),
                    "{task} {out:?}"
                );
                assert!(out.probability().is_finite());
            }
        }
    }
}
