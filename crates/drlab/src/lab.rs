//! A running lab: every node of a topology in this process.

use std::fmt::Write;

use anyhow::Context;
use gws_mock::GwsNode;
use sipserver_mock::{NodeConfig, SipNode};

use crate::topology::Topology;

/// The nodes of a topology, started.
pub struct Lab {
    pub sip_nodes: Vec<SipNode>,
    pub gws_nodes: Vec<GwsNode>,
}

impl Lab {
    /// Starts every node of `topology` with the timers of `profile`.
    pub async fn start(topology: &Topology, profile: Option<&str>) -> anyhow::Result<Lab> {
        let configs = topology.node_configs(profile).map_err(anyhow::Error::msg)?;
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
        Ok(Lab {
            sip_nodes,
            gws_nodes,
        })
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
        out
    }

    pub async fn shutdown(&self) {
        for g in &self.gws_nodes {
            g.shutdown().await;
        }
        for n in &self.sip_nodes {
            n.shutdown().await;
        }
    }
}
