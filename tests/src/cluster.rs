//! Helpers for tests of the 4-node, 2-DC SIP Cluster: the embedded topology on free ports with
//! the fast profile, TC link waits, DC cuts with the built-in fault layer or real iptables, and
//! what every node believes about a DN's owner.

use std::future::Future;
use std::time::Duration;

use drlab::{Lab, Topology};
use netfault::{FaultMode, FaultRule, PeerFilter};
use serde_json::Value;
use sipserver_mock::SipNode;

/// How long a cluster-wide condition may take in the fast profile (ADDP 600 ms, move delay 1 s).
pub const CLUSTER_PATIENCE: Duration = Duration::from_secs(10);

/// The node names of the embedded topology, DC1 first.
pub const NODES: [&str; 4] = ["ss1", "ss2", "ss3", "ss4"];

/// Starts the embedded lab (after `edit` on its text, e.g. another PSTN gateway) on free ports
/// with the fast profile, and waits for the full TC mesh.
pub async fn start_lab(edit: impl FnOnce(String) -> String) -> Lab {
    let text = edit(drlab::DEFAULT_TOPOLOGY.to_string());
    let topology = Topology::parse(&text)
        .expect("test topology parses")
        .with_ephemeral_ports();
    let lab = Lab::start(&topology, Some("fast"))
        .await
        .expect("lab starts");
    wait_full_mesh(&lab, CLUSTER_PATIENCE).await;
    lab
}

/// The lab with calls to PSTN agents going to `gateway` (the test's own user agent, instead of
/// the gateway the lab would start).
pub async fn start_lab_with_gateway(gateway: std::net::SocketAddr) -> Lab {
    start_lab(|t| with_gateway(&t, gateway)).await
}

/// The topology text with PSTN agents' calls going to `gateway`, which the lab does not start.
pub fn with_gateway(topology: &str, gateway: std::net::SocketAddr) -> String {
    topology.replace(
        "pstn_gateway = \"127.0.3.1:5060\"",
        &format!("pstn_gateway = \"{gateway}\"\nstart_pstn_gateway = false"),
    )
}

pub fn node<'a>(lab: &'a Lab, name: &str) -> &'a SipNode {
    lab.sip_node(name).expect("node of the embedded topology")
}

/// Polls `check` until it holds, waking on any journal entry of `watch` (or every 50 ms, for
/// conditions other nodes change), failing after [`CLUSTER_PATIENCE`] with `what`.
pub async fn eventually<F, Fut>(watch: &SipNode, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + CLUSTER_PATIENCE;
    loop {
        let since = watch.journal().last_seq();
        if check().await {
            return;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(!left.is_zero(), "not within {CLUSTER_PATIENCE:?}: {what}");
        watch
            .journal()
            .wait_newer(since, left.min(Duration::from_millis(50)))
            .await;
    }
}

pub async fn up_links(node: &SipNode) -> Vec<String> {
    up_link_peers(&node.state().await)
}

/// The peers whose TC link a SIP node's `/state` shows up, sorted.
pub fn up_link_peers(state: &Value) -> Vec<String> {
    let mut up: Vec<String> = state["links"]
        .as_array()
        .map(|links| {
            links
                .iter()
                .filter(|l| l["up"] == Value::Bool(true))
                .filter_map(|l| l["peer"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    up.sort();
    up
}

/// Waits until `node`'s up links are exactly `peers`.
pub async fn wait_links(node: &SipNode, peers: &[&str], patience: Duration) {
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
pub async fn wait_full_mesh(lab: &Lab, patience: Duration) {
    for name in NODES {
        let peers: Vec<&str> = NODES.iter().copied().filter(|p| *p != name).collect();
        wait_links(node(lab, name), &peers, patience).await;
    }
}

/// Only the links inside each DC are up (after a DC1–DC2 cut).
pub async fn wait_dcs_split(lab: &Lab) {
    for (name, peer) in [
        ("ss1", "ss2"),
        ("ss2", "ss1"),
        ("ss3", "ss4"),
        ("ss4", "ss3"),
    ] {
        wait_links(node(lab, name), &[peer], CLUSTER_PATIENCE).await;
    }
}

/// Cuts every TC link between DC1 and DC2 with the built-in fault layer (on the DC1 nodes, for
/// peers in DC2's address range); SIP and T-Lib are untouched.
pub fn cut_dcs(lab: &Lab, mode: FaultMode) {
    let dc2: PeerFilter = "127.0.2.0/24".parse().expect("CIDR");
    for name in ["ss1", "ss2"] {
        node(lab, name)
            .faults()
            .add(FaultRule::new("tc:*", mode).with_peer(dc2))
            .expect("fault rule");
    }
}

/// Removes the cut of [`cut_dcs`].
pub fn heal_dcs(lab: &Lab) {
    for name in ["ss1", "ss2"] {
        node(lab, name).faults().clear();
    }
}

/// The owner `node` believes `dn` has (None: unowned or unknown).
pub async fn owner_seen_by(node: &SipNode, dn: &str) -> Option<String> {
    dn_state(node, dn)
        .await
        .and_then(|d| d["owner"].as_str().map(str::to_string))
}

/// `node`'s `/state` entry for `dn`.
pub async fn dn_state(node: &SipNode, dn: &str) -> Option<Value> {
    let state = node.state().await;
    state["dns"]
        .as_array()?
        .iter()
        .find(|d| d["dn"] == dn)
        .cloned()
}

/// Waits until every node believes `dn`'s owner is `expected`.
pub async fn wait_owner_everywhere(lab: &Lab, dn: &str, expected: Option<&str>) {
    let what = format!("every node sees {expected:?} owning DN {dn}");
    eventually(node(lab, "ss1"), &what, || async {
        for name in NODES {
            if owner_seen_by(node(lab, name), dn).await.as_deref() != expected {
                return false;
            }
        }
        true
    })
    .await;
}

/// The first journal entry of `kind` on `node` whose detail matches `pred`, waited for.
pub async fn wait_journal(node: &SipNode, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
    node.journal()
        .wait_for(0, CLUSTER_PATIENCE, |e| e.kind == kind && pred(&e.detail()))
        .await
        .unwrap_or_else(|| panic!("{}: no {kind} entry as expected", node.name()))
        .detail()
}

/// Journal entries of `kind` on `node` (details).
pub fn journal_details(node: &SipNode, kind: &str) -> Vec<Value> {
    node.journal()
        .since(0, usize::MAX)
        .iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.detail())
        .collect()
}

/// iptables rules for one test, removed when dropped (even if the test fails).
pub struct IptablesRules(Vec<Vec<String>>);

impl IptablesRules {
    pub fn new() -> Self {
        IptablesRules(Vec::new())
    }

    pub fn add(&mut self, spec: &[&str]) {
        let spec: Vec<String> = spec.iter().map(|s| s.to_string()).collect();
        let ok = std::process::Command::new("iptables")
            .arg("-I")
            .args(&spec)
            .status()
            .map(|s| s.success());
        assert!(matches!(ok, Ok(true)), "iptables -I {spec:?} failed");
        self.0.push(spec);
    }

    /// DROP every TCP packet between two address ranges, both ways, tagged with this process.
    pub fn drop_tcp_between(&mut self, a: &str, b: &str) {
        let tag = format!("drlab-test-{}", std::process::id());
        for (src, dst) in [(a, b), (b, a)] {
            self.add(&[
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
    }

    pub fn clear(&mut self) {
        for spec in self.0.drain(..) {
            let _ = std::process::Command::new("iptables")
                .arg("-D")
                .args(&spec)
                .status();
        }
    }
}

impl Default for IptablesRules {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for IptablesRules {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Whether real iptables rules can be used here; CI sets `DRLAB_REQUIRE_IPTABLES=1` so that a
/// missing iptables fails there instead of skipping.
pub fn iptables_usable() -> bool {
    nodekit::peer::available(
        nodekit::peer::runs("iptables", &["-L", "INPUT", "-n"]),
        "iptables",
        "DRLAB_REQUIRE_IPTABLES",
        "needs root and apt-get install iptables",
    )
}

/// The embedded topology moved to its own address ranges (127.0.11.x / 127.0.12.x), so that
/// iptables rules of one test touch no other test.
pub fn own_ranges(text: String) -> String {
    text.replace("127.0.1.", "127.0.11.")
        .replace("127.0.2.", "127.0.12.")
}
