//! Open Inference Protocol v2 over gRPC: `inference.GRPCInferenceService`
//! (`proto/open_inference_grpc.proto`, KServe's field numbers, which tritonclient's
//! `grpc_service.proto` shares) served by tonic on its own port (`--grpc-port`, default 8081).
//!
//! One service struct, [`InferenceService`], implements the generated trait over the same
//! [`AppState`] and tensor [`codec`](crate::oip::codec) as the REST handlers. Inputs come as
//! typed `contents` or as `raw_input_contents`; outputs are `raw_output_contents` when the
//! client sent raw inputs (as Triton answers) or asked for binary data (`binary_data` on an
//! output or `binary_data_output` on the request), typed `contents` otherwise.
//!
//! Errors are [`ApiError`]s turned into statuses by `From<ApiError> for Status` (see
//! [`crate::error`]). The messages are [`crate::proto`].

pub(crate) mod metrics;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use tonic::{Request, Response, Status};

pub(crate) use metrics::GrpcMetricsLayer;

use crate::error::ApiError;
use crate::iris::N_FEATURES;
use crate::oip::codec::{self, Input, Values};
use crate::oip::{self, Output};
use crate::proto::grpc_inference_service_server::{
    GrpcInferenceService, GrpcInferenceServiceServer,
};
use crate::proto::infer_parameter::ParameterChoice;
use crate::proto::model_infer_response::InferOutputTensor;
use crate::proto::model_metadata_response::TensorMetadata;
use crate::proto::*;
use crate::state::AppState;

/// The gRPC service: the served model, its readiness and its metrics, shared with REST.
#[derive(Clone, Debug)]
pub struct InferenceService {
    state: AppState,
}

impl InferenceService {
    /// A service over `state`.
    pub fn new(state: AppState) -> InferenceService {
        InferenceService { state }
    }

    /// The tonic server for this service: messages larger than `--max-body-bytes` are
    /// refused before they are decoded.
    pub fn into_server(self) -> GrpcInferenceServiceServer<InferenceService> {
        let limit = self.state.limits().max_body_bytes;
        GrpcInferenceServiceServer::new(self).max_decoding_message_size(limit)
    }

    /// NOT_FOUND unless `name` (and `version`, if not empty) is the served model.
    fn check(&self, name: &str, version: &str) -> Result<(), ApiError> {
        if version.is_empty() {
            self.state.check_model(name)
        } else {
            self.state.check_version(name, version)
        }
    }

    fn infer(&self, req: &ModelInferRequest) -> Result<ModelInferResponse, ApiError> {
        self.check(&req.model_name, &req.model_version)?;
        let outputs = codec::select_outputs(req.outputs.iter().map(|o| o.name.as_str()))?;
        let raw_out = !req.raw_input_contents.is_empty()
            || is_true(&req.parameters, "binary_data_output")
            || req
                .outputs
                .iter()
                .any(|o| is_true(&o.parameters, "binary_data"));
        let [input] = req.inputs.as_slice() else {
            return Err(ApiError::bad_request(format!(
                "expected exactly one input tensor of shape [N, {N_FEATURES}], got {}",
                req.inputs.len()
            )));
        };
        let empty = InferTensorContents::default();
        let values = match (req.raw_input_contents.as_slice(), &input.contents) {
            ([], contents) => Values::Contents(contents.as_ref().unwrap_or(&empty)),
            ([raw], None) => Values::Raw(raw),
            ([_], Some(_)) => {
                return Err(ApiError::bad_request(format!(
                    "input {:?} has contents, but the request also has raw_input_contents; \
                     give one",
                    input.name
                )))
            }
            (raw, _) => {
                return Err(ApiError::bad_request(format!(
                    "raw_input_contents has {} entries for {} input",
                    raw.len(),
                    req.inputs.len()
                )))
            }
        };
        let rows = codec::decode_rows(
            &self.state,
            &Input {
                name: &input.name,
                datatype: &input.datatype,
                shape: &input.shape,
                values,
            },
        )?;
        let predictions = codec::predict(&self.state, &rows);
        let model = self.state.model();
        let n = predictions.len() as i64;
        let classes = model.class_labels().len();
        let mut raw_output_contents = Vec::new();
        let tensors = outputs
            .iter()
            .map(|&kind| {
                let contents = if raw_out {
                    raw_output_contents.push(codec::raw(kind, model, &rows, &predictions));
                    None
                } else {
                    Some(typed_output(kind, model, &rows, &predictions))
                };
                InferOutputTensor {
                    name: kind.name().to_owned(),
                    datatype: kind.datatype().to_owned(),
                    shape: kind.shape(n, classes),
                    parameters: HashMap::new(),
                    contents,
                }
            })
            .collect();
        Ok(ModelInferResponse {
            model_name: self.state.model_name().to_owned(),
            model_version: model.short_digest().to_owned(),
            id: req.id.clone(),
            parameters: HashMap::new(),
            outputs: tensors,
            raw_output_contents,
        })
    }
}

/// One output tensor as typed `contents`.
fn typed_output(
    kind: Output,
    model: &crate::model::ModelArtifact,
    rows: &[[f64; N_FEATURES]],
    predictions: &[crate::model::Prediction],
) -> InferTensorContents {
    match kind {
        Output::Label => InferTensorContents {
            bytes_contents: codec::labels(model, predictions)
                .map(|l| l.as_bytes().to_vec())
                .collect(),
            ..Default::default()
        },
        Output::Probabilities => InferTensorContents {
            fp64_contents: codec::probabilities(predictions).collect(),
            ..Default::default()
        },
        Output::Predict => InferTensorContents {
            int64_contents: codec::classes(predictions).collect(),
            ..Default::default()
        },
        Output::Contributions => InferTensorContents {
            fp64_contents: codec::contributions(model, rows).collect(),
            ..Default::default()
        },
    }
}

/// Whether `parameters[key]` is `bool_param: true`.
fn is_true(parameters: &HashMap<String, InferParameter>, key: &str) -> bool {
    matches!(
        parameters
            .get(key)
            .and_then(|p| p.parameter_choice.as_ref()),
        Some(ParameterChoice::BoolParam(true))
    )
}

fn tensor_metadata(t: oip::TensorMetadata) -> TensorMetadata {
    TensorMetadata {
        name: t.name.to_owned(),
        datatype: t.datatype.to_owned(),
        shape: t.shape,
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for InferenceService {
    async fn server_live(
        &self,
        _: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse {
            ready: self.state.is_ready(),
        }))
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let req = request.get_ref();
        self.check(&req.name, &req.version)?;
        Ok(Response::new(ModelReadyResponse {
            ready: self.state.is_ready(),
        }))
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(ServerMetadataResponse {
            name: oip::SERVER_NAME.to_owned(),
            version: oip::SERVER_VERSION.to_owned(),
            extensions: oip::EXTENSIONS.map(str::to_owned).to_vec(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let req = request.get_ref();
        self.check(&req.name, &req.version)?;
        let model = self.state.model();
        Ok(Response::new(ModelMetadataResponse {
            name: self.state.model_name().to_owned(),
            versions: vec![model.short_digest().to_owned()],
            platform: oip::PLATFORM.to_owned(),
            inputs: vec![tensor_metadata(oip::input_metadata())],
            outputs: oip::output_metadata(model)
                .into_iter()
                .map(tensor_metadata)
                .collect(),
        }))
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let response = self.infer(request.get_ref())?;
        self.state
            .payload_log()
            .offer_grpc(request.get_ref(), &response);
        Ok(Response::new(response))
    }
}
