//! The TC layer of a 4-node, 2-DC cluster (the embedded topology on free ports, fast profile):
//! every node keeps a link to every other; a DC1–DC2 cut takes exactly the cross-DC links down
//! (silent drop, found by ADDP) and a heal brings them back.

use std::time::Duration;

use drlab_tests::cluster::*;
use netfault::FaultMode;

/// A DC1–DC2 cut as the contract expects it: only the links inside each DC stay up, and the DC2
/// side found the silent loss through ADDP.
async fn assert_dcs_split(lab: &drlab::Lab) {
    wait_dcs_split(lab).await;
    let down = wait_journal(node(lab, "ss3"), "link.down", |_| true).await;
    assert_eq!(
        down["reason"], "ADDP timeout",
        "silent loss is found by ADDP"
    );
}

#[tokio::test]
async fn tc_links_full_mesh_cut_by_dc_and_healed() {
    let lab = start_lab(|t| t).await;
    cut_dcs(&lab, FaultMode::Drop);
    assert_dcs_split(&lab).await;
    heal_dcs(&lab);
    wait_full_mesh(&lab, CLUSTER_PATIENCE).await;
    lab.shutdown().await;
}

/// The same DC1–DC2 cut with real iptables DROP rules between the DCs' address ranges gives the
/// same outcome as the built-in `drop` fault: only the cross-DC links go down (found by ADDP),
/// and they come back after the rules go.
#[tokio::test]
async fn tc_partition_with_iptables_matches_builtin_drop() {
    if !iptables_usable() {
        return;
    }
    let lab = start_lab(own_ranges).await;
    let mut rules = IptablesRules::new();
    rules.drop_tcp_between("127.0.11.0/24", "127.0.12.0/24");
    assert_dcs_split(&lab).await;
    rules.clear();
    // Reconnect waits out a blackholed connect attempt and the jittered backoff.
    wait_full_mesh(&lab, Duration::from_secs(30)).await;
    lab.shutdown().await;
}
