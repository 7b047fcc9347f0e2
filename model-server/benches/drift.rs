//! The cost of input drift counting on the tutorial route, in-process (no sockets): `POST
//! /predict_iris` with one row through the router, drift counting on (the default window)
//! and off (`--drift-window-seconds 0`), in alternating rounds of about a second; prints each
//! side's best round and the difference. `cargo bench -p model-server --bench drift`.
//! Then the same for `oip::codec::predict` on 1,000-row batches of the Iris rows: the cost of
//! counting one row. Through HTTP a request costs more and the difference is a smaller share.

use std::hint::black_box;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use model_server::drift::DriftArgs;
use model_server::state::{AppState, Limits};
use model_server::{train, TrainingParams};
use tower::ServiceExt;

const ROUNDS: usize = 15;
const ROUND: Duration = Duration::from_millis(1000);
const BODY: &str = r#"{"features":[5.1,3.5,1.4,0.2]}"#;

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let model = train(&TrainingParams::default()).expect("train");
    let off = AppState::new("iris", model.clone(), "builtin", Limits::default());
    let on = AppState::new("iris", model, "builtin", Limits::default());
    assert!(on.count_drift(&DriftArgs::default(), rt.handle()));
    let routers = [
        model_server::http::app(off.clone()),
        model_server::http::app(on.clone()),
    ];
    let mut rates = [Vec::new(), Vec::new()];
    for _ in 0..ROUNDS {
        for (router, rates) in routers.iter().zip(&mut rates) {
            let start = Instant::now();
            let mut calls = 0u64;
            while start.elapsed() < ROUND {
                for _ in 0..64 {
                    let req = Request::post("/predict_iris")
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(Body::from(BODY))
                        .expect("request");
                    let resp = rt
                        .block_on(router.clone().oneshot(req))
                        .expect("infallible");
                    assert_eq!(resp.status(), StatusCode::OK);
                    black_box(resp);
                }
                calls += 64;
            }
            rates.push(calls as f64 / start.elapsed().as_secs_f64());
        }
    }
    // The best round of each: the one least disturbed by the rest of the machine.
    let best = |r: &[f64]| r.iter().copied().fold(0.0, f64::max);
    let (off_rate, on_rate) = (best(&rates[0]), best(&rates[1]));
    println!("/predict_iris in-process, drift off: {off_rate:>10.0} req/s");
    println!("/predict_iris in-process, drift on:  {on_rate:>10.0} req/s");
    println!(
        "drift counting costs {:.2}% ({:.0} ns a request)",
        (1.0 - on_rate / off_rate) * 100.0,
        (1e9 / on_rate) - (1e9 / off_rate)
    );
    batches(&off, &on);
}

/// Rows/s of `oip::codec::predict` on 1,000-row batches, off and on, best rounds.
fn batches(off: &AppState, on: &AppState) {
    let rows: Vec<[f64; 4]> = model_server::iris::dataset()
        .iter()
        .map(|s| s.features)
        .cycle()
        .take(1000)
        .collect();
    let mut best = [0.0f64; 2];
    for _ in 0..ROUNDS {
        for (state, best) in [off, on].into_iter().zip(&mut best) {
            let start = Instant::now();
            let mut calls = 0u64;
            while start.elapsed() < ROUND / 4 {
                black_box(model_server::oip::codec::predict(state, black_box(&rows)));
                calls += 1;
            }
            *best = best.max(calls as f64 * 1000.0 / start.elapsed().as_secs_f64());
        }
    }
    println!(
        "codec::predict, 1000-row batches, drift off: {:>10.0} rows/s",
        best[0]
    );
    println!(
        "codec::predict, 1000-row batches, drift on:  {:>10.0} rows/s",
        best[1]
    );
    println!(
        "drift counting: {:.1} ns a row",
        1e9 / best[1] - 1e9 / best[0]
    );
}
