//! KServe v1 protocol: `GET /v1/models/{name}`, `POST /v1/models/{name}:predict` and
//! `POST /v1/models/{name}:explain` (answered by [`super::explain`]).
//!
//! axum cannot put a literal `:predict` after a path parameter, so all live on
//! `/v1/models/{name}` and the POST handler splits `name:verb` itself.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::extract::{JsonBody, ModelName, RequestShape};
use super::tutorial::{predict_rows, Row};
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
pub(crate) struct PredictRequest {
    instances: Vec<Row>,
}

impl RequestShape for PredictRequest {
    const EXPECTED: &'static str =
        r#"{"instances": [[sepal_length, sepal_width, petal_length, petal_width], ...]}"#;
}

#[derive(Serialize)]
struct PredictResponse {
    /// Class index per row, as KServe's scikit-learn runtime answers.
    predictions: Vec<usize>,
}

#[derive(Serialize)]
struct ModelStatus<'a> {
    name: &'a str,
    ready: bool,
}

/// `GET /v1/models/{name}` -> `{"name": "iris", "ready": true}`.
pub(crate) async fn model_status(
    State(state): State<AppState>,
    ModelName(name): ModelName,
) -> Result<Response, ApiError> {
    state.check_model(&name)?;
    Ok(Json(ModelStatus {
        name: state.model_name(),
        ready: state.is_ready(),
    })
    .into_response())
}

/// `POST /v1/models/{name}:predict` -> `{"predictions": [class index, ...]}`; `:explain`
/// takes the same body.
pub(crate) async fn predict(
    State(state): State<AppState>,
    ModelName(name_verb): ModelName,
    JsonBody(req): JsonBody<PredictRequest>,
) -> Result<Response, ApiError> {
    let Some((name, verb)) = name_verb.rsplit_once(':') else {
        return Err(ApiError::not_found(format!(
            "POST /v1/models/{name_verb} is not a KServe v1 verb; use POST /v1/models/{name_verb}:predict"
        )));
    };
    if verb != "predict" && verb != "explain" {
        return Err(ApiError::not_found(format!(
            "unsupported KServe v1 verb {verb:?}; this server supports :predict and :explain"
        )));
    }
    state.check_model(name)?;
    if verb == "explain" {
        return super::explain::explain(&state, &req.instances);
    }
    let predictions = predict_rows(&state, &req.instances, "instances")?;
    Ok(Json(PredictResponse {
        predictions: predictions.iter().map(|p| p.class_index).collect(),
    })
    .into_response())
}
