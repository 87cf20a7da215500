//! The simulator's Prometheus metrics; the live status line reads the same counters.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use nodekit::Metrics;

use crate::media::MediaCounters;

/// Every metric of one simulator, registered once at start.
pub struct SimMetrics {
    pub registry: Metrics,
    /// Phones registered right now.
    pub registered: Gauge,
    /// Successful first registrations (failovers included).
    pub registrations: Counter,
    pub refreshes: Counter,
    pub registration_failures: Counter,
    /// Registrations at another registrar than the last one.
    pub failovers: Counter,
    /// Bindings removed at shutdown (`Expires: 0` answered with 2xx).
    pub unregistrations: Counter,
    pub calls_offered: Counter,
    pub calls_answered: Counter,
    pub calls_placed: Counter,
    pub calls_established: Counter,
    pub calls_ended: Counter,
    /// Calls dropped because their media went silent.
    pub media_silent_drops: Counter,
    pub media: MediaCounters,
    /// Woken when every phone is registered (see [`crate::Swarm::until_registered`]).
    pub all_registered: tokio::sync::Notify,
}

impl SimMetrics {
    pub fn new(name: &str) -> Self {
        let m = Metrics::new(name);
        let counter = |name: &str, help: &str| m.register(name, help, Counter::default());
        let media = MediaCounters {
            sent: counter("softphone_media_packets_sent", "Heartbeat packets sent"),
            received: counter(
                "softphone_media_packets_received",
                "Heartbeat packets received",
            ),
            lost: counter(
                "softphone_media_packets_lost",
                "Heartbeat packets missing from the received sequence numbers",
            ),
        };
        SimMetrics {
            registered: m.register(
                "softphone_registered",
                "Phones registered right now",
                Gauge::default(),
            ),
            registrations: counter(
                "softphone_registrations",
                "Registrations after not being registered",
            ),
            refreshes: counter("softphone_refreshes", "Successful registration refreshes"),
            registration_failures: counter(
                "softphone_registration_failures",
                "REGISTERs that timed out, were refused or could not be sent",
            ),
            failovers: counter(
                "softphone_failovers",
                "Registrations at another registrar than the previous one",
            ),
            unregistrations: counter(
                "softphone_unregistrations",
                "Bindings removed at shutdown (REGISTER Expires: 0 answered with 2xx)",
            ),
            calls_offered: counter("softphone_calls_offered", "INVITEs received"),
            calls_answered: counter("softphone_calls_answered", "Calls answered with 200"),
            calls_placed: counter("softphone_calls_placed", "INVITEs sent"),
            calls_established: counter(
                "softphone_calls_established",
                "Placed calls answered with 200",
            ),
            calls_ended: counter("softphone_calls_ended", "Calls over, for any reason"),
            media_silent_drops: counter(
                "softphone_media_silent_drops",
                "Calls dropped with BYE because their media went silent",
            ),
            media,
            all_registered: tokio::sync::Notify::new(),
            registry: m,
        }
    }
}
