//! The drift gauges at scrape time: per feature the PSI over the window (absent while it
//! holds no row) and the rows it rests on. Nothing is exported while drift is off or the
//! artifact has no training bins.

use std::sync::{Arc, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::Drift;
use crate::iris::FEATURE_NAMES;

/// Registered with the server's metrics; encodes the drift once it is set.
#[derive(Debug)]
pub(crate) struct DriftCollector(pub(crate) Arc<OnceLock<Drift>>);

impl Collector for DriftCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(drift) = self.0.get() else {
            return Ok(());
        };
        let snapshot = drift.snapshot();
        let mut psi = encoder.encode_descriptor(
            iris_model::contract::INPUT_DRIFT_PSI,
            "Population stability index of each input feature over the drift window against \
             the training distribution (its bins in the artifact; empty bins count as a share \
             of 1e-4); absent while the window holds no row",
            None,
            MetricType::Gauge,
        )?;
        for (name, (value, _)) in FEATURE_NAMES.iter().zip(&snapshot.features) {
            if let Some(v) = value {
                ConstGauge::new(*v).encode(psi.encode_family(&[("feature", *name)])?)?;
            }
        }
        let rows = encoder.encode_descriptor(
            iris_model::contract::INPUT_DRIFT_WINDOW_ROWS,
            "Input rows in the drift window (what each model_server_input_drift_psi rests on)",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::try_from(snapshot.rows).unwrap_or(i64::MAX)).encode(rows)
    }
}
