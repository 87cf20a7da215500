//! A running lab: every node of a topology in this process.

use std::fmt::Write;

use anyhow::Context;
use gws_mock::{GwsConfig, GwsNode};
use proxy::ProxyHandle;
use sipserver_mock::{NodeConfig, SipNode};
use softphone_sim::{PhoneConfig, Swarm};

use crate::topology::Topology;

/// The nodes of a topology, started.
pub struct Lab {
    pub sip_nodes: Vec<SipNode>,
    pub gws_nodes: Vec<GwsNode>,
    /// Taken out on shutdown (a proxy handle stops by value).
    proxies: tokio::sync::Mutex<Vec<ProxyHandle>>,
    /// The proxies' names and bound addresses (HTTP, control), for tests and the endpoint table.
    pub proxy_endpoints: Vec<ProxyEndpoint>,
    /// The PSTN gateway (softphone-sim answering any number) at the topology's `pstn_gateway`,
    /// where the SIP nodes send PSTN agents' calls.
    pub pstn_gateway: Option<Swarm>,
}

/// Where a running proxy listens.
#[derive(Clone, Debug)]
pub struct ProxyEndpoint {
    pub name: String,
    pub dc: String,
    pub http: std::net::SocketAddr,
    pub control: Option<std::net::SocketAddr>,
    pub upstreams: Vec<String>,
}

impl Lab {
    /// Starts every node of `topology` with the timers of `profile`.
    pub async fn start(topology: &Topology, profile: Option<&str>) -> anyhow::Result<Lab> {
        let mut configs = topology.node_configs(profile).map_err(anyhow::Error::msg)?;
        // The gateway first: a node may send a PSTN agent's call there as soon as it runs (to
        // the port it bound, when the topology asked for any).
        let pstn_gateway = match topology.pstn_gateway {
            Some(at) if topology.start_pstn_gateway => {
                Some(start_pstn_gateway(topology, profile, at).await?)
            }
            _ => None,
        };
        for c in &mut configs {
            if let Some(g) = &pstn_gateway {
                c.pstn_gateway = Some(g.sip_addr());
            }
        }
        let mut sip_nodes = Vec::with_capacity(configs.len());
        for config in configs {
            let name = config.name.clone();
            let node = sipserver_mock::start(config)
                .await
                .with_context(|| format!("starting {name}"))?;
            sip_nodes.push(node);
        }
        // Ports may have been chosen by the kernel: tell every node where the others are now.
        let peers: Vec<_> = sip_nodes.iter().map(|n| n.as_peer()).collect();
        for node in &sip_nodes {
            node.set_peers(peers.clone()).await;
        }
        // GWS nodes after the SIP nodes: they connect to the T-Lib ports those bound.
        let bound: Vec<NodeConfig> = sip_nodes.iter().map(|n| n.config().clone()).collect();
        let gws_configs = topology
            .gws_configs(profile, &bound)
            .map_err(anyhow::Error::msg)?;
        let mut gws_nodes = Vec::with_capacity(gws_configs.len());
        for config in gws_configs {
            let name = config.name.clone();
            let node = gws_mock::start(config)
                .await
                .with_context(|| format!("starting {name}"))?;
            gws_nodes.push(node);
        }
        // Proxies last: their upstreams are the GWS nodes' bound ports.
        let bound: Vec<GwsConfig> = gws_nodes.iter().map(|n| n.config().clone()).collect();
        let proxy_configs = topology
            .proxy_configs(profile, &bound)
            .map_err(anyhow::Error::msg)?;
        let mut proxies = Vec::with_capacity(proxy_configs.len());
        let mut proxy_endpoints = Vec::with_capacity(proxy_configs.len());
        for (config, spec) in proxy_configs.into_iter().zip(&topology.proxies) {
            let upstreams = spec.gws_nodes.clone();
            let name = config.name.clone();
            let handle = proxy::start(config)
                .await
                .with_context(|| format!("starting {name}"))?;
            proxy_endpoints.push(ProxyEndpoint {
                name,
                dc: spec.dc.clone(),
                http: handle.local_addr(),
                control: handle.control_addr(),
                upstreams,
            });
            proxies.push(handle);
        }
        Ok(Lab {
            sip_nodes,
            gws_nodes,
            proxies: tokio::sync::Mutex::new(proxies),
            proxy_endpoints,
            pstn_gateway,
        })
    }

    /// A proxy's endpoints by name.
    pub fn proxy(&self, name: &str) -> Option<&ProxyEndpoint> {
        self.proxy_endpoints.iter().find(|p| p.name == name)
    }

    /// A GWS node by name.
    pub fn gws_node(&self, name: &str) -> Option<&GwsNode> {
        self.gws_nodes.iter().find(|n| n.name() == name)
    }

    /// A SIP node by name.
    pub fn sip_node(&self, name: &str) -> Option<&SipNode> {
        self.sip_nodes.iter().find(|n| n.name() == name)
    }

    /// The endpoint table `drlab up` prints.
    pub fn endpoint_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<6} {:<4} {:<22} {:<20} {:<20} {:<26}",
            "node", "dc", "SIP (UDP+TCP)", "T-Lib", "TC", "control"
        );
        for n in &self.sip_nodes {
            let _ = writeln!(
                out,
                "{:<6} {:<4} {:<22} {:<20} {:<20} {:<26}",
                n.name(),
                n.config().dc,
                format!("sip:{}", n.sip_addr()),
                n.tlib_addr().to_string(),
                n.tc_addr().to_string(),
                format!("http://{}", n.control_addr()),
            );
        }
        if !self.gws_nodes.is_empty() {
            let _ = writeln!(
                out,
                "\n{:<6} {:<4} {:<30} {:<18} {:<26}",
                "node", "dc", "GWS API (REST + CometD)", "SIP nodes", "control"
            );
            for g in &self.gws_nodes {
                let sip: Vec<&str> = g
                    .config()
                    .sip_nodes
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect();
                let _ = writeln!(
                    out,
                    "{:<6} {:<4} {:<30} {:<18} {:<26}",
                    g.name(),
                    g.config().dc,
                    format!("http://{}/api/v2", g.http_addr()),
                    sip.join(" → "),
                    format!("http://{}", g.control_addr()),
                );
            }
        }
        if let Some(g) = &self.pstn_gateway {
            let _ = writeln!(
                out,
                "\n{:<12} sip:{} (answers every PSTN agent's number)",
                "pstn-gateway",
                g.sip_addr()
            );
        }
        if !self.proxy_endpoints.is_empty() {
            let _ = writeln!(
                out,
                "\n{:<10} {:<4} {:<30} {:<18} {:<26}",
                "proxy", "dc", "HTTP (desktops)", "GWS nodes", "control"
            );
            for p in &self.proxy_endpoints {
                let _ = writeln!(
                    out,
                    "{:<10} {:<4} {:<30} {:<18} {:<26}",
                    p.name,
                    p.dc,
                    format!("http://{}", p.http),
                    p.upstreams.join(", "),
                    p.control.map(|c| format!("http://{c}")).unwrap_or_default(),
                );
            }
        }
        out
    }

    pub async fn shutdown(&self) {
        if let Some(g) = &self.pstn_gateway {
            g.shutdown();
        }
        for p in self.proxies.lock().await.drain(..) {
            p.shutdown().await;
        }
        for g in &self.gws_nodes {
            g.shutdown().await;
        }
        for n in &self.sip_nodes {
            n.shutdown().await;
        }
    }
}

/// The PSTN gateway of the topology on `at`, with the profile's SIP T1 (a fast profile's
/// retransmissions match the nodes').
async fn start_pstn_gateway(
    topology: &Topology,
    profile: Option<&str>,
    at: std::net::SocketAddr,
) -> anyhow::Result<Swarm> {
    let timers = topology.timers(profile).map_err(anyhow::Error::msg)?;
    let mut config = PhoneConfig::gateway(at);
    config.sip_timers.t1 = timers.sip_t1;
    Swarm::start(config)
        .await
        .with_context(|| format!("starting the PSTN gateway on {at}"))
}
