//! The events, made with the CloudEvents SDK (`cloudevents-sdk`) and written in its HTTP
//! binary mode: the attributes as `ce-*` headers, `datacontenttype` as `Content-Type`, the
//! body as it was sent or answered.

use axum::body::Bytes;
use axum::http::{self, HeaderValue, Method, Uri};
use cloudevents::binding::http::{Builder, Serializer};
use cloudevents::message::{BinaryDeserializer, Result};
use cloudevents::{Event, EventBuilder, EventBuilderV10};
use http_body_util::Full;

use super::{Identity, Payload};

/// `ce-type` of a request event (KServe's).
pub(crate) const REQUEST_TYPE: &str = "org.kubeflow.serving.inference.request";
/// `ce-type` of a response event (KServe's).
pub(crate) const RESPONSE_TYPE: &str = "org.kubeflow.serving.inference.response";

/// Whether an event carries the request or the response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Request,
    Response,
}

/// The CloudEvent of one body: `id` shared by a request and its response; the extensions
/// `inferenceservicename` and `namespace` (as KServe names them), `endpoint` (the route or
/// gRPC method) and, with Triton's binary extension, `inferenceheadercontentlength`.
pub(crate) fn build(
    kind: Kind,
    id: &str,
    identity: &Identity,
    endpoint: &str,
    payload: &Payload,
) -> std::result::Result<Event, cloudevents::event::EventBuilderError> {
    let ty = match kind {
        Kind::Request => REQUEST_TYPE,
        Kind::Response => RESPONSE_TYPE,
    };
    let mut builder = EventBuilderV10::new()
        .id(id)
        .ty(ty)
        .source(identity.source.as_str())
        .time(chrono::Utc::now())
        .extension("inferenceservicename", identity.model.as_str())
        .extension("namespace", identity.namespace.as_str())
        .extension("endpoint", endpoint)
        .data(payload.content_type.as_str(), payload.body.to_vec());
    if let Some(len) = payload.json_len {
        builder = builder.extension(
            "inferenceheadercontentlength",
            i64::try_from(len).unwrap_or(i64::MAX),
        );
    }
    builder.build()
}

/// `POST url` carrying `event` in HTTP binary mode, with the extra `headers`.
pub(crate) fn to_request(
    event: Event,
    url: &Uri,
    headers: &[(http::HeaderName, HeaderValue)],
) -> Result<http::Request<Full<Bytes>>> {
    let mut builder = http::Request::builder()
        .method(Method::POST)
        .uri(url.clone());
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    BinaryDeserializer::deserialize_binary(event, Serializer::new(RequestBuilder(Some(builder))))
}

/// The SDK's binary serializer writing into an `http::request::Builder`.
struct RequestBuilder(Option<http::request::Builder>);

impl RequestBuilder {
    fn finish_with(&mut self, body: Vec<u8>) -> Result<http::Request<Full<Bytes>>> {
        self.0
            .take()
            .unwrap_or_default()
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| cloudevents::message::Error::Other {
                source: Box::new(e),
            })
    }
}

impl Builder<http::Request<Full<Bytes>>> for RequestBuilder {
    fn header(&mut self, key: &str, value: HeaderValue) {
        self.0 = self.0.take().map(|b| b.header(key, value));
    }

    fn body(&mut self, bytes: Vec<u8>) -> Result<http::Request<Full<Bytes>>> {
        self.finish_with(bytes)
    }

    fn finish(&mut self) -> Result<http::Request<Full<Bytes>>> {
        self.finish_with(Vec::new())
    }
}
