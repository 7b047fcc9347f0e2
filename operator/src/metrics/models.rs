//! Per-model health, the kube-state-metrics way: one series per model (and condition) whose
//! labels say the state, value 1. Series are bounded by the number of models: each model's are
//! replaced when its status is published and removed when it is deleted or vanishes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::crd::IrisModelStatus;

/// A label set: a few (name, value) pairs, always built in the same order.
type Labels = Vec<(&'static str, String)>;

/// The replica counts exported, as the `kind` label.
const REPLICA_KINDS: [&str; 2] = ["desired", "ready"];

/// The series one model has, so they can be replaced or removed.
#[derive(Default)]
struct Published {
    conditions: Vec<Labels>,
    info: Option<Labels>,
    phase: Option<Labels>,
}

/// `iris_operator_model_*`, registered by [`super::Metrics::register`].
#[derive(Clone, Default)]
pub(crate) struct ModelMetrics {
    condition: Family<Labels, Gauge>,
    replicas: Family<Labels, Gauge>,
    info: Family<Labels, Gauge>,
    phase: Family<Labels, Gauge>,
    published: Arc<Mutex<HashMap<(String, String), Published>>>,
}

fn model(namespace: &str, name: &str) -> Labels {
    vec![
        ("namespace", namespace.to_string()),
        ("name", name.to_string()),
    ]
}

fn with(mut labels: Labels, more: &[(&'static str, &str)]) -> Labels {
    labels.extend(more.iter().map(|(k, v)| (*k, v.to_string())));
    labels
}

impl ModelMetrics {
    pub(crate) fn register(&self, sub: &mut Registry) {
        sub.register(
            "model_condition",
            "Conditions of each IrisModel: 1 for its current status and reason of each type",
            self.condition.clone(),
        );
        sub.register(
            "model_replicas",
            "Model-server pods of each IrisModel: desired (spec or autoscaler) and ready",
            self.replicas.clone(),
        );
        sub.register(
            "model_info",
            "The model each IrisModel serves (value is always 1)",
            self.info.clone(),
        );
        sub.register(
            "model_rollout_phase",
            "Phase of each IrisModel's last canary rollout (1 for the current one)",
            self.phase.clone(),
        );
    }

    fn published(&self) -> MutexGuard<'_, HashMap<(String, String), Published>> {
        self.published.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets a model's series from the status being published; those of its previous status
    /// that no longer hold are removed.
    pub(crate) fn set(&self, namespace: &str, name: &str, desired: i32, status: &IrisModelStatus) {
        let base = model(namespace, name);
        let conditions: Vec<Labels> = status
            .conditions
            .iter()
            .map(|c| {
                with(
                    base.clone(),
                    &[
                        ("type", &c.type_),
                        ("status", &c.status),
                        ("reason", &c.reason),
                    ],
                )
            })
            .collect();
        let digest = status.model.as_ref().and_then(|m| m.digest.as_deref());
        // The image digest the pods run (status.image), beside the model artifact's.
        let image_digest = status.image.as_ref().and_then(|i| i.digest.as_deref());
        let info = with(
            base.clone(),
            &[
                ("digest", digest.unwrap_or("")),
                ("image_digest", image_digest.unwrap_or("")),
            ],
        );
        let phase = status
            .rollout
            .as_ref()
            .map(|r| with(base.clone(), &[("phase", &r.phase)]));

        let mut published = self.published();
        let entry = published
            .entry((namespace.to_string(), name.to_string()))
            .or_default();
        for old in entry.conditions.iter().filter(|l| !conditions.contains(l)) {
            self.condition.remove(old);
        }
        if let Some(old) = entry.info.as_ref().filter(|l| **l != info) {
            self.info.remove(old);
        }
        if let Some(old) = entry.phase.as_ref().filter(|l| Some(*l) != phase.as_ref()) {
            self.phase.remove(old);
        }
        for labels in &conditions {
            self.condition.get_or_create(labels).set(1);
        }
        self.info.get_or_create(&info).set(1);
        if let Some(labels) = &phase {
            self.phase.get_or_create(labels).set(1);
        }
        for (kind, value) in REPLICA_KINDS
            .into_iter()
            .zip([desired, status.ready_replicas])
        {
            let labels = with(base.clone(), &[("kind", kind)]);
            self.replicas.get_or_create(&labels).set(i64::from(value));
        }
        *entry = Published {
            conditions,
            info: Some(info),
            phase,
        };
    }

    /// Removes every series of a model (deleted, or gone from the cluster).
    pub(crate) fn forget(&self, namespace: &str, name: &str) {
        let removed = self
            .published()
            .remove(&(namespace.to_string(), name.to_string()));
        if let Some(old) = removed {
            self.remove(namespace, name, old);
        }
    }

    /// Removes the series of every model `keep` says no longer exists (after a re-list, which
    /// reports no deletion that happened while the watch was down).
    pub(crate) fn retain(&self, keep: impl Fn(&str, &str) -> bool) {
        let gone: Vec<_> = {
            let mut published = self.published();
            let keys: Vec<_> = published
                .keys()
                .filter(|(ns, name)| !keep(ns, name))
                .cloned()
                .collect();
            keys.into_iter()
                .filter_map(|k| published.remove(&k).map(|p| (k, p)))
                .collect()
        };
        for ((namespace, name), old) in gone {
            self.remove(&namespace, &name, old);
        }
    }

    fn remove(&self, namespace: &str, name: &str, old: Published) {
        for labels in &old.conditions {
            self.condition.remove(labels);
        }
        if let Some(labels) = &old.info {
            self.info.remove(labels);
        }
        if let Some(labels) = &old.phase {
            self.phase.remove(labels);
        }
        for kind in REPLICA_KINDS {
            self.replicas
                .remove(&with(model(namespace, name), &[("kind", kind)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Metrics;
    use super::*;
    use crate::crd::{ModelStatus, RolloutStatus};
    use crate::reconcile::conditions::{at, merge, Verdict, DEGRADED, READY};

    fn status(ready: bool, reason: &str, phase: Option<&str>) -> IrisModelStatus {
        IrisModelStatus {
            ready_replicas: i32::from(ready) * 2,
            model: Some(ModelStatus {
                digest: Some("sha256:ab".into()),
                ..ModelStatus::default()
            }),
            image: Some(crate::crd::ImageStatus {
                reference: "example.com/iris:1".into(),
                digest: Some("sha256:cd".into()),
                image_id: None,
            }),
            rollout: phase.map(|p| RolloutStatus {
                phase: p.into(),
                ..RolloutStatus::default()
            }),
            conditions: merge(
                &[],
                vec![
                    Verdict::new(READY, ready, reason, ""),
                    Verdict::new(DEGRADED, !ready, reason, ""),
                ],
                Some(1),
                &at(1),
            ),
            ..IrisModelStatus::default()
        }
    }

    fn render() -> (Metrics, impl Fn() -> String) {
        let mut registry = Registry::default();
        let metrics = Metrics::default().register(&mut registry);
        (metrics, move || {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
            text
        })
    }

    const READY_SERIES: &str = r#"iris_operator_model_condition{namespace="ml",name="iris",type="Ready",status="True",reason="Ready"} 1"#;
    const CRASH_SERIES: &str = r#"iris_operator_model_condition{namespace="ml",name="iris",type="Degraded",status="True",reason="CrashLoop"} 1"#;

    #[test]
    fn series_follow_the_status_and_go_with_the_model() {
        let (metrics, text) = render();
        metrics
            .models
            .set("ml", "iris", 2, &status(true, "Ready", None));
        metrics
            .models
            .set("ml", "other", 1, &status(true, "Ready", None));
        let t = text();
        for series in [
            READY_SERIES,
            r#"iris_operator_model_replicas{namespace="ml",name="iris",kind="desired"} 2"#,
            r#"iris_operator_model_replicas{namespace="ml",name="iris",kind="ready"} 2"#,
            r#"iris_operator_model_info{namespace="ml",name="iris",digest="sha256:ab",image_digest="sha256:cd"} 1"#,
        ] {
            assert!(t.contains(series), "{series} missing from\n{t}");
        }
        assert!(!t.contains("iris_operator_model_rollout_phase{"), "{t}");

        // A new status replaces the old reason's series instead of adding one.
        metrics.models.set(
            "ml",
            "iris",
            2,
            &status(false, "CrashLoop", Some("RolledBack")),
        );
        let t = text();
        assert!(t.contains(CRASH_SERIES), "{t}");
        assert!(!t.contains(READY_SERIES), "{t}");
        assert!(t.contains(
            r#"iris_operator_model_rollout_phase{namespace="ml",name="iris",phase="RolledBack"} 1"#
        ));
        assert_eq!(t.matches(r#"name="iris",type="Ready""#).count(), 1, "{t}");

        metrics.models.forget("ml", "iris");
        let t = text();
        assert!(
            !t.contains(r#"name="iris""#),
            "deleted model's series remain:\n{t}"
        );
        assert!(t.contains(r#"name="other""#), "{t}");
    }

    #[test]
    fn a_relist_removes_models_that_vanished() {
        let (metrics, text) = render();
        for name in ["a", "b"] {
            metrics
                .models
                .set("ml", name, 1, &status(true, "Ready", None));
        }
        metrics
            .models
            .set("prod", "a", 1, &status(true, "Ready", None));
        metrics.models.retain(|ns, name| ns != "ml" || name == "b");
        let t = text();
        assert!(!t.contains(r#"namespace="ml",name="a""#), "{t}");
        assert!(t.contains(r#"namespace="ml",name="b""#), "{t}");
        assert!(t.contains(r#"namespace="prod",name="a""#), "{t}");
        metrics.models.retain(|_, _| false);
        assert!(!text().contains("namespace="), "{}", text());
    }
}
