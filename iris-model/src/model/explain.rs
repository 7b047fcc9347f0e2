//! Exact explanations of a prediction. The model is a logistic regression over standardised
//! inputs, so each class's logit is a sum that can be shown term by term:
//!
//! `logit[k] = intercept[k] + sum_i coefficient[k][i] * z[i]`, with
//! `z[i] = (x[i] - mean[i]) / std[i]` (saturated at +-1e9, as [`Predictor::predict`] does),
//!
//! and the contribution of feature `i` to class `k` is `coefficient[k][i] * z[i]`. The sum is
//! taken in that order (intercept first, then the features in input order), which is the order
//! `predict` adds them in, so `intercept + contributions` is the logit bit for bit.
//!
//! Multiclass: the logits are the softmax's inputs, one per class. Binary (one vs rest): the
//! positive class (index 1) has the model's one linear score as its logit, and the rest
//! (index 0) is the reference class with logit 0, intercept 0 and no contributions; the
//! probabilities are then the softmax of the logits in both cases (`sigmoid(s)` is
//! `softmax([0, s])[1]`), and the predicted class is the argmax of the logits (a binary model
//! predicts the positive class from probability 0.5 up, so at a logit within rounding of 0 it
//! is the positive class).

use super::predict::{Prediction, Predictor, MAX_CLASSES};
use super::Task;
use crate::iris::N_FEATURES;

/// One class's logit, term by term: `logit == intercept + contributions[0] + ... + [3]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClassExplanation {
    /// `coefficient * standardised value` per feature, in input order.
    pub contributions: [f64; N_FEATURES],
    /// The class's intercept (0 for the reference class of a binary model).
    pub intercept: f64,
    /// The class's logit, exactly as the prediction computed it.
    pub logit: f64,
}

impl ClassExplanation {
    /// The reference class of a binary model: everything 0.
    const REFERENCE: ClassExplanation = ClassExplanation {
        contributions: [0.0; N_FEATURES],
        intercept: 0.0,
        logit: 0.0,
    };
}

/// The explanation of one row: the prediction and every class's logit, term by term.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Explanation {
    /// The prediction, as [`Predictor::predict`] answers it.
    pub prediction: Prediction,
    /// The inputs as the model sees them: `(x - mean) / std` per feature.
    pub standardised: [f64; N_FEATURES],
    classes: [ClassExplanation; MAX_CLASSES],
    n_classes: usize,
}

impl Explanation {
    /// Every class, in class-index order (2 for binary, 3 for multiclass).
    pub fn classes(&self) -> &[ClassExplanation] {
        &self.classes[..self.n_classes]
    }
}

impl Predictor {
    /// Explains the prediction of one row of raw (unscaled) measurements; inputs must be
    /// finite, as for [`Predictor::predict`]. No allocation.
    pub fn explain(&self, features: &[f64; N_FEATURES]) -> Explanation {
        let standardised = self.standardise(features);
        let mut classes = [ClassExplanation::REFERENCE; MAX_CLASSES];
        match self.task() {
            Task::Binary => classes[1] = self.class_explanation(0, &standardised),
            Task::Multiclass => {
                for (k, class) in classes.iter_mut().enumerate().take(self.n_classes()) {
                    *class = self.class_explanation(k, &standardised);
                }
            }
        }
        Explanation {
            prediction: self.predict(features),
            standardised,
            classes,
            n_classes: self.n_classes(),
        }
    }

    fn class_explanation(&self, k: usize, z: &[f64; N_FEATURES]) -> ClassExplanation {
        let (coefficients, intercept) = self.linear(k);
        let mut contributions = [0.0; N_FEATURES];
        for (i, c) in contributions.iter_mut().enumerate() {
            *c = coefficients[i] * z[i];
        }
        ClassExplanation {
            contributions,
            intercept,
            logit: self.score(k, z),
        }
    }
}

#[cfg(test)]
mod tests;
