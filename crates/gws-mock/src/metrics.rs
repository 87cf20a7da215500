//! The node's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use nodekit::Metrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabel {
    pub cause: &'static str,
}

/// Every metric of a GWS node, registered once at start.
pub struct GwsMetrics {
    pub registry: Metrics,
    /// Set from the state when `/metrics` is read.
    pub sessions: Gauge,
    pub cometd_clients: Gauge,
    pub tlib_link_up: Gauge,
    pub notifications_sent: Counter,
    pub tlib_connects: Counter,
    pub logins: Counter,
    sessions_ended: Family<CauseLabel, Counter>,
}

impl GwsMetrics {
    pub fn new(node: &str) -> Self {
        let m = Metrics::new(node);
        GwsMetrics {
            sessions: m.register("drlab_gws_sessions", "Desktop sessions", Gauge::default()),
            cometd_clients: m.register(
                "drlab_gws_cometd_clients",
                "Handshaken CometD clients",
                Gauge::default(),
            ),
            tlib_link_up: m.register(
                "drlab_gws_tlib_link_up",
                "1 while the T-Lib link to a SIP node is up",
                Gauge::default(),
            ),
            notifications_sent: m.register(
                "drlab_gws_notifications",
                "Notifications queued for CometD clients",
                Counter::default(),
            ),
            tlib_connects: m.register(
                "drlab_gws_tlib_connects",
                "T-Lib links established (first connect and reconnects)",
                Counter::default(),
            ),
            logins: m.register(
                "drlab_gws_logins",
                "Sessions created by Basic auth",
                Counter::default(),
            ),
            sessions_ended: m.register(
                "drlab_gws_sessions_ended",
                "Sessions ended, by cause",
                Family::default(),
            ),
            registry: m,
        }
    }

    pub fn session_ended(&self, cause: &'static str) {
        self.sessions_ended
            .get_or_create(&CauseLabel { cause })
            .inc();
    }
}
