//! The canary analysis: the model servers' own `/metrics` (Prometheus text), summed over the
//! canary pods and over the stable pods, and judged against the IrisModel's thresholds. Pure:
//! the scrape itself is [`crate::scrape`].
//!
//! Only prediction requests count (the tutorial route, KServe v1 predict, OIP v2 infer over
//! REST, ModelInfer over gRPC): probes and scrapes would otherwise dilute the error rate and
//! the latency. A failure is a 5xx over HTTP, or a gRPC status that is the server's fault.

use std::collections::BTreeMap;

use crate::crd::{AnalysisStatus, CanaryAnalysis};
use crate::scrape::text;

// The model server's names, from the one contract both sides build against.
use iris_model::contract::{
    GRPC_DURATION_BUCKET as GRPC_BUCKETS, GRPC_REQUESTS_TOTAL as GRPC_REQUESTS,
    HTTP_DURATION_BUCKET as HTTP_BUCKETS, HTTP_REQUESTS_TOTAL as HTTP_REQUESTS,
    PAYLOAD_LOG_FAILING, PREDICTION_METHOD, PREDICTION_ROUTES,
};
/// gRPC codes that are the server's fault (the others are the client's, or success).
const GRPC_SERVER_ERRORS: [&str; 5] = [
    "UNKNOWN",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "DEADLINE_EXCEEDED",
];

/// Largest counter value taken (2^53: beyond it an f64 no longer holds every integer, and a
/// model server that served this many requests is not one).
const MAX_COUNT: f64 = 9_007_199_254_740_992.0;

/// Prediction traffic of one or more pods: counts, and the latency histogram as cumulative
/// counts by upper bound (seconds).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Traffic {
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    /// (le, cumulative count), sorted by le; +Inf last.
    buckets: Vec<(f64, u64)>,
    /// Why a pod's page summed in was unusable ("pod x: metrics page unusable: ..."): its
    /// figures are left out, and a canary with one is not judged.
    pub(crate) unusable: Option<String>,
    /// Payload-log events given up in a row since the sink last accepted one (the most of
    /// the pods summed).
    pub(crate) sink_failing: u64,
}

/// A histogram bound as a map key: ordered by `total_cmp`, -0 as 0 (never NaN: refused
/// before).
#[derive(Clone, Copy, Debug)]
struct Le(f64);

impl PartialEq for Le {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Le {}

impl PartialOrd for Le {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Le {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl Le {
    fn new(le: f64) -> Le {
        Le(if le == 0.0 { 0.0 } else { le })
    }
}

impl Traffic {
    /// The prediction traffic in one pod's `/metrics` text, or why the page is unusable
    /// ("metrics page unusable: counter model_server_http_requests_total is NaN"). Lines it
    /// does not know are skipped, so a newer server with more series still parses; a
    /// prediction series whose value is NaN, infinite, negative or beyond 2^53, a bucket
    /// without a numeric `le` (or with NaN or -Inf), a latency histogram whose cumulative
    /// counts decrease, and a page over the bounds of [`text`] are unusable. One pass over the
    /// page; the buckets are gathered in a map and sorted once.
    pub(crate) fn read(page: &str) -> Result<Traffic, String> {
        Self::read_page(page).map_err(|why| format!("metrics page unusable: {why}"))
    }

    fn read_page(page: &str) -> Result<Traffic, String> {
        let mut traffic = Traffic::default();
        let mut buckets: BTreeMap<Le, u64> = BTreeMap::new();
        text::samples(page, |sample| {
            let name = sample.name;
            if name == PAYLOAD_LOG_FAILING {
                traffic.sink_failing = counter(name, sample.value)?;
                return Ok(());
            }
            let prediction = match name {
                HTTP_REQUESTS | HTTP_BUCKETS => sample
                    .label("route")
                    .is_some_and(|route| PREDICTION_ROUTES.contains(&route)),
                GRPC_REQUESTS | GRPC_BUCKETS => sample.label("method") == Some(PREDICTION_METHOD),
                _ => false,
            };
            if !prediction {
                return Ok(());
            }
            let count = counter(name, sample.value)?;
            let overflow = || format!("the counters of {name} add up past 2^64");
            match name {
                HTTP_REQUESTS | GRPC_REQUESTS => {
                    traffic.requests = traffic.requests.checked_add(count).ok_or_else(overflow)?;
                    let code = sample.label("code").unwrap_or_default();
                    let failed = if name == HTTP_REQUESTS {
                        code.starts_with('5')
                    } else {
                        GRPC_SERVER_ERRORS.contains(&code)
                    };
                    if failed {
                        traffic.errors = traffic.errors.checked_add(count).ok_or_else(overflow)?;
                    }
                }
                _ => {
                    let le = sample
                        .label("le")
                        .and_then(text::parse_float)
                        .ok_or_else(|| format!("a bucket of {name} has no numeric le"))?;
                    if le.is_nan() || le == f64::NEG_INFINITY {
                        return Err(format!("a bucket of {name} has le {}", number(le)));
                    }
                    let total = buckets.entry(Le::new(le)).or_default();
                    *total = total.checked_add(count).ok_or_else(overflow)?;
                }
            }
            Ok(())
        })?;
        let mut below: Option<(f64, u64)> = None;
        for (&Le(le), &count) in &buckets {
            if let Some((lower, lower_count)) = below.filter(|(_, c)| count < *c) {
                return Err(format!(
                    "the latency histogram decreases: {count} at le {le} after {lower_count} at \
                     le {lower}"
                ));
            }
            below = Some((le, count));
        }
        traffic.buckets = buckets.into_iter().map(|(Le(le), c)| (le, c)).collect();
        Ok(traffic)
    }

    /// The traffic of a page known to be good, or with none of its figures and why not.
    #[cfg(test)]
    pub(crate) fn parse(page: &str) -> Traffic {
        Traffic::read(page).unwrap_or_else(Traffic::unusable)
    }

    /// No figures: a page that could not be used, and why.
    pub(crate) fn unusable(why: String) -> Traffic {
        Traffic {
            unusable: Some(why),
            ..Traffic::default()
        }
    }

    /// The traffic of several pods together (the first unusable page's reason kept).
    pub(crate) fn sum<'a>(all: impl IntoIterator<Item = &'a Traffic>) -> Traffic {
        let mut total = Traffic::default();
        let mut buckets: BTreeMap<Le, u64> = BTreeMap::new();
        for traffic in all {
            total.requests = total.requests.saturating_add(traffic.requests);
            total.errors = total.errors.saturating_add(traffic.errors);
            for &(le, count) in &traffic.buckets {
                let sum = buckets.entry(Le::new(le)).or_default();
                *sum = sum.saturating_add(count);
            }
            if total.unusable.is_none() {
                total.unusable.clone_from(&traffic.unusable);
            }
            total.sink_failing = total.sink_failing.max(traffic.sink_failing);
        }
        total.buckets = buckets.into_iter().map(|(Le(le), c)| (le, c)).collect();
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

/// A value as the text format writes it (NaN, +Inf, -Inf).
fn number(value: f64) -> String {
    match value {
        v if v.is_nan() => "NaN".to_string(),
        f64::INFINITY => "+Inf".to_string(),
        f64::NEG_INFINITY => "-Inf".to_string(),
        v => v.to_string(),
    }
}

/// A prediction counter (or bucket) as a count, or why it is not one.
fn counter(name: &str, value: f64) -> Result<u64, String> {
    if value.is_nan() {
        Err(format!("counter {name} is NaN"))
    } else if value.is_infinite() {
        Err(format!("counter {name} is {}", number(value)))
    } else if value < 0.0 {
        Err(format!("counter {name} is negative ({value})"))
    } else if value > MAX_COUNT {
        Err(format!("counter {name} is beyond 2^53 ({value:e})"))
    } else {
        Ok(value as u64)
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
            let in_bucket = count.saturating_sub(lower.1) as f64;
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
/// with its threshold, and the figures for the status. A canary pod's unusable page holds the
/// step, saying why (its figures are no evidence either way); a stable pod's is left out of
/// the stable figures, which the verdict does not use, and named.
pub(crate) fn judge(
    canary: &Traffic,
    stable: &Traffic,
    thresholds: &CanaryAnalysis,
) -> (Verdict, String, AnalysisStatus) {
    let error_rate = canary.error_rate();
    let p99 = canary.p99_ms();
    let figures = AnalysisStatus {
        verdict: String::new(),
        canary_requests: i64::try_from(canary.requests).unwrap_or(i64::MAX),
        canary_error_rate: round(error_rate, 4),
        canary_p99_ms: p99.map(|p| round(p, 1)),
        stable_requests: i64::try_from(stable.requests).unwrap_or(i64::MAX),
        stable_error_rate: round(stable.error_rate(), 4),
        stable_p99_ms: stable.p99_ms().map(|p| round(p, 1)),
    };
    let p99_text = p99.map_or("n/a".to_string(), |p| format!("{p:.1} ms"));
    let (verdict, message) = if let Some(why) = &canary.unusable {
        // Garbage is no evidence either way: the step neither advances nor rolls back.
        (Verdict::Hold, format!("canary not judged: {why}"))
    } else if figures.canary_requests < thresholds.min_requests {
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
    let message = match &stable.unusable {
        // The stable figures are for reading only: the canary is judged without them.
        Some(why) => format!("{message}; stable figures without {why}"),
        None => message,
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
            unusable: None,
            sink_failing: 0,
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
    fn labels_with_escapes_parse_and_odd_lines_make_the_page_unusable() {
        let escaped = Traffic::parse(
            "model_server_http_requests_total{a=\"x\\\"y}\",route=\"/predict_iris\",code=\"200\"} 4\n",
        );
        assert_eq!(escaped.requests, 4);
        let unusable = |page: &str| Traffic::parse(page).unusable;
        assert_eq!(
            unusable("garbage\nup 1\n").as_deref(),
            Some("metrics page unusable: line 1 is not a sample of the Prometheus text format")
        );
        assert!(unusable("up 1\n{{{\n}}} x\n").is_some_and(|u| u.contains("line 2")));
        assert_eq!(unusable("# a comment\n\nup 1\n"), None);
    }

    const OK_LINE: &str = "model_server_http_requests_total{route=\"/predict_iris\",code=\"200\"}";
    const BUCKET: &str =
        "model_server_http_request_duration_seconds_bucket{route=\"/predict_iris\",code=\"200\"";

    #[test]
    fn a_real_model_server_page_is_usable_under_the_strict_reader() {
        // Captured from `model-server serve` after one /predict_iris, one OIP v2 infer and a
        // 404: every line of it must read, or the strict reader would blind the operator.
        let page = include_str!("../scrape/testdata/model-server-metrics.txt");
        let traffic = Traffic::read(page).expect("our own page is usable");
        assert_eq!((traffic.requests, traffic.errors), (2, 0));
    }

    #[test]
    fn a_closing_brace_before_the_opening_one_is_unusable_not_a_panic() {
        // The line that crash-looped the operator (a slice with close < open).
        for page in ["}{", "}{\n", "a}{b 1\n", "}{ 1\n}{}{}{\n", "\u{e9}}{\u{e9}"] {
            assert_eq!(
                Traffic::read(page),
                Err(
                    "metrics page unusable: line 1 is not a sample of the Prometheus text format"
                        .to_string()
                ),
                "{page:?}"
            );
        }
        let mixed = Traffic::read(&format!("{OK_LINE} 7\n}}{{\n"));
        assert!(mixed.is_err_and(|e| e.contains("line 2")));
    }

    #[test]
    fn nan_negative_infinite_and_huge_counters_are_unusable_with_a_reason() {
        let cases = [
            ("NaN", "counter model_server_http_requests_total is NaN"),
            ("+Inf", "counter model_server_http_requests_total is +Inf"),
            ("-Inf", "counter model_server_http_requests_total is -Inf"),
            (
                "-3",
                "counter model_server_http_requests_total is negative (-3)",
            ),
            (
                "1e300",
                "counter model_server_http_requests_total is beyond 2^53",
            ),
        ];
        for (value, reason) in cases {
            let why = Traffic::read(&format!("{OK_LINE} {value}\n")).expect_err(value);
            assert!(why.starts_with("metrics page unusable: "), "{why}");
            assert!(why.contains(reason), "{value}: {why}");
        }
        // A NaN in a series the analysis does not read is no concern of it.
        assert_eq!(
            Traffic::read("process_cpu_seconds_total NaN\nup -1\n"),
            Ok(Traffic::default())
        );
        let why = Traffic::read(&format!("{BUCKET},le=\"0.1\"}} NaN\n")).expect_err("NaN bucket");
        assert!(
            why.contains("counter model_server_http_request_duration_seconds_bucket is NaN"),
            "{why}"
        );
        // Sums past 2^64 are refused, not wrapped.
        let why = Traffic::read(&format!("{OK_LINE} 9e15\n").repeat(3000)).expect_err("overflow");
        assert!(why.contains("add up past 2^64"), "{why}");
    }

    #[test]
    fn a_nan_or_missing_le_and_a_decreasing_histogram_are_unusable() {
        for (le, reason) in [
            ("NaN", "has le NaN"),
            ("-Inf", "has le -Inf"),
            ("fast", "has no numeric le"),
        ] {
            let why = Traffic::read(&format!("{BUCKET},le=\"{le}\"}} 1\n")).expect_err(le);
            assert!(why.contains(reason), "{le}: {why}");
        }
        let why = Traffic::read(&format!("{BUCKET}}} 1\n")).expect_err("no le");
        assert!(why.contains("has no numeric le"), "{why}");
        let decreasing = format!(
            "{BUCKET},le=\"0.001\"}} 8\n{BUCKET},le=\"0.01\"}} 5\n{BUCKET},le=\"+Inf\"}} 8\n"
        );
        let why = Traffic::read(&decreasing).expect_err("decreasing");
        assert_eq!(
            why,
            "metrics page unusable: the latency histogram decreases: 5 at le 0.01 after 8 at le \
             0.001"
        );
        // -0 and 0 are one bound.
        let zero = Traffic::read(&format!(
            "{BUCKET},le=\"-0\"}} 1\n{BUCKET},le=\"0\"}} 1\n{BUCKET},le=\"+Inf\"}} 2\n"
        ))
        .expect("usable");
        assert_eq!(zero.buckets, vec![(0.0, 2), (f64::INFINITY, 2)]);
    }

    #[test]
    fn a_hundred_thousand_buckets_are_read_in_one_pass() {
        // Distinct bounds up to the sample bound: each gathered once, sorted once.
        let n = text::MAX_SAMPLES;
        let mut page = String::new();
        for i in (0..n).rev() {
            page.push_str(&format!("{BUCKET},le=\"{}\"}} {}\n", i + 1, i + 1));
        }
        let traffic = Traffic::read(&page).expect("usable");
        assert_eq!(traffic.buckets.len(), n);
        assert_eq!(traffic.buckets[0], (1.0, 1));
        assert_eq!(traffic.buckets[n - 1], (n as f64, n as u64));
        // 100,000 of them: over the sample bound, the page is unusable (and said so).
        let mut page = String::new();
        for i in 0..100_000u64 {
            page.push_str(&format!("{BUCKET},le=\"{i}\"}} {i}\n"));
        }
        assert_eq!(
            Traffic::read(&page),
            Err("metrics page unusable: more than 10000 samples".to_string())
        );
    }

    #[test]
    fn a_good_page_gives_the_figures_it_gave_before() {
        // The figures of METRICS as the former parser read them (requests, errors, buckets,
        // p99), and the judgement of the canary on it.
        let traffic = Traffic::read(METRICS).expect("usable");
        assert_eq!((traffic.requests, traffic.errors), (110, 7));
        assert_eq!(
            traffic.buckets,
            vec![(0.001, 95), (0.01, 110), (f64::INFINITY, 110)]
        );
        assert_eq!(traffic.unusable, None);
        let thresholds = CanaryAnalysis {
            max_error_rate: 0.1,
            max_p99_latency_ms: 500,
            min_requests: 20,
        };
        let (verdict, message, figures) = judge(&traffic, &traffic, &thresholds);
        assert_eq!(verdict, Verdict::Pass);
        assert_eq!(
            message,
            "canary error rate 0.0636 <= 0.1, p99 9.3 ms <= 500 ms over 110 requests"
        );
        assert_eq!(figures.canary_p99_ms, Some(9.3));
        assert_eq!(figures.stable_requests, 110);
    }

    #[test]
    fn an_unusable_canary_page_holds_the_step_and_says_why() {
        let thresholds = CanaryAnalysis {
            max_error_rate: 0.01,
            max_p99_latency_ms: 500,
            min_requests: 20,
        };
        let good = Traffic::read(METRICS).expect("usable");
        let bad = Traffic::unusable(
            "pod iris-canary-1: metrics page unusable: counter x is NaN".to_string(),
        );
        // Even with a failing good pod beside it: garbage is neither a pass nor a failure.
        let canary = Traffic::sum([&good, &bad]);
        let (verdict, message, figures) = judge(&canary, &good, &thresholds);
        assert_eq!(verdict, Verdict::Hold);
        assert_eq!(
            message,
            "canary not judged: pod iris-canary-1: metrics page unusable: counter x is NaN"
        );
        assert_eq!(figures.verdict, "Hold");
        // A stable pod's garbage is named, and the canary judged without it.
        let stable = Traffic::sum([&good, &bad]);
        let (verdict, message, _) = judge(&good, &stable, &thresholds);
        assert_eq!(verdict, Verdict::Fail);
        assert!(
            message.ends_with("; stable figures without pod iris-canary-1: metrics page unusable: counter x is NaN"),
            "{message}"
        );
    }

    /// What must hold of any page, however hostile: no panic, the same answer twice, at most
    /// the bounds kept, a short reason naming no content of the page.
    fn survives(page: &str) {
        let first = Traffic::read(page);
        assert_eq!(first, Traffic::read(page), "deterministic");
        match &first {
            Ok(traffic) => {
                assert!(traffic.errors <= traffic.requests);
                assert!(traffic.buckets.len() <= text::MAX_SAMPLES);
                assert!(traffic
                    .buckets
                    .windows(2)
                    .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
                assert!(traffic.p99_ms().is_none_or(|p| !p.is_nan()));
            }
            Err(why) => {
                assert!(why.starts_with("metrics page unusable: "), "{why}");
                assert!(why.len() < 200, "{why}");
            }
        }
        let traffic = first.unwrap_or_else(Traffic::unusable);
        let thresholds = CanaryAnalysis {
            max_error_rate: 0.01,
            max_p99_latency_ms: 500,
            min_requests: 1,
        };
        let (verdict, _, _) = judge(&traffic, &traffic, &thresholds);
        if traffic.unusable.is_some() {
            assert_eq!(verdict, Verdict::Hold);
        }
    }

    /// A small deterministic generator (xorshift64*): the same pages on every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn hostile_pages_neither_panic_nor_run_away() {
        let mut rng = Rng(0x1215_2026);
        // Random bytes.
        for _ in 0..300 {
            let len = rng.below(4096);
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            survives(&String::from_utf8_lossy(&bytes));
        }
        // The real page with pieces of the grammar thrown in.
        let pieces = [
            "}{", "{", "}", "\"", "\\", "=", ",", "\n", " ", "NaN", "-Inf", "+Inf", "-1", "le=\"",
            "1e400", "\u{e9}", "#", "\t", "\r",
        ];
        for _ in 0..2000 {
            let mut page: Vec<char> = METRICS.chars().collect();
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(page.len() + 1);
                let piece = pieces[rng.below(pieces.len())];
                if rng.below(2) == 0 {
                    page.splice(at..at, piece.chars());
                } else {
                    let end = (at + rng.below(8)).min(page.len());
                    page.splice(at..end, piece.chars());
                }
            }
            survives(&page.into_iter().collect::<String>());
        }
        // The crash: `}{` alone, at either end, many times over.
        for page in ["}{", "}{\n", "\n}{", "}{ 1", &"}{".repeat(100_000)] {
            survives(page);
            assert!(Traffic::read(page).is_err_and(|e| e.contains("is not a sample")));
        }
        // 100,000 buckets of one bound (they merge) and of distinct bounds (over the bound).
        let one_bound = format!("{BUCKET},le=\"0.1\"}} 1\n").repeat(100_000);
        survives(&one_bound);
        let distinct: String = (0..100_000)
            .map(|i| format!("{BUCKET},le=\"{i}\"}} {i}\n"))
            .collect();
        survives(&distinct);
        // NaN everywhere.
        let nan = format!("{OK_LINE} NaN\n{BUCKET},le=\"NaN\"}} NaN\nNaN NaN\n");
        survives(&nan);
        // About 10 MiB built in memory (ten times what the scraper reads): one huge line,
        // an unclosed label value, a label value past the bound, many short samples.
        let ten_mib = 10 << 20;
        survives(&"x".repeat(ten_mib));
        survives(&format!("{BUCKET},le=\"{}", "9".repeat(ten_mib)));
        survives(&format!(
            "{OK_LINE} 1\na{{b=\"{}\"}} 1\n",
            "y".repeat(ten_mib)
        ));
        survives(&"a 1\n".repeat(ten_mib / 4));
        survives(&format!("{OK_LINE} 1\n").repeat(ten_mib / OK_LINE.len()));
    }
}
