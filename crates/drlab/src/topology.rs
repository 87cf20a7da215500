//! The topology file: which nodes run where, their DNs, timers and options. The default one is
//! compiled in (`topology/default.toml`).

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use gws_mock::GwsConfig;
use serde::{Deserialize, Serialize};
use sipserver_mock::{AddpSettings, AgentOptions, DnKind, DnRange, NodeConfig, RegistrarConfig};

/// The embedded default topology, as text.
pub const DEFAULT_TOPOLOGY: &str = include_str!("../topology/default.toml");

/// A whole lab.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    pub timers: Timers,
    /// Named timer profiles (`fast`) that replace `timers` when chosen.
    #[serde(default)]
    pub profiles: BTreeMap<String, Timers>,
    #[serde(default)]
    pub registrar: RegistrarConfig,
    #[serde(default)]
    pub options: Options,
    pub dns: Vec<DnSpec>,
    /// The PSTN gateway every SIP node sends PSTN agents' calls to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pstn_gateway: Option<std::net::SocketAddr>,
    /// Whether the lab runs the PSTN gateway itself (softphone-sim answering every number);
    /// false when one runs elsewhere (a real SIP peer, a test's user agent).
    #[serde(default = "yes")]
    pub start_pstn_gateway: bool,
    pub sip_nodes: Vec<SipNodeSpec>,
    /// GWS API nodes, each with its ordered list of SIP nodes.
    #[serde(default)]
    pub gws_nodes: Vec<GwsNodeSpec>,
    /// Cross-origin settings of every GWS node (`[gws_cors]`; off unless origins are listed).
    #[serde(default)]
    pub gws_cors: gws_mock::CorsSettings,
    /// NGINX-like proxies in front of GWS nodes (one per DC by default).
    #[serde(default)]
    pub proxies: Vec<ProxySpec>,
}

/// Protocol timers (docs/scenarios.md §0).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Timers {
    #[serde(with = "nodekit::duration")]
    pub ownership_move_delay: Duration,
    #[serde(with = "nodekit::duration")]
    pub wrap_up_time: Duration,
    #[serde(with = "nodekit::duration")]
    pub addp_interval: Duration,
    #[serde(with = "nodekit::duration")]
    pub addp_timeout: Duration,
    /// In-dialog OPTIONS to both legs of an answered call this often (0s: never).
    #[serde(with = "nodekit::duration")]
    pub call_audit_interval: Duration,
    /// SIP T1 (RFC 3261): retransmissions start at T1, transactions give up after 64·T1.
    #[serde(with = "nodekit::duration")]
    pub sip_t1: Duration,
    /// GWS: a desktop session with no request for this long ends (its DN is unregistered).
    #[serde(with = "nodekit::duration", default = "default_session_timeout")]
    pub gws_session_timeout: Duration,
    /// GWS: how long a CometD `/meta/connect` is held before an empty answer.
    #[serde(with = "nodekit::duration", default = "default_cometd_timeout")]
    pub cometd_timeout: Duration,
    /// GWS: the longest wait between reconnect attempts to its SIP nodes.
    #[serde(with = "nodekit::duration", default = "default_gws_reconnect_max")]
    pub gws_reconnect_max: Duration,
}

fn yes() -> bool {
    true
}

fn default_session_timeout() -> Duration {
    Duration::from_secs(1800)
}
fn default_cometd_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_gws_reconnect_max() -> Duration {
    Duration::from_secs(20)
}

/// One range of the switch's DNs and the desktop users made from it: `{ range = "8000-8999",
/// kind = "pstn", external = "+1555{dn}", user = "agent{dn}", password = "password" }`. Every
/// GWS node accepts `user` (with `{dn}` standing for the DN) / `password` for each DN of the range.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DnSpec {
    /// `"7000-7999"` or a single DN `"7001"`: digits, both ends of the same length.
    pub range: String,
    pub kind: DnKind,
    /// PSTN DNs: the number the PSTN gateway is called at, `{dn}` replaced by the DN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<String>,
    /// The desktop user name of each DN (default `agent{dn}`).
    #[serde(default = "default_user")]
    pub user: String,
    /// The desktop users' password (default `password`).
    #[serde(default = "default_password")]
    pub password: String,
}

fn default_user() -> String {
    "agent{dn}".into()
}
fn default_password() -> String {
    "password".into()
}

impl DnSpec {
    /// The SIP nodes' view of the range.
    pub fn dn_range(&self) -> DnRange {
        DnRange {
            range: self.range.clone(),
            kind: self.kind,
            external: self.external.clone(),
        }
    }

    /// The GWS nodes' view of the range: its users.
    pub fn user_range(&self) -> gws_mock::UserRange {
        gws_mock::UserRange {
            dns: self.range.clone(),
            name: self.user.clone(),
            password: self.password.clone(),
        }
    }

    /// The first DN of the range and the number of DNs in it.
    pub fn first_dn(&self) -> Option<(String, u64)> {
        let (lo, hi) = self
            .range
            .split_once('-')
            .unwrap_or((&self.range, &self.range));
        let (lo, hi) = (lo.trim(), hi.trim());
        let (l, h) = (lo.parse::<u64>().ok()?, hi.parse::<u64>().ok()?);
        (l <= h).then(|| (lo.to_owned(), h - l + 1))
    }

    /// The `n`th DN of the range (0: the first), same width as the range's ends.
    pub fn nth_dn(&self, n: u64) -> Option<String> {
        let (first, count) = self.first_dn()?;
        let width = first.len();
        let l: u64 = first.parse().ok()?;
        (n < count).then(|| format!("{:0width$}", l + n))
    }

    /// The desktop user name of `dn`.
    pub fn user_of(&self, dn: &str) -> String {
        self.user.replace("{dn}", dn)
    }
}

/// Genesys options shared by every SIP node.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Options {
    pub logout_on_disconnect: bool,
    pub agent_emu_login_on_call: bool,
}

impl Default for Options {
    fn default() -> Self {
        let d = AgentOptions::default();
        Options {
            logout_on_disconnect: d.logout_on_disconnect,
            agent_emu_login_on_call: d.agent_emu_login_on_call,
        }
    }
}

/// One SIP Cluster node.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipNodeSpec {
    pub name: String,
    pub dc: String,
    pub address: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tlib_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tc_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_token: Option<String>,
}

/// One GWS API node.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GwsNodeSpec {
    pub name: String,
    pub dc: String,
    pub address: IpAddr,
    /// SIP nodes by name, in the order the node tries them.
    pub sip_nodes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_token: Option<String>,
}

/// One proxy and the GWS nodes behind it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySpec {
    pub name: String,
    pub dc: String,
    pub address: IpAddr,
    /// GWS nodes by name: the upstream group.
    pub gws_nodes: Vec<String>,
    /// Stickiness of the group (`learn` on JSESSIONID, as GWS docs require affinity).
    #[serde(default = "default_sticky")]
    pub sticky: proxy::Sticky,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_token: Option<String>,
}

fn default_sticky() -> proxy::Sticky {
    proxy::Sticky::Learn
}

impl Topology {
    /// The embedded default.
    pub fn embedded() -> Self {
        // The embedded file is checked by a unit test, so this cannot fail in a release.
        Self::parse(DEFAULT_TOPOLOGY)
            .unwrap_or_else(|e| panic!("embedded topology is invalid: {e}"))
    }

    /// Parses and validates a topology file's text; errors name the bad field.
    pub fn parse(text: &str) -> Result<Self, String> {
        let topology: Topology = toml::from_str(text).map_err(|e| e.to_string())?;
        topology.validate()?;
        Ok(topology)
    }

    fn validate(&self) -> Result<(), String> {
        if self.sip_nodes.is_empty() {
            return Err("field `sip_nodes`: at least one SIP node is needed".into());
        }
        for (i, dns) in self.dns.iter().enumerate() {
            dns.user_range()
                .validate()
                .map_err(|e| format!("field `dns[{i}].user`: {e}"))?;
        }
        let mut names = HashSet::new();
        let mut sockets = HashSet::new();
        for (i, node) in self.sip_nodes.iter().enumerate() {
            if !names.insert(node.name.as_str()) {
                return Err(format!(
                    "field `sip_nodes[{i}].name`: `{}` is used twice",
                    node.name
                ));
            }
            if !sockets.insert((node.address, node.sip_port.unwrap_or(5060))) {
                return Err(format!(
                    "field `sip_nodes[{i}].address`: {} and its SIP port are used twice",
                    node.address
                ));
            }
        }
        for (name, timers) in std::iter::once(("timers".to_string(), &self.timers)).chain(
            self.profiles
                .iter()
                .map(|(n, t)| (format!("profiles.{n}"), t)),
        ) {
            if timers.addp_interval.is_zero() || timers.addp_timeout <= timers.addp_interval {
                return Err(format!(
                    "field `{name}.addp_timeout`: must be longer than a non-zero `addp_interval`"
                ));
            }
        }
        let sip = self.node_configs(None)?;
        for node in &sip {
            node.validate()?;
        }
        for (i, gws) in self.gws_nodes.iter().enumerate() {
            if !names.insert(gws.name.as_str()) {
                return Err(format!(
                    "field `gws_nodes[{i}].name`: `{}` is used twice",
                    gws.name
                ));
            }
            if gws.sip_nodes.is_empty() {
                return Err(format!(
                    "field `gws_nodes[{i}].sip_nodes`: at least one SIP node is needed"
                ));
            }
        }
        let gws = self.gws_configs(None, &sip)?;
        for g in &gws {
            g.validate()
                .map_err(|e| format!("gws node {}: {e}", g.name))?;
        }
        for (i, p) in self.proxies.iter().enumerate() {
            if !names.insert(p.name.as_str()) {
                return Err(format!(
                    "field `proxies[{i}].name`: `{}` is used twice",
                    p.name
                ));
            }
        }
        self.proxy_configs(None, &gws)?;
        Ok(())
    }

    /// One proxy `Config` per proxy, its upstream group pointed at the GWS nodes' HTTP ports as
    /// `gws` says (after start, the ports they bound).
    pub fn proxy_configs(
        &self,
        profile: Option<&str>,
        gws: &[GwsConfig],
    ) -> Result<Vec<proxy::Config>, String> {
        let timers = self.timers(profile)?;
        self.proxies
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let mut servers = Vec::with_capacity(spec.gws_nodes.len());
                for name in &spec.gws_nodes {
                    let g = gws.iter().find(|g| &g.name == name).ok_or_else(|| {
                        format!("field `proxies[{i}].gws_nodes`: no GWS node `{name}`")
                    })?;
                    let mut server = proxy::ServerConfig::new(g.http_addr().to_string());
                    server.name = Some(name.clone());
                    servers.push(server);
                }
                if servers.is_empty() {
                    return Err(format!(
                        "field `proxies[{i}].gws_nodes`: at least one GWS node is needed"
                    ));
                }
                let listen =
                    std::net::SocketAddr::new(spec.address, spec.http_port.unwrap_or(8080));
                let mut c = proxy::Config::new(listen, servers);
                c.name = spec.name.clone();
                c.control = Some(std::net::SocketAddr::new(
                    spec.address,
                    spec.control_port.unwrap_or(9000),
                ));
                c.control_token = spec.control_token.clone();
                c.proxy_bind = Some(spec.address);
                // CometD long-polls are held for `cometd_timeout`; the proxy must wait longer.
                c.proxy_read_timeout = c.proxy_read_timeout.max(timers.cometd_timeout * 2);
                if let Some(group) = c.upstreams.first_mut() {
                    group.name = "gws".into();
                    group.sticky = spec.sticky;
                }
                c.validate()
                    .map_err(|e| format!("field `proxies[{i}]`: {e}"))?;
                Ok(c)
            })
            .collect()
    }

    /// One `GwsConfig` per GWS node, with `profile`'s timers, pointed at the T-Lib ports of the
    /// SIP nodes as `sip` says (after start, the ports they bound).
    pub fn gws_configs(
        &self,
        profile: Option<&str>,
        sip: &[NodeConfig],
    ) -> Result<Vec<GwsConfig>, String> {
        let timers = self.timers(profile)?;
        self.gws_nodes
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let mut c = GwsConfig::new(&spec.name, &spec.dc, spec.address);
                c.http_port = spec.http_port.unwrap_or(c.http_port);
                c.control_port = spec.control_port.unwrap_or(c.control_port);
                c.control_token = spec.control_token.clone();
                for name in &spec.sip_nodes {
                    let node = sip.iter().find(|n| &n.name == name).ok_or_else(|| {
                        format!("field `gws_nodes[{i}].sip_nodes`: no SIP node `{name}`")
                    })?;
                    c.sip_nodes.push(gws_mock::config::SipNodeRef {
                        name: name.clone(),
                        tlib: node.tlib_addr(),
                    });
                }
                c.cors = self.gws_cors.clone();
                c.user_ranges = self.dns.iter().map(DnSpec::user_range).collect();
                c.session_timeout = timers.gws_session_timeout;
                c.cometd.timeout = timers.cometd_timeout;
                c.cometd.max_interval = c.cometd.max_interval.max(timers.cometd_timeout * 2);
                c.addp.interval = timers.addp_interval;
                c.addp.timeout = timers.addp_timeout;
                c.reconnect.max_backoff = timers.gws_reconnect_max;
                c.reconnect.initial_backoff =
                    c.reconnect.initial_backoff.min(timers.gws_reconnect_max);
                c.reconnect.connect_timeout = c
                    .reconnect
                    .connect_timeout
                    .min(timers.gws_reconnect_max * 2);
                Ok(c)
            })
            .collect()
    }

    /// The timers of `profile` (None: the file's `[timers]`).
    pub fn timers(&self, profile: Option<&str>) -> Result<&Timers, String> {
        match profile {
            None | Some("default") => Ok(&self.timers),
            Some(p) => self.profiles.get(p).ok_or_else(|| {
                let known: Vec<&str> = self.profiles.keys().map(String::as_str).collect();
                format!(
                    "profile `{p}` is not in the topology (known: default, {})",
                    known.join(", ")
                )
            }),
        }
    }

    /// One `NodeConfig` per SIP node, with `profile`'s timers.
    pub fn node_configs(&self, profile: Option<&str>) -> Result<Vec<NodeConfig>, String> {
        let timers = self.timers(profile)?;
        Ok(self
            .sip_nodes
            .iter()
            .map(|spec| {
                let mut c = NodeConfig::new(&spec.name, &spec.dc, spec.address);
                c.sip_port = spec.sip_port.unwrap_or(c.sip_port);
                c.tlib_port = spec.tlib_port.unwrap_or(c.tlib_port);
                c.tc_port = spec.tc_port.unwrap_or(c.tc_port);
                c.control_port = spec.control_port.unwrap_or(c.control_port);
                c.control_token = spec.control_token.clone();
                c.dns = self.dns.iter().map(DnSpec::dn_range).collect();
                c.registrar = self.registrar.clone();
                c.options = AgentOptions {
                    logout_on_disconnect: self.options.logout_on_disconnect,
                    agent_emu_login_on_call: self.options.agent_emu_login_on_call,
                    wrap_up_time: timers.wrap_up_time,
                    wrap_up_untimed: false,
                    ownership_move_delay: timers.ownership_move_delay,
                };
                c.addp = AddpSettings {
                    interval: timers.addp_interval,
                    timeout: timers.addp_timeout,
                };
                c.call_audit_interval = timers.call_audit_interval;
                c.pstn_gateway = self.pstn_gateway;
                c.sip_timers.t1 = timers.sip_t1;
                c
            })
            .collect())
    }

    /// Every port 0: the same lab on free ports (tests run many labs side by side).
    pub fn with_ephemeral_ports(mut self) -> Self {
        for n in &mut self.sip_nodes {
            n.sip_port = Some(0);
            n.tlib_port = Some(0);
            n.tc_port = Some(0);
            n.control_port = Some(0);
        }
        for g in &mut self.gws_nodes {
            g.http_port = Some(0);
            g.control_port = Some(0);
        }
        for p in &mut self.proxies {
            p.http_port = Some(0);
            p.control_port = Some(0);
        }
        if let Some(g) = self
            .pstn_gateway
            .as_mut()
            .filter(|_| self.start_pstn_gateway)
        {
            g.set_port(0);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_topology_is_the_architecture_default() {
        let t = Topology::parse(DEFAULT_TOPOLOGY).unwrap();
        let nodes = t.node_configs(None).unwrap();
        let addrs: Vec<String> = nodes.iter().map(|n| n.sip_addr().to_string()).collect();
        assert_eq!(
            addrs,
            [
                "127.0.1.1:5060",
                "127.0.1.2:5060",
                "127.0.2.1:5060",
                "127.0.2.2:5060"
            ]
        );
        assert_eq!(
            nodes[0].pstn_gateway,
            Some("127.0.3.1:5060".parse().unwrap())
        );
        assert!(nodes
            .iter()
            .all(|n| n.tlib_port == 3000 && n.control_port == 9000 && n.tc_port == 3100));
        assert_eq!(
            nodes[0].options.ownership_move_delay,
            Duration::from_secs(30)
        );
        let gws = t.gws_configs(None, &nodes).unwrap();
        let gws1 = &gws[0];
        assert_eq!(gws1.http_addr().to_string(), "127.0.1.11:8090");
        let order: Vec<&str> = gws1.sip_nodes.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(order, ["ss1", "ss2"]);
        assert_eq!(gws1.sip_nodes[0].tlib.to_string(), "127.0.1.1:3000");
        assert_eq!(gws[2].sip_nodes[0].name, "ss3");
        let fast = t.node_configs(Some("fast")).unwrap();
        assert_eq!(fast[0].options.ownership_move_delay, Duration::from_secs(1));
        assert_eq!(fast[0].addp.timeout, Duration::from_millis(600));
        assert!(t.node_configs(Some("turbo")).unwrap_err().contains("turbo"));
        let proxies = t.proxy_configs(None, &gws).unwrap();
        assert_eq!(proxies[0].listen.to_string(), "127.0.1.10:8080");
        assert_eq!(proxies[0].upstreams[0].sticky, proxy::Sticky::Learn);
        assert_eq!(
            proxies[1].upstreams[0].servers[0].address,
            "127.0.2.11:8090"
        );
        let fast_gws = t.gws_configs(Some("fast"), &fast).unwrap();
        assert_eq!(fast_gws[0].session_timeout, Duration::from_secs(2));
        let bad =
            DEFAULT_TOPOLOGY.replace("sip_nodes = [\"ss3\", \"ss4\"]", "sip_nodes = [\"ss9\"]");
        assert!(Topology::parse(&bad).unwrap_err().contains("ss9"));
    }

    #[test]
    fn gws_cors_settings_reach_every_gws_node() {
        let t = Topology::parse(DEFAULT_TOPOLOGY).unwrap();
        let nodes = t.node_configs(None).unwrap();
        let gws = t.gws_configs(None, &nodes).unwrap();
        assert!(
            gws.iter().all(|g| g.cors.allowed_origins.is_empty()),
            "off by default"
        );
        let text = format!(
            "{DEFAULT_TOPOLOGY}\n[gws_cors]\nallowed_origins = [\"http://wwe:8765\"]\nmax_age = \"60s\"\n"
        );
        let t = Topology::parse(&text).unwrap();
        let gws = t.gws_configs(None, &nodes).unwrap();
        assert!(gws
            .iter()
            .all(|g| g.cors.allowed_origins == ["http://wwe:8765"]));
        assert_eq!(gws[0].cors.max_age, Duration::from_secs(60));
        assert!(gws[0].cors.allow_credentials);
        let typo = format!("{DEFAULT_TOPOLOGY}\n[gws_cors]\nallowed_origin = []\n");
        assert!(Topology::parse(&typo)
            .unwrap_err()
            .contains("allowed_origin"));
    }

    #[test]
    fn bad_topologies_name_the_field() {
        let dup = DEFAULT_TOPOLOGY.replace("name = \"ss2\"", "name = \"ss1\"");
        assert!(Topology::parse(&dup)
            .unwrap_err()
            .contains("sip_nodes[1].name"));
        let bad_timer =
            DEFAULT_TOPOLOGY.replace("addp_timeout = \"600ms\"", "addp_timeout = \"100ms\"");
        assert!(Topology::parse(&bad_timer)
            .unwrap_err()
            .contains("profiles.fast.addp_timeout"));
        let typo = DEFAULT_TOPOLOGY.replace("[registrar]", "[registrar]\nmax_expiry = \"1s\"");
        assert!(Topology::parse(&typo).unwrap_err().contains("max_expiry"));
        let bad_range = DEFAULT_TOPOLOGY.replace("7000-7999", "7000-79x9");
        assert!(Topology::parse(&bad_range).unwrap_err().contains("dns[0]"));
    }
}
