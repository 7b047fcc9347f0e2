//! The request-rate series of the models the operator autoscales on their request rate, and
//! the rule that turns two samples into a replica count (the HorizontalPodAutoscaler's):
//! desired = ceil(rate / target), kept at the current count within a 10% tolerance, bounded by
//! min and max replicas; up at once, down only to the highest count recommended over the
//! scale-down stabilization window; to zero pods after the idle time when the model scales to
//! zero. Pure: no API, no clock of its own. The series lives in the operator's memory: after a
//! restart (or a change of leader) the first sample only starts a new series, and the count
//! stays where it is.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::crd::AutoscalingSpec;
/// Samples closer than this are not taken (a watch event right after a tick): the rate over
/// a fraction of a second is noise.
const MIN_SAMPLE_GAP_S: f64 = 2.0;
/// Within this ratio of the target the count stays (the HorizontalPodAutoscaler's tolerance).
const TOLERANCE: f64 = 0.1;
/// Series not sampled for this long belong to models that are gone or no longer autoscaled.
const FORGET_AFTER_S: f64 = 600.0;

/// One pod's prediction counter at a sample.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PodCount {
    /// The pod's uid: a pod replaced under the same name starts a new counter.
    pub(crate) pod: String,
    pub(crate) requests: u64,
    /// When the pod started (seconds): a pod that started after the previous sample counts
    /// all its requests.
    pub(crate) started: Option<f64>,
}

/// One look at a model's pods.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Sample {
    /// When (seconds).
    pub(crate) now: f64,
    /// The ready pods' counters that could be read.
    pub(crate) counts: Vec<PodCount>,
    /// Why a ready pod's counters could not be read (the last such reason).
    pub(crate) unreadable: Option<String>,
    /// Why a ready pod's page was unusable (NaN, negative, over the bounds...): the sample
    /// then decides nothing, and the series keeps its last good sample.
    pub(crate) unusable: Option<String>,
    /// Ready pods not scraped, beyond [`crate::scrape::MAX_PODS_PER_RECONCILE`]: the rate of
    /// the pods read is extrapolated to them.
    pub(crate) unscraped: usize,
    /// The Deployment's replica count.
    pub(crate) current: i32,
}

/// What the autoscaler saw and decided at its last sample, for the status.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Facts {
    /// Prediction requests per second over all the pods read (extrapolated to the ready pods
    /// beyond the scrape cap, if any).
    pub(crate) rate: f64,
    /// Ready pods whose counters were read.
    pub(crate) read: usize,
    /// Pods whose counters went into the rate (read now and at the previous sample, or
    /// started since).
    pub(crate) pods: usize,
    /// The Deployment's replica count before this decision.
    pub(crate) current: i32,
    /// The count written (after the bounds and the stabilization window).
    pub(crate) desired: i32,
    /// The count the rate alone asks for (may exceed maxReplicas).
    pub(crate) wanted: i32,
    /// Why no ready pod's counters could be read (the count then stays). With no pod read
    /// and no reason, no pod was ready.
    pub(crate) unreadable: Option<String>,
    /// The reason in `unreadable` is a pod's page that is no evidence (NaN, negative, not the
    /// text format...), not a scrape that failed: the model's own pods answer garbage.
    pub(crate) unusable: bool,
    /// Seconds since the last prediction request was seen (or the series started, or the
    /// model woke from zero pods).
    pub(crate) idle: f64,
    /// The model went from zero pods to some since the last sample (its activator woke it).
    pub(crate) woke: bool,
    /// Idle long enough for zero pods, but the activator is not ready: the count stays.
    pub(crate) waiting_for_activator: bool,
}

impl Facts {
    /// "24.5 requests/s over 2 pods against a target of 10/s per pod".
    pub(crate) fn rate_phrase(&self, target: i32) -> String {
        let pods = match self.pods {
            1 => "1 pod".to_string(),
            n => format!("{n} pods"),
        };
        format!(
            "{:.1} requests/s over {pods} against a target of {target}/s per pod",
            self.rate
        )
    }
}

/// The autoscaler's reading of a model: none yet (a first sample starts the series), or facts.
pub(crate) type Reading = Option<Facts>;

#[derive(Clone, Debug, Default)]
struct Series {
    at: f64,
    counts: HashMap<String, u64>,
    /// (time, bounded recommendation) over the scale-down window.
    recommendations: VecDeque<(f64, i32)>,
    last: Reading,
    /// When a request was last seen (or the series started, or the model woke).
    active_at: f64,
    /// The replica count at the last sample.
    current: i32,
}

/// The request-rate series of every model autoscaled on it, by `namespace/name`.
#[derive(Default)]
pub(crate) struct Scalers(Mutex<HashMap<String, Series>>);

impl Scalers {
    /// Takes a sample of a model's pods at `now` (seconds) and decides its replica count.
    pub(crate) fn sample(
        &self,
        key: &str,
        sample: Sample,
        spec: &AutoscalingSpec,
        target: f64,
    ) -> Reading {
        let Sample {
            now,
            counts,
            unreadable,
            unusable,
            unscraped,
            current,
        } = sample;
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|k, s| k == key || now - s.at < FORGET_AFTER_S);
        let Some(series) = all.get_mut(key) else {
            if unusable.is_none() {
                all.insert(key.to_string(), Series::start(now, &counts, current));
            }
            return None;
        };
        if now - series.at < MIN_SAMPLE_GAP_S {
            // The last reading, for the status, but deciding nothing: the count may have
            // changed since it was taken (the activator woke the model a moment after the
            // operator took it to zero), and a repeated decision would undo that.
            return series.last.clone().map(|f| Facts {
                current,
                desired: current,
                ..f
            });
        }
        let reading = match unusable {
            Some(why) => series.hold(now, why, current),
            None => series.next(now, &counts, unreadable, unscraped, current, spec, target),
        };
        // A wake is told once: a reading repeated for a sample too close does not retell it.
        series.last = reading.clone().map(|f| Facts { woke: false, ..f });
        reading
    }

    /// Drops a model's series (it was deleted, or no longer scales on its request rate).
    pub(crate) fn forget(&self, key: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

impl Series {
    fn start(now: f64, counts: &[PodCount], current: i32) -> Series {
        Series {
            at: now,
            counts: counts.iter().map(|c| (c.pod.clone(), c.requests)).collect(),
            active_at: now,
            current,
            ..Series::default()
        }
    }

    /// A sample with an unusable page: the count stays, and the series keeps its last good
    /// sample (the next good one takes the rate over the whole gap).
    fn hold(&mut self, now: f64, why: String, current: i32) -> Reading {
        let woke = self.current == 0 && current > 0;
        self.current = current;
        if woke {
            self.active_at = now;
        }
        Some(Facts {
            rate: 0.0,
            read: 0,
            pods: 0,
            current,
            desired: current,
            wanted: current,
            unreadable: Some(why),
            idle: now - self.active_at,
            woke,
            unusable: true,
            waiting_for_activator: false,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn next(
        &mut self,
        now: f64,
        counts: &[PodCount],
        unreadable: Option<String>,
        unscraped: usize,
        current: i32,
        spec: &AutoscalingSpec,
        target: f64,
    ) -> Reading {
        let (before, dt) = (std::mem::take(&mut self.counts), now - self.at);
        self.at = now;
        self.counts = counts.iter().map(|c| (c.pod.clone(), c.requests)).collect();
        let woke = self.current == 0 && current > 0;
        self.current = current;
        if woke {
            // A request woke the model: its idle time starts again.
            self.active_at = now;
        }
        let stay = |idle| Facts {
            rate: 0.0,
            read: 0,
            pods: 0,
            current,
            desired: current,
            wanted: current,
            unreadable: None,
            idle,
            woke,
            unusable: false,
            waiting_for_activator: false,
        };
        if current == 0 {
            // At zero pods the activator wakes the model on a request, not the rate.
            return Some(stay(now - self.active_at));
        }
        if counts.is_empty() {
            // Nothing read (no pod ready yet, or none answered): no rate is not a zero rate.
            // The count stays.
            return Some(Facts {
                unreadable,
                ..stay(now - self.active_at)
            });
        }
        let (requests, pods, mut active) = counted(&before, counts, now - dt);
        active |= requests > 0;
        if active {
            self.active_at = now;
        }
        let idle = now - self.active_at;
        // The pods beyond the scrape cap are taken to serve as the pods read do.
        let extrapolated = (counts.len() + unscraped) as f64 / counts.len() as f64;
        let rate = requests as f64 / dt.max(f64::EPSILON) * extrapolated;
        let wanted = recommend(rate, current, target);
        // A model that scales to zero keeps one pod until it has been idle long enough.
        let floor = spec.min_replicas.max(i32::from(spec.scales_to_zero()));
        let bounded = wanted.clamp(floor, spec.max_replicas);
        let window = f64::from(spec.scale_down_window());
        self.recommendations.push_back((now, bounded));
        while self
            .recommendations
            .front()
            .is_some_and(|(at, _)| *at < now - window)
        {
            self.recommendations.pop_front();
        }
        let desired = if spec.scales_to_zero() && idle >= f64::from(spec.idle_window()) {
            0
        } else if bounded >= current {
            bounded
        } else {
            let highest = self.recommendations.iter().map(|(_, r)| *r).max();
            highest.unwrap_or(bounded).min(current)
        };
        Some(Facts {
            rate,
            read: counts.len(),
            pods,
            current,
            desired,
            wanted,
            unreadable: None,
            idle,
            woke,
            unusable: false,
            waiting_for_activator: false,
        })
    }
}

/// The requests served since the last sample by the pods read now (`before` holds their counters
/// then): the sum, how many pods it covers, and whether a pod not read before served any (it
/// started, or turned ready, since: activity, even where its rate is not counted). A pod that
/// started after `since` counts all its requests; a counter below its last value is a restarted
/// container's, all new.
fn counted(before: &HashMap<String, u64>, counts: &[PodCount], since: f64) -> (u64, usize, bool) {
    let mut requests = 0u64;
    let mut pods = 0usize;
    // A pod not read before that has served requests was busy since the last sample
    // (it started, or turned ready, since): activity, even where its rate is not counted.
    let active = counts
        .iter()
        .any(|c| c.requests > 0 && !before.contains_key(&c.pod));
    for c in counts {
        let since = match before.get(&c.pod) {
            // A counter below its last value is a restarted container's: all new.
            Some(&b) => Some(c.requests.checked_sub(b).unwrap_or(c.requests)),
            None if c.started.is_some_and(|s| s >= since) => Some(c.requests),
            None => None,
        };
        if let Some(n) = since {
            requests = requests.saturating_add(n);
            pods += 1;
        }
    }
    (requests, pods, active)
}

/// The count a rate asks for: ceil(rate / target), or the current count while the rate per
/// pod is within [`TOLERANCE`] of the target.
fn recommend(rate: f64, current: i32, target: f64) -> i32 {
    if current > 0 && (rate / (f64::from(current) * target) - 1.0).abs() <= TOLERANCE {
        return current;
    }
    let wanted = (rate / target).ceil();
    if wanted >= f64::from(i32::MAX) {
        i32::MAX
    } else {
        wanted as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(min: i32, max: i32, window: i32) -> AutoscalingSpec {
        AutoscalingSpec {
            min_replicas: min,
            max_replicas: max,
            target_cpu_utilization_percentage: 70,
            scale_down_stabilization_seconds: Some(window),
            idle_seconds: None,
            target_requests_per_second: Some(10),
        }
    }

    fn look(now: f64, counts: Vec<PodCount>, current: i32) -> Sample {
        Sample {
            now,
            counts,
            unreadable: None,
            unusable: None,
            unscraped: 0,
            current,
        }
    }

    fn counts(pods: &[(&str, u64)]) -> Vec<PodCount> {
        pods.iter()
            .map(|(pod, requests)| PodCount {
                pod: pod.to_string(),
                requests: *requests,
                started: Some(0.0),
            })
            .collect()
    }

    #[test]
    fn the_first_sample_starts_a_series_and_decides_nothing() {
        let scalers = Scalers::default();
        let s = spec(1, 5, 0);
        assert_eq!(
            scalers.sample("ns/a", look(100.0, counts(&[("p1", 50)]), 1), &s, 10.0),
            None
        );
        // 300 requests in 10 s on one pod, target 10/s per pod: 3 pods, at once.
        let facts = scalers
            .sample("ns/a", look(110.0, counts(&[("p1", 350)]), 1), &s, 10.0)
            .expect("a reading");
        assert_eq!((facts.rate, facts.wanted, facts.desired), (30.0, 3, 3));
        assert_eq!((facts.current, facts.pods), (1, 1));
    }

    #[test]
    fn the_count_is_bounded_and_the_wanted_count_is_kept_for_the_status() {
        let scalers = Scalers::default();
        let s = spec(2, 4, 0);
        scalers.sample("ns/a", look(0.0, counts(&[("p1", 0)]), 2), &s, 10.0);
        let facts = scalers
            .sample("ns/a", look(10.0, counts(&[("p1", 1000)]), 2), &s, 10.0)
            .expect("a reading");
        assert_eq!((facts.wanted, facts.desired), (10, 4));
        let idle = scalers
            .sample("ns/a", look(20.0, counts(&[("p1", 1000)]), 4), &s, 10.0)
            .expect("a reading");
        assert_eq!((idle.rate, idle.wanted, idle.desired), (0.0, 0, 2));
    }

    #[test]
    fn within_the_tolerance_the_count_stays() {
        assert_eq!(recommend(21.0, 2, 10.0), 2);
        assert_eq!(recommend(19.0, 2, 10.0), 2);
        assert_eq!(recommend(23.0, 2, 10.0), 3);
        assert_eq!(recommend(0.0, 0, 10.0), 0);
        assert_eq!(recommend(1e300, 1, 1.0), i32::MAX);
    }

    #[test]
    fn down_only_to_the_highest_recommendation_of_the_window() {
        let scalers = Scalers::default();
        let s = spec(1, 5, 30);
        let mut total = 0;
        let mut at = |t: f64, per_s: u64, current: i32| {
            total += per_s * 10;
            scalers
                .sample("ns/a", look(t, counts(&[("p1", total)]), current), &s, 10.0)
                .map(|f| f.desired)
        };
        assert_eq!(at(0.0, 0, 1), None);
        assert_eq!(at(10.0, 40, 1), Some(4));
        // The load drops: the window still holds the 4 of 10 s ago.
        assert_eq!(at(20.0, 10, 4), Some(4));
        assert_eq!(at(30.0, 10, 4), Some(4));
        assert_eq!(at(40.0, 10, 4), Some(4));
        // 30 s after the peak it has left the window.
        assert_eq!(at(50.0, 10, 4), Some(1));
    }

    #[test]
    fn counters_of_new_restarted_and_replaced_pods() {
        let scalers = Scalers::default();
        let s = spec(1, 10, 0);
        scalers.sample("ns/a", look(0.0, counts(&[("p1", 500)]), 1), &s, 10.0);
        // p1 restarted (its counter went down: 100 are new); p2 started after the first
        // sample (all 100 count); p3 was running before it, but never read (not counted).
        let mut now = counts(&[("p1", 100), ("p2", 100), ("p3", 900)]);
        now[1].started = Some(5.0);
        now[2].started = Some(-100.0);
        let facts = scalers
            .sample("ns/a", look(10.0, now, 1), &s, 10.0)
            .expect("a reading");
        assert_eq!((facts.rate, facts.pods), (20.0, 2));
    }

    #[test]
    fn no_counters_read_keeps_the_count_and_says_why() {
        let scalers = Scalers::default();
        let s = spec(1, 5, 0);
        scalers.sample("ns/a", look(0.0, counts(&[("p1", 0)]), 3), &s, 10.0);
        let facts = scalers
            .sample(
                "ns/a",
                Sample {
                    unreadable: Some("pod a: connection refused".into()),
                    ..look(10.0, vec![], 3)
                },
                &s,
                10.0,
            )
            .expect("a reading");
        assert_eq!(facts.desired, 3);
        assert_eq!(
            facts.unreadable.as_deref(),
            Some("pod a: connection refused")
        );
    }

    #[test]
    fn samples_too_close_repeat_the_last_reading_and_old_series_are_forgotten() {
        let scalers = Scalers::default();
        let s = spec(1, 5, 0);
        scalers.sample("ns/a", look(0.0, counts(&[("p1", 0)]), 1), &s, 10.0);
        let first = scalers
            .sample("ns/a", look(10.0, counts(&[("p1", 300)]), 1), &s, 10.0)
            .expect("a reading");
        assert_eq!((first.rate, first.desired), (30.0, 3));
        // 1 s later the count is 3 already: the same rate, and no decision.
        let again = scalers
            .sample("ns/a", look(11.0, counts(&[("p1", 9999)]), 3), &s, 10.0)
            .expect("a reading");
        assert_eq!((again.rate, again.current, again.desired), (30.0, 3, 3));
        // Another model's sample 10 minutes later drops the stale series.
        scalers.sample("ns/b", look(700.0, counts(&[]), 1), &s, 10.0);
        assert_eq!(
            scalers.sample("ns/a", look(710.0, counts(&[("p1", 0)]), 1), &s, 10.0),
            None
        );
    }

    fn to_zero(idle: i32) -> AutoscalingSpec {
        AutoscalingSpec {
            idle_seconds: Some(idle),
            ..spec(0, 3, 0)
        }
    }

    #[test]
    fn an_idle_model_goes_to_zero_pods_only_after_its_idle_time() {
        let scalers = Scalers::default();
        let s = to_zero(30);
        let at = |t: f64, requests: u64, current: i32| {
            scalers
                .sample(
                    "ns/a",
                    look(t, counts(&[("p1", requests)]), current),
                    &s,
                    10.0,
                )
                .map(|f| (f.desired, f.idle))
        };
        assert_eq!(at(0.0, 10, 1), None);
        // No request for 10 and 20 s: one pod stays (the floor while not idle is 1, not 0).
        assert_eq!(at(10.0, 10, 1), Some((1, 10.0)));
        assert_eq!(at(20.0, 10, 1), Some((1, 20.0)));
        // A request resets the idle time.
        assert_eq!(at(25.0, 11, 1), Some((1, 0.0)));
        assert_eq!(at(50.0, 11, 1), Some((1, 25.0)));
        assert_eq!(at(55.0, 11, 1), Some((0, 30.0)));
    }

    #[test]
    fn at_zero_pods_the_count_stays_and_a_wake_is_told_once_and_restarts_the_idle_time() {
        let scalers = Scalers::default();
        let s = to_zero(30);
        scalers.sample("ns/a", look(0.0, vec![], 0), &s, 10.0);
        let zero = scalers
            .sample("ns/a", look(100.0, vec![], 0), &s, 10.0)
            .expect("a reading");
        assert_eq!((zero.current, zero.desired, zero.woke), (0, 0, false));
        // The activator scaled it to 1; its pod is not ready yet.
        let woken = scalers
            .sample("ns/a", look(105.0, vec![], 1), &s, 10.0)
            .expect("a reading");
        assert_eq!((woken.desired, woken.woke, woken.idle), (1, true, 0.0));
        // A sample too close repeats the reading without the wake.
        let again = scalers
            .sample("ns/a", look(106.0, vec![], 1), &s, 10.0)
            .expect("a reading");
        assert!(!again.woke);
        // Its pod counts the held request: not idle, one pod.
        let mut served = counts(&[("p2", 1)]);
        served[0].started = Some(104.0);
        let facts = scalers
            .sample("ns/a", look(110.0, served, 1), &s, 10.0)
            .expect("a reading");
        assert_eq!((facts.desired, facts.idle, facts.woke), (1, 0.0, false));
    }

    #[test]
    fn a_model_with_a_floor_of_one_never_goes_to_zero() {
        let scalers = Scalers::default();
        let s = spec(1, 3, 0);
        scalers.sample("ns/a", look(0.0, counts(&[("p1", 0)]), 1), &s, 10.0);
        let facts = scalers
            .sample("ns/a", look(100_000.0, counts(&[("p1", 0)]), 1), &s, 10.0)
            .expect("a reading");
        assert_eq!(facts.desired, 1);
    }

    #[test]
    fn an_unusable_page_holds_the_count_and_keeps_the_last_good_sample() {
        let scalers = Scalers::default();
        let s = spec(1, 5, 0);
        let garbage = |now: f64, current: i32| Sample {
            unusable: Some("pod a: metrics page unusable: counter x is NaN".into()),
            ..look(now, vec![], current)
        };
        // A first sample that is garbage starts no series.
        assert_eq!(scalers.sample("ns/a", garbage(0.0, 2), &s, 10.0), None);
        assert_eq!(
            scalers.sample("ns/a", look(10.0, counts(&[("p1", 100)]), 2), &s, 10.0),
            None
        );
        let held = scalers
            .sample("ns/a", garbage(20.0, 2), &s, 10.0)
            .expect("a reading");
        assert_eq!((held.desired, held.read, held.rate), (2, 0, 0.0));
        assert_eq!(
            held.unreadable.as_deref(),
            Some("pod a: metrics page unusable: counter x is NaN")
        );
        // The next good sample takes the rate from the last good one (600 in 20 s), not from
        // nothing (which would read as no traffic and scale down).
        let facts = scalers
            .sample("ns/a", look(30.0, counts(&[("p1", 700)]), 2), &s, 10.0)
            .expect("a reading");
        assert_eq!((facts.rate, facts.pods, facts.desired), (30.0, 1, 3));
    }

    #[test]
    fn the_rate_is_extrapolated_to_the_pods_beyond_the_scrape_cap() {
        let scalers = Scalers::default();
        let s = spec(1, 40, 0);
        let pods: Vec<(String, u64)> = (0..16).map(|i| (format!("p{i}"), 0)).collect();
        let named = |n: u64| {
            pods.iter()
                .map(|(p, _)| (p.as_str(), n))
                .collect::<Vec<_>>()
        };
        let capped = |now: f64, n: u64| Sample {
            unscraped: 16,
            ..look(now, counts(&named(n)), 32)
        };
        scalers.sample("ns/a", capped(0.0, 0), &s, 10.0);
        // 16 pods read at 10/s each, 16 more not read: 320/s, on target for 32 pods.
        let facts = scalers
            .sample("ns/a", capped(10.0, 100), &s, 10.0)
            .expect("a reading");
        assert_eq!((facts.rate, facts.read, facts.desired), (320.0, 16, 32));
    }
}
