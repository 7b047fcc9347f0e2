//! What both transports share about the served model: [`AppState`] (the model and its name,
//! the limits, readiness, the metrics, the connection gates of both ports) and the request [`Limits`], with the checks every handler makes
//! (model, version, readiness, batch size), and the prediction every route makes
//! ([`AppState::predict`]: predictions by class and the drift counts are recorded there).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use prometheus_client::registry::Registry;
use tracing::info;

use crate::conn::{ConnLimits, Gate};
use crate::drift::{Drift, DriftArgs, DriftCollector};
use crate::error::ApiError;
use crate::iris::N_FEATURES;
use crate::metrics::{Metrics, ModelInfo};
use crate::model::{ModelArtifact, Prediction, MAX_CLASSES};
use crate::payload_log::PayloadLog;

/// Request and connection limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted request body in bytes (larger: 413).
    pub max_body_bytes: usize,
    /// Most rows in one batch (more: 413).
    pub max_batch_rows: usize,
    /// A request not answered within this (body upload included) gets a 503 (gRPC:
    /// CANCELLED, "Timeout expired").
    pub request_timeout: Duration,
    /// Connection bounds (see [`crate::conn`]).
    pub conn: ConnLimits,
}

impl Default for Limits {
    /// 1 MiB bodies, 10,000-row batches, 30 s requests, [`ConnLimits::default`].
    fn default() -> Self {
        Limits {
            max_body_bytes: 1024 * 1024,
            max_batch_rows: 10_000,
            request_timeout: crate::conn::DEFAULT_REQUEST_TIMEOUT,
            conn: ConnLimits::default(),
        }
    }
}

/// Everything the handlers share. Cheap to clone (one `Arc`).
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    model_name: String,
    model: ModelArtifact,
    limits: Limits,
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    registry: Registry,
    /// The connection caps of the HTTP port (all workers) and of the gRPC port.
    http_gate: Gate,
    grpc_gate: Gate,
    /// The REST model metadata, serialized on first use.
    v2_model_metadata: OnceLock<Bytes>,
    /// Input drift counting, once [`AppState::count_drift`] turned it on.
    drift: Arc<OnceLock<Drift>>,
    /// The payload log (off until started).
    payload_log: Arc<PayloadLog>,
}

impl AppState {
    /// State for serving `model` under `model_name`. `source` (e.g. `builtin`,
    /// `file:/models/iris.json`) is reported in metrics. Starts ready: the model is loaded.
    pub fn new(
        model_name: impl Into<String>,
        model: ModelArtifact,
        source: impl Into<String>,
        limits: Limits,
    ) -> AppState {
        let model_name = model_name.into();
        let ready = Arc::new(AtomicBool::new(true));
        let metrics = Arc::new(Metrics::new(
            ModelInfo {
                model: model_name.clone(),
                version: model.short_digest().to_owned(),
                digest: model.digest().to_owned(),
                task: model.task().as_str(),
                positive_class: model
                    .positive_class()
                    .map_or_else(String::new, |c| c.to_string()),
                source: source.into(),
                accuracy: model.accuracy(),
                class_labels: model.class_labels().to_vec(),
            },
            ready.clone(),
        ));
        let mut registry = Registry::default();
        registry.register_collector(Box::new(metrics.clone()));
        let drift = Arc::new(OnceLock::new());
        registry.register_collector(Box::new(DriftCollector(drift.clone())));
        let payload_log = Arc::new(PayloadLog::default());
        registry.register_collector(Box::new(payload_log.clone()));
        AppState {
            inner: Arc::new(Shared {
                model_name,
                model,
                limits,
                ready,
                metrics,
                registry,
                http_gate: Gate::new(&limits.conn),
                grpc_gate: Gate::new(&limits.conn),
                v2_model_metadata: OnceLock::new(),
                drift,
                payload_log,
            }),
        }
    }

    /// Turns on counting every predicted row's inputs into the artifact's training bins over
    /// the window of `args`, the window moved on by a task on `rt`. Stays off (`false`) when
    /// the window is 0, the artifact has no bins, or it is on already.
    pub fn count_drift(&self, args: &DriftArgs, rt: &tokio::runtime::Handle) -> bool {
        let Some(slice) = args.slice() else {
            info!("input drift counting is off (--drift-window-seconds 0)");
            return false;
        };
        let Some(drift) = Drift::new(&self.inner.model, args.drift_window_slices, slice) else {
            info!("input drift is not exported: the model artifact has no training bins");
            return false;
        };
        if self.inner.drift.set(drift).is_err() {
            return false;
        }
        info!(
            window_seconds = args.drift_window_seconds,
            slices = args.drift_window_slices,
            "input drift: PSI per feature over a sliding window"
        );
        rt.spawn(crate::drift::rotate_every(self.inner.drift.clone()));
        true
    }

    /// Predicts one row: [`AppState::predict`] without a `Vec`.
    pub(crate) fn predict_one(&self, row: &[f64; N_FEATURES]) -> Prediction {
        if let Some(drift) = self.inner.drift.get() {
            drift.count(std::iter::once(row));
        }
        let p = self.inner.model.predictor().predict(row);
        let mut counts = [0; MAX_CLASSES];
        counts[p.class_index] += 1;
        self.inner.metrics.count_predictions(&counts);
        p
    }

    /// Predicts every row, counting the predictions by class and (when on) the inputs into
    /// the drift bins: every prediction route goes through here.
    pub(crate) fn predict<'a, I>(&self, rows: I) -> Vec<Prediction>
    where
        I: IntoIterator<Item = &'a [f64; N_FEATURES]>,
        I::IntoIter: Clone,
    {
        let rows = rows.into_iter();
        if let Some(drift) = self.inner.drift.get() {
            drift.count(rows.clone());
        }
        let predictor = self.inner.model.predictor();
        let mut counts = [0; MAX_CLASSES];
        let predictions = rows
            .map(|row| {
                let p = predictor.predict(row);
                counts[p.class_index] += 1;
                p
            })
            .collect();
        self.inner.metrics.count_predictions(&counts);
        predictions
    }

    /// Marks the server ready or not (`false` once shutdown begins).
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether readiness probes should pass.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Relaxed)
    }

    /// The served model.
    pub fn model(&self) -> &ModelArtifact {
        &self.inner.model
    }

    /// The name under which the model is served (`--model-name`).
    pub fn model_name(&self) -> &str {
        &self.inner.model_name
    }

    /// The request limits.
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// The connection gate of the HTTP port, shared by its workers.
    pub(crate) fn http_gate(&self) -> Gate {
        self.inner.http_gate.clone()
    }

    /// The connection gate of the gRPC port.
    pub(crate) fn grpc_gate(&self) -> Gate {
        self.inner.grpc_gate.clone()
    }

    /// The metrics (the request path records predictions through [`AppState::predict`]).
    #[cfg_attr(not(test), allow(dead_code))] // tests read it; handlers may record through it
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Logs at most `per_second` finished HTTP requests a second (0: none, the default),
    /// each line with `namespace` (may be empty) and the model's `name`.
    pub fn log_requests(self, per_second: u32, namespace: &str) -> AppState {
        let log = &self.inner.metrics.request_log;
        log.set_identity(namespace, &self.inner.model_name);
        log.set_rate(per_second);
        self
    }

    /// The payload log (`--payload-log-url`).
    pub(crate) fn payload_log(&self) -> &PayloadLog {
        &self.inner.payload_log
    }

    /// Starts the payload log when `--payload-log-url` is set (see [`crate::payload_log`]).
    /// Its events name this model, `namespace` and the pod's HTTP `port`.
    pub fn log_payloads(
        self,
        args: &crate::payload_log::PayloadLogArgs,
        namespace: &str,
        port: u16,
    ) -> anyhow::Result<AppState> {
        let identity = crate::payload_log::Identity::new(self.model_name(), namespace, port);
        self.inner.payload_log.start(args, identity)?;
        Ok(self)
    }

    /// The metrics, for the gRPC server's layer.
    pub(crate) fn shared_metrics(&self) -> Arc<Metrics> {
        self.inner.metrics.clone()
    }

    /// 404 unless `name` is the served model.
    pub(crate) fn check_model(&self, name: &str) -> Result<(), ApiError> {
        if name == self.inner.model_name {
            Ok(())
        } else {
            Err(ApiError::not_found(format!(
                "unknown model {name:?}; this server serves {:?}",
                self.inner.model_name
            )))
        }
    }

    /// 404 unless `version` names the served model's version (its short or full digest).
    pub(crate) fn check_version(&self, name: &str, version: &str) -> Result<(), ApiError> {
        self.check_model(name)?;
        let model = &self.inner.model;
        if version == model.short_digest() || version == model.digest() {
            Ok(())
        } else {
            Err(ApiError::not_found(format!(
                "model {name:?} has no version {version:?}; its version is {:?}",
                model.short_digest()
            )))
        }
    }

    /// 503 once shutdown has begun.
    pub(crate) fn check_ready(&self) -> Result<(), ApiError> {
        if self.is_ready() {
            Ok(())
        } else {
            Err(ApiError::unavailable(
                "not ready: the server is shutting down",
            ))
        }
    }

    /// 413 when a batch has more rows than `--max-batch-rows`.
    pub(crate) fn check_batch_size(&self, rows: usize) -> Result<(), ApiError> {
        let max = self.inner.limits.max_batch_rows;
        if rows > max {
            Err(ApiError::too_large(format!(
                "batch of {rows} rows exceeds the limit of {max} rows per request"
            )))
        } else {
            Ok(())
        }
    }

    /// The `GET /v2/models/{name}` body, made by `serialize` from the model's name and
    /// artifact on first use and kept (the model never changes).
    pub(crate) fn v2_model_metadata(
        &self,
        serialize: impl FnOnce(&str, &ModelArtifact) -> Bytes,
    ) -> Bytes {
        self.inner
            .v2_model_metadata
            .get_or_init(|| serialize(&self.inner.model_name, &self.inner.model))
            .clone()
    }

    /// The `/metrics` text.
    pub(crate) fn encode_metrics(&self, out: &mut String) -> std::fmt::Result {
        prometheus_client::encoding::prometheus_text::encode(out, &self.inner.registry)
    }
}
