//! The payload log's counters on `/metrics`, exported only while it runs (names in
//! `iris_model::contract`).

use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use iris_model::contract;

use super::PayloadLog;

impl Collector for PayloadLog {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if !self.enabled() {
            return Ok(());
        }
        let counters = self.counters();
        for (name, help, value) in [
            (
                contract::PAYLOAD_LOG_SENT,
                "Payload-log events (CloudEvents) the sink accepted",
                &counters.sent,
            ),
            (
                contract::PAYLOAD_LOG_FAILED,
                "Payload-log events given up after the retries (error, timeout or non-2xx)",
                &counters.failed,
            ),
            (
                contract::PAYLOAD_LOG_DROPPED,
                "Payload-log events dropped because the queue was full",
                &counters.dropped,
            ),
        ] {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(value.load(Relaxed)).encode(metric)?;
        }
        let metric = encoder.encode_descriptor(
            contract::PAYLOAD_LOG_FAILING,
            "Payload-log events given up in a row since the sink last accepted one",
            None,
            MetricType::Gauge,
        )?;
        let failing = i64::try_from(counters.failing.load(Relaxed)).unwrap_or(i64::MAX);
        ConstGauge::new(failing).encode(metric)?;
        Ok(())
    }
}
