//! The inference request as it arrives: the body framing of the binary tensor data
//! extension (`Inference-Header-Content-Length`), the content type, and the JSON request with
//! its optional `parameters`.

use std::fmt;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderName;
use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::error::ApiError;
use crate::http::extract::{
    check_json_content_type, is_json_essence, parse_json, read_body, unsupported_media_type,
    RequestShape,
};
use crate::state::AppState;

/// The binary extension's request and response header: length of the JSON part of the body.
pub(crate) const INFERENCE_HEADER_CONTENT_LENGTH: HeaderName =
    HeaderName::from_static("inference-header-content-length");

/// An inference request body: JSON, or with `Inference-Header-Content-Length`, JSON followed
/// by binary tensor data. Content type: none, JSON, or (binary only)
/// `application/octet-stream`; anything else is 415.
pub(crate) struct InferBody {
    pub(super) request: InferRequest,
    /// The bytes after the JSON header (empty without the header).
    pub(super) binary: Bytes,
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
    pub(super) id: Option<String>,
    #[serde(default)]
    pub(super) parameters: Option<RequestParameters>,
    pub(super) inputs: Vec<InputTensor>,
    #[serde(default)]
    pub(super) outputs: Option<Vec<RequestedOutput>>,
}

impl RequestShape for InferRequest {
    const EXPECTED: &'static str =
        r#"{"inputs": [{"name": "input-0", "shape": [N, 4], "datatype": "FP64", "data": [...]}]}"#;
}

/// Request `parameters`: `binary_data_output` is read, others are accepted and ignored.
#[derive(Default, Deserialize)]
pub(super) struct RequestParameters {
    #[serde(default)]
    pub(super) binary_data_output: Option<bool>,
}

#[derive(Deserialize)]
pub(super) struct InputTensor {
    pub(super) name: String,
    pub(super) shape: Vec<i64>,
    pub(super) datatype: String,
    #[serde(default)]
    pub(super) parameters: Option<InputParameters>,
    /// Absent when the data is in the binary section.
    #[serde(default)]
    pub(super) data: Option<TensorData>,
}

/// Input `parameters`: `binary_data_size` is read, others are accepted and ignored.
#[derive(Default, Deserialize)]
pub(super) struct InputParameters {
    #[serde(default)]
    pub(super) binary_data_size: Option<u64>,
}

#[derive(Deserialize)]
pub(super) struct RequestedOutput {
    pub(super) name: String,
    #[serde(default)]
    pub(super) parameters: Option<OutputParameters>,
}

/// Requested output `parameters`: `binary_data` is read, others (e.g. tritonclient's
/// `classification`) are accepted and ignored.
#[derive(Default, Deserialize)]
pub(super) struct OutputParameters {
    #[serde(default)]
    pub(super) binary_data: Option<bool>,
}

/// Tensor `data`, flat (`[1, 2, 3, 4, ...]`) or nested one level (`[[1, 2, 3, 4], ...]`),
/// read straight into one `Vec<f64>` without building JSON values.
pub(super) struct TensorData {
    pub(super) values: Vec<f64>,
    /// Length of the nested rows, if the data was nested (all rows must agree).
    pub(super) nested_row_len: Option<usize>,
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
