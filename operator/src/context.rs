//! What every reconcile shares: the client, the settings, the Event recorder, the metrics, the
//! cache of trained builtin models and the per-model failure counts of the backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Client, ResourceExt};

use crate::artifact::BuiltinCache;
use crate::cache::ChildCache;
use crate::crd::IrisModel;
use crate::metrics::Metrics;
use crate::names::MANAGER;
use crate::rate::Scalers;
use crate::scrape::{HttpScraper, Scrape};

/// What every reconcile shares.
pub struct Context {
    pub(crate) client: Client,
    pub(crate) settings: Settings,
    pub(crate) recorder: Recorder,
    pub(crate) metrics: Metrics,
    pub(crate) builtin: BuiltinCache,
    /// Reads the model-server pods' /metrics for the canary analysis.
    pub(crate) scraper: Arc<dyn Scrape>,
    /// The watch caches of the children, installed by the Controllers when they start.
    children: RwLock<ChildCache>,
    failures: Mutex<HashMap<String, u32>>,
    /// The request-rate series of the models autoscaled on their request rate.
    pub(crate) scalers: Scalers,
    /// The time of a reconcile: condition transitions and how long a model has not been Ready
    /// are measured on it. The system clock, fixed in tests.
    clock: Clock,
}

/// Where a reconcile takes the time from.
pub(crate) type Clock = Arc<dyn Fn() -> Time + Send + Sync>;

impl Context {
    /// A context publishing Events as `iris-operator` (and `instance`, e.g. the pod name).
    pub fn new(
        client: Client,
        settings: Settings,
        metrics: Metrics,
        instance: Option<String>,
    ) -> Self {
        let reporter = Reporter {
            controller: MANAGER.to_string(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            metrics,
            builtin: BuiltinCache::default(),
            scraper: Arc::new(HttpScraper::default()),
            children: RwLock::new(ChildCache::default()),
            failures: Mutex::new(HashMap::new()),
            scalers: Scalers::default(),
            clock: Arc::new(|| Time(Timestamp::now())),
        }
    }

    /// The same context reading the time from `clock`.
    #[cfg(test)]
    pub(crate) fn with_clock(self, clock: impl Fn() -> Time + Send + Sync + 'static) -> Self {
        Self {
            clock: Arc::new(clock),
            ..self
        }
    }

    /// The watch caches the observe step reads (cheap to clone: the stores are shared).
    pub(crate) fn children(&self) -> ChildCache {
        self.children
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Replaces the watch caches (the Controllers' new ones, when they start).
    pub(crate) fn install_children(&self, cache: ChildCache) {
        *self
            .children
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = cache;
    }

    /// The same context scraping pods with `scraper`.
    #[cfg(test)]
    pub(crate) fn with_scraper(self, scraper: Arc<dyn Scrape>) -> Self {
        Self { scraper, ..self }
    }

    /// The time now.
    pub(crate) fn now(&self) -> Time {
        (self.clock)()
    }

    /// Failed reconciles in a row, by [`object_key`].
    pub(crate) fn failures(&self) -> MutexGuard<'_, HashMap<String, u32>> {
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Operator-wide settings the builders need.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Model-server image used when `spec.image` is empty.
    pub default_image: String,
    /// DNS domain of the cluster, for `status.endpoint`.
    pub cluster_domain: String,
    /// Image pull Secrets of the pods of IrisModels without `spec.imagePullSecrets`.
    pub default_image_pull_secrets: Vec<String>,
    /// The activator of the models that scale to zero.
    pub activator: ActivatorSettings,
}

/// How the activator of a scale-to-zero model runs (the chart's `activator` values).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActivatorSettings {
    /// Its image: the operator's own (the binary runs as `iris-operator activator`).
    pub image: String,
    /// Connections it holds at once while the model has no pod; more get a 503.
    pub max_held: u32,
    /// How long it holds one, in seconds, before a 503.
    pub hold_timeout_seconds: u32,
}

impl Default for ActivatorSettings {
    fn default() -> Self {
        Self {
            image: "iris-operator/operator:0.1.0".to_string(),
            max_held: 1000,
            hold_timeout_seconds: 30,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            default_image: "iris-operator/model-server:0.1.0".to_string(),
            cluster_domain: "cluster.local".to_string(),
            default_image_pull_secrets: Vec::new(),
            activator: ActivatorSettings::default(),
        }
    }
}

/// `namespace/name` of an IrisModel, for logs and the failure counts.
pub(crate) fn object_key(model: &IrisModel) -> String {
    format!(
        "{}/{}",
        model.namespace().unwrap_or_default(),
        model.name_any()
    )
}
