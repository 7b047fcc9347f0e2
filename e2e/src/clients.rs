//! The OIP clients users already run (tritonclient and the kserve SDK, pinned, in a virtual
//! environment that `e2e/clients/setup.sh` makes), pointed at a served model:
//! `e2e/clients/check_clients.py` calls it with each client in each of its modes (REST binary and
//! JSON, gRPC raw and typed) and compares every answer with what the same model trained here
//! answers.
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use iris_model::TrainingParams;
use serde_json::json;

use crate::cluster::repo_root;
use crate::serving::iris_rows;

/// The client kit's Python: `$IRIS_PYCLIENTS/bin/python` when run-suite.sh made the venv, or
/// made here (once per test binary) with setup.sh.
fn python() -> &'static PathBuf {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let venv = match std::env::var("IRIS_PYCLIENTS") {
            Ok(v) if !v.is_empty() => v,
            _ => {
                let out = Command::new("bash")
                    .arg(repo_root().join("e2e/clients/setup.sh"))
                    .output()
                    .expect("run e2e/clients/setup.sh");
                assert!(
                    out.status.success(),
                    "e2e/clients/setup.sh failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                String::from_utf8_lossy(&out.stdout).trim().to_string()
            }
        };
        PathBuf::from(venv).join("bin/python")
    })
}

/// What the model trained with `params` answers for the 150 Iris rows, in the format
/// check_clients.py reads.
fn expected_json(params: &TrainingParams) -> String {
    let artifact = iris_model::train(params).expect("training");
    let rows = iris_rows();
    let expected: Vec<_> = rows
        .iter()
        .zip(artifact.predict(&rows))
        .map(|(features, p)| {
            json!({
                "features": features,
                "predict": p.class_index,
                "label": artifact.label(p.class_index),
                "probabilities": p.probabilities(),
            })
        })
        .collect();
    json!({ "rows": expected }).to_string()
}

/// Runs every client in every mode against `http` and `grpc` (`127.0.0.1:PORT`) for `model`
/// and panics with the report when any answer differs from the model trained with `params`.
pub fn check_all(http: &str, grpc: &str, model: &str, params: &TrainingParams) {
    let expected = std::env::temp_dir().join(format!(
        "iris-e2e-expected-{}-{model}.json",
        std::process::id()
    ));
    std::fs::write(&expected, expected_json(params)).expect("write the expected answers");
    let out = Command::new(python())
        .arg(repo_root().join("e2e/clients/check_clients.py"))
        .args(["--http", http, "--grpc", grpc, "--model", model])
        .arg("--expected")
        .arg(&expected)
        .output()
        .expect("run check_clients.py");
    let _ = std::fs::remove_file(&expected);
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("{model}: OIP clients\n{report}");
    assert!(
        out.status.success(),
        "the OIP clients disagree with the model for {model}:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !report.contains("SKIP"),
        "a client mode was skipped:\n{report}"
    );
}

/// The tritonclient modes that run over TLS with a bearer token (`--ca`, `$IRIS_TOKEN`):
/// REST binary and JSON, gRPC raw.
const TLS_MODES: &str = "^tritonclient\\.(http (binary|json)|grpc raw)$";

/// Runs tritonclient over TLS (`ssl=True`, trusting the CA in `ca_pem`) with `token`, over
/// REST and gRPC, and panics unless every answer is the model's trained with `params`.
pub fn check_tls(
    http: &str,
    grpc: &str,
    model: &str,
    params: &TrainingParams,
    ca_pem: &std::path::Path,
    token: &str,
) {
    let expected = std::env::temp_dir().join(format!(
        "iris-e2e-expected-tls-{}-{model}.json",
        std::process::id()
    ));
    std::fs::write(&expected, expected_json(params)).expect("write the expected answers");
    let out = Command::new(python())
        .arg(repo_root().join("e2e/clients/check_clients.py"))
        .args([
            "--http", http, "--grpc", grpc, "--model", model, "--only", TLS_MODES,
        ])
        .arg("--ca")
        .arg(ca_pem)
        .arg("--expected")
        .arg(&expected)
        .env("IRIS_TOKEN", token)
        .output()
        .expect("run check_clients.py");
    let _ = std::fs::remove_file(&expected);
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("{model}: OIP clients over TLS\n{report}");
    assert!(
        out.status.success() && report.matches("PASS ").count() == 3,
        "tritonclient over TLS disagrees with the model for {model}:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The OIP v2 `contributions` output (with `probabilities` and `predict`) of `rows` through
/// tritonclient (HTTP binary and JSON, gRPC raw), as `e2e/clients/contributions.py` prints it:
/// `{"<mode>": {"shape", "contributions", "probabilities", "predict"}}`; panics naming the mode
/// that failed.
pub fn contributions_via_tritonclient(
    http: &str,
    grpc: &str,
    model: &str,
    rows: &[[f64; 4]],
) -> serde_json::Value {
    let file = std::env::temp_dir().join(format!(
        "iris-e2e-contributions-{}-{model}.json",
        std::process::id()
    ));
    std::fs::write(&file, json!(rows).to_string()).expect("write the rows");
    let out = Command::new(python())
        .arg(repo_root().join("e2e/clients/contributions.py"))
        .args(["--http", http, "--grpc", grpc, "--model", model])
        .arg("--rows")
        .arg(&file)
        .output()
        .expect("run contributions.py");
    let _ = std::fs::remove_file(&file);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tritonclient could not read contributions from {model}: {report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&report).unwrap_or_else(|e| panic!("not JSON ({e}): {report}"))
}

/// Sends each of `rows` once through tritonclient HTTP (binary and JSON) and gRPC, one row a
/// request (e2e/clients/payload_log_clients.py), and returns what each request sent and got:
/// `{"client", "row" (the FP32 values sent), "label"}`. Panics when a request fails.
pub fn calls_per_row(
    http: &str,
    grpc: &str,
    model: &str,
    rows: &[[f64; 4]],
) -> Vec<serde_json::Value> {
    let out = Command::new(python())
        .arg(repo_root().join("e2e/clients/payload_log_clients.py"))
        .args(["--http", http, "--grpc", grpc, "--model", model, "--rows"])
        .arg(serde_json::to_string(rows).expect("rows as JSON"))
        .output()
        .expect("run payload_log_clients.py");
    assert!(
        out.status.success(),
        "payload_log_clients.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}
