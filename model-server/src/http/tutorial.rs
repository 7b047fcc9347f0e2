//! `POST /predict_iris`: the contract of the Flask tutorial this server replaces, plus a
//! batch form.
//!
//! - `{"features": [sl, sw, pl, pw]}` -> `{"prediction": 1, "label": "setosa", "probability": 0.98}`
//! - `{"instances": [[sl, sw, pl, pw], ...]}` -> `{"predictions": [{...}, ...]}`
//!
//! `prediction` is the class index (binary: 1 = the positive class, 0 = the rest),
//! `probability` the probability of the predicted label.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::fmt;

use serde::de::{self, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::extract::{JsonBody, RequestShape};
use crate::error::ApiError;
use crate::iris::N_FEATURES;
use crate::model::{ModelArtifact, Prediction};
use crate::state::AppState;

/// A row of four measurements. Its own `Deserialize` so that a row of the wrong length
/// says "expected 4 numbers" (serde's fixed arrays report extra elements as a JSON syntax
/// error).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Row(pub [f64; N_FEATURES]);

impl<'de> Deserialize<'de> for Row {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(RowVisitor)
    }
}

struct RowVisitor;

impl<'de> Visitor<'de> for RowVisitor {
    type Value = Row;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of 4 numbers [sepal_length, sepal_width, petal_length, petal_width]")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Row, A::Error> {
        let mut row = [0.0; N_FEATURES];
        let mut n = 0;
        while n < N_FEATURES {
            match seq.next_element::<f64>()? {
                Some(v) => row[n] = v,
                None => return Err(de::Error::invalid_length(n, &self)),
            }
            n += 1;
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {
            n += 1;
        }
        if n == N_FEATURES {
            Ok(Row(row))
        } else {
            Err(de::Error::invalid_length(n, &self))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PredictIrisRequest {
    features: Option<Row>,
    instances: Option<Vec<Row>>,
}

impl RequestShape for PredictIrisRequest {
    const EXPECTED: &'static str = r#"{"features": [sepal_length, sepal_width, petal_length, petal_width]} or {"instances": [[sepal_length, sepal_width, petal_length, petal_width], ...]}"#;
}

#[derive(Serialize)]
struct PredictionBody<'a> {
    prediction: usize,
    label: &'a str,
    probability: f64,
}

impl<'a> PredictionBody<'a> {
    fn new(model: &'a ModelArtifact, p: &Prediction) -> Self {
        PredictionBody {
            prediction: p.class_index,
            label: model.label(p.class_index),
            probability: p.probability(),
        }
    }
}

#[derive(Serialize)]
struct BatchBody<'a> {
    predictions: Vec<PredictionBody<'a>>,
}

pub(crate) async fn predict_iris(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<PredictIrisRequest>,
) -> Result<Response, ApiError> {
    let model = state.model();
    match (req.features, req.instances) {
        (Some(features), None) => {
            check_finite(&features.0, || "features".to_owned())?;
            let p = state.predict_one(&features.0);
            Ok(Json(PredictionBody::new(model, &p)).into_response())
        }
        (None, Some(rows)) => {
            let predictions = predict_rows(&state, &rows, "instances")?;
            let body = BatchBody {
                predictions: predictions
                    .iter()
                    .map(|p| PredictionBody::new(model, p))
                    .collect(),
            };
            Ok(Json(body).into_response())
        }
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "give either \"features\" (one row) or \"instances\" (a batch), not both",
        )),
        (None, None) => Err(ApiError::bad_request(format!(
            "missing \"features\" or \"instances\"; expected {}",
            PredictIrisRequest::EXPECTED
        ))),
    }
}

/// Checks the batch size and every value, predicts, and counts predictions by class (and
/// the inputs' drift).
pub(crate) fn predict_rows(
    state: &AppState,
    rows: &[Row],
    field: &str,
) -> Result<Vec<Prediction>, ApiError> {
    state.check_batch_size(rows.len())?;
    for (i, row) in rows.iter().enumerate() {
        check_finite(&row.0, || format!("{field}[{i}]"))?;
    }
    Ok(state.predict(rows.iter().map(|row| &row.0)))
}

/// 400 naming the first NaN or infinite value (JSON has no NaN, but `1e400` parses to inf).
fn check_finite(row: &[f64; N_FEATURES], name: impl FnOnce() -> String) -> Result<(), ApiError> {
    match row.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(ApiError::bad_request(format!(
            "{}[{i}] is not a finite number",
            name()
        ))),
    }
}
