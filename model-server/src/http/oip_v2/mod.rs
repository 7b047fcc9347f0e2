//! Open Inference Protocol v2 (REST), per kserve/open-inference-protocol
//! `specification/protocol/inference_rest.md`, with Triton's binary tensor data extension.
//!
//! The tensors are decoded and encoded by the shared [`crate::oip::codec`]; this module is
//! the REST framing: JSON `data` (flat or nested), the binary extension, and the JSON (or
//! JSON + binary) response.
//!
//! **Binary tensor data** (`docs/protocol/extension_binary_data.md` of
//! triton-inference-server/server, as tritonclient sends it): an
//! `Inference-Header-Content-Length: N` request header means the first N bytes of the body
//! are the JSON request and the rest is binary data. An input with
//! `parameters.binary_data_size` takes that many bytes from the binary section, in input
//! order, instead of `data`. A requested output with `parameters.binary_data: true` (or every
//! output by default under request-level `parameters.binary_data_output: true`) is answered
//! with `parameters.binary_data_size` and no `data`; its bytes follow the JSON in output order,
//! the response has `Inference-Header-Content-Length` and `Content-Type:
//! application/octet-stream`.

mod request;

use std::sync::LazyLock;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::ser::SerializeSeq;
use serde::{Serialize, Serializer};

use super::extract::{ModelName, ModelVersion};
use super::json_bytes;
use crate::error::ApiError;
use crate::iris::N_FEATURES;
use crate::model::{ModelArtifact, Prediction};
use crate::oip::codec::{self, Input, Values};
use crate::oip::{self, Output, TensorMetadata};
use crate::state::AppState;
use request::{InferBody, InferRequest, InputTensor, INFERENCE_HEADER_CONTENT_LENGTH};

#[derive(Serialize)]
struct ServerMetadata {
    name: &'static str,
    version: &'static str,
    extensions: [&'static str; oip::EXTENSIONS.len()],
}

/// `GET /v2` body, serialized once.
static SERVER_METADATA: LazyLock<Bytes> = LazyLock::new(server_metadata);

fn server_metadata() -> Bytes {
    serde_json::to_vec(&ServerMetadata {
        name: oip::SERVER_NAME,
        version: oip::SERVER_VERSION,
        extensions: oip::EXTENSIONS,
    })
    .map(Bytes::from)
    .unwrap_or_default()
}

#[derive(Serialize)]
struct ModelMetadata<'a> {
    name: &'a str,
    versions: [&'a str; 1],
    platform: &'static str,
    inputs: [TensorMetadata; 1],
    outputs: [TensorMetadata; 4],
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

/// `GET /v2/models/{name}` body (serialized once, on first use: see
/// [`AppState::v2_model_metadata`]).
fn model_metadata(name: &str, model: &ModelArtifact) -> Bytes {
    let meta = ModelMetadata {
        name,
        versions: [model.short_digest()],
        platform: oip::PLATFORM,
        inputs: [oip::input_metadata()],
        outputs: oip::output_metadata(model),
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
pub(crate) async fn server() -> Response {
    json_bytes(SERVER_METADATA.clone())
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
    Ok(json_bytes(state.v2_model_metadata(model_metadata)))
}

/// `GET /v2/models/{name}/versions/{version}`.
pub(crate) async fn model_version(
    State(state): State<AppState>,
    ModelVersion(name, version): ModelVersion,
) -> Result<Response, ApiError> {
    state.check_version(&name, &version)?;
    Ok(json_bytes(state.v2_model_metadata(model_metadata)))
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
    body: InferBody,
) -> Result<Response, ApiError> {
    state.check_model(&name)?;
    run_inference(&state, body)
}

/// `POST /v2/models/{name}/versions/{version}/infer`.
pub(crate) async fn infer_version(
    State(state): State<AppState>,
    ModelVersion(name, version): ModelVersion,
    body: InferBody,
) -> Result<Response, ApiError> {
    state.check_version(&name, &version)?;
    run_inference(&state, body)
}

fn run_inference(state: &AppState, body: InferBody) -> Result<Response, ApiError> {
    let InferBody {
        request: req,
        binary,
    } = body;
    let outputs = requested_outputs(&req)?;
    let [input] = <[InputTensor; 1]>::try_from(req.inputs).map_err(|inputs| {
        ApiError::bad_request(format!(
            "expected exactly one input tensor of shape [N, {N_FEATURES}], got {}",
            inputs.len()
        ))
    })?;
    let values = input_values(&input, &binary)?;
    let rows = codec::decode_rows(
        state,
        &Input {
            name: &input.name,
            datatype: &input.datatype,
            shape: &input.shape,
            values,
        },
    )?;
    let predictions = codec::predict(state, &rows);
    let model = state.model();
    let mut binary_out = Vec::new();
    let tensors = outputs
        .iter()
        .map(|&(kind, binary)| OutputTensor {
            kind,
            model,
            rows: &rows,
            predictions: &predictions,
            binary_size: binary.then(|| {
                let raw = codec::raw(kind, model, &rows, &predictions);
                binary_out.extend_from_slice(&raw);
                raw.len()
            }),
        })
        .collect();
    let body = InferResponse {
        model_name: state.model_name(),
        model_version: model.short_digest(),
        id: req.id.as_deref(),
        outputs: tensors,
    };
    if outputs.iter().all(|(_, binary)| !binary) {
        return Ok(Json(body).into_response());
    }
    with_binary(&body, &binary_out)
}

/// The outputs asked for ([`Output::DEFAULT`] if none), each with whether it is sent as binary.
fn requested_outputs(req: &InferRequest) -> Result<Vec<(Output, bool)>, ApiError> {
    let binary_default = req
        .parameters
        .as_ref()
        .and_then(|p| p.binary_data_output)
        .unwrap_or(false);
    match req.outputs.as_deref() {
        None | Some([]) => Ok(Output::DEFAULT.map(|o| (o, binary_default)).to_vec()),
        Some(list) => list
            .iter()
            .map(|o| {
                let binary = o
                    .parameters
                    .as_ref()
                    .and_then(|p| p.binary_data)
                    .unwrap_or(binary_default);
                Output::from_name(&o.name).map(|kind| (kind, binary))
            })
            .collect(),
    }
}

/// The values of the one input: its JSON `data`, or all of the binary section.
fn input_values<'a>(input: &'a InputTensor, binary: &'a [u8]) -> Result<Values<'a>, ApiError> {
    let binary_size = input.parameters.as_ref().and_then(|p| p.binary_data_size);
    match (binary_size, &input.data) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(format!(
            "input {:?} has both \"data\" and parameters.binary_data_size; give one",
            input.name
        ))),
        (None, None) => Err(ApiError::bad_request(format!(
            "input {:?} has neither \"data\" nor parameters.binary_data_size",
            input.name
        ))),
        (Some(size), None) => {
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            if size > binary.len() {
                return Err(ApiError::bad_request(format!(
                    "input {:?} has binary_data_size {size}, but only {} bytes of binary data \
                     follow the JSON header (Inference-Header-Content-Length); truncated body?",
                    input.name,
                    binary.len()
                )));
            }
            if size < binary.len() {
                return Err(ApiError::bad_request(format!(
                    "{} bytes of binary data follow the JSON header, but the inputs' \
                     binary_data_size add up to {size}",
                    binary.len()
                )));
            }
            Ok(Values::Raw(binary))
        }
        (None, Some(data)) => {
            if !binary.is_empty() {
                return Err(ApiError::bad_request(format!(
                    "{} bytes of binary data follow the JSON header, but no input has \
                     parameters.binary_data_size",
                    binary.len()
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
            Ok(Values::Json(&data.values))
        }
    }
}

/// The JSON header followed by the binary outputs, with `Inference-Header-Content-Length`.
fn with_binary(body: &InferResponse<'_>, binary_out: &[u8]) -> Result<Response, ApiError> {
    let mut out = serde_json::to_vec(body).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to encode the response: {e}"),
        )
    })?;
    let header_len = out.len();
    out.extend_from_slice(binary_out);
    Ok((
        [
            (
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                INFERENCE_HEADER_CONTENT_LENGTH,
                HeaderValue::from(header_len),
            ),
        ],
        out,
    )
        .into_response())
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
    rows: &'a [[f64; N_FEATURES]],
    predictions: &'a [Prediction],
    /// In the binary section, this many bytes (instead of `data`).
    binary_size: Option<usize>,
}

#[derive(Serialize)]
struct BinaryParameters {
    binary_data_size: usize,
}

impl Serialize for OutputTensor<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let n = self.predictions.len() as i64;
        let classes = self.model.class_labels().len();
        let mut st = s.serialize_struct("OutputTensor", 4)?;
        st.serialize_field("name", self.kind.name())?;
        st.serialize_field("datatype", self.kind.datatype())?;
        st.serialize_field("shape", &self.kind.shape(n, classes))?;
        if let Some(binary_data_size) = self.binary_size {
            st.serialize_field("parameters", &BinaryParameters { binary_data_size })?;
            return st.end();
        }
        match self.kind {
            Output::Label => st.serialize_field(
                "data",
                &Elements(|| codec::labels(self.model, self.predictions)),
            )?,
            Output::Probabilities => {
                st.serialize_field("data", &Elements(|| codec::probabilities(self.predictions)))?
            }
            Output::Predict => {
                st.serialize_field("data", &Elements(|| codec::classes(self.predictions)))?
            }
            Output::Contributions => st.serialize_field(
                "data",
                &Elements(|| codec::contributions(self.model, self.rows)),
            )?,
        }
        st.end()
    }
}

/// A JSON array of a codec iterator's elements.
struct Elements<F>(F);

impl<F, I> Serialize for Elements<F>
where
    F: Fn() -> I,
    I: Iterator,
    I::Item: Serialize,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let iter = (self.0)();
        let mut seq = s.serialize_seq(iter.size_hint().1)?;
        for v in iter {
            seq.serialize_element(&v)?;
        }
        seq.end()
    }
}
