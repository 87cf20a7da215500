//! A DN with a call keeps its owner when its last registration goes (scenarios.md R4, R5, R8,
//! S1.6, S1.8), end to end on the embedded lab (fast profile): a PSTN agent's desktop through
//! proxy-dc1, its call answered at the PSTN gateway (softphone-sim), the GWS node holding the
//! session crashes, the agent comes back through proxy-dc2 while the call is up.

use std::time::Duration;

use desktop_sim::{Connection, Desktop, DesktopConfig, Voice};
use drlab::Lab;
use drlab_tests::cluster::*;
use drlab_tests::desktop::{gws, session_node};
use drlab_tests::gws::wait_link_up;
use drlab_tests::PATIENCE;
use softphone_sim::{CallPlan, PhoneConfig, Swarm};

/// Fast-profile desktop for `user` through the proxy of `dc`; it never logs in again by itself.
fn desktop(lab: &Lab, dc: &str, user: &str, ready: bool) -> Desktop {
    let proxy = lab
        .proxy(&format!("proxy-{dc}"))
        .expect("proxy of the embedded topology")
        .http;
    let mut cfg = DesktopConfig::new(format!("http://{proxy}"), user).with_fast_timers();
    cfg.ready = ready;
    cfg.relogin = false;
    Desktop::start(cfg).expect("desktop starts")
}

/// Heartbeat packets the gateway's calls received so far.
async fn media_received(gateway: &Swarm) -> u64 {
    let state = gateway.state().await;
    state["calls"]
        .as_array()
        .map(|calls| {
            calls
                .iter()
                .filter_map(|c| c["media"]["received"].as_u64())
                .sum()
        })
        .unwrap_or(0)
}

/// Waits until the gateway's media counter passes `after`: the call's media still flows.
async fn media_flows(lab: &Lab, gateway: &Swarm, after: u64, what: &str) -> u64 {
    eventually(node(lab, "ss1"), what, || {
        let gateway = gateway.clone();
        async move { media_received(&gateway).await > after }
    })
    .await;
    media_received(gateway).await
}

/// The seed's case: agent8002 (PSTN DN 8002) logs in through proxy-dc1; a call to
/// 8002 arrives at ss1 and is answered at the gateway; the GWS node holding the session crashes.
/// ss1 logs the agent out (R4) but keeps ownership during the call (S1.6/S1.8); the agent's
/// login through proxy-dc2 (GWS3/4 → ss3, a remote registration, R2) is refused while the call
/// is up (R5); the call and its media go on; once the caller hangs up, ss1 moves the DN to ss3
/// after `ownership_move_delay` (R8).
#[tokio::test]
async fn s1_8_r5_r8_pstn_dn_keeps_its_owner_through_a_gws_crash_during_a_call_then_moves() {
    let gateway =
        Swarm::start(PhoneConfig::gateway("127.0.0.1:0".parse().unwrap()).with_fast_timers())
            .await
            .expect("gateway starts");
    let lab = start_lab_with_gateway(gateway.sip_addr()).await;
    for name in ["gws1", "gws2", "gws3", "gws4"] {
        wait_link_up(gws(&lab, name)).await;
    }
    let ss1 = node(&lab, "ss1");

    let dc1 = desktop(&lab, "dc1", "agent8002", true);
    dc1.wait_for(PATIENCE, |s| {
        s.connection == Connection::Connected && s.voice == Voice::Ready
    })
    .await
    .expect("agent8002 logged in and Ready through proxy-dc1");
    wait_owner_everywhere(&lab, "8002", Some("ss1")).await;

    // Call2: from the PSTN to 8002 at ss1, answered at the gateway.
    let mut caller_cfg = PhoneConfig::caller("127.0.0.1".parse().unwrap()).with_fast_timers();
    caller_cfg.media.timeout = Duration::from_secs(60);
    let caller = Swarm::start(caller_cfg).await.expect("caller starts");
    let placed = {
        let (caller, ss1_sip) = (caller.clone(), ss1.sip_addr());
        tokio::spawn(async move {
            let plan = CallPlan::new("8002", ss1_sip)
                .from("5550102")
                .hold(Duration::from_secs(120));
            caller.place_call(plan).await
        })
    };
    wait_journal(ss1, "call.established", |d| d["dn"] == "8002").await;
    let media = media_flows(&lab, &gateway, 0, "S1.1: media flows on Call2").await;
    let epoch = dn_state(ss1, "8002").await.expect("ss1 knows 8002")["epoch"].clone();

    // The GWS node that holds the session crashes: ss1 sees the T-Lib connection reset.
    let home = session_node(&lab, "agent8002", &[0, 0]).expect("a DC1 node holds the session");
    gws(&lab, home).crash().await;
    let logout = wait_journal(ss1, "agent.logout", |d| d["dn"] == "8002").await;
    assert_eq!(
        logout["rule"], "R4",
        "R4: the agent is logged out: {logout}"
    );
    let kept = wait_journal(ss1, "ownership.kept", |d| d["dn"] == "8002").await;
    assert_eq!(kept["rule"], "R8", "{kept}");
    let state = dn_state(ss1, "8002").await.expect("ss1 knows 8002");
    assert_eq!(
        state["owner"], "ss1",
        "S1.6/S1.8: ss1 keeps ownership of 8002 while Call2 is up: {state}"
    );
    assert_eq!(
        state["epoch"], epoch,
        "no ownership record was made: {state}"
    );
    assert!(
        journal_details(ss1, "ownership.released").is_empty(),
        "S1.8: ownership of 8002 was dropped during the call"
    );

    // The agent comes back through DC2: a remote registration at ss3 (R2), the login refused
    // because Call2 is in progress (R5).
    let dc2 = desktop(&lab, "dc2", "agent8002", false);
    let refused = wait_journal(ss1, "tlib.error", |d| {
        d["code"] == tlib::error_code::CTL_INV_CALL_STATE
    })
    .await;
    assert!(
        refused["text"]
            .as_str()
            .is_some_and(|t| t.contains("call is in progress")),
        "R5: {refused}"
    );
    wait_journal(ss1, "ownership.move_requested", |d| {
        d["dn"] == "8002" && d["by"] == "ss3"
    })
    .await;
    assert!(
        journal_details(ss1, "agent.login")
            .iter()
            .all(|d| d["client"] != refused["client"]),
        "R5: no login during the call"
    );
    assert_eq!(
        owner_seen_by(node(&lab, "ss3"), "8002").await.as_deref(),
        Some("ss1"),
        "R2: the registration at ss3 is remote"
    );
    media_flows(&lab, &gateway, media, "R4/S1.1: Call2's media goes on").await;
    assert!(
        journal_details(ss1, "call.released").is_empty(),
        "R4: calls are never released by a disconnect"
    );

    // The caller hangs up: no ACW (the agent is logged out); the DN moves to ss3 after the delay.
    assert_eq!(caller.hang_up("8002").await.expect("caller runs"), 1);
    let report = placed.await.expect("call task").expect("call placed");
    assert!(report.established, "{report:?}");
    let scheduled = wait_journal(ss1, "ownership.move_scheduled", |d| d["dn"] == "8002").await;
    assert_eq!(scheduled["to"], "ss3", "R8: {scheduled}");
    assert_eq!(
        scheduled["delay_ms"], 1000,
        "R8: the fast ownership_move_delay"
    );
    let moved = wait_journal(ss1, "ownership.moved", |d| d["dn"] == "8002").await;
    assert_eq!(moved["to"], "ss3", "R8: {moved}");
    let order: Vec<&str> = ss1
        .journal()
        .since(0, usize::MAX)
        .iter()
        .filter(|e| {
            e.detail()["dn"] == "8002"
                && matches!(
                    e.kind,
                    "call.released" | "ownership.move_scheduled" | "ownership.moved"
                )
        })
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        order,
        [
            "call.released",
            "ownership.move_scheduled",
            "ownership.moved"
        ],
        "S1.8: the move follows the release"
    );
    wait_owner_everywhere(&lab, "8002", Some("ss3")).await;
    drop((dc1, dc2));
    lab.shutdown().await;
}
