//! The TC layer of a 4-node, 2-DC cluster (the embedded topology on free ports, fast profile):
//! every node keeps a link to every other; a DC1–DC2 cut takes exactly the cross-DC links down
//! (silent drop, found by ADDP) and a heal brings them back.

use std::time::Duration;

use drlab::{Lab, Topology};
use netfault::{FaultMode, FaultRule, PeerFilter};
use serde_json::Value;
use sipserver_mock::SipNode;

const PATIENCE: Duration = Duration::from_secs(10);

async fn up_links(node: &SipNode) -> Vec<String> {
    let state = node.state().await;
    let mut up: Vec<String> = state["links"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["up"] == Value::Bool(true))
        .map(|l| l["peer"].as_str().unwrap().to_string())
        .collect();
    up.sort();
    up
}

/// Waits until `node`'s up links are exactly `peers` (watching the journal, not the clock).
async fn wait_links(node: &SipNode, peers: &[&str]) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let since = node.journal().last_seq();
        if up_links(node).await == peers {
            return;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(
            !left.is_zero(),
            "{}: links up {:?}, expected {peers:?}",
            node.name(),
            up_links(node).await
        );
        node.journal()
            .wait_for(since, left, |e| e.kind.starts_with("link."))
            .await;
    }
}

#[tokio::test]
async fn tc_links_full_mesh_cut_by_dc_and_healed() {
    let topology = Topology::embedded().with_ephemeral_ports();
    let lab = Lab::start(&topology, Some("fast"))
        .await
        .expect("lab starts");
    let node = |n: &str| lab.sip_node(n).unwrap();
    for (name, peers) in [
        ("ss1", ["ss2", "ss3", "ss4"]),
        ("ss2", ["ss1", "ss3", "ss4"]),
        ("ss3", ["ss1", "ss2", "ss4"]),
        ("ss4", ["ss1", "ss2", "ss3"]),
    ] {
        wait_links(node(name), &peers).await;
    }

    // Cut DC1 from DC2 on the DC1 nodes: blackhole every TC link towards 127.0.2.0/24.
    let dc2: PeerFilter = "127.0.2.0/24".parse().unwrap();
    for name in ["ss1", "ss2"] {
        node(name)
            .faults()
            .add(FaultRule::new("tc:*", FaultMode::Drop).with_peer(dc2))
            .unwrap();
    }
    wait_links(node("ss1"), &["ss2"]).await;
    wait_links(node("ss2"), &["ss1"]).await;
    wait_links(node("ss3"), &["ss4"]).await;
    wait_links(node("ss4"), &["ss3"]).await;
    let down = node("ss3")
        .journal()
        .since(0, 10_000)
        .into_iter()
        .find(|e| e.kind == "link.down")
        .unwrap();
    assert_eq!(
        down.detail()["reason"],
        "ADDP timeout",
        "silent loss is found by ADDP"
    );

    for name in ["ss1", "ss2"] {
        node(name).faults().clear();
    }
    for (name, peers) in [
        ("ss1", ["ss2", "ss3", "ss4"]),
        ("ss3", ["ss1", "ss2", "ss4"]),
    ] {
        wait_links(node(name), &peers).await;
    }
    lab.shutdown().await;
}
