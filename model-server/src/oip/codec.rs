//! The tensor codec of both transports: one input tensor (JSON numbers, little-endian bytes
//! from the binary extension or gRPC `raw_input_contents`, or gRPC typed `contents`) to rows
//! `[N, 4]`, and predictions (and, for `contributions`, the rows) to output tensors (element iterators for JSON and typed
//! contents, little-endian bytes for binary and raw outputs).

use super::Output;
use crate::error::ApiError;
use crate::iris::N_FEATURES;
use crate::model::{ModelArtifact, Prediction};
use crate::proto::InferTensorContents;
use crate::state::AppState;

/// An element type an input tensor may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputType {
    /// 32-bit float (values are rounded to f32, then widened).
    Fp32,
    /// 64-bit float.
    Fp64,
    /// Signed integers.
    Int8,
    /// Signed integers.
    Int16,
    /// Signed integers.
    Int32,
    /// Signed integers.
    Int64,
    /// Unsigned integers.
    Uint8,
    /// Unsigned integers.
    Uint16,
    /// Unsigned integers.
    Uint32,
    /// Unsigned integers.
    Uint64,
}

impl InputType {
    /// The type named `datatype` (OIP spelling, e.g. `FP32`), if it is one the model takes.
    pub fn parse(datatype: &str) -> Option<InputType> {
        Some(match datatype {
            "FP32" => InputType::Fp32,
            "FP64" => InputType::Fp64,
            "INT8" => InputType::Int8,
            "INT16" => InputType::Int16,
            "INT32" => InputType::Int32,
            "INT64" => InputType::Int64,
            "UINT8" => InputType::Uint8,
            "UINT16" => InputType::Uint16,
            "UINT32" => InputType::Uint32,
            "UINT64" => InputType::Uint64,
            _ => return None,
        })
    }

    /// Bytes per element in the raw (little-endian) layout.
    pub const fn size(self) -> usize {
        match self {
            InputType::Int8 | InputType::Uint8 => 1,
            InputType::Int16 | InputType::Uint16 => 2,
            InputType::Fp32 | InputType::Int32 | InputType::Uint32 => 4,
            InputType::Fp64 | InputType::Int64 | InputType::Uint64 => 8,
        }
    }

    const fn is_float(self) -> bool {
        matches!(self, InputType::Fp32 | InputType::Fp64)
    }

    /// One little-endian element (`bytes.len() == self.size()`) as f64.
    fn read(self, b: &[u8]) -> f64 {
        fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
            let mut a = [0; N];
            a.copy_from_slice(b);
            a
        }
        match self {
            InputType::Fp32 => f64::from(f32::from_le_bytes(arr(b))),
            InputType::Fp64 => f64::from_le_bytes(arr(b)),
            InputType::Int8 => f64::from(i8::from_le_bytes(arr(b))),
            InputType::Int16 => f64::from(i16::from_le_bytes(arr(b))),
            InputType::Int32 => f64::from(i32::from_le_bytes(arr(b))),
            InputType::Int64 => i64::from_le_bytes(arr(b)) as f64,
            InputType::Uint8 => f64::from(u8::from_le_bytes(arr(b))),
            InputType::Uint16 => f64::from(u16::from_le_bytes(arr(b))),
            InputType::Uint32 => f64::from(u32::from_le_bytes(arr(b))),
            InputType::Uint64 => u64::from_le_bytes(arr(b)) as f64,
        }
    }
}

/// Where an input tensor's elements are.
#[derive(Clone, Copy, Debug)]
pub enum Values<'a> {
    /// JSON `data` (REST), read as f64; FP32 and FP64 only.
    Json(&'a [f64]),
    /// Flat, row-major, little-endian bytes: REST binary data or gRPC `raw_input_contents`.
    Raw(&'a [u8]),
    /// gRPC typed `contents`: the field that matches the datatype is read.
    Contents(&'a InferTensorContents),
}

/// One input tensor as a request carries it.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    /// Tensor name (any).
    pub name: &'a str,
    /// OIP datatype, e.g. `FP64`.
    pub datatype: &'a str,
    /// Must be `[N, 4]`.
    pub shape: &'a [i64],
    /// The elements.
    pub values: Values<'a>,
}

/// Checks datatype, shape, batch size and element count, and reads the rows; values must be
/// finite (FP32 values are rounded to f32 first, so they mean what an FP32 tensor means).
/// 400 naming the problem, 413 for batches over `--max-batch-rows`.
pub fn decode_rows(
    state: &AppState,
    input: &Input<'_>,
) -> Result<Vec<[f64; N_FEATURES]>, ApiError> {
    let name = input.name;
    let ty = input_type(input)?;
    let rows = batch_rows(input)?;
    state.check_batch_size(rows)?;
    let count = rows * N_FEATURES;
    let count_error = |got: usize, what: &str| {
        ApiError::bad_request(format!(
            "input {name:?} has shape [{rows}, {N_FEATURES}], which needs {count} values, but \
             {what} has {got}"
        ))
    };
    let values: Vec<f64> = match input.values {
        Values::Json(v) if v.len() != count => return Err(count_error(v.len(), "data")),
        Values::Json(v) if ty == InputType::Fp32 => {
            v.iter().map(|x| f64::from(*x as f32)).collect()
        }
        Values::Json(v) => v.to_vec(),
        Values::Raw(bytes) => {
            let needed = count * ty.size();
            if bytes.len() != needed {
                return Err(ApiError::bad_request(format!(
                    "input {name:?} has {} bytes of binary data; shape [{rows}, {N_FEATURES}] \
                     of {} needs {needed} bytes",
                    bytes.len(),
                    input.datatype
                )));
            }
            bytes.chunks_exact(ty.size()).map(|b| ty.read(b)).collect()
        }
        Values::Contents(c) => {
            let (len, field, values) = typed_contents(c, ty);
            if len != count {
                return Err(count_error(len, field));
            }
            values
        }
    };
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        let shown = match input.values {
            Values::Json(v) => v[i],
            _ => values[i],
        };
        return Err(ApiError::bad_request(format!(
            "input {name:?} value {i} ({shown}) is not a finite {} number",
            input.datatype
        )));
    }
    Ok(values
        .chunks_exact(N_FEATURES)
        .map(|chunk| {
            let mut row = [0.0; N_FEATURES];
            row.copy_from_slice(chunk);
            row
        })
        .collect())
}

/// The element type of `input`: JSON data must be FP32 or FP64; bytes and typed contents
/// may be any numeric type.
fn input_type(input: &Input<'_>) -> Result<InputType, ApiError> {
    let name = input.name;
    InputType::parse(input.datatype)
        .filter(|t| t.is_float() || !matches!(input.values, Values::Json(_)))
        .ok_or_else(|| {
            ApiError::bad_request(match input.values {
                Values::Json(_) => format!(
                    "input {name:?} has datatype {:?}; this model takes FP32 or FP64",
                    input.datatype
                ),
                _ => format!(
                    "input {name:?} has datatype {:?}; this model takes FP32, FP64, INT8..INT64 \
                 or UINT8..UINT64",
                    input.datatype
                ),
            })
        })
}

/// The batch size N of an input of shape `[N, 4]`; 400 for any other shape.
fn batch_rows(input: &Input<'_>) -> Result<usize, ApiError> {
    let name = input.name;
    match input.shape {
        [n, f] if *n >= 0 && *f == N_FEATURES as i64 => {
            Ok(usize::try_from(*n).unwrap_or(usize::MAX))
        }
        _ => Err(ApiError::bad_request(format!(
            "input {name:?} has shape {:?}; expected [N, {N_FEATURES}] (N rows of \
                 sepal_length, sepal_width, petal_length, petal_width)",
            input.shape
        ))),
    }
}

/// The typed `contents` field that `ty` reads (its length, its name, its values as f64).
fn typed_contents(c: &InferTensorContents, ty: InputType) -> (usize, &'static str, Vec<f64>) {
    match ty {
        InputType::Fp32 => (
            c.fp32_contents.len(),
            "fp32_contents",
            c.fp32_contents.iter().map(|x| f64::from(*x)).collect(),
        ),
        InputType::Fp64 => (
            c.fp64_contents.len(),
            "fp64_contents",
            c.fp64_contents.clone(),
        ),
        InputType::Int8 | InputType::Int16 | InputType::Int32 => (
            c.int_contents.len(),
            "int_contents",
            c.int_contents.iter().map(|x| f64::from(*x)).collect(),
        ),
        InputType::Int64 => (
            c.int64_contents.len(),
            "int64_contents",
            c.int64_contents.iter().map(|x| *x as f64).collect(),
        ),
        InputType::Uint8 | InputType::Uint16 | InputType::Uint32 => (
            c.uint_contents.len(),
            "uint_contents",
            c.uint_contents.iter().map(|x| f64::from(*x)).collect(),
        ),
        InputType::Uint64 => (
            c.uint64_contents.len(),
            "uint64_contents",
            c.uint64_contents.iter().map(|x| *x as f64).collect(),
        ),
    }
}

/// Predicts every row and counts the predictions per class (and the inputs' drift).
pub fn predict(state: &AppState, rows: &[[f64; N_FEATURES]]) -> Vec<Prediction> {
    state.predict(rows)
}

/// The outputs a request asks for, in its order; [`Output::DEFAULT`] if none.
pub fn select_outputs<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<Output>, ApiError> {
    let selected = names
        .into_iter()
        .map(Output::from_name)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(if selected.is_empty() {
        Output::DEFAULT.to_vec()
    } else {
        selected
    })
}

/// `label` elements: the predicted classes' labels.
pub fn labels<'a>(
    model: &'a ModelArtifact,
    predictions: &'a [Prediction],
) -> impl Iterator<Item = &'a str> + 'a {
    predictions.iter().map(|p| model.label(p.class_index))
}

/// `probabilities` elements, row-major.
pub fn probabilities(predictions: &[Prediction]) -> impl Iterator<Item = f64> + '_ {
    predictions
        .iter()
        .flat_map(|p| p.probabilities().iter().copied())
}

/// `predict` elements: class indices.
pub fn classes(predictions: &[Prediction]) -> impl Iterator<Item = i64> + '_ {
    predictions.iter().map(|p| p.class_index as i64)
}

/// `contributions` elements, row-major `[N, n_classes, 4 + 1]`: per row and class, the four
/// features' contributions to the logit, then the intercept.
pub fn contributions<'a>(
    model: &'a ModelArtifact,
    rows: &'a [[f64; N_FEATURES]],
) -> impl Iterator<Item = f64> + 'a {
    let predictor = model.predictor();
    rows.iter().flat_map(move |row| {
        let e = predictor.explain(row);
        let classes: Vec<f64> = e
            .classes()
            .iter()
            .flat_map(|c| c.contributions.into_iter().chain([c.intercept]))
            .collect();
        classes
    })
}

/// An output in the raw layout: FP64 and INT64 little-endian, row-major; BYTES as a 4-byte
/// little-endian length before each element's bytes (Triton's layout, which tritonclient's
/// `deserialize_bytes_tensor` reads). `rows` are the inputs (`contributions` reads them).
pub fn raw(
    output: Output,
    model: &ModelArtifact,
    rows: &[[f64; N_FEATURES]],
    predictions: &[Prediction],
) -> Vec<u8> {
    match output {
        Output::Label => {
            let mut out = Vec::with_capacity(predictions.len() * 16);
            for label in labels(model, predictions) {
                let len = u32::try_from(label.len()).unwrap_or(u32::MAX);
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(label.as_bytes());
            }
            out
        }
        Output::Probabilities => probabilities(predictions)
            .flat_map(f64::to_le_bytes)
            .collect(),
        Output::Predict => classes(predictions).flat_map(i64::to_le_bytes).collect(),
        Output::Contributions => contributions(model, rows)
            .flat_map(f64::to_le_bytes)
            .collect(),
    }
}
