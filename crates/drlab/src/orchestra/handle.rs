//! The lab handle: every node of a lab as the orchestration layer sees it — name, kind, DC,
//! address, ports and control plane — built from a topology (a lab running elsewhere, e.g.
//! `drlab up`) or from an in-process [`Lab`] (the ports it bound). Crash, restart, state and
//! fault rules go through the control planes, so both cases use the same code.

use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use netfault::FaultRule;
use serde_json::Value;

use super::control::expect_ok;
use super::BadInput;
use crate::{Lab, Topology};

/// A rule as `GET /faults` lists it.
#[derive(Clone, Debug)]
pub struct ListedRule {
    pub id: u64,
    pub rule: FaultRule,
}

impl ListedRule {
    /// One element of `GET /faults`' `faults`: the rule's fields and its `id`.
    fn parse(mut item: Value) -> Option<ListedRule> {
        let id = item.as_object_mut()?.remove("id")?.as_u64()?;
        let rule = serde_json::from_value(item).ok()?;
        Some(ListedRule { id, rule })
    }
}

/// What a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    Sip,
    Gws,
    Proxy,
    /// A softphone-sim phone with a control plane (scenario actors).
    Phone,
}

/// One node of the lab.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Endpoint {
    pub name: String,
    pub kind: NodeKind,
    pub dc: String,
    pub address: IpAddr,
    pub control: SocketAddr,
    /// SIP (nodes, phones), T-Lib, TC, HTTP (GWS, proxies) ports, where the node has them.
    pub sip: Option<u16>,
    pub tlib: Option<u16>,
    pub tc: Option<u16>,
    pub http: Option<u16>,
    /// GWS nodes: their SIP nodes in order; proxies: their GWS nodes.
    pub peers: Vec<String>,
}

impl Endpoint {
    fn new(name: &str, kind: NodeKind, dc: &str, address: IpAddr, control: SocketAddr) -> Self {
        Endpoint {
            name: name.to_owned(),
            kind,
            dc: dc.to_owned(),
            address,
            control,
            sip: None,
            tlib: None,
            tc: None,
            http: None,
            peers: Vec::new(),
        }
    }
}

/// Every node of a lab, by name.
#[derive(Clone, Debug, Default)]
pub struct LabHandle {
    pub endpoints: Vec<Endpoint>,
}

impl LabHandle {
    /// A lab started from `topology` elsewhere (`drlab up`): the topology's ports.
    pub fn from_topology(topology: &Topology) -> anyhow::Result<Self> {
        let sip = topology.node_configs(None).map_err(anyhow::Error::msg)?;
        let gws = topology
            .gws_configs(None, &sip)
            .map_err(anyhow::Error::msg)?;
        let proxies = topology
            .proxy_configs(None, &gws)
            .map_err(anyhow::Error::msg)?;
        let mut endpoints = Vec::new();
        for n in &sip {
            let mut e = Endpoint::new(&n.name, NodeKind::Sip, &n.dc, n.address, n.control_addr());
            e.sip = Some(n.sip_port);
            e.tlib = Some(n.tlib_port);
            e.tc = Some(n.tc_port);
            endpoints.push(e);
        }
        for g in &gws {
            let mut e = Endpoint::new(&g.name, NodeKind::Gws, &g.dc, g.address, g.control_addr());
            e.http = Some(g.http_port);
            e.peers = g.sip_nodes.iter().map(|s| s.name.clone()).collect();
            endpoints.push(e);
        }
        for (p, spec) in proxies.iter().zip(&topology.proxies) {
            let Some(control) = p.control else { continue };
            let mut e = Endpoint::new(&p.name, NodeKind::Proxy, &spec.dc, spec.address, control);
            e.http = Some(p.listen.port());
            e.peers = spec.gws_nodes.clone();
            endpoints.push(e);
        }
        Ok(LabHandle { endpoints })
    }

    /// An in-process lab: the ports its nodes bound.
    pub fn from_lab(lab: &Lab) -> Self {
        let mut endpoints = Vec::new();
        for n in &lab.sip_nodes {
            let c = n.config();
            let mut e = Endpoint::new(&c.name, NodeKind::Sip, &c.dc, c.address, n.control_addr());
            e.sip = Some(n.sip_addr().port());
            e.tlib = Some(n.tlib_addr().port());
            e.tc = Some(n.tc_addr().port());
            endpoints.push(e);
        }
        for g in &lab.gws_nodes {
            let c = g.config();
            let mut e = Endpoint::new(&c.name, NodeKind::Gws, &c.dc, c.address, g.control_addr());
            e.http = Some(g.http_addr().port());
            e.peers = c.sip_nodes.iter().map(|s| s.name.clone()).collect();
            endpoints.push(e);
        }
        for p in &lab.proxy_endpoints {
            let Some(control) = p.control else { continue };
            let mut e = Endpoint::new(&p.name, NodeKind::Proxy, &p.dc, p.http.ip(), control);
            e.http = Some(p.http.port());
            e.peers = p.upstreams.clone();
            endpoints.push(e);
        }
        LabHandle { endpoints }
    }

    /// Adds a phone (an actor with a control plane) so that faults can name it by its DN.
    pub fn add_phone(&mut self, dn: &str, sip: SocketAddr, control: SocketAddr) {
        let mut e = Endpoint::new(dn, NodeKind::Phone, "", sip.ip(), control);
        e.sip = Some(sip.port());
        self.endpoints.push(e);
    }

    /// The node called `name`; the error lists the valid names.
    pub fn node(&self, name: &str) -> Result<&Endpoint, BadInput> {
        self.endpoints
            .iter()
            .find(|e| e.name == name && e.kind != NodeKind::Phone)
            .ok_or_else(|| BadInput::new(format!("unknown node `{name}`"), self.names(None)))
    }

    /// The node called `name` of `kind`; the error lists the valid ones.
    pub fn node_of(&self, kind: NodeKind, name: &str) -> Result<&Endpoint, BadInput> {
        self.endpoints
            .iter()
            .find(|e| e.name == name && e.kind == kind)
            .ok_or_else(|| {
                let what = match kind {
                    NodeKind::Sip => "SIP node",
                    NodeKind::Gws => "GWS node",
                    NodeKind::Proxy => "proxy",
                    NodeKind::Phone => "phone with a control plane",
                };
                BadInput::new(format!("unknown {what} `{name}`"), self.names(Some(kind)))
            })
    }

    /// The names of every node (of `kind`).
    pub fn names(&self, kind: Option<NodeKind>) -> Vec<String> {
        self.endpoints
            .iter()
            .filter(|e| kind.is_none_or(|k| e.kind == k))
            .map(|e| e.name.clone())
            .collect()
    }

    /// The DCs of the lab, in topology order.
    pub fn dcs(&self) -> Vec<String> {
        let mut dcs: Vec<String> = Vec::new();
        for e in &self.endpoints {
            if !e.dc.is_empty() && !dcs.contains(&e.dc) {
                dcs.push(e.dc.clone());
            }
        }
        dcs
    }

    /// Checks that `dc` is a DC of the lab.
    pub fn dc(&self, dc: &str) -> Result<(), BadInput> {
        let dcs = self.dcs();
        if dcs.iter().any(|d| d == dc) {
            Ok(())
        } else {
            Err(BadInput::new(format!("unknown DC `{dc}`"), dcs))
        }
    }

    /// The nodes of `kind` in `dc`.
    pub fn in_dc(&self, kind: NodeKind, dc: &str) -> Vec<&Endpoint> {
        self.endpoints
            .iter()
            .filter(|e| e.kind == kind && e.dc == dc)
            .collect()
    }

    /// `GET /state` of a node.
    pub async fn state(&self, e: &Endpoint) -> anyhow::Result<Value> {
        expect_ok(&e.name, e.control, "GET", "/state", None).await
    }

    /// Crashes a node (sockets closed abruptly, state forgotten; the control plane stays).
    pub async fn crash(&self, e: &Endpoint) -> anyhow::Result<()> {
        expect_ok(&e.name, e.control, "POST", "/crash", None)
            .await
            .map(drop)
    }

    /// Restarts a node's services (fresh state).
    pub async fn restart(&self, e: &Endpoint) -> anyhow::Result<()> {
        expect_ok(&e.name, e.control, "POST", "/restart", None)
            .await
            .map(drop)
    }

    /// Adds fault rules to a node.
    pub async fn add_rules(&self, e: &Endpoint, rules: &[FaultRule]) -> anyhow::Result<()> {
        let body = serde_json::to_string(rules)?;
        expect_ok(&e.name, e.control, "POST", "/faults", Some(&body))
            .await
            .map(drop)
    }

    /// The fault rules of a node.
    pub async fn rules(&self, e: &Endpoint) -> anyhow::Result<Vec<ListedRule>> {
        let v = expect_ok(&e.name, e.control, "GET", "/faults", None).await?;
        let items = v["faults"]
            .as_array()
            .with_context(|| format!("{}: GET /faults: no `faults` list", e.name))?;
        items
            .iter()
            .map(|item| {
                ListedRule::parse(item.clone())
                    .with_context(|| format!("{}: GET /faults: unexpected rule {item}", e.name))
            })
            .collect()
    }

    /// Removes the rules of a node equal to `rules`; returns how many went.
    pub async fn remove_rules(&self, e: &Endpoint, rules: &[FaultRule]) -> anyhow::Result<usize> {
        let mut removed = 0;
        for stored in self.rules(e).await? {
            if rules.contains(&stored.rule) {
                let path = format!("/faults/{}", stored.id);
                expect_ok(&e.name, e.control, "DELETE", &path, None).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Removes every fault rule of a node.
    pub async fn clear_rules(&self, e: &Endpoint) -> anyhow::Result<()> {
        expect_ok(&e.name, e.control, "DELETE", "/faults", None)
            .await
            .map(drop)
    }
}
