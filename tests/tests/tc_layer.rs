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
    wait_links_within(node, peers, PATIENCE).await
}

async fn wait_links_within(node: &SipNode, peers: &[&str], patience: Duration) {
    let deadline = tokio::time::Instant::now() + patience;
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

/// Every node of the default topology has its three links up.
async fn wait_full_mesh(lab: &Lab, patience: Duration) {
    for (name, peers) in [
        ("ss1", ["ss2", "ss3", "ss4"]),
        ("ss2", ["ss1", "ss3", "ss4"]),
        ("ss3", ["ss1", "ss2", "ss4"]),
        ("ss4", ["ss1", "ss2", "ss3"]),
    ] {
        wait_links_within(lab.sip_node(name).unwrap(), &peers, patience).await;
    }
}

/// A DC1–DC2 cut as the contract expects it: only the links inside each DC stay up, and the DC2
/// side found the silent loss through ADDP.
async fn assert_dcs_split(lab: &Lab) {
    let node = |n: &str| lab.sip_node(n).unwrap();
    for (name, peer) in [
        ("ss1", "ss2"),
        ("ss2", "ss1"),
        ("ss3", "ss4"),
        ("ss4", "ss3"),
    ] {
        wait_links(node(name), &[peer]).await;
    }
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
}

#[tokio::test]
async fn tc_links_full_mesh_cut_by_dc_and_healed() {
    let topology = Topology::embedded().with_ephemeral_ports();
    let lab = Lab::start(&topology, Some("fast"))
        .await
        .expect("lab starts");
    wait_full_mesh(&lab, PATIENCE).await;

    // Cut DC1 from DC2 on the DC1 nodes: blackhole every TC link towards 127.0.2.0/24.
    let dc2: PeerFilter = "127.0.2.0/24".parse().unwrap();
    let dc1 = ["ss1", "ss2"].map(|n| lab.sip_node(n).unwrap());
    for node in dc1 {
        node.faults()
            .add(FaultRule::new("tc:*", FaultMode::Drop).with_peer(dc2))
            .unwrap();
    }
    assert_dcs_split(&lab).await;

    for node in dc1 {
        node.faults().clear();
    }
    wait_full_mesh(&lab, PATIENCE).await;
    lab.shutdown().await;
}

/// iptables DROP rules for one test, removed when dropped (even if the test fails).
struct IptablesRules(Vec<Vec<String>>);

impl IptablesRules {
    fn add(&mut self, spec: &[&str]) {
        let spec: Vec<String> = spec.iter().map(|s| s.to_string()).collect();
        let ok = std::process::Command::new("iptables")
            .arg("-I")
            .args(&spec)
            .status()
            .map(|s| s.success());
        assert!(matches!(ok, Ok(true)), "iptables -I {spec:?} failed");
        self.0.push(spec);
    }

    fn clear(&mut self) {
        for spec in self.0.drain(..) {
            let _ = std::process::Command::new("iptables")
                .arg("-D")
                .args(&spec)
                .status();
        }
    }
}

impl Drop for IptablesRules {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Whether real iptables rules can be used here; CI sets `DRLAB_REQUIRE_IPTABLES=1` so that a
/// missing iptables fails there instead of skipping.
fn iptables_usable() -> bool {
    let ok = std::process::Command::new("iptables")
        .args(["-L", "INPUT", "-n"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("DRLAB_REQUIRE_IPTABLES").is_none(),
            "iptables is required (DRLAB_REQUIRE_IPTABLES) but not usable"
        );
        eprintln!("SKIPPED: iptables is not usable here (needs root and the iptables package)");
    }
    ok
}

/// The same DC1–DC2 cut with real iptables DROP rules between the DCs' address ranges gives the
/// same outcome as the built-in `drop` fault: only the cross-DC links go down (found by ADDP),
/// and they come back after the rules go.
#[tokio::test]
async fn tc_partition_with_iptables_matches_builtin_drop() {
    if !iptables_usable() {
        return;
    }
    // Own address ranges, so the rules touch no other test.
    let text = drlab::DEFAULT_TOPOLOGY
        .replace("127.0.1.", "127.0.11.")
        .replace("127.0.2.", "127.0.12.");
    let topology = Topology::parse(&text).unwrap().with_ephemeral_ports();
    let lab = Lab::start(&topology, Some("fast"))
        .await
        .expect("lab starts");
    wait_full_mesh(&lab, PATIENCE).await;

    let tag = format!("drlab-test-{}", std::process::id());
    let mut rules = IptablesRules(Vec::new());
    for (src, dst) in [
        ("127.0.11.0/24", "127.0.12.0/24"),
        ("127.0.12.0/24", "127.0.11.0/24"),
    ] {
        rules.add(&[
            "INPUT",
            "-s",
            src,
            "-d",
            dst,
            "-p",
            "tcp",
            "-j",
            "DROP",
            "-m",
            "comment",
            "--comment",
            &tag,
        ]);
    }
    assert_dcs_split(&lab).await;

    rules.clear();
    // Reconnect waits out a blackholed connect attempt and the jittered backoff.
    wait_full_mesh(&lab, Duration::from_secs(30)).await;
    lab.shutdown().await;
}
