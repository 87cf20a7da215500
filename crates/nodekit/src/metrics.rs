//! Per-node metrics in the OpenMetrics text format. Several nodes share one process in
//! `drlab up`, so each node has its own registry rather than a global recorder. Everything a
//! node exposes on `/metrics` is registered here, so one encoder writes it all and the
//! exposition ends with its single `# EOF`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use netfault::Faults;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Metric, Registry};

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A node's metric registry.
pub struct Metrics {
    registry: Mutex<Registry>,
}

impl Metrics {
    /// A registry whose metrics all carry the label `node="<name>"`.
    pub fn new(node: &str) -> Self {
        let registry = Registry::with_labels(
            [(
                std::borrow::Cow::Borrowed("node"),
                std::borrow::Cow::Owned(node.to_string()),
            )]
            .into_iter(),
        );
        Metrics {
            registry: Mutex::new(registry),
        }
    }

    /// Registers a metric; keep the returned clone (metrics are shared handles).
    pub fn register<M: Metric + Clone>(&self, name: &str, help: &str, metric: M) -> M {
        self.lock().register(name, help, metric.clone());
        metric
    }

    /// Registers metrics read from elsewhere at each scrape (they carry the `node` label too).
    pub fn register_collector(&self, collector: impl Collector) {
        self.lock().register_collector(Box::new(collector));
    }

    /// Registers the counters of the node's fault layer (`drlab_fault_*`).
    pub fn register_faults(&self, faults: &Faults) {
        self.register_collector(FaultCollector(faults.clone()));
    }

    /// The OpenMetrics text of every registered metric, `# EOF` included.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = encode(&mut out, &self.lock());
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Writes one family holding a single sample; `metric` is a `ConstCounter` or `ConstGauge`.
pub fn encode_single(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    let family = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(family)
}

/// The fault layer's counters, read at each scrape.
struct FaultCollector(Faults);

impl std::fmt::Debug for FaultCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FaultCollector")
    }
}

impl Collector for FaultCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.0.stats();
        let counters: [(&str, &str, &AtomicU64); 5] = [
            (
                "drlab_fault_dropped_datagrams",
                "Datagrams lost to drop/loss/reject rules.",
                &s.dropped_datagrams,
            ),
            (
                "drlab_fault_dropped_bytes",
                "Bytes lost to drop/loss/reject rules.",
                &s.dropped_bytes,
            ),
            (
                "drlab_fault_delayed_datagrams",
                "Datagrams held back by delay rules.",
                &s.delayed_datagrams,
            ),
            (
                "drlab_fault_rejected_connections",
                "TCP connections refused by reject rules.",
                &s.rejected_connections,
            ),
            (
                "drlab_fault_reset_connections",
                "TCP connections reset by the fault layer.",
                &s.reset_connections,
            ),
        ];
        for (name, help, value) in counters {
            let value = ConstCounter::new(value.load(Ordering::Relaxed));
            encode_single(&mut encoder, name, help, value)?;
        }
        let rules = ConstGauge::new(i64::try_from(self.0.list().len()).unwrap_or(i64::MAX));
        encode_single(
            &mut encoder,
            "drlab_fault_rules",
            "Fault rules in force.",
            rules,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[test]
    fn renders_with_node_label() {
        let m = Metrics::new("ss1");
        let c = m.register(
            "sip_requests",
            "SIP requests received",
            Counter::<u64>::default(),
        );
        c.inc_by(3);
        let text = m.render();
        assert!(
            text.contains("sip_requests_total{node=\"ss1\"} 3"),
            "{text}"
        );
    }

    #[test]
    fn fault_counters_come_before_the_single_eof() {
        let m = Metrics::new("gws1");
        m.register("up", "Up", Counter::<u64>::default());
        m.register_faults(&Faults::new());
        let text = m.render();
        assert!(
            text.contains(
                "# TYPE drlab_fault_dropped_datagrams counter\n\
                 drlab_fault_dropped_datagrams_total{node=\"gws1\"} 0\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("drlab_fault_rules{node=\"gws1\"} 0\n"),
            "{text}"
        );
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
