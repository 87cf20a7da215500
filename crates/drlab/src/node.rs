//! `drlab node NAME --topology FILE`: one node of a topology in this process — what each
//! container of a Compose lab runs, so the in-process lab and the containers take their
//! configuration from the same topology through the same functions.

use std::future::Future;

use anyhow::{anyhow, Context};
use gws_mock::GwsNode;
use proxy::ProxyHandle;
use sipserver_mock::tc::PeerNode;
use sipserver_mock::SipNode;

use crate::topology::Topology;

/// A started node of any kind.
enum Running {
    Sip(SipNode),
    Gws(GwsNode),
    Proxy(ProxyHandle),
}

impl Running {
    async fn shutdown(self) {
        match self {
            Running::Sip(n) => n.shutdown().await,
            Running::Gws(n) => n.shutdown().await,
            Running::Proxy(p) => p.shutdown().await,
        }
    }
}

/// Starts the node `name` of `topology` (SIP node, GWS node or proxy), runs it until `stop`
/// completes, then shuts it down.
pub async fn run_node(
    topology: &Topology,
    profile: Option<&str>,
    name: &str,
    stop: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let node = start(topology, profile, name)
        .await
        .with_context(|| format!("starting {name}"))?;
    let result = stop.await;
    node.shutdown().await;
    result
}

async fn start(topology: &Topology, profile: Option<&str>, name: &str) -> anyhow::Result<Running> {
    let sip = topology.node_configs(profile).map_err(anyhow::Error::msg)?;
    if let Some(config) = sip.iter().find(|c| c.name == name) {
        let mut config = config.clone();
        // Its peers: every other SIP node, at the TC address the topology gives it.
        config.peers = sip
            .iter()
            .filter(|c| c.name != name)
            .map(|c| PeerNode {
                name: c.name.clone(),
                dc: c.dc.clone(),
                tc: c.tc_addr(),
            })
            .collect();
        return Ok(Running::Sip(sipserver_mock::start(config).await?));
    }
    let gws = topology
        .gws_configs(profile, &sip)
        .map_err(anyhow::Error::msg)?;
    if let Some(config) = gws.iter().find(|c| c.name == name) {
        return Ok(Running::Gws(gws_mock::start(config.clone()).await?));
    }
    let proxies = topology
        .proxy_configs(profile, &gws)
        .map_err(anyhow::Error::msg)?;
    if let Some(config) = proxies.into_iter().find(|c| c.name == name) {
        return Ok(Running::Proxy(proxy::start(config).await?));
    }
    let mut known: Vec<&str> = topology.sip_nodes.iter().map(|n| n.name.as_str()).collect();
    known.extend(topology.gws_nodes.iter().map(|n| n.name.as_str()));
    known.extend(topology.proxies.iter().map(|n| n.name.as_str()));
    Err(anyhow!(
        "no node `{name}` in the topology (nodes: {})",
        known.join(", ")
    ))
}
