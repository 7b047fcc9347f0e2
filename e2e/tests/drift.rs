//! Input drift on a real Prometheus (the one of tests/monitoring.rs, with the chart's alerts,
//! their `for` shortened to seconds): a model pod's inputs drawn from the Iris data keep
//! IrisModelInputDrift silent; the same rows with petal length + 3 cm make it fire, naming
//! petal_length and no other feature. The model server's drift window keeps its default
//! (10 minutes), which holds both phases: the shifted half is enough to cross the threshold.
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use e2e::cluster::with_temp_ns;
use e2e::portforward::PortForward;
use e2e::prometheus::{self, Prometheus, INTERVAL};
use e2e::{iris, kubectl, serving};
use serde_json::Value;

/// The test's `for` of every alert (the shipped IrisModelInputDrift holds for 10 minutes).
const HOLD: Duration = Duration::from_secs(20);

fn label<'a>(labels: &'a Value, name: &str) -> &'a str {
    labels[name].as_str().unwrap_or("")
}

/// The IrisModel: one replica of the builtin model. Through the registries (E2E_REGISTRY=1)
/// the image is pinned by the digest just pushed: a node may hold an older build under the
/// same tag, which `IfNotPresent` would run (the same build has the same digest in both
/// registries, see tests/registry.rs).
fn manifest() -> String {
    let pinned = std::env::var("MODEL_SERVER_IMAGE")
        .ok()
        .zip(std::env::var("E2E_PRIVATE_DIGEST").ok())
        .filter(|(image, digest)| !image.is_empty() && !digest.is_empty())
        .map(|(image, digest)| {
            let repo = image.rsplit_once(':').map_or(image.as_str(), |(r, _)| r);
            format!("  image: \"{repo}@{digest}\"\n")
        });
    format!(
        "apiVersion: serving.iris.dev/v1alpha1\nkind: IrisModel\nmetadata: {{name: iris}}\nspec:\n  replicas: 1\n{}",
        pinned.unwrap_or_default()
    )
}

/// Sends `rows` four times through three prediction routes: 2 KServe v1 batches, 1 OIP v2
/// batch, and the first 30 rows one by one on /predict_iris; returns the rows sent.
async fn send(url: &str, rows: &[[f64; 4]]) -> usize {
    for _ in 0..2 {
        assert_eq!(
            serving::classes_via_kserve_v1(url, "iris", rows)
                .await
                .len(),
            rows.len()
        );
    }
    assert_eq!(
        serving::labels_via_oip_v2(url, "iris", rows).await.len(),
        rows.len()
    );
    assert_eq!(
        serving::labels_via_predict_iris(url, &rows[..30])
            .await
            .len(),
        30
    );
    3 * rows.len() + 30
}

/// The drift alerts of namespace `ns` Prometheus holds (pending or firing): their labels and
/// annotations.
async fn drift_alerts(prom: &mut Prometheus, ns: &str) -> Vec<(Value, Value)> {
    let data = prom.api("alerts", &[]).await;
    data["alerts"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|a| {
                    label(&a["labels"], "alertname") == "IrisModelInputDrift"
                        && label(&a["labels"], "namespace") == ns
                })
                .map(|a| (a["labels"].clone(), a["annotations"].clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Polls the alerts for `time`: no drift alert of `ns`, pending or firing.
async fn assert_quiet_for(prom: &mut Prometheus, ns: &str, time: Duration) {
    let until = Instant::now() + time;
    while Instant::now() < until {
        let alerts = drift_alerts(prom, ns).await;
        assert!(
            alerts.is_empty(),
            "no drift alert on in-distribution inputs: {alerts:?}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn shifted_inputs_fire_the_drift_alert_naming_the_feature() {
    with_temp_ns("drift", &[], |client, ns| async move {
        let mut prom = Prometheus::start(
            &ns,
            &prometheus::rules_with_for(&format!("{}s", HOLD.as_secs())),
        );
        let api = iris::api(&client, &ns);
        let manifest = manifest();
        eprintln!("{manifest}");
        kubectl::apply(&ns, &manifest).expect("apply the IrisModel");
        iris::wait_ready(&api, "iris", Duration::from_secs(90)).await;
        let forward = PortForward::start(&ns, "svc/iris", 5001);
        let url = forward.url();
        let psi = format!("model_server_input_drift_psi{{namespace=\"{ns}\",name=\"iris\"}}");
        let rows_in_window =
            format!("model_server_input_drift_window_rows{{namespace=\"{ns}\",name=\"iris\"}}");

        // In distribution: the 150 rows of the data set (the model trained on 120 of them).
        let rows = serving::iris_rows();
        let sent = send(&url, &rows).await;
        prom.wait_query(&rows_in_window, Duration::from_secs(60), |s| {
            s.first().is_some_and(|s| s.1 >= sent as f64)
        })
        .await;
        let calm = prom.query(&psi).await;
        eprintln!(
            "{sent} rows from the data set: PSI {:?}",
            calm.iter()
                .map(|(l, v)| format!("{}={v:.3}", label(l, "feature")))
                .collect::<Vec<_>>()
        );
        assert_eq!(calm.len(), 4, "a PSI per feature: {calm:?}");
        assert!(
            calm.iter().all(|(_, v)| *v < 0.2),
            "in-distribution PSI below 0.2: {calm:?}"
        );
        // Silent for longer than the alert's `for` and two evaluations.
        assert_quiet_for(&mut prom, &ns, HOLD + 2 * INTERVAL + Duration::from_secs(5)).await;

        // Shifted: the same rows with petal length + 3 cm.
        let shifted: Vec<[f64; 4]> = rows
            .iter()
            .map(|r| [r[0], r[1], r[2] + 3.0, r[3]])
            .collect();
        let sent_shifted = send(&url, &shifted).await;
        let shifted_at = Instant::now();
        prom.wait_query(&rows_in_window, Duration::from_secs(60), |s| {
            s.first()
                .is_some_and(|s| s.1 >= (sent + sent_shifted) as f64)
        })
        .await;
        let drifted = prom.query(&psi).await;
        eprintln!(
            "then {sent_shifted} shifted rows: PSI {:?}",
            drifted
                .iter()
                .map(|(l, v)| format!("{}={v:.3}", label(l, "feature")))
                .collect::<Vec<_>>()
        );
        let firing = format!(
            "ALERTS{{alertname=\"IrisModelInputDrift\",alertstate=\"firing\",namespace=\"{ns}\"}}"
        );
        let bound = HOLD + 4 * INTERVAL + Duration::from_secs(10);
        let fired = prom.wait_query(&firing, bound, |s| !s.is_empty()).await;
        eprintln!(
            "IrisModelInputDrift firing {:.1} s after the shifted rows were sent (for {} s)",
            (fired - shifted_at).as_secs_f64(),
            HOLD.as_secs()
        );
        // Only petal_length, named in the labels and the summary.
        tokio::time::sleep(2 * INTERVAL).await;
        let alerts = drift_alerts(&mut prom, &ns).await;
        let features: BTreeSet<&str> = alerts.iter().map(|(l, _)| label(l, "feature")).collect();
        assert_eq!(features, BTreeSet::from(["petal_length"]), "{alerts:?}");
        for (labels, annotations) in &alerts {
            let summary = label(annotations, "summary");
            eprintln!("alert {labels}: {summary}");
            assert!(
                summary.contains(&format!(
                    "IrisModel {ns}/iris: input feature petal_length drifted"
                )),
                "{summary}"
            );
            assert_eq!(label(labels, "severity"), "warning");
        }
    })
    .await;
}
