//! `POST /v1/models/{name}:explain` (KServe v1): the prediction of each row and its exact
//! explanation ([`iris_model::Explanation`]): per class, the logit, the intercept and each
//! feature's contribution (coefficient times standardised value), which add up to the logit.
//!
//! ```json
//! {"predictions": [0],
//!  "explanations": [{"prediction": 0, "label": "setosa", "probability": 0.98,
//!    "standardised": {"sepal_length": -0.9, "sepal_width": 1.0, ...},
//!    "classes": [{"class": 0, "label": "setosa", "probability": 0.98, "logit": 2.9,
//!                 "intercept": -0.1, "contributions": {"sepal_length": 0.4, ...}}, ...]}]}
//! ```
//!
//! `predictions` is what `:predict` answers (class indices); maps are keyed by the model's
//! feature names in input order. Validation, batch limit and errors are `:predict`'s.

use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use super::tutorial::{predict_rows, Row};
use crate::error::ApiError;
use crate::iris::N_FEATURES;
use crate::model::{Explanation, ModelArtifact};
use crate::state::AppState;

/// Checks and predicts the rows as `:predict` does (same 4xx, same counting), then explains.
pub(crate) fn explain(state: &AppState, rows: &[Row]) -> Result<Response, ApiError> {
    let predictions = predict_rows(state, rows, "instances")?;
    let model = state.model();
    let predictor = model.predictor();
    let explanations: Vec<RowBody<'_>> = rows
        .iter()
        .map(|row| RowBody {
            model,
            explanation: predictor.explain(&row.0),
        })
        .collect();
    Ok(Json(ExplainResponse {
        predictions: predictions.iter().map(|p| p.class_index).collect(),
        explanations,
    })
    .into_response())
}

#[derive(Serialize)]
struct ExplainResponse<'a> {
    /// Class index per row, as `:predict` answers.
    predictions: Vec<usize>,
    explanations: Vec<RowBody<'a>>,
}

/// One row's explanation.
struct RowBody<'a> {
    model: &'a ModelArtifact,
    explanation: Explanation,
}

impl Serialize for RowBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let p = &self.explanation.prediction;
        let names = self.model.feature_names();
        let mut m = s.serialize_map(Some(5))?;
        m.serialize_entry("prediction", &p.class_index)?;
        m.serialize_entry("label", self.model.label(p.class_index))?;
        m.serialize_entry("probability", &p.probability())?;
        m.serialize_entry(
            "standardised",
            &ByFeature(names, &self.explanation.standardised),
        )?;
        let classes: Vec<ClassBody<'_>> = self
            .explanation
            .classes()
            .iter()
            .zip(p.probabilities())
            .enumerate()
            .map(|(class, (c, &probability))| ClassBody {
                class,
                label: self.model.label(class),
                probability,
                logit: c.logit,
                intercept: c.intercept,
                contributions: ByFeature(names, &c.contributions),
            })
            .collect();
        m.serialize_entry("classes", &classes)?;
        m.end()
    }
}

/// One class of one row: [`iris_model::ClassExplanation`] with the class's label and probability.
#[derive(Serialize)]
struct ClassBody<'a> {
    class: usize,
    label: &'a str,
    probability: f64,
    logit: f64,
    intercept: f64,
    contributions: ByFeature<'a>,
}

/// `{"<feature name>": value, ...}` in input order.
struct ByFeature<'a>(&'a [String], &'a [f64; N_FEATURES]);

impl Serialize for ByFeature<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(N_FEATURES))?;
        for (name, value) in self.0.iter().zip(self.1) {
            m.serialize_entry(name, value)?;
        }
        m.end()
    }
}
