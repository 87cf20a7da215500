//! A GWS node's configuration: who it is, where it listens, which SIP nodes it talks to (in
//! order), its users, its timers and options. Readable from TOML (`gws-mock --config gws.toml`)
//! and built by `drlab` from the topology file.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tlib::AgentWorkMode;

use crate::users::{UserEntry, UserRange};

pub use nodekit::AddpSettings;

/// Everything one GWS API node needs.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GwsConfig {
    /// Node name (`gws1`): names the fault-layer links `http:gws1` and `tlib:gws1-<sip node>`.
    pub name: String,
    /// Data center (`dc1`).
    pub dc: String,
    /// The node's own address: the HTTP and control ports bind to it, and the T-Lib connection
    /// leaves from it (so an iptables rule on addresses cuts it).
    pub address: IpAddr,
    /// Jetty's port in a real GWS.
    #[serde(default = "default_http_port")]
    pub http_port: u16,
    #[serde(default = "default_control_port")]
    pub control_port: u16,
    /// Required to expose the control plane on a non-loopback address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_token: Option<String>,
    /// The SIP nodes' T-Lib ports, in the order they are tried (local DC first): the node
    /// connects to the first reachable one and starts from the top again after a loss.
    #[serde(default)]
    pub sip_nodes: Vec<SipNodeRef>,
    /// Users listed one by one (checked before the ranges).
    #[serde(default)]
    pub users: Vec<UserEntry>,
    /// Users made from DN ranges; the default (docs/architecture.md §2) is `agent<DN>` /
    /// `password` for 7000–7999 and 8000–8999.
    #[serde(default = "UserRange::defaults")]
    pub user_ranges: Vec<UserRange>,
    /// A desktop session with no request (REST or CometD) for this long ends; its DN is
    /// unregistered (Jetty `sessionMaxInactiveInterval`, 1800 s).
    #[serde(default = "default_session_timeout", with = "nodekit::duration")]
    pub session_timeout: Duration,
    #[serde(default)]
    pub cometd: CometdSettings,
    /// ADDP keepalive on the T-Lib link.
    #[serde(default)]
    pub addp: AddpSettings,
    #[serde(default)]
    pub reconnect: ReconnectSettings,
    /// How long a REST call waits for the SIP node's answer to its T-Lib request.
    #[serde(default = "default_request_timeout", with = "nodekit::duration")]
    pub request_timeout: Duration,
    /// `AgentWorkMode` of the `RequestAgentLogin` sent by StartContactCenterSession: `AutoIn`
    /// logs the agent in Ready, `ManualIn` in NotReady.
    #[serde(default = "default_login_work_mode")]
    pub agent_login_work_mode: AgentWorkMode,
    /// R13: when the SIP node reports the session's DN out of service, end the desktop session.
    #[serde(default = "default_true")]
    pub end_session_on_dn_out_of_service: bool,
    /// GWS `enableCsrfProtection`: GETs hand out `X-CSRF-TOKEN`, and POSTs must echo it.
    #[serde(default)]
    pub csrf: bool,
    /// A client slower than this to send its request headers is disconnected.
    #[serde(default = "default_header_read_timeout", with = "nodekit::duration")]
    pub header_read_timeout: Duration,
    /// Largest request body accepted (REST and CometD); larger gets 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Desktop sessions the node keeps at most; a login beyond gets 503.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// Entries kept by the event journal.
    #[serde(default = "default_journal_capacity")]
    pub journal_capacity: usize,
}

/// One SIP node of the ordered list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipNodeRef {
    /// `ss1`: also the Voice service's name in `GET /api/v2/services`.
    pub name: String,
    /// Its T-Lib port.
    pub tlib: SocketAddr,
}

/// CometD server settings (defaults: the CometD Java server's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CometdSettings {
    /// How long a `/meta/connect` is held when there is nothing to deliver (`advice.timeout`).
    #[serde(with = "nodekit::duration")]
    pub timeout: Duration,
    /// How long the client waits between connects (`advice.interval`).
    #[serde(with = "nodekit::duration")]
    pub interval: Duration,
    /// A client that has not connected for this long after its last connect returned is
    /// forgotten (`maxInterval`); its next message gets `402::Unknown client`.
    #[serde(with = "nodekit::duration")]
    pub max_interval: Duration,
    /// Messages queued per client; beyond that the oldest are dropped (and counted).
    pub max_queued_messages: usize,
    /// Messages accepted in one batch (one POST body or WebSocket frame).
    pub max_batch: usize,
    /// Subscriptions per client.
    pub max_subscriptions: usize,
    /// CometD clients per desktop session; a new handshake beyond it replaces the oldest.
    pub max_clients_per_session: usize,
}

impl Default for CometdSettings {
    fn default() -> Self {
        CometdSettings {
            timeout: Duration::from_secs(30),
            interval: Duration::ZERO,
            max_interval: Duration::from_secs(10),
            max_queued_messages: 1000,
            max_batch: 64,
            max_subscriptions: 32,
            max_clients_per_session: 4,
        }
    }
}

/// How the T-Lib link is re-established (defaults: the T-Library client's HA settings).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconnectSettings {
    /// Limit for one connect plus handshake to one SIP node (`THA` connect timeout 3.6 s).
    #[serde(with = "nodekit::duration")]
    pub connect_timeout: Duration,
    /// Wait after a round in which no SIP node answered; doubles per failed round.
    #[serde(with = "nodekit::duration")]
    pub initial_backoff: Duration,
    /// The longest wait between rounds (backup reconnect interval, 20 s).
    #[serde(with = "nodekit::duration")]
    pub max_backoff: Duration,
}

impl Default for ReconnectSettings {
    fn default() -> Self {
        ReconnectSettings {
            connect_timeout: Duration::from_millis(3600),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(20),
        }
    }
}

fn default_http_port() -> u16 {
    8090
}
fn default_control_port() -> u16 {
    9000
}
fn default_session_timeout() -> Duration {
    Duration::from_secs(1800)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_login_work_mode() -> AgentWorkMode {
    AgentWorkMode::AutoIn
}
fn default_header_read_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_true() -> bool {
    true
}
fn default_max_body_bytes() -> usize {
    64 * 1024
}
fn default_max_sessions() -> usize {
    20_000
}
fn default_journal_capacity() -> usize {
    nodekit::journal::DEFAULT_CAPACITY
}

impl GwsConfig {
    /// A node with the default ports, users, timers and options, and no SIP node yet.
    pub fn new(name: &str, dc: &str, address: IpAddr) -> Self {
        GwsConfig {
            name: name.into(),
            dc: dc.into(),
            address,
            http_port: default_http_port(),
            control_port: default_control_port(),
            control_token: None,
            sip_nodes: Vec::new(),
            users: Vec::new(),
            user_ranges: UserRange::defaults(),
            session_timeout: default_session_timeout(),
            cometd: CometdSettings::default(),
            addp: AddpSettings::default(),
            reconnect: ReconnectSettings::default(),
            request_timeout: default_request_timeout(),
            agent_login_work_mode: default_login_work_mode(),
            end_session_on_dn_out_of_service: true,
            csrf: false,
            header_read_timeout: default_header_read_timeout(),
            max_body_bytes: default_max_body_bytes(),
            max_sessions: default_max_sessions(),
            journal_capacity: default_journal_capacity(),
        }
    }

    /// Every port 0 (the kernel picks): for tests that run many nodes side by side.
    pub fn with_ephemeral_ports(mut self) -> Self {
        self.http_port = 0;
        self.control_port = 0;
        self
    }

    /// The fast timer profile of docs/scenarios.md §0 (tests and scenario runs).
    pub fn with_fast_timers(mut self) -> Self {
        self.session_timeout = Duration::from_secs(2);
        self.cometd.timeout = Duration::from_millis(1000);
        self.cometd.max_interval = Duration::from_secs(2);
        self.addp = AddpSettings {
            interval: Duration::from_millis(200),
            timeout: Duration::from_millis(600),
        };
        self.reconnect = ReconnectSettings {
            connect_timeout: Duration::from_millis(500),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        };
        self.request_timeout = Duration::from_secs(2);
        self
    }

    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.http_port)
    }
    pub fn control_addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.control_port)
    }

    /// The fault-layer link of the HTTP side.
    pub fn http_link(&self) -> String {
        format!("http:{}", self.name)
    }

    /// The fault-layer link of the T-Lib connection to `sip_node`.
    pub fn tlib_link(&self, sip_node: &str) -> String {
        format!("tlib:{}-{sip_node}", self.name)
    }

    /// Checks what serde cannot; errors name the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("field `name`: must not be empty".into());
        }
        if self.addp.interval.is_zero() || self.addp.timeout <= self.addp.interval {
            return Err(
                "field `addp.timeout`: must be longer than a non-zero `addp.interval`".into(),
            );
        }
        let c = &self.cometd;
        if c.max_interval.is_zero() || c.timeout.is_zero() {
            return Err("field `cometd.timeout` / `cometd.max_interval`: must not be zero".into());
        }
        if c.max_queued_messages == 0
            || c.max_batch == 0
            || c.max_subscriptions == 0
            || c.max_clients_per_session == 0
        {
            return Err("fields `cometd.max_*`: must not be zero".into());
        }
        if self.session_timeout.is_zero() || self.header_read_timeout.is_zero() {
            return Err(
                "fields `session_timeout` / `header_read_timeout`: must not be zero".into(),
            );
        }
        let r = &self.reconnect;
        if r.initial_backoff.is_zero() || r.max_backoff < r.initial_backoff {
            return Err(
                "field `reconnect.max_backoff`: must be at least a non-zero `initial_backoff`"
                    .into(),
            );
        }
        if self.max_body_bytes == 0 || self.max_sessions == 0 {
            return Err("fields `max_body_bytes` / `max_sessions`: must not be zero".into());
        }
        for (i, range) in self.user_ranges.iter().enumerate() {
            range
                .validate()
                .map_err(|e| format!("field `user_ranges[{i}]`: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_round_trip_with_defaults() {
        let text = r#"
            name = "gws1"
            dc = "dc1"
            address = "127.0.1.11"
            session_timeout = "30s"
            agent_login_work_mode = "ManualIn"
            [[sip_nodes]]
            name = "ss1"
            tlib = "127.0.1.1:3000"
            [[sip_nodes]]
            name = "ss2"
            tlib = "127.0.1.2:3000"
            [cometd]
            timeout = "20s"
            interval = "0s"
            max_interval = "10s"
            max_queued_messages = 100
            max_batch = 10
            max_subscriptions = 8
            max_clients_per_session = 2
        "#;
        let cfg: GwsConfig = toml::from_str(text).unwrap();
        assert_eq!(cfg.http_port, 8090);
        assert_eq!(cfg.sip_nodes.len(), 2);
        assert_eq!(cfg.session_timeout, Duration::from_secs(30));
        assert_eq!(cfg.agent_login_work_mode, AgentWorkMode::ManualIn);
        assert!(cfg.end_session_on_dn_out_of_service);
        assert_eq!(cfg.user_ranges, UserRange::defaults());
        assert_eq!(cfg.validate(), Ok(()));
        let back: GwsConfig = toml::from_str(&toml::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(back.sip_nodes, cfg.sip_nodes);
        assert_eq!(back.cometd, cfg.cometd);
        assert_eq!(cfg.tlib_link("ss1"), "tlib:gws1-ss1");
    }

    #[test]
    fn validation_names_the_field() {
        let mut cfg = GwsConfig::new("gws1", "dc1", [127, 0, 0, 1].into()).with_fast_timers();
        assert_eq!(cfg.validate(), Ok(()));
        cfg.addp.timeout = cfg.addp.interval;
        assert!(cfg.validate().unwrap_err().contains("addp.timeout"));
        let bad: Result<GwsConfig, _> =
            toml::from_str("name=\"g\"\ndc=\"d\"\naddress=\"127.0.0.1\"\nbogus=1");
        assert!(bad.is_err());
    }
}

// Its identity fields and constructors are the ones the node binaries' common flags override.
nodekit::node_config_file!(GwsConfig);
