//! The gRPC contract: the messages and service generated from
//! `proto/open_inference_grpc.proto` (package `inference`, KServe's field numbers), and its
//! methods by name ([`GrpcMethod`]), which the metrics label and the tokens check read.

#[allow(missing_docs, clippy::all, clippy::pedantic)]
mod generated {
    tonic::include_proto!("inference");
}

pub use generated::*;

/// An RPC of `inference.GRPCInferenceService`, for the `method` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrpcMethod {
    /// ServerLive.
    ServerLive,
    /// ServerReady.
    ServerReady,
    /// ModelReady.
    ModelReady,
    /// ServerMetadata.
    ServerMetadata,
    /// ModelMetadata.
    ModelMetadata,
    /// ModelInfer.
    ModelInfer,
    /// Any other path.
    Unknown,
}

/// Number of [`GrpcMethod`]s.
pub(crate) const N_METHODS: usize = GrpcMethod::Unknown as usize + 1;

impl GrpcMethod {
    /// Every method, in label order.
    pub(crate) const ALL: [GrpcMethod; N_METHODS] = [
        GrpcMethod::ServerLive,
        GrpcMethod::ServerReady,
        GrpcMethod::ModelReady,
        GrpcMethod::ServerMetadata,
        GrpcMethod::ModelMetadata,
        GrpcMethod::ModelInfer,
        GrpcMethod::Unknown,
    ];

    /// The `method` label.
    pub(crate) const fn label(self) -> &'static str {
        match self {
            GrpcMethod::ServerLive => "ServerLive",
            GrpcMethod::ServerReady => "ServerReady",
            GrpcMethod::ModelReady => "ModelReady",
            GrpcMethod::ServerMetadata => "ServerMetadata",
            GrpcMethod::ModelMetadata => "ModelMetadata",
            GrpcMethod::ModelInfer => iris_model::contract::PREDICTION_METHOD,
            GrpcMethod::Unknown => "unknown",
        }
    }

    /// The method of a request path such as `/inference.GRPCInferenceService/ModelInfer`.
    pub(crate) fn of_path(path: &str) -> GrpcMethod {
        let Some(method) = path.strip_prefix("/inference.GRPCInferenceService/") else {
            return GrpcMethod::Unknown;
        };
        GrpcMethod::ALL
            .into_iter()
            .find(|m| *m != GrpcMethod::Unknown && m.label() == method)
            .unwrap_or(GrpcMethod::Unknown)
    }
}
