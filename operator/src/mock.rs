//! A mocked API server for reconcile tests (tower-test): a scenario lists the requests the
//! reconcile must send, in order, each checked for method, path, query and body, with the
//! response to give. A request that never comes, or one too many, fails the test.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tower_test::mock::{self, Handle};

use crate::cache::testing::holding;
use crate::context::Context;
use crate::context::Settings;
use crate::metrics::Metrics;
use crate::reconcile::conditions::at;

/// How long to wait for each expected request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to watch for a request beyond the scenario.
const EXTRA_REQUEST_WINDOW: Duration = Duration::from_millis(200);

/// An assertion on a request body.
pub type Check = Box<dyn Fn(&Value) + Send>;

/// What to answer.
pub enum Reply {
    /// 200 with this body.
    Json(Value),
    /// 404 NotFound, as the API server says it.
    NotFound,
    /// 409 Conflict: the object changed since it was read.
    Conflict,
    /// An error status with this code, reason and message.
    Failure(u16, &'static str, &'static str),
    /// 200 with the request body (what server-side apply of a new object returns, roughly).
    Echo,
    /// 200 with the request body changed by a function.
    EchoWith(Box<dyn Fn(Value) -> Value + Send>),
    /// No answer at all: the request stays open (a stalled API server).
    Never,
}

/// One expected request.
pub struct Expect {
    pub method: Method,
    pub path: String,
    /// Parts the query must contain (e.g. `fieldManager=iris-operator`).
    pub query: Vec<&'static str>,
    /// Assertions on the request body.
    pub check: Option<Check>,
    pub reply: Reply,
}

impl Expect {
    pub fn get(path: impl Into<String>, reply: Reply) -> Self {
        Self {
            method: Method::GET,
            path: path.into(),
            query: Vec::new(),
            check: None,
            reply,
        }
    }

    /// A server-side apply under the operator's field manager, forced.
    pub fn apply(path: impl Into<String>, reply: Reply) -> Self {
        Self {
            method: Method::PATCH,
            path: path.into(),
            query: vec!["fieldManager=iris-operator", "force=true"],
            check: None,
            reply,
        }
    }

    pub fn post(path: impl Into<String>, reply: Reply) -> Self {
        Self {
            method: Method::POST,
            path: path.into(),
            query: Vec::new(),
            check: None,
            reply,
        }
    }

    pub fn put(path: impl Into<String>, reply: Reply) -> Self {
        Self {
            method: Method::PUT,
            path: path.into(),
            query: Vec::new(),
            check: None,
            reply,
        }
    }

    pub fn delete(path: impl Into<String>) -> Self {
        Self {
            method: Method::DELETE,
            path: path.into(),
            query: Vec::new(),
            check: None,
            reply: Reply::Json(json!({"kind": "Status", "apiVersion": "v1", "status": "Success"})),
        }
    }

    pub fn checking(mut self, check: impl Fn(&Value) + Send + 'static) -> Self {
        self.check = Some(Box::new(check));
        self
    }
}

fn not_found(path: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": format!("{path} not found"),
        "reason": "NotFound",
        "code": 404
    })
}

fn conflict(path: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": format!("Operation cannot be fulfilled on {path}: the object has been modified"),
        "reason": "Conflict",
        "code": 409
    })
}

/// The server side of the mocked client.
pub struct ApiServer(Handle<Request<Body>, Response<Body>>);

impl ApiServer {
    /// Serves the scenario; the returned task fails on any deviation, and returns the bodies
    /// of the requests it saw.
    pub fn run(self, scenario: Vec<Expect>) -> JoinHandle<Vec<Value>> {
        self.run_within(scenario, REQUEST_TIMEOUT)
    }

    /// Like [`ApiServer::run`], waiting up to `timeout` for each request (for tests that move
    /// a paused clock forward).
    pub fn run_within(self, scenario: Vec<Expect>, timeout: Duration) -> JoinHandle<Vec<Value>> {
        let mut handle = self.0;
        tokio::spawn(async move {
            let mut bodies = Vec::new();
            // The requests answered with Reply::Never, kept open until the scenario ends.
            let mut unanswered = Vec::new();
            for (step, expect) in scenario.into_iter().enumerate() {
                let what = format!("step {step}: {} {}", expect.method, expect.path);
                let (request, send) = tokio::time::timeout(timeout, handle.next_request())
                    .await
                    .unwrap_or_else(|_| panic!("{what}: the request never came"))
                    .unwrap_or_else(|| panic!("{what}: the client is gone"));
                let (method, path) = (request.method().clone(), request.uri().path().to_string());
                let query = request.uri().query().unwrap_or("").to_string();
                assert_eq!(
                    (&method, path.as_str()),
                    (&expect.method, expect.path.as_str()),
                    "{what}: got {method} {path}?{query}"
                );
                for part in &expect.query {
                    assert!(query.contains(part), "{what}: query {query:?} lacks {part}");
                }
                let bytes = request
                    .into_body()
                    .collect()
                    .await
                    .expect("request body")
                    .to_bytes();
                let body: Value = if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes).expect("request body is JSON")
                };
                if let Some(check) = &expect.check {
                    check(&body);
                }
                if matches!(expect.reply, Reply::Never) {
                    bodies.push(body);
                    unanswered.push(send);
                    continue;
                }
                let (status, reply) = match expect.reply {
                    Reply::Never => unreachable!("handled above"),
                    Reply::Json(v) => (StatusCode::OK, v),
                    Reply::NotFound => (StatusCode::NOT_FOUND, not_found(&path)),
                    Reply::Conflict => (StatusCode::CONFLICT, conflict(&path)),
                    Reply::Failure(code, reason, message) => (
                        StatusCode::from_u16(code).expect("a status code"),
                        json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                               "status": "Failure", "message": message, "reason": reason,
                               "code": code}),
                    ),
                    Reply::Echo => (StatusCode::OK, body.clone()),
                    Reply::EchoWith(f) => (StatusCode::OK, f(body.clone())),
                };
                bodies.push(body);
                let response = Response::builder()
                    .status(status)
                    .body(Body::from(
                        serde_json::to_vec(&reply).expect("reply serialises"),
                    ))
                    .expect("response builds");
                send.send_response(response);
            }
            if let Ok(Some((request, _))) =
                tokio::time::timeout(EXTRA_REQUEST_WINDOW, handle.next_request()).await
            {
                panic!(
                    "unexpected request after the scenario: {} {}",
                    request.method(),
                    request.uri()
                );
            }
            drop(unanswered);
            bodies
        })
    }
}

/// A client talking to the returned mocked API server.
pub fn client() -> (Client, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), ApiServer(handle))
}

/// The time of the reconciles of [`context`]: after every time stamp in the fixtures.
pub const NOW: i64 = 1_800_000_000;

/// A reconcile context whose client talks to the returned mocked API server, whose clock
/// stands at [`NOW`], and whose watch caches are synced and empty.
pub fn context() -> (Arc<Context>, ApiServer) {
    context_at(NOW)
}

/// Like [`context`], with the clock standing at `secs` after the epoch.
pub fn context_at(secs: i64) -> (Arc<Context>, ApiServer) {
    let (client, server) = client();
    let ctx = Context::new(
        client,
        Settings::default(),
        Metrics::default(),
        Some("test-instance".into()),
    )
    .with_clock(move || at(secs));
    ctx.install_children(holding(vec![], vec![], vec![], vec![]));
    (Arc::new(ctx), server)
}

/// Waits for the mocked server to finish its scenario.
pub async fn finished(server: JoinHandle<Vec<Value>>) -> Vec<Value> {
    tokio::time::timeout(REQUEST_TIMEOUT, server)
        .await
        .expect("the mocked API server finished in time")
        .expect("the scenario held")
}
