//! Named faults, Jepsen-style "who stops hearing whom": `cut dc1 dc2 [--layer tc|all]`,
//! `cut gws1 ss1` (the GWS node's T-Lib link), `cut proxy-dc1 gws1` (the proxy's upstream link),
//! `cut phone 7002 dc1` (a phone's SIP to the DC's nodes and its media), `crash NODE`,
//! `restart NODE`. A fault is plain data; [`Fault::plan`] turns it into steps on the built-in
//! layer (rules posted to the nodes' `/faults`) or into iptables rules between the nodes'
//! addresses, applied and removed as a unit.

use std::fmt;

use netfault::{FaultMode, FaultRule, PeerFilter};

use super::handle::{Endpoint, LabHandle, NodeKind};
use super::iptables::IptablesRule;
use super::BadInput;

/// Which traffic a DC cut takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Layer {
    /// The TC links between the SIP nodes of the two DCs (SIP, media, T-Lib stay).
    Tc,
    /// Everything between the nodes of the two DCs.
    All,
}

/// Which fault layer carries the fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// The nodes' built-in fault layer, through their control planes.
    Builtin,
    /// Real iptables rules between the nodes' addresses (root).
    Iptables,
}

/// How a cut link behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Silent blackhole: peers find out by keepalives and timeouts.
    Drop,
    /// RST / refused at once.
    Reject,
}

impl Mode {
    fn builtin(self) -> FaultMode {
        match self {
            Mode::Drop => FaultMode::Drop,
            Mode::Reject => FaultMode::Reject,
        }
    }

    /// The iptables target for TCP.
    fn tcp_target(self) -> [&'static str; 4] {
        match self {
            Mode::Drop => ["-j", "DROP", "", ""],
            Mode::Reject => ["-j", "REJECT", "--reject-with", "tcp-reset"],
        }
    }

    /// The iptables target for any protocol.
    fn target(self) -> [&'static str; 2] {
        match self {
            Mode::Drop => ["-j", "DROP"],
            Mode::Reject => ["-j", "REJECT"],
        }
    }
}

/// A named fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    CutDcs { a: String, b: String, layer: Layer },
    CutGwsSip { gws: String, sip: String },
    CutProxyGws { proxy: String, gws: String },
    CutPhone { dn: String, dc: String },
    Crash(String),
    Restart(String),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::CutDcs { a, b, layer } => {
                let layer = match layer {
                    Layer::Tc => "",
                    Layer::All => " --layer all",
                };
                write!(f, "cut {a} {b}{layer}")
            }
            Fault::CutGwsSip { gws, sip } => write!(f, "cut {gws} {sip}"),
            Fault::CutProxyGws { proxy, gws } => write!(f, "cut {proxy} {gws}"),
            Fault::CutPhone { dn, dc } => write!(f, "cut phone {dn} {dc}"),
            Fault::Crash(n) => write!(f, "crash {n}"),
            Fault::Restart(n) => write!(f, "restart {n}"),
        }
    }
}

/// One thing to do to inject (or undo) a fault.
#[derive(Clone, Debug)]
pub enum Step {
    Rules {
        node: Endpoint,
        rules: Vec<FaultRule>,
    },
    Iptables(Vec<IptablesRule>),
    Crash(Endpoint),
    Restart(Endpoint),
}

impl Step {
    /// One line per step, for the CLI.
    pub fn describe(&self) -> Vec<String> {
        match self {
            Step::Rules { node, rules } => rules
                .iter()
                .map(|r| {
                    let peer = r
                        .peer
                        .as_ref()
                        .map(|p| format!(" to {p}"))
                        .unwrap_or_default();
                    format!("{}: {}{peer} {:?}", node.name, r.link, r.mode).to_lowercase()
                })
                .collect(),
            Step::Iptables(rules) => rules.iter().map(IptablesRule::describe).collect(),
            Step::Crash(n) => vec![format!("{}: crashed", n.name)],
            Step::Restart(n) => vec![format!("{}: restarted", n.name)],
        }
    }
}

fn rule(link: String, peer: Option<std::net::IpAddr>, mode: Mode) -> FaultRule {
    FaultRule {
        link,
        peer: peer.and_then(|ip| ip.to_string().parse::<PeerFilter>().ok()),
        mode: mode.builtin(),
        ms: None,
        rate: None,
    }
}

/// `words` of a TCP iptables rule, with the mode's target. A rejecting rule lets resets
/// through: on loopback the reset that answers one direction crosses the other direction's rule,
/// which would swallow it and turn "refused at once" into a silent timeout.
fn tcp(matches: &[String], mode: Mode) -> IptablesRule {
    let mut words: Vec<String> = matches.to_vec();
    if mode == Mode::Reject {
        words.extend(["!", "--tcp-flags", "RST", "RST"].map(String::from));
    }
    words.extend(
        mode.tcp_target()
            .iter()
            .filter(|w| !w.is_empty())
            .map(|w| w.to_string()),
    );
    IptablesRule(words)
}

fn words(w: &[&str]) -> Vec<String> {
    w.iter().map(|s| s.to_string()).collect()
}

/// Both directions of the TCP connections between `client` and the `port` of `server`.
fn tcp_both_ways(client: &Endpoint, server: &Endpoint, port: u16, mode: Mode) -> Vec<IptablesRule> {
    let (c, s, p) = (
        client.address.to_string(),
        server.address.to_string(),
        port.to_string(),
    );
    vec![
        tcp(
            &words(&["-s", &c, "-d", &s, "-p", "tcp", "--dport", &p]),
            mode,
        ),
        tcp(
            &words(&["-s", &s, "-d", &c, "-p", "tcp", "--sport", &p]),
            mode,
        ),
    ]
}

fn port(e: &Endpoint, which: Option<u16>, what: &str) -> Result<u16, BadInput> {
    which.ok_or_else(|| BadInput::new(format!("{} has no {what} port", e.name), Vec::new()))
}

impl Fault {
    /// Parses `cut A B`, `cut phone DN DC`, `crash NODE`, `restart NODE` against the lab's names.
    pub fn parse(words: &[String], layer: Layer, lab: &LabHandle) -> Result<Fault, BadInput> {
        let forms = vec![
            "cut DC DC [--layer tc|all]".to_owned(),
            "cut GWS SIP".to_owned(),
            "cut PROXY GWS".to_owned(),
            "cut phone DN DC".to_owned(),
            "crash NODE".to_owned(),
            "restart NODE".to_owned(),
        ];
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        match w.as_slice() {
            ["crash", node] => Ok(Fault::Crash(lab.node(node)?.name.clone())),
            ["restart", node] => Ok(Fault::Restart(lab.node(node)?.name.clone())),
            ["cut", "phone", dn, dc] => {
                lab.node_of(NodeKind::Phone, dn)?;
                lab.dc(dc)?;
                Ok(Fault::CutPhone {
                    dn: dn.to_string(),
                    dc: dc.to_string(),
                })
            }
            ["cut", x, y] => {
                let dcs = lab.dcs();
                let kind = |n: &str| lab.node(n).ok().map(|e| e.kind);
                if dcs.iter().any(|d| d == x) || dcs.iter().any(|d| d == y) {
                    lab.dc(x)?;
                    lab.dc(y)?;
                    if x == y {
                        return Err(BadInput::new("a DC cannot be cut from itself", dcs));
                    }
                    return Ok(Fault::CutDcs {
                        a: x.to_string(),
                        b: y.to_string(),
                        layer,
                    });
                }
                match (kind(x), kind(y)) {
                    (Some(NodeKind::Gws), _) => {
                        let sip = lab.node_of(NodeKind::Sip, y)?;
                        Ok(Fault::CutGwsSip {
                            gws: x.to_string(),
                            sip: sip.name.clone(),
                        })
                    }
                    (Some(NodeKind::Sip), Some(NodeKind::Gws)) => Ok(Fault::CutGwsSip {
                        gws: y.to_string(),
                        sip: x.to_string(),
                    }),
                    (Some(NodeKind::Proxy), _) => {
                        let gws = lab.node_of(NodeKind::Gws, y)?;
                        Ok(Fault::CutProxyGws {
                            proxy: x.to_string(),
                            gws: gws.name.clone(),
                        })
                    }
                    (None, _) => Err(lab.node(x).err().unwrap_or_else(|| {
                        BadInput::new(format!("unknown node `{x}`"), Vec::new())
                    })),
                    _ => Err(BadInput::new(format!("cannot cut `{x}` from `{y}`"), forms)),
                }
            }
            _ => Err(BadInput::new(
                format!("unknown fault `{}`", words.join(" ")),
                forms,
            )),
        }
    }

    /// The steps that inject this fault.
    pub fn plan(&self, lab: &LabHandle, via: Via, mode: Mode) -> Result<Vec<Step>, BadInput> {
        match self {
            Fault::Crash(n) => Ok(vec![Step::Crash(lab.node(n)?.clone())]),
            Fault::Restart(n) => Ok(vec![Step::Restart(lab.node(n)?.clone())]),
            Fault::CutDcs { a, b, layer } => self.plan_dcs(lab, a, b, *layer, via, mode),
            Fault::CutGwsSip { gws, sip } => {
                let g = lab.node_of(NodeKind::Gws, gws)?;
                let s = lab.node_of(NodeKind::Sip, sip)?;
                let link = format!("tlib:{gws}-{sip}");
                Ok(cut_client_link(
                    g,
                    s,
                    port(s, s.tlib, "T-Lib")?,
                    link,
                    via,
                    mode,
                ))
            }
            Fault::CutProxyGws { proxy, gws } => {
                let p = lab.node_of(NodeKind::Proxy, proxy)?;
                let g = lab.node_of(NodeKind::Gws, gws)?;
                let link = format!("http:{proxy}-{gws}");
                Ok(cut_client_link(
                    p,
                    g,
                    port(g, g.http, "HTTP")?,
                    link,
                    via,
                    mode,
                ))
            }
            Fault::CutPhone { dn, dc } => {
                let phone = lab.node_of(NodeKind::Phone, dn)?;
                let nodes = lab.in_dc(NodeKind::Sip, dc);
                Ok(match via {
                    Via::Builtin => {
                        let mut rules: Vec<FaultRule> = nodes
                            .iter()
                            .map(|n| rule(format!("sip:{dn}"), Some(n.address), mode))
                            .collect();
                        // In the lab media flows straight between the phone and the other
                        // party: losing "every path" means losing the phone's media too.
                        rules.push(rule(format!("media:{dn}"), None, mode));
                        vec![Step::Rules {
                            node: phone.clone(),
                            rules,
                        }]
                    }
                    Via::Iptables => {
                        let ip = phone.address.to_string();
                        let sip = port(phone, phone.sip, "SIP")?.to_string();
                        let mut rules = Vec::new();
                        for n in nodes {
                            let addr = n.address.to_string();
                            for (s, d, sp) in [(&ip, &addr, "--sport"), (&addr, &ip, "--dport")] {
                                let mut w = words(&["-s", s, "-d", d, "-p", "udp", sp, &sip]);
                                w.extend(mode.target().map(String::from));
                                rules.push(IptablesRule(w));
                            }
                        }
                        // Media: every other UDP port of the phone's own address.
                        for (dir, sp) in [("-s", "--sport"), ("-d", "--dport")] {
                            let mut w = words(&[dir, &ip, "-p", "udp", "!", sp, &sip]);
                            w.extend(mode.target().map(String::from));
                            rules.push(IptablesRule(w));
                        }
                        vec![Step::Iptables(rules)]
                    }
                })
            }
        }
    }

    fn plan_dcs(
        &self,
        lab: &LabHandle,
        a: &str,
        b: &str,
        layer: Layer,
        via: Via,
        mode: Mode,
    ) -> Result<Vec<Step>, BadInput> {
        lab.dc(a)?;
        lab.dc(b)?;
        let members = |dc: &str| -> Vec<&Endpoint> {
            lab.endpoints
                .iter()
                .filter(|e| e.dc == dc && (layer == Layer::All || e.kind == NodeKind::Sip))
                .collect()
        };
        let (side_a, side_b) = (members(a), members(b));
        let mut steps = Vec::new();
        match via {
            Via::Builtin => {
                for (from, to) in [(&side_a, &side_b), (&side_b, &side_a)] {
                    for node in from {
                        let link = match layer {
                            Layer::Tc => "tc:*",
                            Layer::All => "*",
                        };
                        let rules = to
                            .iter()
                            .map(|peer| rule(link.to_owned(), Some(peer.address), mode))
                            .collect();
                        steps.push(Step::Rules {
                            node: (*node).clone(),
                            rules,
                        });
                    }
                }
            }
            Via::Iptables => {
                let mut rules = Vec::new();
                for x in &side_a {
                    for y in &side_b {
                        match layer {
                            Layer::Tc => {
                                for (client, server) in [(x, y), (y, x)] {
                                    let p = port(server, server.tc, "TC")?;
                                    rules.extend(tcp_both_ways(client, server, p, mode));
                                }
                            }
                            Layer::All => {
                                for (s, d) in [(x, y), (y, x)] {
                                    let (s, d) = (s.address.to_string(), d.address.to_string());
                                    if mode == Mode::Reject {
                                        rules.push(tcp(
                                            &words(&["-s", &s, "-d", &d, "-p", "tcp"]),
                                            mode,
                                        ));
                                    }
                                    let mut w = words(&["-s", &s, "-d", &d]);
                                    if mode == Mode::Reject {
                                        // The ICMP errors that answer the other direction.
                                        w.extend(words(&["!", "-p", "icmp"]));
                                    }
                                    w.extend(mode.target().map(String::from));
                                    rules.push(IptablesRule(w));
                                }
                            }
                        }
                    }
                }
                rules.dedup();
                steps.push(Step::Iptables(rules));
            }
        }
        Ok(steps)
    }
}

/// Cuts the TCP link from `client` to `server`'s `port`: the client's built-in `link` rule, or
/// iptables rules both ways.
fn cut_client_link(
    client: &Endpoint,
    server: &Endpoint,
    port: u16,
    link: String,
    via: Via,
    mode: Mode,
) -> Vec<Step> {
    match via {
        Via::Builtin => vec![Step::Rules {
            node: client.clone(),
            rules: vec![rule(link, None, mode)],
        }],
        Via::Iptables => vec![Step::Iptables(tcp_both_ways(client, server, port, mode))],
    }
}

/// Applies `steps`; returns one line per rule or action.
pub async fn apply(
    lab: &LabHandle,
    steps: &[Step],
    installed: &mut super::iptables::Installed,
) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    for step in steps {
        match step {
            Step::Rules { node, rules } => lab.add_rules(node, rules).await?,
            Step::Iptables(rules) => {
                for r in rules {
                    installed.insert(r.clone())?;
                }
            }
            Step::Crash(n) => lab.crash(n).await?,
            Step::Restart(n) => lab.restart(n).await?,
        }
        lines.extend(step.describe());
    }
    Ok(lines)
}

/// Undoes `steps`: removes their rules, restarts what they crashed.
pub async fn undo(
    lab: &LabHandle,
    steps: &[Step],
    installed: &mut super::iptables::Installed,
) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    for step in steps {
        match step {
            Step::Rules { node, rules } => {
                let n = lab.remove_rules(node, rules).await?;
                lines.push(format!("{}: {n} rule(s) removed", node.name));
            }
            Step::Iptables(rules) => {
                installed.remove(rules);
                for r in rules {
                    // Rules a previous `drlab fault` process inserted.
                    r.delete();
                }
                lines.push(format!("{} iptables rule(s) removed", rules.len()));
            }
            Step::Crash(n) => {
                lab.restart(n).await?;
                lines.push(format!("{}: restarted", n.name));
            }
            Step::Restart(_) => {}
        }
    }
    Ok(lines)
}

/// `heal all`: every node's built-in rules and every tagged iptables rule.
pub async fn heal_all(lab: &LabHandle) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    for e in &lab.endpoints {
        lab.clear_rules(e).await?;
        lines.push(format!("{}: healed", e.name));
    }
    if super::iptables::usable() {
        let n = super::iptables::delete_tagged()?;
        if n > 0 {
            lines.push(format!("{n} iptables rule(s) removed"));
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestra::iptables::Installed;
    use crate::{Lab, Topology};

    fn words(w: &str) -> Vec<String> {
        w.split_whitespace().map(String::from).collect()
    }

    #[tokio::test]
    async fn named_faults_go_through_the_control_planes_and_heal_by_name() {
        let topology = Topology::embedded().with_ephemeral_ports();
        let lab = Lab::start(&topology, Some("fast")).await.unwrap();
        let handle = LabHandle::from_lab(&lab);
        let mut installed = Installed::default();
        let cut = Fault::parse(&words("cut dc1 dc2"), Layer::Tc, &handle).unwrap();
        assert_eq!(cut.to_string(), "cut dc1 dc2");
        let steps = cut.plan(&handle, Via::Builtin, Mode::Drop).unwrap();
        let lines = apply(&handle, &steps, &mut installed).await.unwrap();
        assert_eq!(lines.len(), 8, "{lines:?}");
        assert_eq!(lab.sip_node("ss1").unwrap().faults().list().len(), 2);
        let tlib = Fault::parse(&words("cut gws1 ss1"), Layer::Tc, &handle).unwrap();
        let tlib_steps = tlib.plan(&handle, Via::Builtin, Mode::Reject).unwrap();
        apply(&handle, &tlib_steps, &mut installed).await.unwrap();
        let rules = lab.gws_node("gws1").unwrap().faults().list();
        assert_eq!(rules[0].rule.link, "tlib:gws1-ss1");
        // Healing the DC cut by name leaves the other fault.
        undo(&handle, &steps, &mut installed).await.unwrap();
        assert!(lab.sip_node("ss1").unwrap().faults().list().is_empty());
        assert_eq!(lab.gws_node("gws1").unwrap().faults().list().len(), 1);
        heal_all(&handle).await.unwrap();
        assert!(lab.gws_node("gws1").unwrap().faults().list().is_empty());
        lab.shutdown().await;
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let handle = LabHandle::from_topology(&Topology::embedded()).unwrap();
        let e = Fault::parse(&words("crash ss9"), Layer::Tc, &handle).unwrap_err();
        assert!(
            e.to_string().contains("ss9") && e.to_string().contains("gws1"),
            "{e}"
        );
        let e = Fault::parse(&words("cut dc1 dc9"), Layer::Tc, &handle).unwrap_err();
        assert!(e.to_string().contains("valid: dc1, dc2"), "{e}");
        let e = Fault::parse(&words("melt ss1"), Layer::Tc, &handle).unwrap_err();
        assert!(e.to_string().contains("cut DC DC"), "{e}");
        let f = Fault::parse(&words("cut proxy-dc1 gws1"), Layer::Tc, &handle).unwrap();
        let steps = f.plan(&handle, Via::Iptables, Mode::Reject).unwrap();
        let Step::Iptables(rules) = &steps[0] else {
            panic!("iptables expected")
        };
        assert_eq!(
            rules[0].describe(),
            "iptables -I INPUT -s 127.0.1.10 -d 127.0.1.11 -p tcp --dport 8090 ! --tcp-flags RST RST -j REJECT --reject-with tcp-reset"
        );
    }
}
