//! Explanations against the prediction they explain and against a computation by hand from
//! the artifact's scaler and coefficients, on the 150 Iris rows and on random models and
//! inputs.

use proptest::prelude::*;

use super::*;
use crate::iris::dataset;
use crate::model::{train, IrisClass, ModelArtifact, TrainingParams};

/// The sum in any order: the test does not lean on the order `score` adds in.
fn sum(c: &ClassExplanation) -> f64 {
    c.contributions.iter().rev().sum::<f64>() + c.intercept
}

/// The class with the largest logit; `None` when the top two are within `tie` (a binary model
/// predicts the positive class at probability 0.5, which a logit within rounding of 0 gives).
fn argmax(logits: &[f64], tie: f64) -> Option<usize> {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    (logits[order[0]] - logits[order[1]] > tie).then_some(order[0])
}

fn softmax(logits: &[f64]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

/// Checks one explanation against its own prediction: the sum, the argmax, the softmax.
fn check_consistent(p: &Predictor, row: &[f64; N_FEATURES]) -> Result<(), TestCaseError> {
    let e = p.explain(row);
    prop_assert_eq!(e.prediction, p.predict(row));
    prop_assert_eq!(e.classes().len(), p.n_classes());
    for c in e.classes() {
        prop_assert!(c.logit.is_finite() && c.contributions.iter().all(|v| v.is_finite()));
        // Bit for bit in predict's order, within 1e-9 (relative for huge logits) in any order.
        let in_order = c.intercept
            + c.contributions[0]
            + c.contributions[1]
            + c.contributions[2]
            + c.contributions[3];
        prop_assert_eq!(in_order.to_bits(), c.logit.to_bits());
        prop_assert!(
            (sum(c) - c.logit).abs() <= 1e-9 * c.logit.abs().max(1.0),
            "{c:?}"
        );
    }
    let logits: Vec<f64> = e.classes().iter().map(|c| c.logit).collect();
    if let Some(best) = argmax(&logits, 1e-12) {
        prop_assert_eq!(best, e.prediction.class_index, "{:?}", logits);
    }
    let probs = softmax(&logits);
    for (a, b) in probs.iter().zip(e.prediction.probabilities()) {
        prop_assert!((a - b).abs() < 1e-12, "{probs:?} vs {:?}", e.prediction);
    }
    Ok(())
}

/// Checks an explanation against the artifact's numbers, computed here by hand.
fn check_by_hand(m: &ModelArtifact, row: &[f64; N_FEATURES]) {
    let e = m.predictor().explain(row);
    let s = m.scaler();
    let z: Vec<f64> = (0..N_FEATURES)
        .map(|i| (row[i] - s.means[i]) / s.stds[i])
        .collect();
    // Binary: the positive class (index 1) carries the one coefficient row.
    let first = e.classes().len() - m.coefficients().len();
    for (k, (w, b)) in m.coefficients().iter().zip(m.intercepts()).enumerate() {
        let c = &e.classes()[first + k];
        assert_eq!(c.intercept, *b);
        let mut logit = *b;
        for i in 0..N_FEATURES {
            let by_hand = w[i] * z[i];
            assert!(
                (c.contributions[i] - by_hand).abs() < 1e-12,
                "{row:?} {k} {i}"
            );
            logit += by_hand;
        }
        assert!((c.logit - logit).abs() < 1e-9, "{row:?} {k}");
    }
    if first == 1 {
        assert_eq!(e.classes()[0], ClassExplanation::REFERENCE);
    }
}

fn models() -> Vec<ModelArtifact> {
    let mut out: Vec<ModelArtifact> = IrisClass::ALL
        .into_iter()
        .map(|c| {
            train(&TrainingParams {
                positive_class: Some(c),
                ..TrainingParams::default()
            })
            .unwrap()
        })
        .collect();
    out.push(
        train(&TrainingParams {
            task: Task::Multiclass,
            ..TrainingParams::default()
        })
        .unwrap(),
    );
    out
}

#[test]
fn every_iris_row_is_explained_exactly_by_every_trained_model() {
    for m in models() {
        let mut argmax_right = 0;
        let mut predict_right = 0;
        for sample in dataset() {
            check_consistent(m.predictor(), &sample.features).unwrap();
            check_by_hand(&m, &sample.features);
            let e = m.predictor().explain(&sample.features);
            let logits: Vec<f64> = e.classes().iter().map(|c| c.logit).collect();
            let truth = match m.positive_class() {
                Some(p) => usize::from(sample.class == p),
                None => sample.class.index(),
            };
            argmax_right += usize::from(argmax(&logits, 0.0) == Some(truth));
            predict_right += usize::from(m.predict_one(&sample.features).class_index == truth);
        }
        // The explained logits are the model's: they classify exactly as well as it does.
        assert_eq!(argmax_right, predict_right, "{}", m.summary());
    }
}

#[test]
fn a_binary_model_has_a_zero_reference_class() {
    let p = Predictor::new(
        Task::Binary,
        [1.0; 4],
        [2.0; 4],
        &[[1.0, -2.0, 0.5, 0.0]],
        &[0.25],
    );
    let e = p.explain(&[3.0, 3.0, 5.0, 9.0]);
    assert_eq!(e.standardised, [1.0, 1.0, 2.0, 4.0]);
    assert_eq!(e.classes()[0], ClassExplanation::REFERENCE);
    assert_eq!(
        e.classes()[1],
        ClassExplanation {
            contributions: [1.0, -2.0, 1.0, 0.0],
            intercept: 0.25,
            logit: 0.25,
        }
    );
    assert_eq!(e.prediction.class_index, 1);
}

#[test]
fn huge_inputs_saturate_instead_of_overflowing() {
    let w = [
        [3.0, -2.0, 1.0, -1.0],
        [-1.0, 2.0, 0.5, 0.0],
        [0.0, 0.0, -4.0, 1.0],
    ];
    for task in [Task::Binary, Task::Multiclass] {
        let p = Predictor::new(task, [0.0; 4], [0.1; 4], &w, &[0.5, -0.5, 0.0]);
        for row in [[f64::MAX, -f64::MAX, f64::MAX, -f64::MAX], [1e300; 4]] {
            check_consistent(&p, &row).unwrap();
            assert!(p.explain(&row).standardised.iter().all(|z| z.abs() <= 1e9));
        }
    }
}

fn predictor() -> impl Strategy<Value = Predictor> {
    let task = prop_oneof![Just(Task::Binary), Just(Task::Multiclass)];
    let means = prop::array::uniform4(-10.0..10.0f64);
    let stds = prop::array::uniform4(0.01..5.0f64);
    let weights = prop::array::uniform3(prop::array::uniform4(-20.0..20.0f64));
    let intercepts = prop::array::uniform3(-10.0..10.0f64);
    (task, means, stds, weights, intercepts)
        .prop_map(|(t, m, s, w, b)| Predictor::new(t, m, s, &w, &b))
}

fn row() -> impl Strategy<Value = [f64; N_FEATURES]> {
    prop::array::uniform4(prop_oneof![
        8 => -20.0..20.0f64,
        1 => -1e12..1e12f64,
        1 => prop::num::f64::NORMAL,
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_models_and_rows_are_explained_exactly(p in predictor(), r in row()) {
        check_consistent(&p, &r)?;
    }

    #[test]
    fn random_rows_match_the_trained_models_by_hand(r in prop::array::uniform4(0.0..10.0f64)) {
        use std::sync::OnceLock;
        static MODELS: OnceLock<Vec<ModelArtifact>> = OnceLock::new();
        for m in MODELS.get_or_init(models) {
            check_consistent(m.predictor(), &r)?;
            check_by_hand(m, &r);
        }
    }
}
