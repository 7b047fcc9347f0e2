//! The Open Inference Protocol v2 model, shared by the REST handlers (`http::oip_v2`) and the
//! gRPC service (`grpc`): names, metadata, and the tensor [`codec`] that turns an input
//! tensor into rows `[N, 4]` and predictions into the three output tensors.
//!
//! | output | datatype | shape |
//! |---|---|---|
//! | `label` | `BYTES` | `[N]` |
//! | `probabilities` | `FP64` | `[N, n_classes]` |
//! | `predict` | `INT64` | `[N]` (class index) |
//! | `contributions` | `FP64` | `[N, n_classes, 5]`: only when requested (see [`Output::Contributions`]) |

pub mod codec;
#[cfg(test)]
mod tests;

use crate::error::ApiError;
use crate::iris::N_FEATURES;
use crate::model::ModelArtifact;

/// `name` of the server metadata.
pub const SERVER_NAME: &str = "iris-model-server";
/// `version` of the server metadata.
pub const SERVER_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The binary tensor data extension (REST), as Triton names it.
pub const BINARY_TENSOR_DATA: &str = "binary_tensor_data";
/// Protocol extensions listed by `GET /v2` and `ServerMetadata`.
pub const EXTENSIONS: [&str; 1] = [BINARY_TENSOR_DATA];
/// Name advertised for the input tensor (any name is accepted).
pub const INPUT_NAME: &str = "input-0";
/// Datatype advertised for the input tensor (see [`codec::InputType`] for all accepted).
pub const INPUT_DATATYPE: &str = "FP64";
/// `platform` of the model metadata.
pub const PLATFORM: &str = "linfa-logistic";

/// One output tensor of the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// `label`: BYTES `[N]`, the predicted class's label.
    Label,
    /// `probabilities`: FP64 `[N, n_classes]`, class-index order.
    Probabilities,
    /// `predict`: INT64 `[N]`, the class index.
    Predict,
    /// `contributions`: FP64 `[N, n_classes, 4 + 1]`, sent only when a request names it:
    /// for row `n` and class `k`, the four features' contributions to the class's logit
    /// (coefficient times standardised value, in input order), then the intercept; the five
    /// add up to the logit (see [`iris_model::Explanation`]).
    Contributions,
}

impl Output {
    /// The outputs of a request that names none, in this order.
    pub const DEFAULT: [Output; 3] = [Output::Label, Output::Probabilities, Output::Predict];

    /// Every output: the defaults, then those sent only on request (as metadata lists them).
    pub const ALL: [Output; 4] = [
        Output::Label,
        Output::Probabilities,
        Output::Predict,
        Output::Contributions,
    ];

    /// The tensor name.
    pub const fn name(self) -> &'static str {
        match self {
            Output::Label => "label",
            Output::Probabilities => "probabilities",
            Output::Predict => "predict",
            Output::Contributions => "contributions",
        }
    }

    /// The tensor datatype.
    pub const fn datatype(self) -> &'static str {
        match self {
            Output::Label => "BYTES",
            Output::Probabilities | Output::Contributions => "FP64",
            Output::Predict => "INT64",
        }
    }

    /// The shape for `rows` predictions of a model with `classes` classes (`-1` for a
    /// variable dimension in metadata).
    pub fn shape(self, rows: i64, classes: usize) -> Vec<i64> {
        match self {
            Output::Probabilities => vec![rows, classes as i64],
            Output::Contributions => vec![rows, classes as i64, N_FEATURES as i64 + 1],
            Output::Label | Output::Predict => vec![rows],
        }
    }

    /// The output called `name`; 400 naming the outputs otherwise.
    pub fn from_name(name: &str) -> Result<Output, ApiError> {
        Output::ALL
            .into_iter()
            .find(|o| o.name() == name)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "unknown output {name:?}; this model has outputs label, probabilities, predict, contributions"
                ))
            })
    }
}

/// Metadata of one tensor (`-1` for a variable dimension).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TensorMetadata {
    /// Name.
    pub name: &'static str,
    /// Datatype.
    pub datatype: &'static str,
    /// Shape.
    pub shape: Vec<i64>,
}

/// The model's input metadata.
pub fn input_metadata() -> TensorMetadata {
    TensorMetadata {
        name: INPUT_NAME,
        datatype: INPUT_DATATYPE,
        shape: vec![-1, N_FEATURES as i64],
    }
}

/// The model's output metadata: [`Output::ALL`].
pub fn output_metadata(model: &ModelArtifact) -> [TensorMetadata; 4] {
    let classes = model.class_labels().len();
    Output::ALL.map(|o| TensorMetadata {
        name: o.name(),
        datatype: o.datatype(),
        shape: o.shape(-1, classes),
    })
}
