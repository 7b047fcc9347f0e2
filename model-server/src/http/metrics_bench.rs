//! A benchmark, not a test (`#[ignore]`; `make bench` runs it in release): the cost of the
//! hand-written [`MetricsLayer`] against the same recording written as
//! `axum::middleware::from_fn`, in process (`oneshot` on a router with one trivial route, so
//! the middleware is most of the work). Prints ns per request for each; asserts nothing.

use std::hint::black_box;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use tower::ServiceExt;

use super::metrics::MetricsLayer;
use crate::metrics::{Metrics, ModelInfo, RouteId};
use crate::paths;

fn metrics() -> Arc<Metrics> {
    let info = ModelInfo {
        model: "iris".into(),
        version: "v".into(),
        digest: "sha256:x".into(),
        task: "binary",
        positive_class: "setosa".into(),
        source: "builtin".into(),
        accuracy: 1.0,
        class_labels: vec!["not_setosa".into(), "setosa".into()],
    };
    Arc::new(Metrics::new(info, Arc::new(AtomicBool::new(true))))
}

async fn record(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route = RouteId::of(&req);
    let started = Instant::now();
    let response = next.run(req).await;
    metrics.observe(route, response.status(), started);
    response
}

fn routes() -> Router {
    Router::new().route(paths::PREDICT_IRIS, post(|| async { "ok" }))
}

/// Median ns per request over 5 rounds of `n` requests.
async fn per_request(app: Router, n: u32) -> f64 {
    let mut rounds = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        for _ in 0..n {
            let req = Request::post(paths::PREDICT_IRIS)
                .body(axum::body::Body::empty())
                .expect("request");
            black_box(app.clone().oneshot(req).await.expect("infallible"));
        }
        rounds.push(t0.elapsed().as_nanos() as f64 / f64::from(n));
    }
    rounds.sort_by(f64::total_cmp);
    rounds[2]
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "a benchmark: make bench runs it in release"]
async fn metrics_layer_against_from_fn() {
    let n = 200_000;
    let plain = per_request(routes(), n).await;
    let layer = per_request(routes().layer(MetricsLayer { metrics: metrics() }), n).await;
    let from_fn = per_request(
        routes().layer(middleware::from_fn_with_state(metrics(), record)),
        n,
    )
    .await;
    println!(
        "metrics middleware, ns per request (median of 5 x {n}): no middleware {plain:.0}, \
         hand-written Layer {layer:.0} (+{:.0}), from_fn {from_fn:.0} (+{:.0})",
        layer - plain,
        from_fn - plain
    );
}
