//! A node's configuration: who it is, where it listens, its DNs, timers and Genesys options.
//! Readable from TOML (`sipserver-mock --config node.toml`) and built by `drlab` from the
//! topology file.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::dn::DnRange;

pub use nodekit::AddpSettings;

/// Everything one SIP Cluster node needs.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Node name (`ss1`).
    pub name: String,
    /// Data center (`dc1`).
    pub dc: String,
    /// The node's own address: every socket binds to it, incoming and outgoing.
    pub address: IpAddr,
    #[serde(default = "default_sip_port")]
    pub sip_port: u16,
    #[serde(default = "default_tlib_port")]
    pub tlib_port: u16,
    #[serde(default = "default_tc_port")]
    pub tc_port: u16,
    #[serde(default = "default_control_port")]
    pub control_port: u16,
    /// Required to expose the control plane on a non-loopback address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_token: Option<String>,
    /// The DNs of the switch (the same on every node of a cluster).
    #[serde(default = "default_dns")]
    pub dns: Vec<DnRange>,
    #[serde(default)]
    pub registrar: RegistrarConfig,
    #[serde(default)]
    pub options: AgentOptions,
    #[serde(default)]
    pub addp: AddpSettings,
    /// RFC 3261 timers (T1, T2, T4) for SIP retransmissions and transaction timeouts.
    #[serde(default)]
    pub sip_timers: sipcore::TimerConfig,
    /// How often both legs of an answered call are checked with an in-dialog OPTIONS (0: never).
    /// A leg that stops answering releases the call.
    #[serde(default = "default_call_audit_interval", with = "nodekit::duration")]
    pub call_audit_interval: Duration,
    /// Where PSTN agents' phones are reached: calls to a PSTN DN go to
    /// `sip:<external number>@<gateway>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pstn_gateway: Option<SocketAddr>,
    /// The other nodes of the cluster, reached over the TC layer.
    #[serde(default)]
    pub peers: Vec<crate::tc::PeerNode>,
    /// Entries kept by the event journal.
    #[serde(default = "default_journal_capacity")]
    pub journal_capacity: usize,
}

/// Registrar expiry policy (the real server grants what is asked).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RegistrarConfig {
    /// Granted when the REGISTER names no expiry.
    #[serde(with = "nodekit::duration")]
    pub default_expires: Duration,
    /// Shorter (non-zero) requests get `423 Interval Too Brief` with `Min-Expires`.
    #[serde(with = "nodekit::duration")]
    pub min_expires: Duration,
    /// Longer requests are granted this much.
    #[serde(with = "nodekit::duration")]
    pub max_expires: Duration,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            default_expires: Duration::from_secs(1800),
            min_expires: Duration::from_secs(1),
            max_expires: Duration::from_secs(7200),
        }
    }
}

/// Options with their Genesys (T-Server) names (docs/scenarios.md §0).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentOptions {
    /// `agent-logout-on-unreg` plus the implicit unregister on client disconnect (R4).
    pub logout_on_disconnect: bool,
    /// `agent-emu-login-on-call`: allow login/logout during a call (R5).
    pub agent_emu_login_on_call: bool,
    /// `wrap-up-time` (R7); zero means no ACW.
    #[serde(with = "nodekit::duration")]
    pub wrap_up_time: Duration,
    /// `untimed-wrap-up-value`: ACW lasts until the agent asks for Ready.
    #[serde(default)]
    pub wrap_up_untimed: bool,
    /// Wait before ownership of a DN moves to another node (R8).
    #[serde(with = "nodekit::duration")]
    pub ownership_move_delay: Duration,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            logout_on_disconnect: true,
            agent_emu_login_on_call: false,
            wrap_up_time: Duration::from_secs(10),
            wrap_up_untimed: false,
            ownership_move_delay: Duration::from_secs(30),
        }
    }
}

fn default_sip_port() -> u16 {
    5060
}
fn default_tlib_port() -> u16 {
    3000
}
fn default_tc_port() -> u16 {
    3100
}
fn default_control_port() -> u16 {
    9000
}
fn default_call_audit_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_journal_capacity() -> usize {
    nodekit::journal::DEFAULT_CAPACITY
}
fn default_dns() -> Vec<DnRange> {
    DnRange::defaults()
}

impl NodeConfig {
    /// A node with the default ports, DNs, timers and options.
    pub fn new(name: &str, dc: &str, address: IpAddr) -> Self {
        NodeConfig {
            name: name.into(),
            dc: dc.into(),
            address,
            sip_port: default_sip_port(),
            tlib_port: default_tlib_port(),
            tc_port: default_tc_port(),
            control_port: default_control_port(),
            control_token: None,
            dns: default_dns(),
            registrar: RegistrarConfig::default(),
            options: AgentOptions::default(),
            addp: AddpSettings::default(),
            sip_timers: sipcore::TimerConfig::default(),
            call_audit_interval: default_call_audit_interval(),
            pstn_gateway: None,
            peers: Vec::new(),
            journal_capacity: default_journal_capacity(),
        }
    }

    /// Every port 0 (the kernel picks): for tests that run many nodes side by side.
    pub fn with_ephemeral_ports(mut self) -> Self {
        self.sip_port = 0;
        self.tlib_port = 0;
        self.tc_port = 0;
        self.control_port = 0;
        self
    }

    /// The fast timer profile of docs/scenarios.md §0 (tests and scenario runs).
    pub fn with_fast_timers(mut self) -> Self {
        self.options.ownership_move_delay = Duration::from_secs(1);
        self.options.wrap_up_time = Duration::from_secs(1);
        self.addp = AddpSettings {
            interval: Duration::from_millis(200),
            timeout: Duration::from_millis(600),
        };
        // A vanished leg is found within about 1 s + 64·T1 = 2.3 s.
        self.call_audit_interval = Duration::from_secs(1);
        self.sip_timers.t1 = Duration::from_millis(20);
        self
    }

    pub fn sip_addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.sip_port)
    }
    pub fn tlib_addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.tlib_port)
    }
    pub fn tc_addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.tc_port)
    }
    pub fn control_addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.control_port)
    }

    /// Checks what serde cannot; errors name the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("field `name`: must not be empty".into());
        }
        let r = &self.registrar;
        if r.min_expires > r.max_expires {
            return Err(
                "field `registrar.min_expires`: larger than `registrar.max_expires`".into(),
            );
        }
        if r.default_expires < r.min_expires || r.default_expires > r.max_expires {
            return Err(
                "field `registrar.default_expires`: outside min_expires..=max_expires".into(),
            );
        }
        if self.addp.interval.is_zero() || self.addp.timeout <= self.addp.interval {
            return Err(
                "field `addp.timeout`: must be longer than a non-zero `addp.interval`".into(),
            );
        }
        for (i, range) in self.dns.iter().enumerate() {
            range
                .validate()
                .map_err(|e| format!("field `dns[{i}]`: {e}"))?;
        }
        Ok(())
    }
}

// Its identity fields and constructors are the ones the node binaries' common flags override.
nodekit::node_config_file!(NodeConfig);
