//! `/metrics` at scrape time: a snapshot of every series with requests, encoded with
//! prometheus-client, one function per group of metrics.

use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::labels::{grpc_code_label, RouteId, CODES, N_CODES, N_GRPC_CODES};
use super::{Metrics, Reloaded, BUCKETS_NS, N_BUCKETS};
use crate::proto::GrpcMethod;

/// One series with requests: its labels, per-bucket counts and the sum in ns.
struct Snapshot {
    labels: [(&'static str, &'static str); 2],
    buckets: [u64; N_BUCKETS],
    sum_ns: u64,
}

/// The names and help texts of one transport's request counter and latency histogram.
struct Family {
    requests: &'static str,
    requests_help: &'static str,
    duration: &'static str,
    duration_help: &'static str,
}

const HTTP: Family = Family {
    requests: iris_model::contract::HTTP_REQUESTS,
    requests_help: "HTTP requests by route template and status code",
    duration: iris_model::contract::HTTP_DURATION,
    duration_help: "Time from routing to the response head, by route template and status code",
};

const GRPC: Family = Family {
    requests: iris_model::contract::GRPC_REQUESTS,
    requests_help: "gRPC calls by method and status code",
    duration: iris_model::contract::GRPC_DURATION,
    duration_help:
        "Time from the request head to the response head, by gRPC method and status code",
};

impl Collector for Metrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        encode_requests(&mut encoder, &HTTP, &self.http_snapshots())?;
        encode_requests(&mut encoder, &GRPC, &self.grpc_snapshots())?;
        self.encode_counters(&mut encoder)?;
        self.encode_model(&mut encoder)
    }
}

impl Metrics {
    /// The HTTP series with at least one request, labelled by route and code.
    fn http_snapshots(&self) -> Vec<Snapshot> {
        RouteId::ALL
            .iter()
            .flat_map(|&r| (0..N_CODES).map(move |c| (r, c)))
            .filter_map(|(r, c)| {
                let (buckets, sum_ns) = self.series[r as usize * N_CODES + c].snapshot();
                (buckets.iter().sum::<u64>() > 0).then_some(Snapshot {
                    labels: [("route", r.label()), ("code", CODES[c].1)],
                    buckets,
                    sum_ns,
                })
            })
            .collect()
    }

    /// The gRPC series with at least one call, labelled by method and code.
    fn grpc_snapshots(&self) -> Vec<Snapshot> {
        GrpcMethod::ALL
            .iter()
            .flat_map(|&m| (0..N_GRPC_CODES).map(move |c| (m, c)))
            .filter_map(|(m, c)| {
                let (buckets, sum_ns) = self.grpc_series[m as usize * N_GRPC_CODES + c].snapshot();
                (buckets.iter().sum::<u64>() > 0).then_some(Snapshot {
                    labels: [("method", m.label()), ("code", grpc_code_label(c))],
                    buckets,
                    sum_ns,
                })
            })
            .collect()
    }

    /// Predictions by class, failed TLS handshakes, and reloads by file and result.
    fn encode_counters(&self, encoder: &mut DescriptorEncoder) -> std::fmt::Result {
        let mut predictions = encoder.encode_descriptor(
            "model_server_predictions",
            "Predictions by predicted class",
            None,
            MetricType::Counter,
        )?;
        for (label, counter) in self.info.class_labels.iter().zip(&self.predictions) {
            let labels = [("class", label.as_str())];
            ConstCounter::new(counter.load(Relaxed)).encode(predictions.encode_family(&labels)?)?;
        }

        let failures = encoder.encode_descriptor(
            "model_server_tls_handshake_failures",
            "TLS handshakes that failed or timed out (plain HTTP on a TLS port, untrusted \
             certificate, no common protocol); 0 without --tls-cert",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(self.tls_handshake_failures.load(Relaxed)).encode(failures)?;
        let mut reloads = encoder.encode_descriptor(
            "model_server_reloads",
            "Re-reads of the certificate and tokens files that changed what is served \
             (result=changed) or were refused, keeping the old one (result=error)",
            None,
            MetricType::Counter,
        )?;
        for file in [Reloaded::Certificate, Reloaded::Tokens] {
            for (i, result) in ["changed", "error"].into_iter().enumerate() {
                let labels = [("file", file.label()), ("result", result)];
                ConstCounter::new(self.reloads[file as usize][i].load(Relaxed))
                    .encode(reloads.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }

    /// The served model (info, held-out accuracy) and readiness.
    fn encode_model(&self, encoder: &mut DescriptorEncoder) -> std::fmt::Result {
        let i = &self.info;
        let mut info = encoder.encode_descriptor(
            "model_server_model_info",
            "The served model (value is always 1)",
            None,
            MetricType::Gauge,
        )?;
        let labels = [
            ("model", i.model.as_str()),
            ("version", i.version.as_str()),
            ("digest", i.digest.as_str()),
            ("task", i.task),
            ("positive_class", i.positive_class.as_str()),
            ("source", i.source.as_str()),
        ];
        ConstGauge::new(1i64).encode(info.encode_family(&labels)?)?;

        let accuracy = encoder.encode_descriptor(
            "model_server_model_held_out_accuracy",
            "Held-out accuracy recorded in the model artifact",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i.accuracy).encode(accuracy)?;

        let ready = encoder.encode_descriptor(
            "model_server_ready",
            "1 while the server accepts traffic, 0 once shutdown has begun",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::from(self.ready.load(Relaxed))).encode(ready)
    }
}

/// One transport's request counter and latency histogram, a sample per series.
fn encode_requests(
    encoder: &mut DescriptorEncoder,
    family: &Family,
    snapshots: &[Snapshot],
) -> std::fmt::Result {
    let mut requests = encoder.encode_descriptor(
        family.requests,
        family.requests_help,
        None,
        MetricType::Counter,
    )?;
    for s in snapshots {
        let count: u64 = s.buckets.iter().sum();
        ConstCounter::new(count).encode(requests.encode_family(&s.labels)?)?;
    }
    let mut latency = encoder.encode_descriptor(
        family.duration,
        family.duration_help,
        None,
        MetricType::Histogram,
    )?;
    for s in snapshots {
        latency
            .encode_family(&s.labels)?
            .encode_histogram::<NoLabelSet>(
                s.sum_ns as f64 / 1e9,
                s.buckets.iter().sum(),
                &bucket_bounds(&s.buckets),
                None,
            )?;
    }
    Ok(())
}

/// Per-bucket counts with their upper bounds in seconds; the encoder accumulates them into
/// `le` buckets.
fn bucket_bounds(buckets: &[u64; N_BUCKETS]) -> Vec<(f64, u64)> {
    buckets
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let le = BUCKETS_NS
                .get(i)
                .map_or(f64::INFINITY, |ns| *ns as f64 / 1e9);
            (le, *n)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use prometheus_client::registry::Registry;

    use std::time::Instant;

    use axum::http::StatusCode;

    use super::*;
    use crate::metrics::ModelInfo;

    /// charts/iris-operator/files/metrics.txt, which the alerts and the dashboard are checked
    /// against, lists exactly the sample names /metrics has once every series was touched.
    #[test]
    fn metrics_list_of_the_chart_is_what_the_server_exports() {
        let info = ModelInfo {
            model: "iris".into(),
            version: "v".into(),
            digest: "d".into(),
            task: "binary",
            positive_class: String::new(),
            source: "builtin".into(),
            accuracy: 1.0,
            class_labels: vec!["setosa".into()],
        };
        let metrics = Arc::new(Metrics::new(info, Arc::new(AtomicBool::new(true))));
        metrics.observe(RouteId::PredictIris, StatusCode::OK, Instant::now());
        metrics.observe_grpc(GrpcMethod::ALL[0], 0, Instant::now());
        let mut registry = Registry::default();
        registry.register_collector(Box::new(metrics));
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
            .expect("encodes");
        let exported: BTreeSet<String> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.split(['{', ' ']).next())
            .map(str::to_string)
            .collect();
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../charts/iris-operator/files/metrics.txt"
        );
        let listed: BTreeSet<String> = std::fs::read_to_string(path)
            .expect("metrics.txt")
            .lines()
            .filter(|l| l.starts_with("model_server_"))
            // The drift gauges have their own collector (drift::tests checks them).
            .filter(|l| !l.starts_with("model_server_input_drift_"))
            .map(str::to_string)
            .collect();
        assert_eq!(
            exported, listed,
            "update {path} with the server's metric names"
        );
    }
}
