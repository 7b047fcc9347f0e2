//! The bounded label values of the request metrics: the HTTP `route` (a route template,
//! [`RouteId`]) and `code` (a fixed list of statuses), and the gRPC `code` names. The gRPC
//! `method` label is [`GrpcMethod::label`](crate::proto::GrpcMethod::label).

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};

use crate::paths;

/// A route for metrics purposes: the matched template (and, for the KServe v1 model path,
/// the method, since GET and POST are different endpoints there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RouteId {
    PredictIris,
    V1Model,
    V1Predict,
    V2Server,
    V2Live,
    V2Ready,
    V2Model,
    V2ModelVersion,
    V2ModelReady,
    V2ModelVersionReady,
    V2Infer,
    V2ModelVersionInfer,
    Constant,
    Metrics,
    Unmatched,
}

pub(crate) const N_ROUTES: usize = RouteId::Unmatched as usize + 1;

impl RouteId {
    pub(crate) const ALL: [RouteId; N_ROUTES] = [
        RouteId::PredictIris,
        RouteId::V1Model,
        RouteId::V1Predict,
        RouteId::V2Server,
        RouteId::V2Live,
        RouteId::V2Ready,
        RouteId::V2Model,
        RouteId::V2ModelVersion,
        RouteId::V2ModelReady,
        RouteId::V2ModelVersionReady,
        RouteId::V2Infer,
        RouteId::V2ModelVersionInfer,
        RouteId::Constant,
        RouteId::Metrics,
        RouteId::Unmatched,
    ];

    /// The `route` label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            RouteId::PredictIris => paths::PREDICT_IRIS,
            RouteId::V1Model => paths::V1_MODEL,
            RouteId::V1Predict => iris_model::contract::V1_PREDICT,
            RouteId::V2Server => paths::V2,
            RouteId::V2Live => paths::V2_LIVE,
            RouteId::V2Ready => paths::V2_READY,
            RouteId::V2Model => paths::V2_MODEL,
            RouteId::V2ModelVersion => paths::V2_MODEL_VERSION,
            RouteId::V2ModelReady => paths::V2_MODEL_READY,
            RouteId::V2ModelVersionReady => paths::V2_MODEL_VERSION_READY,
            RouteId::V2Infer => paths::V2_INFER,
            RouteId::V2ModelVersionInfer => paths::V2_MODEL_VERSION_INFER,
            RouteId::Constant => paths::CONSTANT,
            RouteId::Metrics => paths::METRICS,
            RouteId::Unmatched => "unmatched",
        }
    }

    pub(crate) fn of(req: &Request) -> RouteId {
        let Some(path) = req.extensions().get::<MatchedPath>() else {
            return RouteId::Unmatched;
        };
        match path.as_str() {
            paths::PREDICT_IRIS => RouteId::PredictIris,
            paths::V1_MODEL if req.method() == Method::POST => RouteId::V1Predict,
            paths::V1_MODEL => RouteId::V1Model,
            paths::V2 => RouteId::V2Server,
            paths::V2_LIVE => RouteId::V2Live,
            paths::V2_READY => RouteId::V2Ready,
            paths::V2_MODEL => RouteId::V2Model,
            paths::V2_MODEL_VERSION => RouteId::V2ModelVersion,
            paths::V2_MODEL_READY => RouteId::V2ModelReady,
            paths::V2_MODEL_VERSION_READY => RouteId::V2ModelVersionReady,
            paths::V2_INFER => RouteId::V2Infer,
            paths::V2_MODEL_VERSION_INFER => RouteId::V2ModelVersionInfer,
            paths::CONSTANT => RouteId::Constant,
            paths::METRICS => RouteId::Metrics,
            _ => RouteId::Unmatched,
        }
    }
}

/// Status codes with their own `code` label; anything else is counted as `other`.
pub(crate) const CODES: [(u16, &str); 12] = [
    (200, "200"),
    (400, "400"),
    (401, "401"),
    (404, "404"),
    (405, "405"),
    (408, "408"),
    (413, "413"),
    (415, "415"),
    (422, "422"),
    (500, "500"),
    (503, "503"),
    (0, "other"),
];
pub(crate) const N_CODES: usize = CODES.len();

pub(crate) fn code_index(status: StatusCode) -> usize {
    match status.as_u16() {
        200 => 0,
        400 => 1,
        401 => 2,
        404 => 3,
        405 => 4,
        408 => 5,
        413 => 6,
        415 => 7,
        422 => 8,
        500 => 9,
        503 => 10,
        _ => 11,
    }
}

/// Number of gRPC status codes (0 OK .. 16 UNAUTHENTICATED).
pub(crate) const N_GRPC_CODES: usize = 17;

/// The `code` label of gRPC status code `i` (0..17), as gRPC spells it.
pub(crate) fn grpc_code_label(i: usize) -> &'static str {
    const NAMES: [&str; N_GRPC_CODES] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    NAMES.get(i).copied().unwrap_or("UNKNOWN")
}
