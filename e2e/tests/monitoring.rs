//! Observability on a real Prometheus: the server built from its Go module runs in the
//! cluster with docs/monitoring.md's kubernetes_sd job and the chart's alerts (their `for` shortened
//! to seconds), scrapes the operator and the model pods found by their annotations, sees a
//! prediction made through the Service within a scrape interval, and fires IrisModelDegraded
//! for a model whose ConfigMap is missing within the rule's `for` plus two evaluations.
use std::time::{Duration, Instant};

use e2e::cluster::{with_temp_ns, OPERATOR_NAMESPACE};
use e2e::portforward::PortForward;
use e2e::prometheus::{self, Prometheus, INTERVAL};
use e2e::{iris, kubectl, serving};
use serde_json::Value;

/// The test's `for` of every alert (the shipped rules hold for minutes).
const HOLD: Duration = Duration::from_secs(20);

fn label<'a>(labels: &'a Value, name: &str) -> &'a str {
    labels[name].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread")]
#[allow(clippy::too_many_lines)] // one scenario on the cluster, told in order
async fn prometheus_scrapes_every_model_and_the_operator_and_fires_the_degraded_alert() {
    with_temp_ns("monitoring", &[], |client, ns| async move {
        let mut prom = Prometheus::start(&ns, &prometheus::rules_with_for(&format!("{}s", HOLD.as_secs())));
        let api = iris::api(&client, &ns);
        kubectl::apply(
            &ns,
            "apiVersion: serving.iris.dev/v1alpha1\nkind: IrisModel\nmetadata: {name: iris}\nspec: {replicas: 2}\n",
        )
        .expect("apply the IrisModel");
        iris::wait_ready(&api, "iris", Duration::from_secs(90)).await;

        // Every target of this test's model and the operator's pods: up, with the labels the
        // alerts and the dashboard rely on.
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(60);
        let (models, operators) = loop {
            let targets = prom.targets().await;
            let models: Vec<_> = targets
                .iter()
                .filter(|(l, _, _)| label(l, "namespace") == ns && label(l, "job") == "model-server")
                .collect();
            let operators: Vec<_> = targets
                .iter()
                .filter(|(l, _, _)| label(l, "namespace") == OPERATOR_NAMESPACE && label(l, "job") == "iris-operator")
                .collect();
            let all_up = |t: &[&(Value, String, String)]| !t.is_empty() && t.iter().all(|(_, h, _)| h == "up");
            if models.len() == 2 && all_up(&models) && all_up(&operators) {
                break (models.len(), operators.len());
            }
            assert!(
                Instant::now() < deadline,
                "targets not all up within 60 s: models {models:?}, operators {operators:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        eprintln!(
            "targets up after {:.1} s: {models} model pods (name=iris), {operators} operator pods",
            t0.elapsed().as_secs_f64()
        );
        let up = prom
            .query(&format!("up{{job=\"model-server\",namespace=\"{ns}\",name=\"iris\"}} == 1"))
            .await;
        assert_eq!(up.len(), 2, "both model pods are up with name=\"iris\": {up:?}");

        // A prediction through the Service shows in model_server_http_requests_total within a
        // scrape interval (plus the query's own latency).
        let infer = format!(
            "sum(model_server_http_requests_total{{namespace=\"{ns}\",name=\"iris\",route=\"/v2/models/{{name}}/infer\",code=\"200\"}})"
        );
        let before = prom.query(&infer).await.first().map_or(0.0, |s| s.1);
        let forward = PortForward::start(&ns, "svc/iris", 5001);
        let rows = serving::iris_rows();
        let labels = serving::labels_via_oip_v2(&forward.url(), "iris", &rows[..1]).await;
        let predicted = Instant::now();
        assert_eq!(labels.len(), 1);
        let seen = prom
            .wait_query(&infer, INTERVAL + Duration::from_secs(3), |s| {
                s.first().is_some_and(|s| s.1 >= before + 1.0)
            })
            .await;
        eprintln!(
            "prediction visible in model_server_http_requests_total after {:.1} s (scrape interval {} s)",
            (seen - predicted).as_secs_f64(),
            INTERVAL.as_secs()
        );

        // A model whose ConfigMap is missing: Degraded, then the alert fires on the running
        // Prometheus within `for` + 2 evaluation intervals of its series appearing.
        kubectl::apply(
            &ns,
            "apiVersion: serving.iris.dev/v1alpha1\nkind: IrisModel\nmetadata: {name: broken}\nspec: {model: {task: binary, positiveClass: virginica, source: {configMap: {name: absent, key: model.json}}}}\n",
        )
        .expect("apply the broken IrisModel");
        let applied = Instant::now();
        let degraded = format!(
            "iris_operator_model_condition{{namespace=\"{ns}\",name=\"broken\",type=\"Degraded\",status=\"True\"}} == 1"
        );
        let series_seen = prom
            .wait_query(&degraded, Duration::from_secs(90), |s| !s.is_empty())
            .await;
        let reason = prom.query(&degraded).await;
        eprintln!(
            "Degraded series after {:.1} s: {:?}",
            (series_seen - applied).as_secs_f64(),
            reason.iter().map(|(l, _)| label(l, "reason").to_string()).collect::<Vec<_>>()
        );
        let firing = format!(
            "ALERTS{{alertname=\"IrisModelDegraded\",alertstate=\"firing\",namespace=\"{ns}\",name=\"broken\"}}"
        );
        let bound = HOLD + 2 * INTERVAL + Duration::from_secs(1);
        let fired = prom.wait_query(&firing, bound, |s| !s.is_empty()).await;
        let alert = prom.query(&firing).await;
        eprintln!(
            "IrisModelDegraded firing {:.1} s after its series appeared (for {} s + 2 x {} s evaluation = {} s): {:?}",
            (fired - series_seen).as_secs_f64(),
            HOLD.as_secs(),
            INTERVAL.as_secs(),
            (HOLD + 2 * INTERVAL).as_secs(),
            alert.first().map(|(l, _)| l.clone())
        );
        assert!(
            alert.iter().all(|(l, _)| !label(l, "reason").is_empty() && label(l, "severity") == "warning"),
            "the alert carries the reason and severity: {alert:?}"
        );
        // The healthy model does not fire it.
        let quiet = prom
            .query(&format!("ALERTS{{alertname=\"IrisModelDegraded\",namespace=\"{ns}\",name=\"iris\"}}"))
            .await;
        assert!(quiet.is_empty(), "the Ready model has no Degraded alert: {quiet:?}");
    })
    .await;
}
