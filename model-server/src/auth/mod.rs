//! Bearer-token authentication (`--auth-tokens FILE`, `--auth-metrics`).
//!
//! When a tokens file is set, every route but health needs `Authorization: Bearer <token>`
//! with a token from the file:
//!
//! | open | protected |
//! |---|---|
//! | REST `/v2/health/live`, `/v2/health/ready` | every other REST route: `/predict_iris`, KServe v1, OIP v2 metadata and inference, `/constant` |
//! | `/metrics` (unless `--auth-metrics`) | `/metrics` with `--auth-metrics` |
//! | gRPC `ServerLive`, `ServerReady` | every other gRPC method |
//!
//! REST: a request without a bearer token is 401 with `WWW-Authenticate: Bearer
//! realm="iris"`; with a wrong one, 401 with `WWW-Authenticate: Bearer realm="iris",
//! error="invalid_token"`; both with the usual `{"error": "..."}` body, counted as
//! `code="401"` in `model_server_http_requests_total`. gRPC: UNAUTHENTICATED with a message
//! (`authorization` metadata, same format), counted as `code="UNAUTHENTICATED"` in
//! `model_server_grpc_requests_total`. Unknown routes stay 404 (the router answers them
//! before any route's layer). Tokens are never logged and never in a label.

mod tokens;

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::future::Either;
use tower::{Layer, Service};

pub use tokens::{parse, Tokens, TokensError, MAX_TOKEN_LEN};

use crate::error::ApiError;
use crate::proto::GrpcMethod;

/// The `realm` of `WWW-Authenticate`.
pub const REALM: &str = "iris";

/// Authentication settings: the tokens and whether `/metrics` needs one.
#[derive(Clone, Debug)]
pub struct Auth {
    tokens: Arc<Tokens>,
    protect_metrics: bool,
}

/// The outcome of checking a request's `Authorization` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A valid token.
    Accepted,
    /// No `Authorization: Bearer ...` header.
    Missing,
    /// A bearer token that is not in the file.
    Invalid,
}

impl Auth {
    /// Requires one of `tokens`; on `/metrics` too if `protect_metrics`.
    pub fn new(tokens: Arc<Tokens>, protect_metrics: bool) -> Auth {
        Auth {
            tokens,
            protect_metrics,
        }
    }

    /// The tokens.
    pub fn tokens(&self) -> &Arc<Tokens> {
        &self.tokens
    }

    /// Whether `/metrics` needs a token.
    pub fn protects_metrics(&self) -> bool {
        self.protect_metrics
    }

    /// Checks the `Authorization` header of a request (REST or gRPC metadata).
    pub fn verdict(&self, headers: &HeaderMap) -> Verdict {
        match headers
            .get(AUTHORIZATION)
            .and_then(|v| bearer(v.as_bytes()))
        {
            None => Verdict::Missing,
            Some(token) if self.tokens.check(token) => Verdict::Accepted,
            Some(_) => Verdict::Invalid,
        }
    }

    /// A layer for protected REST routes (`Router::route_layer`).
    pub fn http_layer(&self) -> HttpAuthLayer {
        HttpAuthLayer { auth: self.clone() }
    }
}

/// The token of an `Authorization: Bearer <token>` value (scheme case-insensitive).
pub fn bearer(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, token) = value.split_at(space);
    let token = token.trim_ascii();
    (scheme.eq_ignore_ascii_case(b"bearer") && !token.is_empty()).then_some(token)
}

/// The 401 answer to a REST request that was not [`Verdict::Accepted`].
pub fn unauthorized(verdict: Verdict) -> Response {
    let (message, challenge) = match verdict {
        Verdict::Invalid => (
            "invalid bearer token",
            r#"Bearer realm="iris", error="invalid_token""#,
        ),
        _ => (
            "missing bearer token: send Authorization: Bearer <token>",
            r#"Bearer realm="iris""#,
        ),
    };
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    response
}

/// Refuses REST requests without a valid token (see the module docs).
#[derive(Clone, Debug)]
pub struct HttpAuthLayer {
    auth: Auth,
}

impl<S> Layer<S> for HttpAuthLayer {
    type Service = HttpAuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpAuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// See [`HttpAuthLayer`].
#[derive(Clone, Debug)]
pub struct HttpAuthService<S> {
    inner: S,
    auth: Auth,
}

impl<S> Service<Request> for HttpAuthService<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, Ready<Result<Response, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        match self.auth.verdict(req.headers()) {
            Verdict::Accepted => Either::Left(self.inner.call(req)),
            verdict => Either::Right(ready(Ok(unauthorized(verdict)))),
        }
    }
}

/// Refuses gRPC calls without a valid token, except `ServerLive` and `ServerReady`; passes
/// everything through when `auth` is `None`.
#[derive(Clone, Debug)]
pub(crate) struct GrpcAuthLayer {
    pub(crate) auth: Option<Auth>,
}

impl<S> Layer<S> for GrpcAuthLayer {
    type Service = GrpcAuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcAuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// See [`GrpcAuthLayer`].
#[derive(Clone, Debug)]
pub(crate) struct GrpcAuthService<S> {
    inner: S,
    auth: Option<Auth>,
}

impl<S, B, RB> Service<axum::http::Request<B>> for GrpcAuthService<S>
where
    S: Service<axum::http::Request<B>, Response = axum::http::Response<RB>>,
    RB: Default,
{
    type Response = axum::http::Response<RB>;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Self::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Self::Future {
        let Some(auth) = &self.auth else {
            return Either::Left(self.inner.call(req));
        };
        if matches!(
            GrpcMethod::of_path(req.uri().path()),
            GrpcMethod::ServerLive | GrpcMethod::ServerReady
        ) {
            return Either::Left(self.inner.call(req));
        }
        let message = match auth.verdict(req.headers()) {
            Verdict::Accepted => return Either::Left(self.inner.call(req)),
            Verdict::Missing => "missing bearer token: send metadata authorization: Bearer <token>",
            Verdict::Invalid => "invalid bearer token",
        };
        Either::Right(ready(Ok(
            tonic::Status::unauthenticated(message).into_http()
        )))
    }
}

#[cfg(test)]
mod tests;
