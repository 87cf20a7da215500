//! The node's Prometheus metrics (names follow SIPp's counters where one exists).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use nodekit::Metrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

/// Every metric of a SIP node, registered once at start.
pub struct NodeMetrics {
    pub registry: Metrics,
    pub sip_requests: Counter,
    pub sip_retransmissions: Counter,
    pub sip_bad_requests: Counter,
    pub sip_dropped: Counter,
    sip_responses: Family<CodeLabel, Counter>,
    pub registrations_new: Counter,
    pub registrations_refreshed: Counter,
    pub registrations_expired: Counter,
    pub bindings: Gauge,
    pub clients: Gauge,
    pub tlib_requests: Counter,
    pub tlib_errors: Counter,
    pub tlib_events_sent: Counter,
    pub agent_logins: Counter,
    pub calls_active: Gauge,
    pub calls_answered: Counter,
    calls_ended: Family<OutcomeLabel, Counter>,
    pub sip_retransmissions_sent: Counter,
    pub agent_logouts: Counter,
    pub tc_frames_sent: Counter,
    pub tc_frames_received: Counter,
    pub tc_frames_lost: Counter,
    pub ownership_moves: Counter,
    pub ownership_conflicts: Counter,
    pub owned_dns: Gauge,
}

impl NodeMetrics {
    pub fn new(node: &str) -> Self {
        let m = Metrics::new(node);
        NodeMetrics {
            sip_requests: m.register(
                "drlab_sip_requests",
                "SIP requests received",
                Counter::default(),
            ),
            sip_retransmissions: m.register(
                "drlab_sip_retransmissions",
                "Retransmitted SIP requests absorbed by a server transaction",
                Counter::default(),
            ),
            sip_bad_requests: m.register(
                "drlab_sip_bad_requests",
                "Unparseable SIP messages",
                Counter::default(),
            ),
            sip_dropped: m.register(
                "drlab_sip_dropped",
                "SIP messages ignored (stray responses)",
                Counter::default(),
            ),
            sip_responses: m.register(
                "drlab_sip_responses",
                "SIP responses sent, by status code",
                Family::default(),
            ),
            registrations_new: m.register(
                "drlab_sip_registrations_new",
                "REGISTERs that put a DN in service",
                Counter::default(),
            ),
            registrations_refreshed: m.register(
                "drlab_sip_registrations_refreshed",
                "REGISTER refreshes",
                Counter::default(),
            ),
            registrations_expired: m.register(
                "drlab_sip_registrations_expired",
                "Bindings that expired (R12)",
                Counter::default(),
            ),
            bindings: m.register(
                "drlab_sip_bindings",
                "Current registrar bindings",
                Gauge::default(),
            ),
            clients: m.register(
                "drlab_tlib_clients",
                "Connected T-Lib clients",
                Gauge::default(),
            ),
            tlib_requests: m.register(
                "drlab_tlib_requests",
                "T-Lib requests received",
                Counter::default(),
            ),
            tlib_errors: m.register("drlab_tlib_errors", "EventError sent", Counter::default()),
            tlib_events_sent: m.register(
                "drlab_tlib_events_sent",
                "T-Lib events sent",
                Counter::default(),
            ),
            agent_logins: m.register("drlab_agent_logins", "Agent logins", Counter::default()),
            calls_active: m.register(
                "drlab_calls_active",
                "Calls in progress on this node",
                Gauge::default(),
            ),
            calls_answered: m.register(
                "drlab_calls_answered",
                "Calls answered by the agent's phone",
                Counter::default(),
            ),
            calls_ended: m.register(
                "drlab_calls",
                "Calls ended or refused, by outcome",
                Family::default(),
            ),
            sip_retransmissions_sent: m.register(
                "drlab_sip_retransmissions_sent",
                "Requests the node retransmitted (Timers A/E)",
                Counter::default(),
            ),
            agent_logouts: m.register(
                "drlab_agent_logouts",
                "Agent logouts (requested or R4)",
                Counter::default(),
            ),
            tc_frames_sent: m.register(
                "drlab_tc_frames_sent",
                "TC-layer frames queued to peers (keepalives excluded)",
                Counter::default(),
            ),
            tc_frames_received: m.register(
                "drlab_tc_frames_received",
                "TC-layer frames received from peers (keepalives excluded)",
                Counter::default(),
            ),
            tc_frames_lost: m.register(
                "drlab_tc_frames_lost",
                "TC-layer frames not sent because the link was down (R10, R11)",
                Counter::default(),
            ),
            ownership_moves: m.register(
                "drlab_ownership_moves",
                "DN ownership handed to another node (R8)",
                Counter::default(),
            ),
            ownership_conflicts: m.register(
                "drlab_ownership_conflicts",
                "Split-brain ownership conflicts resolved after a heal",
                Counter::default(),
            ),
            owned_dns: m.register("drlab_owned_dns", "DNs this node owns", Gauge::default()),
            registry: m,
        }
    }

    pub fn call_outcome(&self, outcome: &'static str) {
        self.calls_ended
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    pub fn sip_responses(&self, code: u16) {
        self.sip_responses.get_or_create(&CodeLabel { code }).inc();
    }
}
