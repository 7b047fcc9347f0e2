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

use std::fmt;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::extract::{
    check_json_content_type, is_json_essence, parse_json, read_body, unsupported_media_type,
    ModelName, ModelVersion, RequestShape,
};
use super::{json_bytes, ApiError, AppState};
use crate::iris::N_FEATURES;
use crate::model::{ModelArtifact, Prediction};
use crate::oip::codec::{self, Input, Values};
use crate::oip::{self, Output, TensorMetadata};

/// The binary extension's request and response header: length of the JSON part of the body.
pub(crate) const INFERENCE_HEADER_CONTENT_LENGTH: HeaderName =
    HeaderName::from_static("inference-header-content-length");

#[derive(Serialize)]
struct ServerMetadata {
    name: &'static str,
    version: &'static str,
    extensions: [&'static str; oip::EXTENSIONS.len()],
}

/// `GET /v2` body, serialized once.
pub(crate) fn server_metadata() -> Bytes {
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

/// An inference request body: JSON, or with `Inference-Header-Content-Length`, JSON followed
/// by binary tensor data. Content type: none, JSON, or (binary only)
/// `application/octet-stream`; anything else is 415.
pub(crate) struct InferBody {
    request: InferRequest,
    /// The bytes after the JSON header (empty without the header).
    binary: Bytes,
}

impl FromRequest<AppState> for InferBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let header_len = match req.headers().get(INFERENCE_HEADER_CONTENT_LENGTH) {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .and_then(|s| s.trim().parse::<usize>().ok())
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "Inference-Header-Content-Length {:?} is not a byte count",
                            String::from_utf8_lossy(v.as_bytes())
                        ))
                    })?,
            ),
        };
        match (header_len, req.headers().get(CONTENT_TYPE)) {
            (None, _) => check_json_content_type(req.headers())?,
            (Some(_), None) => {}
            (Some(_), Some(ct)) => {
                let essence = ct
                    .to_str()
                    .ok()
                    .and_then(|v| v.split(';').next())
                    .map(str::trim)
                    .unwrap_or("");
                if !is_json_essence(essence)
                    && !essence.eq_ignore_ascii_case("application/octet-stream")
                {
                    return Err(unsupported_media_type(
                        ct,
                        "application/octet-stream or application/json",
                    ));
                }
            }
        }
        let body = read_body(req, state).await?;
        let (json, binary) = match header_len {
            None => (body, Bytes::new()),
            Some(n) if n > body.len() => {
                return Err(ApiError::bad_request(format!(
                    "Inference-Header-Content-Length is {n}, larger than the {}-byte body",
                    body.len()
                )))
            }
            Some(n) => (body.slice(..n), body.slice(n..)),
        };
        Ok(InferBody {
            request: parse_json(&json)?,
            binary,
        })
    }
}

#[derive(Deserialize)]
pub(crate) struct InferRequest {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<RequestParameters>,
    inputs: Vec<InputTensor>,
    #[serde(default)]
    outputs: Option<Vec<RequestedOutput>>,
}

impl RequestShape for InferRequest {
    const EXPECTED: &'static str =
        r#"{"inputs": [{"name": "input-0", "shape": [N, 4], "datatype": "FP64", "data": [...]}]}"#;
}

/// Request `parameters`: `binary_data_output` is read, others are accepted and ignored.
#[derive(Default, Deserialize)]
struct RequestParameters {
    #[serde(default)]
    binary_data_output: Option<bool>,
}

#[derive(Deserialize)]
struct InputTensor {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<InputParameters>,
    /// Absent when the data is in the binary section.
    #[serde(default)]
    data: Option<TensorData>,
}

/// Input `parameters`: `binary_data_size` is read, others are accepted and ignored.
#[derive(Default, Deserialize)]
struct InputParameters {
    #[serde(default)]
    binary_data_size: Option<u64>,
}

#[derive(Deserialize)]
struct RequestedOutput {
    name: String,
    #[serde(default)]
    parameters: Option<OutputParameters>,
}

/// Requested output `parameters`: `binary_data` is read, others (e.g. tritonclient's
/// `classification`) are accepted and ignored.
#[derive(Default, Deserialize)]
struct OutputParameters {
    #[serde(default)]
    binary_data: Option<bool>,
}

fn run_inference(state: &AppState, body: InferBody) -> Result<Response, ApiError> {
    let InferBody {
        request: req,
        binary,
    } = body;
    let binary_default = req
        .parameters
        .as_ref()
        .and_then(|p| p.binary_data_output)
        .unwrap_or(false);
    let outputs: Vec<(Output, bool)> = match req.outputs.as_deref() {
        None | Some([]) => Output::ALL.map(|o| (o, binary_default)).to_vec(),
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
            .collect::<Result<_, _>>()?,
    };
    let [input] = <[InputTensor; 1]>::try_from(req.inputs).map_err(|inputs| {
        ApiError::bad_request(format!(
            "expected exactly one input tensor of shape [N, {N_FEATURES}], got {}",
            inputs.len()
        ))
    })?;
    let binary_size = input.parameters.as_ref().and_then(|p| p.binary_data_size);
    let values = match (binary_size, &input.data) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(format!(
                "input {:?} has both \"data\" and parameters.binary_data_size; give one",
                input.name
            )))
        }
        (None, None) => {
            return Err(ApiError::bad_request(format!(
                "input {:?} has neither \"data\" nor parameters.binary_data_size",
                input.name
            )))
        }
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
            Values::Raw(&binary)
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
            Values::Json(&data.values)
        }
    };
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
            predictions: &predictions,
            binary_size: binary.then(|| {
                let raw = codec::raw(kind, model, &predictions);
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
    let mut out = serde_json::to_vec(&body).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to encode the response: {e}"),
        )
    })?;
    let header_len = out.len();
    out.extend_from_slice(&binary_out);
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
