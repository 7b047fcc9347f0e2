//! gRPC calls counted and timed by method and status code, into the shared [`Metrics`] (the
//! same lock-free histograms and `/metrics` registry as HTTP requests (`model_server_grpc_requests_total`,
//! `model_server_grpc_request_duration_seconds`).
//!
//! A tower layer around the tonic server, so that calls tonic refuses itself (a message over
//! the size limit, an unknown method) are counted too. Labels are bounded: `method` is one of
//! the six RPCs or `unknown`, `code` one of the 17 gRPC code names.
//!
//! The layer also turns tonic's OUT_OF_RANGE for an over-limit message into
//! RESOURCE_EXHAUSTED, the code gRPC specifies for it (and grpc-go and Triton send); the
//! service itself never answers OUT_OF_RANGE.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::http::{HeaderValue, Request, Response};
use tonic::Code;
use tower::{Layer, Service};

use crate::metrics::Metrics;
use crate::proto::GrpcMethod;

/// Counts, times and (see the module docs) fixes up the status of every gRPC call.
#[derive(Clone)]
pub(crate) struct GrpcMetricsLayer {
    pub(crate) metrics: Arc<Metrics>,
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// See [`GrpcMetricsLayer`].
#[derive(Clone)]
pub(crate) struct GrpcMetricsService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B, RB> Service<Request<B>> for GrpcMetricsService<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = GrpcMetricsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let method = GrpcMethod::of_path(req.uri().path());
        GrpcMetricsFuture {
            inner: self.inner.call(req),
            method,
            started: Instant::now(),
            metrics: self.metrics.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`GrpcMetricsService`].
    pub(crate) struct GrpcMetricsFuture<F> {
        #[pin]
        inner: F,
        method: GrpcMethod,
        started: Instant,
        metrics: Arc<Metrics>,
    }
}

impl<F, RB, E> Future for GrpcMetricsFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut result = std::task::ready!(this.inner.poll(cx));
        if let Ok(response) = &mut result {
            let code = status_of(response);
            this.metrics
                .observe_grpc(*this.method, code as usize, *this.started);
        }
        Poll::Ready(result)
    }
}

/// The status of a unary response at its head: an error is a trailers-only response with
/// `grpc-status` in the headers; without it, the call succeeded (the message is on its way).
fn status_of<B>(response: &mut Response<B>) -> Code {
    let headers = response.headers_mut();
    let Some(code) = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(Code::from)
    else {
        return Code::Ok;
    };
    if code == Code::OutOfRange {
        headers.insert("grpc-status", HeaderValue::from_static("8"));
        return Code::ResourceExhausted;
    }
    code
}
