//! Per-node Prometheus metrics. Several nodes share one process in `drlab up`, so each node has
//! its own registry rather than a global recorder.

use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::{Metric, Registry};

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

    /// The Prometheus text exposition of every registered metric.
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
}
