//! Prometheus metrics of the activator (`iris_activator_*`). The only label, the outcome of a
//! connection, has a fixed set of values.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// How a connection ended up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Spliced to a model pod.
    Forwarded,
    /// Refused because `max_held` connections were already held.
    RefusedFull,
    /// Closed at once, unanswered, because `max_connections` were already open.
    RefusedOverCap,
    /// Refused because no pod accepted within the hold timeout.
    RefusedTimeout,
    /// Neither: the client left while it was held.
    Failed,
}

impl Outcome {
    const ALL: [Outcome; 5] = [
        Outcome::Forwarded,
        Outcome::RefusedFull,
        Outcome::RefusedOverCap,
        Outcome::RefusedTimeout,
        Outcome::Failed,
    ];

    /// The `outcome` label.
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Forwarded => "forwarded",
            Outcome::RefusedFull => "refused_full",
            Outcome::RefusedOverCap => "refused_over_cap",
            Outcome::RefusedTimeout => "refused_timeout",
            Outcome::Failed => "failed",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// The activator's metrics, registered in the registry served at /metrics.
#[derive(Clone)]
pub(super) struct Metrics {
    held: Gauge,
    open: Gauge,
    connections: Family<OutcomeLabels, Counter>,
    wakes: Counter,
    cold_start: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            held: Gauge::default(),
            open: Gauge::default(),
            connections: Family::default(),
            wakes: Counter::default(),
            // 0.1 s .. ~7 min: a model's start-up from image pull to bound port.
            cold_start: Histogram::new(exponential_buckets(0.1, 2.0, 13)),
        }
    }
}

impl Metrics {
    /// Registers the metrics under the `iris_activator` prefix; every outcome starts at 0.
    pub(super) fn register(self, registry: &mut Registry) -> Self {
        for outcome in Outcome::ALL {
            // Dropped at once: creating the series is the point.
            drop(self.connections.get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            }));
        }
        let sub = registry.sub_registry_with_prefix("iris_activator");
        sub.register(
            "held_connections",
            "Connections held while no model pod accepts",
            self.held.clone(),
        );
        sub.register(
            "open_connections",
            "Connections open now (held, forwarded or being refused), at most --max-connections",
            self.open.clone(),
        );
        sub.register(
            "connections",
            "Connections by outcome: forwarded, refused_full, refused_over_cap, refused_timeout, \
             failed",
            self.connections.clone(),
        );
        sub.register(
            "wakes",
            "Scale-ups of the model's Deployment from zero replicas",
            self.wakes.clone(),
        );
        sub.register(
            "cold_start_seconds",
            "From the first held connection to the first model pod that accepted one",
            self.cold_start.clone(),
        );
        self
    }

    /// Counts a connection by how it ended up.
    pub(super) fn connection(&self, outcome: Outcome) {
        self.connections
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// Sets the number of held connections.
    pub(super) fn set_held(&self, held: usize) {
        self.held.set(i64::try_from(held).unwrap_or(i64::MAX));
    }

    /// Sets the number of open connections.
    pub(super) fn set_open(&self, open: usize) {
        self.open.set(i64::try_from(open).unwrap_or(i64::MAX));
    }

    /// Counts a scale-up from zero.
    pub(super) fn woke(&self) {
        self.wakes.inc();
    }

    /// Records a cold start.
    pub(super) fn cold_start(&self, took: Duration) {
        self.cold_start.observe(took.as_secs_f64());
    }

    /// Connections of an outcome so far.
    #[cfg(test)]
    pub(super) fn connections_of(&self, outcome: Outcome) -> u64 {
        self.connections
            .get(&OutcomeLabels {
                outcome: outcome.as_str(),
            })
            .map(|c| c.get())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::tests::{listed, sample_names, METRICS_LIST};

    /// charts/iris-operator/files/metrics.txt lists exactly what the activator exports.
    #[test]
    fn metrics_list_of_the_chart_is_what_the_activator_exports() {
        let mut registry = Registry::default();
        let metrics = Metrics::default().register(&mut registry);
        metrics.set_held(1);
        metrics.set_open(1);
        metrics.woke();
        metrics.cold_start(Duration::from_millis(800));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        assert_eq!(
            sample_names(&text),
            listed("iris_activator_"),
            "update {METRICS_LIST} with the activator's metric names"
        );
    }
}
