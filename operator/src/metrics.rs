//! Prometheus metrics of the operator. Every label value comes from a fixed set (error
//! categories, object kinds, operations), so the series count is bounded; the per-model
//! series of [`models`] are bounded by the number of IrisModels.

mod models;

pub(crate) use models::ModelMetrics;

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::names::ChildKind;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RollbackLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    kind: &'static str,
    operation: &'static str,
}

/// What the operator writes: its children, the IrisModel status, and Events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Written {
    Child(ChildKind),
    Status,
    Event,
    /// The IrisModel itself (the by-hand rollout annotation, removed once acted on).
    Model,
}

impl Written {
    /// Every value, the children from [`ChildKind::ALL`].
    #[cfg(test)]
    fn all() -> impl Iterator<Item = Written> {
        ChildKind::ALL.into_iter().map(Written::Child).chain([
            Written::Status,
            Written::Event,
            Written::Model,
        ])
    }

    /// The `kind` label.
    fn as_str(self) -> &'static str {
        match self {
            Written::Child(kind) => kind.as_str(),
            Written::Status => "IrisModelStatus",
            Written::Event => "Event",
            Written::Model => "IrisModel",
        }
    }
}

/// How an object was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operation {
    Apply,
    Delete,
    Create,
    /// A replica count written to a scale subresource (request-rate autoscaling).
    Scale,
}

impl Operation {
    #[cfg(test)]
    const ALL: [Operation; 4] = [
        Operation::Apply,
        Operation::Delete,
        Operation::Create,
        Operation::Scale,
    ];

    /// The `operation` label.
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "apply",
            Operation::Delete => "delete",
            Operation::Create => "create",
            Operation::Scale => "scale",
        }
    }
}

/// The operator's metrics, registered in a registry served at /metrics.
#[derive(Clone)]
pub struct Metrics {
    reconciles: Counter,
    errors: Family<ErrorLabels, Counter>,
    duration: Histogram,
    writes: Family<WriteLabels, Counter>,
    rollbacks: Family<RollbackLabels, Counter>,
    leader: Gauge,
    /// Per-model health (`iris_operator_model_*`).
    pub(crate) models: models::ModelMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            reconciles: Counter::default(),
            errors: Family::default(),
            // 1ms .. ~16s
            duration: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            writes: Family::default(),
            rollbacks: Family::default(),
            leader: Gauge::default(),
            models: models::ModelMetrics::default(),
        }
    }
}

impl Metrics {
    /// Registers the metrics under the `iris_operator` prefix.
    pub fn register(self, registry: &mut Registry) -> Self {
        let sub = registry.sub_registry_with_prefix("iris_operator");
        sub.register(
            "reconciles",
            "Reconciles of IrisModels",
            self.reconciles.clone(),
        );
        sub.register(
            "reconcile_errors",
            "Failed reconciles by error category",
            self.errors.clone(),
        );
        sub.register(
            "reconcile_duration_seconds",
            "Duration of reconciles",
            self.duration.clone(),
        );
        sub.register(
            "api_writes",
            "Writes to the API server by object kind and operation",
            self.writes.clone(),
        );
        sub.register(
            "canary_rollbacks",
            "Canaries rolled back (reason CanaryRolledBack) or aborted by hand (CanaryAborted)",
            self.rollbacks.clone(),
        );
        sub.register(
            "leader",
            "1 while this replica runs the controller",
            self.leader.clone(),
        );
        self.models.register(sub);
        self
    }

    /// Counts a reconcile and returns a guard that records its duration when dropped, so
    /// every exit path (errors and early returns included) is measured.
    pub(crate) fn reconcile_started(&self) -> ReconcileTimer {
        self.reconciles.inc();
        ReconcileTimer {
            start: Instant::now(),
            histogram: self.duration.clone(),
        }
    }

    /// Counts a failed reconcile by its error category.
    pub(crate) fn reconcile_failed(&self, category: &'static str) {
        self.errors.get_or_create(&ErrorLabels { category }).inc();
    }

    /// Counts one write to the API server.
    pub(crate) fn write(&self, kind: Written, operation: Operation) {
        let labels = WriteLabels {
            kind: kind.as_str(),
            operation: operation.as_str(),
        };
        self.writes.get_or_create(&labels).inc();
    }

    /// Counts a canary rolled back or aborted; `reason` is one of a fixed few.
    pub(crate) fn rollback(&self, reason: &'static str) {
        self.rollbacks
            .get_or_create(&RollbackLabels { reason })
            .inc();
    }

    /// Rollbacks of a reason so far.
    #[cfg(test)]
    pub(crate) fn rollbacks_of(&self, reason: &'static str) -> u64 {
        self.rollbacks
            .get(&RollbackLabels { reason })
            .map(|c| c.get())
            .unwrap_or(0)
    }

    /// Total writes so far (for tests' zero-write checks).
    #[cfg(test)]
    pub(crate) fn writes_total(&self) -> u64 {
        Written::all()
            .flat_map(|kind| Operation::ALL.map(|operation| (kind, operation)))
            .map(|(kind, operation)| {
                let labels = WriteLabels {
                    kind: kind.as_str(),
                    operation: operation.as_str(),
                };
                self.writes.get(&labels).map(|c| c.get()).unwrap_or(0)
            })
            .sum()
    }

    /// Errors of a category so far.
    #[cfg(test)]
    pub(crate) fn errors_of(&self, category: &'static str) -> u64 {
        self.errors
            .get(&ErrorLabels { category })
            .map(|c| c.get())
            .unwrap_or(0)
    }

    /// Records whether this replica leads.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }
}

/// Records the reconcile duration on drop.
pub(crate) struct ReconcileTimer {
    start: Instant,
    histogram: Histogram,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn metrics_render_with_bounded_labels() {
        let mut registry = Registry::default();
        let metrics = Metrics::default().register(&mut registry);
        {
            let _timer = metrics.reconcile_started();
        }
        metrics.reconcile_failed("ConfigMapNotFound");
        metrics.write(Written::Child(ChildKind::Deployment), Operation::Apply);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        assert!(text.contains("iris_operator_reconciles_total 1"), "{text}");
        assert!(
            text.contains("iris_operator_reconcile_errors_total{category=\"ConfigMapNotFound\"} 1")
        );
        assert!(text.contains("iris_operator_reconcile_duration_seconds_count 1"));
        assert!(text
            .contains("iris_operator_api_writes_total{kind=\"Deployment\",operation=\"apply\"} 1"));
        assert_eq!(metrics.writes_total(), 1);
    }

    /// The sample names of a /metrics text (what PromQL sees: `_total`, `_bucket`, ...).
    pub(crate) fn sample_names(text: &str) -> std::collections::BTreeSet<String> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.split(['{', ' ']).next())
            .map(str::to_string)
            .collect()
    }

    /// charts/iris-operator/files/metrics.txt, which the alerts and the dashboard are checked
    /// against, lists exactly what the operator exports (every metric touched once).
    #[test]
    fn metrics_list_of_the_chart_is_what_the_operator_exports() {
        let mut registry = Registry::default();
        let metrics = Metrics::default().register(&mut registry);
        drop(metrics.reconcile_started());
        metrics.reconcile_failed("Kube");
        metrics.write(Written::Status, Operation::Apply);
        metrics.rollback("CanaryRolledBack");
        metrics.set_leader(true);
        let status = crate::crd::IrisModelStatus {
            rollout: Some(crate::crd::RolloutStatus::default()),
            conditions: crate::reconcile::conditions::merge(
                &[],
                vec![crate::reconcile::conditions::Verdict::new(
                    "Ready", true, "Ready", "",
                )],
                Some(1),
                &crate::reconcile::conditions::at(1),
            ),
            ..Default::default()
        };
        metrics.models.set("ml", "iris", 1, &status);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        let exported = sample_names(&text);
        assert_eq!(
            exported,
            listed("iris_operator_"),
            "update {METRICS_LIST} with the operator's metric names"
        );
    }

    /// The chart's list of metric names the alerts and the dashboard may use.
    pub(crate) const METRICS_LIST: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../charts/iris-operator/files/metrics.txt"
    );

    /// The names of [`METRICS_LIST`] that start with `prefix`.
    pub(crate) fn listed(prefix: &str) -> std::collections::BTreeSet<String> {
        std::fs::read_to_string(METRICS_LIST)
            .expect("metrics.txt")
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn writes_total_counts_every_child_kind() {
        let metrics = Metrics::default();
        for kind in ChildKind::ALL {
            metrics.write(Written::Child(kind), Operation::Apply);
            metrics.write(Written::Child(kind), Operation::Delete);
        }
        metrics.write(Written::Status, Operation::Apply);
        metrics.write(Written::Event, Operation::Create);
        assert_eq!(metrics.writes_total(), 2 * ChildKind::ALL.len() as u64 + 2);
    }
}
