//! `drlab scenario` end to end, one test per scenario variant on the fast profile: each runs the
//! runner's library API on a lab of its own (the default topology moved to its own loopback
//! addresses) and fails listing every failing assertion id with its evidence. The runs are
//! serialised: each is a whole two-DC lab with desktops, phones and calls, and the fast timers
//! (ADDP 600 ms) leave no room for a starved CPU on a 2-core machine. The `--faults iptables`
//! variants need root and iptables (SKIPPED otherwise; CI sets `DRLAB_REQUIRE_IPTABLES=1`).

use drlab::orchestra::faults::Via;
use drlab::scenario::{self, Options};
use drlab_tests::cluster::iptables_usable;

/// One scenario lab at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn scenario(id: &str, variant: &str, net: u8, faults: Via) {
    let _one_at_a_time = SERIAL.lock().await;
    let cases = scenario::cases(&[id.to_owned()], Some(variant)).expect("a known case");
    let opts = Options {
        topology: drlab_tests::moved_topology(net),
        profile: "fast".into(),
        faults,
        recorder: None,
    };
    let report = scenario::run(&cases, &opts, |_| {})
        .await
        .expect("the scenario's lab starts");
    assert!(
        report.ok(),
        "{id} {variant}: failing ids:\n{}\nfull report:\n{}",
        report.failures(),
        report.render()
    );
}

#[tokio::test]
async fn s0_1_cutting_dc1_from_dc2_changes_nothing_in_dc1_r1_r7() {
    scenario("S0", "-", 40, Via::Builtin).await;
}

#[tokio::test]
async fn s1_a_gws1_crashes_desktops_reconnect_r3_r4_r5_r6_r8_r14() {
    scenario("S1", "a", 43, Via::Builtin).await;
}

#[tokio::test]
async fn s1_b_proxy_loses_gws1_which_stays_on_ss1() {
    scenario("S1", "b", 46, Via::Builtin).await;
}

#[tokio::test]
async fn s1_9_r9_without_session_expiry_ownership_never_moves() {
    scenario("S1", "c", 49, Via::Builtin).await;
}

#[tokio::test]
async fn s2_a_gws1_tlib_link_reset_r2_r4_r13() {
    scenario("S2", "a", 52, Via::Builtin).await;
}

#[tokio::test]
async fn s2_b_gws1_tlib_link_silent_drop_found_by_addp() {
    scenario("S2", "b", 55, Via::Builtin).await;
}

#[tokio::test]
async fn s3_tc_layer_between_the_dcs_fails_r10_r11_r13() {
    scenario("S3", "-", 70, Via::Builtin).await;
}

#[tokio::test]
async fn s4_a_softphone_loses_dc1_for_good_r8_r12() {
    scenario("S4", "a", 64, Via::Builtin).await;
}

#[tokio::test]
async fn s4_2_paths_back_before_the_registration_expires() {
    scenario("S4", "b", 67, Via::Builtin).await;
}

/// A case with real iptables rules (root): SKIPPED without them, required in CI.
async fn with_iptables(id: &str, variant: &str, net: u8) {
    if iptables_usable() {
        scenario(id, variant, net, Via::Iptables).await;
    }
}

#[tokio::test]
async fn s2_b_with_real_iptables_rules() {
    with_iptables("S2", "b", 58).await;
}

#[tokio::test]
async fn s0_1_with_real_iptables_rules() {
    with_iptables("S0", "-", 61).await;
}

#[tokio::test]
async fn s3_with_real_iptables_rules() {
    with_iptables("S3", "-", 73).await;
}

#[tokio::test]
async fn s4_a_with_real_iptables_rules() {
    with_iptables("S4", "a", 76).await;
}

#[tokio::test]
async fn s1_b_with_real_iptables_rules() {
    with_iptables("S1", "b", 79).await;
}
