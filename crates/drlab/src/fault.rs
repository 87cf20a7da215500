//! `drlab fault cut` / `drlab fault heal`: the built-in fault layer of a running lab, driven
//! through each node's control plane (docs/architecture.md §5), so a partition is one command.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use sipserver_mock::NodeConfig;

/// Largest control-plane answer read (the fault endpoints answer a few hundred bytes).
const MAX_ANSWER: u64 = 1 << 20;
const TIMEOUT: Duration = Duration::from_secs(5);

/// One HTTP/1.1 request to a control plane; the status and body of the answer.
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let body = body.unwrap_or("");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.take(MAX_ANSWER).read_to_end(&mut answer).await?;
        anyhow::Ok(String::from_utf8_lossy(&answer).into_owned())
    };
    let answer = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .with_context(|| format!("{addr}: no answer within {TIMEOUT:?}"))?
        .with_context(|| format!("{addr}: control plane unreachable (is the lab up?)"))?;
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("{addr}: not an HTTP answer"))?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Cuts the TC links between the nodes of `dc_a` and `dc_b` with `mode` (`drop` or `reject`),
/// on both sides; returns one line per rule added.
pub async fn cut(
    nodes: &[NodeConfig],
    dc_a: &str,
    dc_b: &str,
    mode: &str,
) -> anyhow::Result<Vec<String>> {
    if !matches!(mode, "drop" | "reject") {
        bail!("--mode must be drop or reject, not {mode:?}");
    }
    let side = |dc: &str| -> anyhow::Result<Vec<_>> {
        let found: Vec<_> = nodes.iter().filter(|n| n.dc == dc).collect();
        if found.is_empty() {
            bail!("the topology has no SIP node in DC {dc:?}");
        }
        Ok(found)
    };
    let (a, b) = (side(dc_a)?, side(dc_b)?);
    let mut done = Vec::new();
    for (from, to) in [(&a, &b), (&b, &a)] {
        for node in from.iter() {
            for peer in to.iter() {
                let rule =
                    json!({ "link": "tc:*", "peer": format!("{}/32", peer.address), "mode": mode });
                let (status, body) = call(
                    node.control_addr(),
                    "POST",
                    "/faults",
                    Some(&rule.to_string()),
                )
                .await?;
                if !(200..300).contains(&status) {
                    bail!("{}: POST /faults answered {status}: {body}", node.name);
                }
                done.push(format!("{}: tc:* to {} {mode}", node.name, peer.name));
            }
        }
    }
    Ok(done)
}

/// Removes every fault rule of every SIP node.
pub async fn heal(nodes: &[NodeConfig]) -> anyhow::Result<Vec<String>> {
    let mut done = Vec::new();
    for node in nodes {
        let (status, body) = call(node.control_addr(), "DELETE", "/faults", None).await?;
        if !(200..300).contains(&status) {
            bail!("{}: DELETE /faults answered {status}: {body}", node.name);
        }
        done.push(format!("{}: healed", node.name));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Lab, Topology};

    #[tokio::test]
    async fn cut_and_heal_through_the_control_planes() {
        let topology = Topology::embedded().with_ephemeral_ports();
        let lab = Lab::start(&topology, Some("fast")).await.unwrap();
        // The running nodes' configs carry the ports they bound.
        let running: Vec<NodeConfig> = lab.sip_nodes.iter().map(|n| n.config().clone()).collect();
        let lines = cut(&running, "dc1", "dc2", "drop").await.unwrap();
        assert_eq!(lines.len(), 8, "{lines:?}");
        let rules = lab.sip_node("ss1").unwrap().faults().list();
        assert_eq!(rules.len(), 2);
        assert!(cut(&running, "dc1", "dc9", "drop").await.is_err());
        assert!(cut(&running, "dc1", "dc2", "loss").await.is_err());
        heal(&running).await.unwrap();
        assert!(lab.sip_node("ss1").unwrap().faults().list().is_empty());
        lab.shutdown().await;
    }
}
