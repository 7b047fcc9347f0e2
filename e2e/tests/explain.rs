//! Explanations on a real cluster: `:explain` on all 150 Iris rows of a multiclass and a binary
//! model, and the OIP v2 `contributions` output through tritonclient (HTTP binary and JSON, gRPC
//! raw), checked against a computation by hand here: the served model's artifact is trained here
//! from the same parameters (its digest must be the one the status reports), and each
//! contribution is its coefficient times `(x - mean) / std` from that artifact's scaler. The
//! served numbers must also be self-consistent (contributions + intercept = logit) and the
//! predicted class must be the argmax of the logits and what `:predict` answers.
use std::time::Duration;

use e2e::cluster::with_temp_ns;
use e2e::portforward::PortForward;
use e2e::{clients, iris, kubectl, serving};
use iris_model::{IrisClass, ModelArtifact, Task, TrainingParams};
use serde_json::{json, Value};

const READY_WITHIN: Duration = Duration::from_secs(120);
const TOL: f64 = 1e-9;

/// One class of one row, by hand: contributions per feature, intercept, logit.
struct Class {
    contributions: [f64; 4],
    intercept: f64,
    logit: f64,
}

/// Every class of `row`, from the artifact's numbers alone. Binary: class 0 (the rest) is the
/// reference with everything 0 and class 1 carries the artifact's one coefficient row.
fn by_hand(a: &ModelArtifact, row: &[f64; 4]) -> Vec<Class> {
    let s = a.scaler();
    let z: Vec<f64> = (0..4).map(|i| (row[i] - s.means[i]) / s.stds[i]).collect();
    let mut classes = Vec::new();
    if a.task() == Task::Binary {
        classes.push(Class {
            contributions: [0.0; 4],
            intercept: 0.0,
            logit: 0.0,
        });
    }
    for (w, b) in a.coefficients().iter().zip(a.intercepts()) {
        let contributions = [w[0] * z[0], w[1] * z[1], w[2] * z[2], w[3] * z[3]];
        classes.push(Class {
            contributions,
            intercept: *b,
            logit: b + contributions.iter().sum::<f64>(),
        });
    }
    classes
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= TOL * b.abs().max(1.0)
}

fn argmax(v: &[f64]) -> usize {
    (0..v.len())
        .max_by(|&a, &b| v[a].total_cmp(&v[b]))
        .unwrap_or(0)
}

/// Checks one `:explain` row against the by-hand classes and `:predict`'s class.
fn check_explained(i: usize, e: &Value, want: &[Class], names: &[String], predicted: u64) {
    let classes = e["classes"].as_array().expect("classes");
    assert_eq!(classes.len(), want.len(), "row {i}: {e}");
    let mut logits = Vec::new();
    for (k, (c, w)) in classes.iter().zip(want).enumerate() {
        let logit = c["logit"].as_f64().expect("logit");
        let intercept = c["intercept"].as_f64().expect("intercept");
        let mut sum = intercept;
        for (f, name) in names.iter().enumerate() {
            let got = c["contributions"][name].as_f64().expect("a contribution");
            assert!(
                close(got, w.contributions[f]),
                "row {i} class {k} {name}: served {got}, by hand {}",
                w.contributions[f]
            );
            sum += got;
        }
        assert!(
            close(sum, logit),
            "row {i} class {k}: contributions + intercept {sum} != logit {logit}"
        );
        assert!(
            close(logit, w.logit) && intercept == w.intercept,
            "row {i} class {k}: {c}"
        );
        logits.push(logit);
    }
    assert_eq!(
        e["prediction"], predicted,
        "row {i}: :explain and :predict disagree: {e}"
    );
    assert_eq!(
        argmax(&logits) as u64,
        predicted,
        "row {i}: argmax of {logits:?}"
    );
}

/// Checks one tritonclient mode's `contributions` `[150, k, 5]` against the by-hand classes.
fn check_tensor(mode: &str, got: &Value, want: &[Vec<Class>], predicted: &[u64]) {
    let k = want[0].len();
    assert_eq!(got["shape"], json!([want.len(), k, 5]), "{mode}");
    let values: Vec<f64> = serde_json::from_value(got["contributions"].clone()).expect("floats");
    let probabilities: Vec<f64> =
        serde_json::from_value(got["probabilities"].clone()).expect("floats");
    assert_eq!(got["predict"], json!(predicted), "{mode}: predict");
    for (n, classes) in want.iter().enumerate() {
        let mut logits = Vec::new();
        for (c, w) in classes.iter().enumerate() {
            let at = &values[(n * k + c) * 5..][..5];
            for f in 0..4 {
                assert!(
                    close(at[f], w.contributions[f]),
                    "{mode} row {n} class {c} feature {f}: {at:?}"
                );
            }
            assert_eq!(
                at[4], w.intercept,
                "{mode} row {n} class {c}: the intercept is last"
            );
            logits.push(at.iter().sum::<f64>());
        }
        // The sum of the five is the logit: its softmax is the row's probabilities.
        let max = logits.iter().copied().fold(f64::MIN, f64::max);
        let total: f64 = logits.iter().map(|l| (l - max).exp()).sum();
        for (c, l) in logits.iter().enumerate() {
            let p = probabilities[n * k + c];
            assert!(
                ((l - max).exp() / total - p).abs() < TOL,
                "{mode} row {n}: {logits:?} vs {p}"
            );
        }
        assert_eq!(
            argmax(&logits) as u64,
            predicted[n],
            "{mode} row {n}: {logits:?}"
        );
    }
}

async fn explain_model(client: &kube::Client, ns: &str, name: &str, params: &TrainingParams) {
    let artifact = iris_model::train(params).expect("training");
    let obj = iris::wait_ready(&iris::api(client, ns), name, READY_WITHIN).await;
    assert_eq!(
        iris::digest(&obj).as_deref(),
        Some(artifact.digest()),
        "{name}: the served artifact is the one trained here"
    );

    let rest = PortForward::start(ns, &format!("svc/{name}"), 5001);
    let url = rest.url();
    let rows = serving::iris_rows();
    let want: Vec<Vec<Class>> = rows.iter().map(|r| by_hand(&artifact, r)).collect();
    let predicted = serving::classes_via_kserve_v1(&url, name, &rows).await;
    assert_eq!(
        predicted,
        serving::Expected::train(params).classes,
        "{name}: :predict"
    );

    let answer: Value = serving::http()
        .post(format!("{url}/v1/models/{name}:explain"))
        .json(&json!({ "instances": rows }))
        .send()
        .await
        .expect("POST :explain")
        .json()
        .await
        .expect(":explain answers JSON");
    assert_eq!(answer["predictions"], json!(predicted), "{name}");
    let explained = answer["explanations"].as_array().expect("explanations");
    assert_eq!(explained.len(), 150);
    for (i, e) in explained.iter().enumerate() {
        check_explained(i, e, &want[i], artifact.feature_names(), predicted[i]);
    }

    // Bad input: the same 400 as :predict.
    for verb in ["predict", "explain"] {
        let r = serving::http()
            .post(format!("{url}/v1/models/{name}:{verb}"))
            .json(&json!({"instances": [[5.1, 3.5, 1.4]]}))
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status().as_u16(), 400, "{name}:{verb}");
    }

    let grpc = PortForward::start(ns, &format!("svc/{name}"), 8081);
    let (http_addr, grpc_addr) = (
        format!("127.0.0.1:{}", rest.port),
        format!("127.0.0.1:{}", grpc.port),
    );
    let model = name.to_owned();
    let report = tokio::task::spawn_blocking(move || {
        clients::contributions_via_tritonclient(
            &http_addr,
            &grpc_addr,
            &model,
            &serving::iris_rows(),
        )
    })
    .await
    .expect("tritonclient");
    let modes = report.as_object().expect("a report per mode");
    assert_eq!(modes.len(), 3, "{report}");
    for (mode, got) in modes {
        check_tensor(mode, got, &want, &predicted);
    }
    eprintln!(
        "{name}: 150 rows explained, by hand within {TOL:e}, over :explain and {}",
        modes.keys().cloned().collect::<Vec<_>>().join(", ")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn explanations_are_exact_on_all_rows_over_v1_and_oip() {
    with_temp_ns("explain", &[], |client, ns| async move {
        kubectl::apply(
            &ns,
            "apiVersion: serving.iris.dev/v1alpha1\nkind: IrisModel\nmetadata: {name: species}\nspec: {model: {task: multiclass, source: {builtin: {}}}}\n---\napiVersion: serving.iris.dev/v1alpha1\nkind: IrisModel\nmetadata: {name: virginica}\nspec: {model: {task: binary, positiveClass: virginica, source: {builtin: {}}}}\n",
        )
        .expect("apply the IrisModels");
        explain_model(&client, &ns, "species", &serving::params_multiclass(42)).await;
        let binary = TrainingParams {
            task: Task::Binary,
            positive_class: Some(IrisClass::Virginica),
            ..TrainingParams::default()
        };
        explain_model(&client, &ns, "virginica", &binary).await;
    })
    .await;
}
