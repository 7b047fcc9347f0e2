//! The opt-in request log (`--log-requests-per-second N`): at most N lines a second (a token
//! bucket holding one second's worth), each with the route template, status code and latency.
//! Never a body, a header or a query string: the route is the template, not the path.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// The sampler. With a rate of 0 (the default) it costs one atomic load per request.
#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    per_second: AtomicU32,
    /// Tokens left and when they were counted.
    bucket: Mutex<Option<(f64, Instant)>>,
    /// The model's namespace and name, on every line.
    identity: OnceLock<(String, String)>,
}

impl RequestLog {
    /// The namespace and name the lines carry (set once, at start-up).
    pub(crate) fn set_identity(&self, namespace: &str, name: &str) {
        let _ = self.identity.set((namespace.to_string(), name.to_string()));
    }

    /// The namespace and name the lines carry ("" before `set_identity`).
    pub(crate) fn identity(&self) -> (&str, &str) {
        self.identity
            .get()
            .map_or(("", ""), |(ns, name)| (ns.as_str(), name.as_str()))
    }

    pub(crate) fn set_rate(&self, per_second: u32) {
        self.per_second.store(per_second, Relaxed);
    }

    /// Whether a request finishing now may be logged.
    #[inline]
    pub(crate) fn allow(&self) -> bool {
        let rate = self.per_second.load(Relaxed);
        rate > 0 && self.allow_at(rate, Instant::now())
    }

    fn allow_at(&self, rate: u32, now: Instant) -> bool {
        let rate = f64::from(rate);
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = bucket.get_or_insert((rate, now));
        let refill = now.saturating_duration_since(*last).as_secs_f64() * rate;
        *tokens = (*tokens + refill).min(rate);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn off_by_default_and_bounded_to_the_rate() {
        let log = RequestLog::default();
        assert!((0..100).all(|_| !log.allow()), "rate 0 logs nothing");
        let t0 = Instant::now();
        let allowed = (0..100).filter(|_| log.allow_at(5, t0)).count();
        assert_eq!(allowed, 5, "a burst of one second's worth");
        assert!(!log.allow_at(5, t0 + Duration::from_millis(100)));
        assert!(
            log.allow_at(5, t0 + Duration::from_millis(200)),
            "refilled 1 in 200ms"
        );
        let later = t0 + Duration::from_secs(60);
        let allowed = (0..100).filter(|_| log.allow_at(5, later)).count();
        assert_eq!(
            allowed, 5,
            "an idle minute does not bank more than one second"
        );
    }
}
