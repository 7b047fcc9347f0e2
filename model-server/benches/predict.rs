//! In-process prediction throughput (no HTTP): `cargo bench -p model-server --bench predict`.
//! A plain harness (no criterion) to keep the build small: each case runs for about a
//! second, five times, and the median rate is printed.

use std::hint::black_box;
use std::time::{Duration, Instant};

use model_server::iris::dataset;
use model_server::{train, ModelArtifact, Task, TrainingParams};

const ROUNDS: usize = 5;
const ROUND: Duration = Duration::from_millis(1000);

/// Runs `f` (which handles `items` rows per call) repeatedly; returns the median rows/s.
fn rate(items: usize, mut f: impl FnMut()) -> f64 {
    let mut rates = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let mut calls = 0u64;
        while start.elapsed() < ROUND {
            for _ in 0..64 {
                f();
            }
            calls += 64;
        }
        rates.push(calls as f64 * items as f64 / start.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    rates[ROUNDS / 2]
}

fn report(name: &str, rows_per_s: f64) {
    println!(
        "{name:<44} {:>14.0} rows/s  ({:.1} ns/row)",
        rows_per_s,
        1e9 / rows_per_s
    );
}

fn main() {
    let rows: Vec<[f64; 4]> = dataset().iter().map(|s| s.features).collect();
    let binary = train(&TrainingParams::default()).expect("train binary");
    let multiclass = train(&TrainingParams {
        task: Task::Multiclass,
        ..TrainingParams::default()
    })
    .expect("train multiclass");

    for (name, model) in [("binary", &binary), ("multiclass", &multiclass)] {
        bench_model(name, model, &rows);
    }

    let start = Instant::now();
    let n = 20;
    for _ in 0..n {
        black_box(train(black_box(&TrainingParams::default())).expect("train"));
    }
    println!(
        "{:<44} {:>14.2} ms",
        "train binary (builtin start-up work)",
        start.elapsed().as_secs_f64() * 1e3 / n as f64
    );
    let start = Instant::now();
    for _ in 0..n {
        black_box(
            train(black_box(&TrainingParams {
                task: Task::Multiclass,
                ..TrainingParams::default()
            }))
            .expect("train"),
        );
    }
    println!(
        "{:<44} {:>14.2} ms",
        "train multiclass",
        start.elapsed().as_secs_f64() * 1e3 / n as f64
    );
}

fn bench_model(name: &str, model: &ModelArtifact, rows: &[[f64; 4]]) {
    let predictor = model.predictor();
    let mut i = 0;
    report(
        &format!("{name}: predict_one"),
        rate(1, || {
            i = (i + 1) % rows.len();
            black_box(predictor.predict(black_box(&rows[i])));
        }),
    );
    let batch: Vec<[f64; 4]> = rows.iter().cycle().take(1000).copied().collect();
    report(
        &format!("{name}: predict, batch of 1000"),
        rate(batch.len(), || {
            black_box(model.predict(black_box(&batch)));
        }),
    );
    // The single-row request path minus HTTP: parse the tutorial body, predict, serialize.
    let body = br#"{"features":[5.1,3.5,1.4,0.2]}"#;
    report(
        &format!("{name}: JSON in -> predict -> JSON out"),
        rate(1, || {
            #[derive(serde::Deserialize)]
            struct Req {
                features: [f64; 4],
            }
            #[derive(serde::Serialize)]
            struct Resp<'a> {
                prediction: usize,
                label: &'a str,
                probability: f64,
            }
            let req: Req = serde_json::from_slice(black_box(body)).expect("valid body");
            let p = predictor.predict(&req.features);
            let out = serde_json::to_vec(&Resp {
                prediction: p.class_index,
                label: model.label(p.class_index),
                probability: p.probability(),
            })
            .expect("serialize");
            black_box(out);
        }),
    );
}
