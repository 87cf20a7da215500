//! A running lab: every node of a topology in this process.

use std::fmt::Write;

use anyhow::Context;
use sipserver_mock::SipNode;

use crate::topology::Topology;

/// The nodes of a topology, started.
pub struct Lab {
    pub sip_nodes: Vec<SipNode>,
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
        Ok(Lab { sip_nodes })
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
        out
    }

    pub async fn shutdown(&self) {
        for n in &self.sip_nodes {
            n.shutdown().await;
        }
    }
}
