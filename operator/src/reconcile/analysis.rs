//! The canary analysis: the model servers' own `/metrics` (Prometheus text), summed over the
//! canary pods and over the stable pods, and judged against the IrisModel's thresholds. Pure:
//! the scrape itself is [`crate::scrape`].
//!
//! Only prediction requests count (the tutorial route, KServe v1 predict, OIP v2 infer over
//! REST, ModelInfer over gRPC): probes and scrapes would otherwise dilute the error rate and
//! the latency. A failure is a 5xx over HTTP, or a gRPC status that is the server's fault.

use crate::crd::{AnalysisStatus, CanaryAnalysis};

const HTTP_REQUESTS: &str = "model_server_http_requests_total";
const HTTP_BUCKETS: &str = "model_server_http_request_duration_seconds_bucket";
const GRPC_REQUESTS: &str = "model_server_grpc_requests_total";
const GRPC_BUCKETS: &str = "model_server_grpc_request_duration_seconds_bucket";

/// The HTTP route templates that serve predictions.
const PREDICTION_ROUTES: [&str; 4] = [
    "/predict_iris",
    "/v1/models/{name}:predict",
    "/v2/models/{name}/infer",
    "/v2/models/{name}/versions/{version}/infer",
];
/// The gRPC method that serves predictions.
const PREDICTION_METHOD: &str = "ModelInfer";
/// gRPC codes that are the server's fault (the others are the client's, or success).
const GRPC_SERVER_ERRORS: [&str; 5] = [
    "UNKNOWN",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "DEADLINE_EXCEEDED",
];

/// Prediction traffic of one or more pods: counts, and the latency histogram as cumulative
/// counts by upper bound (seconds).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Traffic {
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    /// (le, cumulative count), sorted by le; +Inf last.
    buckets: Vec<(f64, u64)>,
}

impl Traffic {
    /// The prediction traffic in one pod's `/metrics` text. Lines it does not know are
    /// skipped, so a newer server with more series still parses.
    pub(crate) fn parse(text: &str) -> Traffic {
        let mut traffic = Traffic::default();
        for line in text.lines() {
            let Some((name, labels, value)) = sample(line) else {
                continue;
            };
            let label = |key: &str| label(labels, key);
            let prediction = match name {
                HTTP_REQUESTS | HTTP_BUCKETS => {
                    label("route").is_some_and(|route| PREDICTION_ROUTES.contains(&route.as_str()))
                }
                GRPC_REQUESTS | GRPC_BUCKETS => {
                    label("method").as_deref() == Some(PREDICTION_METHOD)
                }
                _ => false,
            };
            if !prediction {
                continue;
            }
            let count = value.max(0.0) as u64;
            match name {
                HTTP_REQUESTS | GRPC_REQUESTS => {
                    traffic.requests += count;
                    let code = label("code").unwrap_or_default();
                    let failed = if name == HTTP_REQUESTS {
                        code.starts_with('5')
                    } else {
                        GRPC_SERVER_ERRORS.contains(&code.as_str())
                    };
                    if failed {
                        traffic.errors += count;
                    }
                }
                _ => {
                    let le = label("le").and_then(|le| parse_float(&le));
                    if let Some(le) = le {
                        traffic.add_bucket(le, count);
                    }
                }
            }
        }
        traffic
    }

    fn add_bucket(&mut self, le: f64, count: u64) {
        match self.buckets.iter_mut().find(|(bound, _)| *bound == le) {
            Some((_, total)) => *total += count,
            None => {
                self.buckets.push((le, count));
                self.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            }
        }
    }

    /// The traffic of several pods together.
    pub(crate) fn sum<'a>(all: impl IntoIterator<Item = &'a Traffic>) -> Traffic {
        let mut total = Traffic::default();
        for traffic in all {
            total.requests += traffic.requests;
            total.errors += traffic.errors;
            for (le, count) in &traffic.buckets {
                total.add_bucket(*le, *count);
            }
        }
        total
    }

    /// Share of the requests that failed; 0 with no requests.
    pub(crate) fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }

    /// The 99th percentile in milliseconds, interpolated within its bucket as Prometheus'
    /// `histogram_quantile` does; None with no observations. A percentile in the +Inf bucket
    /// is the largest finite bound (the histogram knows no more).
    pub(crate) fn p99_ms(&self) -> Option<f64> {
        quantile(&self.buckets, 0.99).map(|seconds| seconds * 1000.0)
    }
}

fn quantile(buckets: &[(f64, u64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut lower = (0.0, 0u64);
    for &(le, count) in buckets {
        if count as f64 >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let in_bucket = (count - lower.1) as f64;
            if in_bucket == 0.0 {
                return Some(le);
            }
            return Some(lower.0 + (le - lower.0) * (rank - lower.1 as f64) / in_bucket);
        }
        lower = (le, count);
    }
    Some(lower.0)
}

/// How a step's analysis came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The figures meet every threshold with enough requests.
    Pass,
    /// Not enough requests yet to judge.
    Hold,
    /// A figure is over its threshold.
    Fail,
}

impl Verdict {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "Pass",
            Verdict::Hold => "Hold",
            Verdict::Fail => "Fail",
        }
    }
}

/// The canary's figures against the thresholds: the verdict, a message that names each figure
/// with its threshold, and the figures for the status.
pub(crate) fn judge(
    canary: &Traffic,
    stable: &Traffic,
    thresholds: &CanaryAnalysis,
) -> (Verdict, String, AnalysisStatus) {
    let error_rate = canary.error_rate();
    let p99 = canary.p99_ms();
    let figures = AnalysisStatus {
        verdict: String::new(),
        canary_requests: canary.requests as i64,
        canary_error_rate: round(error_rate, 4),
        canary_p99_ms: p99.map(|p| round(p, 1)),
        stable_requests: stable.requests as i64,
        stable_error_rate: round(stable.error_rate(), 4),
        stable_p99_ms: stable.p99_ms().map(|p| round(p, 1)),
    };
    let p99_text = p99.map_or("n/a".to_string(), |p| format!("{p:.1} ms"));
    let (verdict, message) = if (canary.requests as i64) < thresholds.min_requests {
        (
            Verdict::Hold,
            format!(
                "canary served {} of the {} requests needed to judge it",
                canary.requests, thresholds.min_requests
            ),
        )
    } else if error_rate > thresholds.max_error_rate {
        (
            Verdict::Fail,
            format!(
                "canary error rate {:.4} > maxErrorRate {} ({} of {} requests failed)",
                error_rate, thresholds.max_error_rate, canary.errors, canary.requests
            ),
        )
    } else if p99.is_some_and(|p| p > thresholds.max_p99_latency_ms as f64) {
        (
            Verdict::Fail,
            format!(
                "canary p99 latency {p_99} > maxP99LatencyMs {} ms over {} requests",
                thresholds.max_p99_latency_ms,
                canary.requests,
                p_99 = p99_text
            ),
        )
    } else {
        (
            Verdict::Pass,
            format!(
                "canary error rate {:.4} <= {}, p99 {} <= {} ms over {} requests",
                error_rate,
                thresholds.max_error_rate,
                p99_text,
                thresholds.max_p99_latency_ms,
                canary.requests
            ),
        )
    };
    let figures = AnalysisStatus {
        verdict: verdict.as_str().to_string(),
        ..figures
    };
    (verdict, message, figures)
}

fn round(value: f64, digits: i32) -> f64 {
    let factor = 10f64.powi(digits);
    (value * factor).round() / factor
}

/// `name{labels} value` (timestamp ignored), or None for comments, blanks and lines that are
/// not a sample.
fn sample(line: &str) -> Option<(&str, &str, f64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, rest) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}')?;
            (&line[..open], (&line[open + 1..close], &line[close + 1..]))
        }
        None => {
            let space = line.find(' ')?;
            (&line[..space], ("", &line[space..]))
        }
    };
    let (labels, value) = rest;
    let value = parse_float(value.split_whitespace().next()?)?;
    Some((name, labels, value))
}

/// The value of a label in `a="x",b="y"` (escapes \" \\ \n undone).
fn label(labels: &str, key: &str) -> Option<String> {
    let mut rest = labels;
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        let eq = rest.find('=')?;
        let name = rest[..eq].trim();
        let after = rest[eq + 1..].strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        if name == key {
            return Some(value);
        }
        rest = &after[end + 1..];
    }
}

fn parse_float(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model server's /metrics after some traffic (the shape prometheus-client writes).
    const METRICS: &str = r#"# HELP model_server_http_requests HTTP requests by route template and status code
# TYPE model_server_http_requests counter
model_server_http_requests_total{route="/predict_iris",code="200"} 90
model_server_http_requests_total{route="/predict_iris",code="400"} 5
model_server_http_requests_total{route="/v2/models/{name}/infer",code="500"} 5
model_server_http_requests_total{route="/v2/health/ready",code="200"} 1000
# TYPE model_server_http_request_duration_seconds histogram
model_server_http_request_duration_seconds_bucket{route="/predict_iris",code="200",le="0.001"} 80
model_server_http_request_duration_seconds_bucket{route="/predict_iris",code="200",le="0.01"} 90
model_server_http_request_duration_seconds_bucket{route="/predict_iris",code="200",le="+Inf"} 90
model_server_http_request_duration_seconds_bucket{route="/predict_iris",code="400",le="0.001"} 5
model_server_http_request_duration_seconds_bucket{route="/predict_iris",code="400",le="0.01"} 5
model_server_http_request_duration_seconds_bucket{route="/predict_iris",code="400",le="+Inf"} 5
model_server_http_request_duration_seconds_bucket{route="/v2/models/{name}/infer",code="500",le="0.001"} 0
model_server_http_request_duration_seconds_bucket{route="/v2/models/{name}/infer",code="500",le="0.01"} 5
model_server_http_request_duration_seconds_bucket{route="/v2/models/{name}/infer",code="500",le="+Inf"} 5
model_server_http_request_duration_seconds_bucket{route="/v2/health/ready",code="200",le="+Inf"} 1000
model_server_http_request_duration_seconds_sum{route="/predict_iris",code="200"} 0.05
model_server_grpc_requests_total{method="ModelInfer",code="OK"} 8
model_server_grpc_requests_total{method="ModelInfer",code="INTERNAL"} 2
model_server_grpc_requests_total{method="ServerLive",code="OK"} 50
model_server_grpc_request_duration_seconds_bucket{method="ModelInfer",code="OK",le="0.001"} 8
model_server_grpc_request_duration_seconds_bucket{method="ModelInfer",code="OK",le="0.01"} 8
model_server_grpc_request_duration_seconds_bucket{method="ModelInfer",code="OK",le="+Inf"} 8
model_server_grpc_request_duration_seconds_bucket{method="ModelInfer",code="INTERNAL",le="0.001"} 2
model_server_grpc_request_duration_seconds_bucket{method="ModelInfer",code="INTERNAL",le="0.01"} 2
model_server_grpc_request_duration_seconds_bucket{method="ModelInfer",code="INTERNAL",le="+Inf"} 2
model_server_model_info{model="iris",digest="sha256:ab"} 1
# EOF
"#;

    #[test]
    fn only_prediction_requests_count_and_only_server_errors_fail() {
        let traffic = Traffic::parse(METRICS);
        // 90 + 5 + 5 over HTTP, 8 + 2 over gRPC; probes and ServerLive left out.
        assert_eq!(traffic.requests, 110);
        // The 500s and the INTERNALs; a 400 is the client's.
        assert_eq!(traffic.errors, 7);
        assert_eq!(
            traffic.buckets,
            vec![(0.001, 95), (0.01, 110), (f64::INFINITY, 110)]
        );
    }

    #[test]
    fn p99_interpolates_within_its_bucket_like_histogram_quantile() {
        let traffic = Traffic::parse(METRICS);
        // rank 108.9 of 110 lies in (0.001, 0.01], which holds 95..110.
        let expected = (0.001 + 0.009 * (108.9 - 95.0) / 15.0) * 1000.0;
        let p99 = traffic.p99_ms().expect("observations");
        assert!((p99 - expected).abs() < 1e-9, "{p99} vs {expected}");
        assert_eq!(Traffic::default().p99_ms(), None);
        // Everything beyond the last finite bound: that bound is all the histogram knows.
        let slow = Traffic::parse(
            "model_server_http_request_duration_seconds_bucket{route=\"/predict_iris\",code=\"200\",le=\"1\"} 0\n\
             model_server_http_request_duration_seconds_bucket{route=\"/predict_iris\",code=\"200\",le=\"+Inf\"} 9\n",
        );
        assert_eq!(slow.p99_ms(), Some(1000.0));
    }

    #[test]
    fn pods_add_up() {
        let one = Traffic::parse(METRICS);
        let both = Traffic::sum([&one, &one]);
        assert_eq!((both.requests, both.errors), (220, 14));
        assert_eq!(both.buckets[1], (0.01, 220));
    }

    #[test]
    fn verdicts_name_the_figure_and_the_threshold() {
        let thresholds = CanaryAnalysis {
            max_error_rate: 0.01,
            max_p99_latency_ms: 500,
            min_requests: 20,
        };
        let stable = Traffic::default();
        let traffic = |requests, errors, le: f64| Traffic {
            requests,
            errors,
            buckets: vec![(le, requests), (f64::INFINITY, requests)],
        };
        let (verdict, message, _) = judge(&traffic(10, 0, 0.001), &stable, &thresholds);
        assert_eq!(verdict, Verdict::Hold, "{message}");
        assert!(message.contains("10 of the 20"), "{message}");

        let (verdict, message, figures) = judge(&traffic(100, 5, 0.001), &stable, &thresholds);
        assert_eq!(verdict, Verdict::Fail);
        assert!(message.contains("0.0500 > maxErrorRate 0.01"), "{message}");
        assert_eq!(figures.canary_error_rate, 0.05);
        assert_eq!(figures.verdict, "Fail");

        let (verdict, message, figures) = judge(&traffic(100, 0, 2.0), &stable, &thresholds);
        assert_eq!(verdict, Verdict::Fail);
        assert!(message.contains("> maxP99LatencyMs 500 ms"), "{message}");
        assert!(figures.canary_p99_ms.expect("p99") > 1000.0);

        let (verdict, message, _) = judge(&traffic(100, 1, 0.01), &stable, &thresholds);
        assert_eq!(verdict, Verdict::Pass, "{message}");
    }

    #[test]
    fn labels_with_escapes_and_odd_lines_parse_or_are_skipped() {
        assert_eq!(
            label(r#"a="x\"y",route="/predict_iris""#, "route").as_deref(),
            Some("/predict_iris")
        );
        assert_eq!(label(r#"a="x\"y""#, "a").as_deref(), Some("x\"y"));
        assert_eq!(sample("garbage"), None);
        assert_eq!(sample("up 1"), Some(("up", "", 1.0)));
        assert_eq!(
            Traffic::parse("{{{\n}}} x\nmodel_server_http_requests_total{ 3"),
            Traffic::default()
        );
    }
}
