//! Entry points for the fuzz targets of `fuzz/` (feature `fuzzing`, off in every build the
//! project ships): not an API. Each takes arbitrary bytes as a pod's `/metrics` page and runs
//! it through what the operator does with one, asserting what must hold of any page.

use crate::crd::{AutoscalingSpec, CanaryAnalysis};
use crate::rate::{PodCount, Sample, Scalers};
use crate::reconcile::analysis::{self, Traffic, Verdict};
use crate::scrape::text;

/// The page as the scraper hands it over: UTF-8 (a page that is not is a failed scrape; the
/// lossy conversion keeps the fuzzer's other bytes in play).
fn page(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// The text parser alone: every sample it yields has a name and at most its bounds.
pub fn parse(data: &[u8]) {
    let page = page(data);
    let mut n = 0usize;
    let outcome = text::samples(&page, |sample| {
        assert!(!sample.name.is_empty());
        n += 1;
        Ok::<_, text::Unusable>(())
    });
    assert!(n <= text::MAX_SAMPLES, "{n} samples, {outcome:?}");
}

/// The canary analysis: the page's traffic (or why not), summed with a good pod's, judged.
pub fn analysis(data: &[u8]) {
    let page = page(data);
    let thresholds = CanaryAnalysis {
        max_error_rate: 0.01,
        max_p99_latency_ms: 500,
        min_requests: 1,
    };
    let traffic = match Traffic::read(&page) {
        Ok(traffic) => {
            assert!(traffic.errors <= traffic.requests);
            if let Some(p99) = traffic.p99_ms() {
                assert!(!p99.is_nan(), "p99 NaN");
            }
            traffic
        }
        Err(why) => {
            assert!(why.starts_with("metrics page unusable: "), "{why}");
            Traffic::unusable(format!("pod fuzz: {why}"))
        }
    };
    let good = Traffic::default();
    let canary = Traffic::sum([&traffic, &good]);
    let (verdict, message, figures) = analysis::judge(&canary, &traffic, &thresholds);
    assert!(!message.is_empty());
    assert_eq!(figures.verdict, verdict.as_str());
    assert!(figures.canary_requests >= 0 && figures.stable_requests >= 0);
    if traffic.unusable.is_some() {
        assert_eq!(verdict, Verdict::Hold, "{message}");
    }
}

/// The request-rate scaler: a good sample, then this page's, then a good one again. The
/// count is always within the bounds, and an unusable page decides nothing.
pub fn scaler(data: &[u8]) {
    let page = page(data);
    let spec = AutoscalingSpec {
        min_replicas: 1,
        max_replicas: 10,
        target_cpu_utilization_percentage: 70,
        scale_down_stabilization_seconds: Some(0),
        idle_seconds: None,
        target_requests_per_second: Some(10),
    };
    let scalers = Scalers::default();
    let sample = |now: f64, requests: Result<u64, String>| {
        let (counts, unusable) = match requests {
            Ok(requests) => (
                vec![PodCount {
                    pod: "p1".to_string(),
                    requests,
                    started: Some(0.0),
                }],
                None,
            ),
            Err(why) => (Vec::new(), Some(why)),
        };
        Sample {
            now,
            counts,
            unreadable: None,
            unusable,
            unscraped: 0,
            current: 3,
        }
    };
    scalers.sample("ns/fuzz", sample(0.0, Ok(0)), &spec, 10.0);
    let read = Traffic::read(&page).map(|t| t.requests);
    let unusable = read.is_err();
    let facts = scalers
        .sample("ns/fuzz", sample(10.0, read), &spec, 10.0)
        .expect("a second sample decides");
    assert!(!facts.rate.is_nan());
    if unusable {
        assert_eq!(facts.desired, facts.current);
        assert!(facts.unreadable.is_some());
    } else {
        assert!((1..=10).contains(&facts.desired), "{facts:?}");
    }
    let next = scalers
        .sample("ns/fuzz", sample(20.0, Ok(u64::MAX)), &spec, 10.0)
        .expect("a third sample decides");
    assert!((1..=10).contains(&next.desired), "{next:?}");
}

/// All of them.
pub fn metrics_page(data: &[u8]) {
    parse(data);
    analysis(data);
    scaler(data);
}
