//! Open Inference Protocol v2 (REST), per kserve/open-inference-protocol
//! `specification/protocol/inference_rest.md`.
//!
//! The model takes one input tensor, FP32 or FP64, shape `[N, 4]`, `data` flat (row-major)
//! or nested, and answers with three outputs:
//! `label` (BYTES, `[N]`), `probabilities` (FP64, `[N, n_classes]`) and `predict`
//! (INT64, `[N]`, the class index). A request's `outputs` list selects and orders them;
//! a request `id` is echoed.

use std::fmt;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::{self, DeserializeSeed, IgnoredAny, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::extract::{JsonBody, ModelName, ModelVersion, RequestShape};
use super::tutorial::check_batch_size;
use super::{json_bytes, ApiError, AppState};
use crate::iris::N_FEATURES;
use crate::model::{ModelArtifact, Prediction, MAX_CLASSES};

/// Output tensor names, in default order.
const OUTPUTS: [&str; 3] = ["label", "probabilities", "predict"];
/// Name advertised for the input tensor (any name is accepted).
const INPUT_NAME: &str = "input-0";

#[derive(Serialize)]
struct ServerMetadata {
    name: &'static str,
    version: &'static str,
    extensions: [&'static str; 0],
}

/// `GET /v2` body, serialized once.
pub(crate) fn server_metadata() -> Bytes {
    serde_json::to_vec(&ServerMetadata {
        name: "iris-model-server",
        version: env!("CARGO_PKG_VERSION"),
        extensions: [],
    })
    .map(Bytes::from)
    .unwrap_or_default()
}

#[derive(Serialize)]
struct TensorMetadata {
    name: &'static str,
    datatype: &'static str,
    shape: Vec<i64>,
}

#[derive(Serialize)]
struct ModelMetadata<'a> {
    name: &'a str,
    versions: [&'a str; 1],
    platform: &'static str,
    inputs: [TensorMetadata; 1],
    outputs: [TensorMetadata; 3],
    parameters: ModelParameters<'a>,
}

#[derive(Serialize)]
struct ModelParameters<'a> {
    task: &'static str,
    digest: &'a str,
    class_labels: &'a [String],
    feature_names: &'a [String],
    held_out_accuracy: f64,
}

/// `GET /v2/models/{name}` body, serialized once.
pub(crate) fn model_metadata(name: &str, model: &ModelArtifact) -> Bytes {
    let classes = model.class_labels().len() as i64;
    let meta = ModelMetadata {
        name,
        versions: [model.short_digest()],
        platform: "linfa-logistic",
        inputs: [TensorMetadata {
            name: INPUT_NAME,
            datatype: "FP64",
            shape: vec![-1, N_FEATURES as i64],
        }],
        outputs: [
            TensorMetadata {
                name: OUTPUTS[0],
                datatype: "BYTES",
                shape: vec![-1],
            },
            TensorMetadata {
                name: OUTPUTS[1],
                datatype: "FP64",
                shape: vec![-1, classes],
            },
            TensorMetadata {
                name: OUTPUTS[2],
                datatype: "INT64",
                shape: vec![-1],
            },
        ],
        parameters: ModelParameters {
            task: model.task().as_str(),
            digest: model.digest(),
            class_labels: model.class_labels(),
            feature_names: model.feature_names(),
            held_out_accuracy: model.accuracy(),
        },
    };
    serde_json::to_vec(&meta)
        .map(Bytes::from)
        .unwrap_or_default()
}

/// `GET /v2`.
pub(crate) async fn server(State(state): State<AppState>) -> Response {
    json_bytes(state.inner.v2_server_metadata.clone())
}

/// `GET /v2/health/live`: 200 while the process serves HTTP.
pub(crate) async fn live() -> Response {
    json_bytes(Bytes::from_static(br#"{"live":true}"#))
}

/// `GET /v2/health/ready`: 200 once the model is loaded, 503 from the moment shutdown begins.
pub(crate) async fn ready(State(state): State<AppState>) -> Result<Response, ApiError> {
    state.check_ready()?;
    Ok(json_bytes(Bytes::from_static(br#"{"ready":true}"#)))
}

/// `GET /v2/models/{name}`.
pub(crate) async fn model(
    State(state): State<AppState>,
    ModelName(name): ModelName,
) -> Result<Response, ApiError> {
    state.check_model(&name)?;
    Ok(json_bytes(state.inner.v2_model_metadata.clone()))
}

/// `GET /v2/models/{name}/versions/{version}`.
pub(crate) async fn model_version(
    State(state): State<AppState>,
    ModelVersion(name, version): ModelVersion,
) -> Result<Response, ApiError> {
    state.check_version(&name, &version)?;
    Ok(json_bytes(state.inner.v2_model_metadata.clone()))
}

#[derive(Serialize)]
struct ModelReady<'a> {
    name: &'a str,
    ready: bool,
}

fn model_ready_response(state: &AppState) -> Result<Response, ApiError> {
    state.check_ready()?;
    Ok(Json(ModelReady {
        name: state.model_name(),
        ready: true,
    })
    .into_response())
}

/// `GET /v2/models/{name}/ready`.
pub(crate) async fn model_ready(
    State(state): State<AppState>,
    ModelName(name): ModelName,
) -> Result<Response, ApiError> {
    state.check_model(&name)?;
    model_ready_response(&state)
}

/// `GET /v2/models/{name}/versions/{version}/ready`.
pub(crate) async fn model_version_ready(
    State(state): State<AppState>,
    ModelVersion(name, version): ModelVersion,
) -> Result<Response, ApiError> {
    state.check_version(&name, &version)?;
    model_ready_response(&state)
}

/// `POST /v2/models/{name}/infer`.
pub(crate) async fn infer(
    State(state): State<AppState>,
    ModelName(name): ModelName,
    JsonBody(req): JsonBody<InferRequest>,
) -> Result<Response, ApiError> {
    state.check_model(&name)?;
    run_inference(&state, req)
}

/// `POST /v2/models/{name}/versions/{version}/infer`.
pub(crate) async fn infer_version(
    State(state): State<AppState>,
    ModelVersion(name, version): ModelVersion,
    JsonBody(req): JsonBody<InferRequest>,
) -> Result<Response, ApiError> {
    state.check_version(&name, &version)?;
    run_inference(&state, req)
}

#[derive(Deserialize)]
pub(crate) struct InferRequest {
    #[serde(default)]
    id: Option<String>,
    /// Accepted and ignored, as the protocol allows.
    #[serde(default, rename = "parameters")]
    _parameters: Option<IgnoredAny>,
    inputs: Vec<InputTensor>,
    #[serde(default)]
    outputs: Option<Vec<RequestedOutput>>,
}

impl RequestShape for InferRequest {
    const EXPECTED: &'static str =
        r#"{"inputs": [{"name": "input-0", "shape": [N, 4], "datatype": "FP64", "data": [...]}]}"#;
}

#[derive(Deserialize)]
struct InputTensor {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    /// Accepted and ignored.
    #[serde(default, rename = "parameters")]
    _parameters: Option<IgnoredAny>,
    data: TensorData,
}

#[derive(Deserialize)]
struct RequestedOutput {
    name: String,
    /// Accepted and ignored (no binary data extension).
    #[serde(default, rename = "parameters")]
    _parameters: Option<IgnoredAny>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Output {
    Label,
    Probabilities,
    Predict,
}

fn run_inference(state: &AppState, req: InferRequest) -> Result<Response, ApiError> {
    let outputs = select_outputs(req.outputs.as_deref())?;
    let [input] = <[InputTensor; 1]>::try_from(req.inputs).map_err(|inputs| {
        ApiError::bad_request(format!(
            "expected exactly one input tensor of shape [N, {N_FEATURES}], got {}",
            inputs.len()
        ))
    })?;
    let rows = input_rows(state, &input)?;
    let model = state.model();
    let predictor = model.predictor();
    let mut counts = [0; MAX_CLASSES];
    let predictions: Vec<Prediction> = rows
        .map(|row| {
            let p = predictor.predict(&row);
            counts[p.class_index] += 1;
            p
        })
        .collect();
    state.metrics().count_predictions(&counts);
    let body = InferResponse {
        model_name: state.model_name(),
        model_version: model.short_digest(),
        id: req.id.as_deref(),
        outputs: outputs
            .iter()
            .map(|&kind| OutputTensor {
                kind,
                model,
                predictions: &predictions,
            })
            .collect(),
    };
    Ok(Json(body).into_response())
}

fn select_outputs(requested: Option<&[RequestedOutput]>) -> Result<Vec<Output>, ApiError> {
    let all = [Output::Label, Output::Probabilities, Output::Predict];
    match requested {
        None | Some([]) => Ok(all.to_vec()),
        Some(list) => list
            .iter()
            .map(|o| match o.name.as_str() {
                "label" => Ok(Output::Label),
                "probabilities" => Ok(Output::Probabilities),
                "predict" => Ok(Output::Predict),
                other => Err(ApiError::bad_request(format!(
                    "unknown output {other:?}; this model has outputs {}",
                    OUTPUTS.join(", ")
                ))),
            })
            .collect(),
    }
}

/// Validates datatype, shape and values; yields the rows as f64 (FP32 values rounded to
/// f32 first, so they mean what an FP32 tensor means).
fn input_rows<'a>(
    state: &AppState,
    input: &'a InputTensor,
) -> Result<impl Iterator<Item = [f64; N_FEATURES]> + 'a, ApiError> {
    let fp32 = match input.datatype.as_str() {
        "FP64" => false,
        "FP32" => true,
        other => {
            return Err(ApiError::bad_request(format!(
                "input {:?} has datatype {other:?}; this model takes FP32 or FP64",
                input.name
            )))
        }
    };
    let n = match input.shape.as_slice() {
        [n, f] if *n >= 0 && *f == N_FEATURES as i64 => *n as u64,
        _ => {
            return Err(ApiError::bad_request(format!(
                "input {:?} has shape {:?}; expected [N, {N_FEATURES}] (N rows of \
                 sepal_length, sepal_width, petal_length, petal_width)",
                input.name, input.shape
            )))
        }
    };
    let rows = usize::try_from(n).unwrap_or(usize::MAX);
    check_batch_size(state, rows)?;
    let data = &input.data;
    let needed = n.saturating_mul(N_FEATURES as u64);
    if data.values.len() as u64 != needed {
        return Err(ApiError::bad_request(format!(
            "input {:?} has shape [{n}, {N_FEATURES}], which needs {needed} values, but data has {}",
            input.name,
            data.values.len()
        )));
    }
    if let Some(len) = data.nested_row_len {
        if len != N_FEATURES {
            return Err(ApiError::bad_request(format!(
                "input {:?} has nested rows of {len} values; expected {N_FEATURES}",
                input.name
            )));
        }
    }
    for (i, v) in data.values.iter().enumerate() {
        let ok = if fp32 {
            (*v as f32).is_finite()
        } else {
            v.is_finite()
        };
        if !ok {
            return Err(ApiError::bad_request(format!(
                "input {:?} value {i} ({v}) is not a finite {} number",
                input.name, input.datatype
            )));
        }
    }
    Ok(data.values.chunks_exact(N_FEATURES).map(move |chunk| {
        let mut row = [0.0; N_FEATURES];
        for (dst, src) in row.iter_mut().zip(chunk) {
            *dst = if fp32 { f64::from(*src as f32) } else { *src };
        }
        row
    }))
}

#[derive(Serialize)]
struct InferResponse<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<OutputTensor<'a>>,
}

struct OutputTensor<'a> {
    kind: Output,
    model: &'a ModelArtifact,
    predictions: &'a [Prediction],
}

impl Serialize for OutputTensor<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let n = self.predictions.len();
        let classes = self.model.class_labels().len();
        let mut st = s.serialize_struct("OutputTensor", 4)?;
        match self.kind {
            Output::Label => {
                st.serialize_field("name", "label")?;
                st.serialize_field("datatype", "BYTES")?;
                st.serialize_field("shape", &[n])?;
                st.serialize_field("data", &Labels(self))?;
            }
            Output::Probabilities => {
                st.serialize_field("name", "probabilities")?;
                st.serialize_field("datatype", "FP64")?;
                st.serialize_field("shape", &[n, classes])?;
                st.serialize_field("data", &Probabilities(self.predictions))?;
            }
            Output::Predict => {
                st.serialize_field("name", "predict")?;
                st.serialize_field("datatype", "INT64")?;
                st.serialize_field("shape", &[n])?;
                st.serialize_field("data", &Classes(self.predictions))?;
            }
        }
        st.end()
    }
}

struct Labels<'a>(&'a OutputTensor<'a>);

impl Serialize for Labels<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.predictions.len()))?;
        for p in self.0.predictions {
            seq.serialize_element(self.0.model.label(p.class_index))?;
        }
        seq.end()
    }
}

struct Probabilities<'a>(&'a [Prediction]);

impl Serialize for Probabilities<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let per_row = self.0.first().map_or(0, |p| p.probabilities().len());
        let mut seq = s.serialize_seq(Some(self.0.len() * per_row))?;
        for p in self.0 {
            for v in p.probabilities() {
                seq.serialize_element(v)?;
            }
        }
        seq.end()
    }
}

struct Classes<'a>(&'a [Prediction]);

impl Serialize for Classes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for p in self.0 {
            seq.serialize_element(&p.class_index)?;
        }
        seq.end()
    }
}

/// Tensor `data`, flat (`[1, 2, 3, 4, ...]`) or nested one level (`[[1, 2, 3, 4], ...]`),
/// read straight into one `Vec<f64>` without building JSON values.
struct TensorData {
    values: Vec<f64>,
    /// Length of the nested rows, if the data was nested (all rows must agree).
    nested_row_len: Option<usize>,
}

impl<'de> Deserialize<'de> for TensorData {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(TensorVisitor)
    }
}

struct TensorVisitor;

impl<'de> Visitor<'de> for TensorVisitor {
    type Value = TensorData;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of numbers, or an array of arrays of numbers")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TensorData, A::Error> {
        let mut data = TensorData {
            values: Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096)),
            nested_row_len: None,
        };
        let mut nested: Option<bool> = None;
        while let Some(()) = seq.next_element_seed(ElementSeed {
            data: &mut data,
            nested: &mut nested,
        })? {}
        Ok(data)
    }
}

/// One element of the outer array: a number (flat) or a row of numbers (nested). Mixing
/// the two is an error.
struct ElementSeed<'a> {
    data: &'a mut TensorData,
    nested: &'a mut Option<bool>,
}

impl<'de> DeserializeSeed<'de> for ElementSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl ElementSeed<'_> {
    fn number<E: de::Error>(self, v: f64) -> Result<(), E> {
        if *self.nested == Some(true) {
            return Err(E::custom("data mixes numbers and nested arrays"));
        }
        *self.nested = Some(false);
        self.data.values.push(v);
        Ok(())
    }
}

impl<'de> Visitor<'de> for ElementSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number or an array of numbers")
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.number(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.number(v as f64)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.number(v as f64)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if *self.nested == Some(false) {
            return Err(de::Error::custom("data mixes numbers and nested arrays"));
        }
        *self.nested = Some(true);
        let before = self.data.values.len();
        while let Some(v) = seq.next_element::<f64>()? {
            self.data.values.push(v);
        }
        let len = self.data.values.len() - before;
        match self.data.nested_row_len {
            None => self.data.nested_row_len = Some(len),
            Some(first) if first != len => {
                return Err(de::Error::custom(format!(
                    "nested rows have different lengths ({first} and {len})"
                )))
            }
            Some(_) => {}
        }
        Ok(())
    }
}
