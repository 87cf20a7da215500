//! The SIP Cluster rules over the TC layer (scenarios.md R1–R4, R8–R12) on the embedded 4-node,
//! 2-DC lab (ss1, ss2 in DC1; ss3, ss4 in DC2), fast profile, real sockets. Each test is named
//! after the rules it checks; "gwsN" T-Lib clients stand in for GWS nodes.

use std::time::Duration;

use drlab::Lab;
use drlab_tests::cluster::*;
use drlab_tests::ua::{AnswerMode, CallerEvent, TestCaller, TestPhone};
use drlab_tests::{agent_login, expect_event, request, status_of, tlib_client, UdpPhone};
use netfault::{FaultMode, Faults};
use serde_json::{json, Value};
use tlib::{error_code, ConnId, Events, Message, MessageName, Request, TlibClient};

const WAIT: Duration = Duration::from_secs(10);

/// A T-Lib client ("GWS node" `gws`) connected to node `at`.
async fn client_at(lab: &Lab, at: &str, gws: &str) -> (TlibClient, Events) {
    tlib_client(node(lab, at), &Faults::new(), &format!("tlib:{gws}-{at}")).await
}

fn extension<'a>(msg: &'a Message, key: &str) -> Option<&'a Value> {
    msg.attrs.extensions.as_ref().and_then(|e| e.get(key))
}

fn release(dn: &str, conn_id: ConnId) -> Request {
    Request::ReleaseCall {
        dn: dn.into(),
        conn_id,
    }
}

/// The next event called `name` about call `conn`.
async fn expect_call_event(events: &mut Events, name: MessageName, conn: ConnId) -> Message {
    match events
        .wait_for(|m| m.name == name && m.attrs.conn_id == Some(conn), WAIT)
        .await
    {
        Ok(m) => m,
        other => panic!("no {} for {conn}: {other:?}", name.as_str()),
    }
}

/// R1 and R12 cluster-wide: the node that accepts a phone's REGISTER owns the softphone DN, the
/// node where a T-Lib client registers a PSTN DN owns that one, every node knows it, and an
/// expired registration leaves the DN unowned everywhere.
#[tokio::test]
async fn r1_r12_ownership_follows_the_controlling_registration_cluster_wide() {
    let lab = start_lab(|t| t).await;
    let phone = UdpPhone::new(node(&lab, "ss3").sip_addr()).await;
    assert_eq!(status_of(&phone.register("7101", 2).await), 200);
    wait_owner_everywhere(&lab, "7101", Some("ss3")).await;

    let (gws1, _events) = client_at(&lab, "ss1", "gws1").await;
    request(&gws1, Request::register_address("8101")).await;
    wait_owner_everywhere(&lab, "8101", Some("ss1")).await;

    // No refresh: the binding at ss3 expires (R12) and nobody owns the DN any more.
    wait_journal(node(&lab, "ss3"), "ownership.released", |d| {
        d["dn"] == "7101"
    })
    .await;
    wait_owner_everywhere(&lab, "7101", None).await;
    lab.shutdown().await;
}

/// R2 and R11: a client at a non-owner node registers and logs in a DN; its node forwards the
/// requests to the owner and relays the owner's events. A call that arrives at a third node is
/// reported to the owner's clients over the TC layer, and call control from the remote client
/// reaches the call's node; ACW (R7) runs at the owner.
#[tokio::test]
async fn r2_r11_remote_registration_relayed_call_events_and_control() {
    let gateway = TestPhone::bind().await.unwrap();
    gateway.set_answer(AnswerMode::Auto);
    let lab = start_lab_with_gateway(gateway.local_addr()).await;
    let (gws1, mut ev1) = client_at(&lab, "ss1", "gws1").await;
    request(&gws1, Request::register_address("8102")).await;
    wait_owner_everywhere(&lab, "8102", Some("ss1")).await;

    let (gws3, mut ev3) = client_at(&lab, "ss3", "gws3").await;
    let registered = request(&gws3, Request::register_address("8102")).await;
    assert_eq!(registered.name, MessageName::EventRegistered);
    assert_eq!(extension(&registered, "Owner"), Some(&json!("ss1")));
    let login = request(&gws3, agent_login("8102")).await;
    assert_eq!(login.name, MessageName::EventAgentLogin, "{login:?}");
    expect_event(&mut ev1, MessageName::EventAgentLogin).await;
    wait_journal(node(&lab, "ss1"), "agent.login", |d| d["dn"] == "8102").await;
    assert!(
        journal_details(node(&lab, "ss3"), "agent.login").is_empty(),
        "the agent state lives at the owner"
    );

    // A call for 8102 arrives at ss2 (R11: it lives there).
    let caller = TestCaller::bind().await.unwrap();
    let mut call = caller
        .invite(node(&lab, "ss2").sip_addr(), "8102", "5550102")
        .await
        .unwrap();
    call.wait_for_status(200, WAIT).await.unwrap();
    let established = expect_event(&mut ev3, MessageName::EventEstablished).await;
    let conn = established.attrs.conn_id.expect("ConnID");
    expect_call_event(&mut ev1, MessageName::EventEstablished, conn).await;
    wait_journal(node(&lab, "ss2"), "call.established", |d| d["dn"] == "8102").await;

    // Control from the remote client: ss3 → ss1 (owner) → ss2 (the call's node).
    let held = request(
        &gws3,
        Request::HoldCall {
            dn: "8102".into(),
            conn_id: conn,
        },
    )
    .await;
    assert_eq!(held.name, MessageName::EventHeld, "{held:?}");
    let released = request(&gws3, release("8102", conn)).await;
    assert_eq!(released.name, MessageName::EventReleased, "{released:?}");
    call.wait_for(|e| matches!(e, CallerEvent::Bye), WAIT)
        .await
        .unwrap();
    expect_call_event(&mut ev1, MessageName::EventReleased, conn).await;
    wait_journal(node(&lab, "ss1"), "agent.acw_started", |d| {
        d["dn"] == "8102"
    })
    .await;
    lab.shutdown().await;
}

/// R3: another client registering the DN at its owner moves nothing, and while it stays
/// registered the DN stays even after the first client leaves (R4 logs the agent out).
#[tokio::test]
async fn r3_reregistration_at_the_owner_moves_nothing() {
    let lab = start_lab(|t| t).await;
    let (gws1, _ev1) = client_at(&lab, "ss1", "gws1").await;
    request(&gws1, Request::register_address("8103")).await;
    request(&gws1, agent_login("8103")).await;
    let (gws2, _ev2) = client_at(&lab, "ss1", "gws2").await;
    let registered = request(&gws2, Request::register_address("8103")).await;
    assert_eq!(extension(&registered, "Owner"), Some(&json!("ss1")));
    // A desktop in DC2 asks for the DN too.
    let (gws3, _ev3) = client_at(&lab, "ss3", "gws3").await;
    request(&gws3, Request::register_address("8103")).await;
    wait_journal(node(&lab, "ss1"), "ownership.move_requested", |d| {
        d["dn"] == "8103"
    })
    .await;

    drop(gws1);
    wait_journal(node(&lab, "ss1"), "agent.logout", |d| {
        d["dn"] == "8103" && d["rule"] == "R4"
    })
    .await;
    let state = dn_state(node(&lab, "ss1"), "8103").await.unwrap();
    assert!(
        state["cluster"]["move_pending"].is_null(),
        "gws2 still registers the DN at its owner: {state}"
    );
    assert!(journal_details(node(&lab, "ss1"), "ownership.move_scheduled").is_empty());
    wait_owner_everywhere(&lab, "8103", Some("ss1")).await;
    lab.shutdown().await;
}

/// R4 across the cluster: the remote client that logged the agent in disconnects; its node tells
/// the owner, which logs the agent out.
#[tokio::test]
async fn r4_remote_client_disconnect_logs_the_agent_out_at_the_owner() {
    let lab = start_lab(|t| t).await;
    let (gws1, mut ev1) = client_at(&lab, "ss1", "gws1").await;
    request(&gws1, Request::register_address("8104")).await;
    let (gws3, _ev3) = client_at(&lab, "ss3", "gws3").await;
    request(&gws3, Request::register_address("8104")).await;
    assert_eq!(
        request(&gws3, agent_login("8104")).await.name,
        MessageName::EventAgentLogin
    );
    drop(gws3);
    let logout = wait_journal(node(&lab, "ss1"), "agent.logout", |d| d["dn"] == "8104").await;
    assert_eq!(logout["rule"], "R4");
    assert_eq!(logout["cause"], "client_disconnected");
    expect_event(&mut ev1, MessageName::EventAgentLogout).await;
    lab.shutdown().await;
}

/// R8 and the "logs on twice" case (S1.8): the old owner's client unregisters, a node with a
/// controlling registration asked for the DN, so the owner waits `ownership_move_delay`, logs
/// out the agent that logged in through the new node meanwhile, and hands the DN over; the
/// agent logs in again and succeeds.
#[tokio::test]
async fn r8_pstn_dn_moves_after_the_delay_and_the_agent_logs_on_twice() {
    let lab = start_lab(|t| t).await;
    let (gws1, _ev1) = client_at(&lab, "ss1", "gws1").await;
    request(&gws1, Request::register_address("8105")).await;
    request(&gws1, agent_login("8105")).await;
    let (gws3, mut ev3) = client_at(&lab, "ss3", "gws3").await;
    request(&gws3, Request::register_address("8105")).await;
    wait_journal(node(&lab, "ss1"), "ownership.move_requested", |d| {
        d["dn"] == "8105"
    })
    .await;

    let unregistered = request(&gws1, Request::UnregisterAddress { dn: "8105".into() }).await;
    assert_eq!(unregistered.name, MessageName::EventUnregistered);
    let scheduled = wait_journal(node(&lab, "ss1"), "ownership.move_scheduled", |d| {
        d["dn"] == "8105"
    })
    .await;
    assert_eq!(scheduled["to"], "ss3");
    assert_eq!(scheduled["delay_ms"], 1000, "the fast ownership_move_delay");

    // Meanwhile the agent logs in through DC2 (the owner is still ss1).
    let login = request(&gws3, agent_login("8105")).await;
    assert_eq!(login.name, MessageName::EventAgentLogin, "{login:?}");
    // ... and is logged out before the move.
    expect_event(&mut ev3, MessageName::EventAgentLogout).await;
    let logout = wait_journal(node(&lab, "ss1"), "agent.logout", |d| {
        d["dn"] == "8105" && d["rule"] == "R8"
    })
    .await;
    assert_eq!(logout["cause"], "ownership_move");
    let moved = wait_journal(node(&lab, "ss1"), "ownership.moved", |d| d["dn"] == "8105").await;
    assert_eq!(moved["to"], "ss3");
    wait_owner_everywhere(&lab, "8105", Some("ss3")).await;

    // Second login, now at the owner.
    let again = request(&gws3, agent_login("8105")).await;
    assert_eq!(again.name, MessageName::EventAgentLogin, "{again:?}");
    wait_journal(node(&lab, "ss3"), "agent.login", |d| d["dn"] == "8105").await;
    lab.shutdown().await;
}

/// R8: a new registration at the old owner cancels a pending move.
#[tokio::test]
async fn r8_new_registration_at_the_owner_cancels_the_move() {
    let lab = start_lab(|t| t).await;
    let (gws1, _ev1) = client_at(&lab, "ss1", "gws1").await;
    request(&gws1, Request::register_address("8106")).await;
    let (gws3, _ev3) = client_at(&lab, "ss3", "gws3").await;
    request(&gws3, Request::register_address("8106")).await;
    wait_journal(node(&lab, "ss1"), "ownership.move_requested", |d| {
        d["dn"] == "8106"
    })
    .await;
    request(&gws1, Request::UnregisterAddress { dn: "8106".into() }).await;
    wait_journal(node(&lab, "ss1"), "ownership.move_scheduled", |d| {
        d["dn"] == "8106"
    })
    .await;
    let (gws2, _ev2) = client_at(&lab, "ss1", "gws2").await;
    request(&gws2, Request::register_address("8106")).await;
    wait_journal(node(&lab, "ss1"), "ownership.move_cancelled", |d| {
        d["dn"] == "8106"
    })
    .await;
    assert!(journal_details(node(&lab, "ss1"), "ownership.moved").is_empty());
    assert_eq!(
        owner_seen_by(node(&lab, "ss3"), "8106").await.as_deref(),
        Some("ss1")
    );
    lab.shutdown().await;
}

/// R8: no move while the DN has a call; the move follows the release.
#[tokio::test]
async fn r8_no_move_during_a_call_then_the_move_after_release() {
    let gateway = TestPhone::bind().await.unwrap();
    gateway.set_answer(AnswerMode::Auto);
    let lab = start_lab_with_gateway(gateway.local_addr()).await;
    let (gws1, mut ev1) = client_at(&lab, "ss1", "gws1").await;
    request(&gws1, Request::register_address("8107")).await;
    request(&gws1, agent_login("8107")).await;
    let caller = TestCaller::bind().await.unwrap();
    let mut call = caller
        .invite(node(&lab, "ss1").sip_addr(), "8107", "5550107")
        .await
        .unwrap();
    call.wait_for_status(200, WAIT).await.unwrap();
    expect_event(&mut ev1, MessageName::EventEstablished).await;

    let (gws3, _ev3) = client_at(&lab, "ss3", "gws3").await;
    request(&gws3, Request::register_address("8107")).await;
    request(&gws1, Request::UnregisterAddress { dn: "8107".into() }).await;
    wait_journal(node(&lab, "ss1"), "agent.logout", |d| d["dn"] == "8107").await;
    let state = dn_state(node(&lab, "ss1"), "8107").await.unwrap();
    assert!(
        state["cluster"]["move_pending"].is_null(),
        "no move during the call: {state}"
    );

    assert_eq!(call.hang_up().await.unwrap(), 200);
    wait_journal(node(&lab, "ss1"), "ownership.move_scheduled", |d| {
        d["dn"] == "8107"
    })
    .await;
    wait_owner_everywhere(&lab, "8107", Some("ss3")).await;
    lab.shutdown().await;
}

/// R8: no move during ACW either. With `logout_on_disconnect = false` the agent stays logged in
/// when its client leaves, so the released call's wrap-up keeps the DN; the move follows the end
/// of ACW (and logs the agent out first).
#[tokio::test]
async fn r8_no_move_during_acw_then_the_move_after_wrap_up() {
    let gateway = TestPhone::bind().await.unwrap();
    gateway.set_answer(AnswerMode::Auto);
    let lab = start_lab(|t| {
        with_gateway(&t, gateway.local_addr()).replace(
            "logout_on_disconnect = true",
            "logout_on_disconnect = false",
        )
    })
    .await;
    let (gws1, mut ev1) = client_at(&lab, "ss1", "gws1").await;
    request(&gws1, Request::register_address("8114")).await;
    request(&gws1, agent_login("8114")).await;
    let caller = TestCaller::bind().await.unwrap();
    let mut call = caller
        .invite(node(&lab, "ss1").sip_addr(), "8114", "5550114")
        .await
        .unwrap();
    call.wait_for_status(200, WAIT).await.unwrap();
    expect_event(&mut ev1, MessageName::EventEstablished).await;
    let (gws3, _ev3) = client_at(&lab, "ss3", "gws3").await;
    request(&gws3, Request::register_address("8114")).await;
    assert_eq!(call.hang_up().await.unwrap(), 200);
    wait_journal(node(&lab, "ss1"), "agent.acw_started", |d| {
        d["dn"] == "8114"
    })
    .await;
    request(&gws1, Request::UnregisterAddress { dn: "8114".into() }).await;
    let state = dn_state(node(&lab, "ss1"), "8114").await.unwrap();
    assert!(
        state["cluster"]["move_pending"].is_null(),
        "no move during ACW: {state}"
    );

    let acw_end = wait_journal(node(&lab, "ss1"), "agent.acw_ended", |d| d["dn"] == "8114").await;
    assert_eq!(acw_end["dn"], "8114");
    wait_journal(node(&lab, "ss1"), "ownership.move_scheduled", |d| {
        d["dn"] == "8114"
    })
    .await;
    wait_journal(node(&lab, "ss1"), "agent.logout", |d| {
        d["dn"] == "8114" && d["rule"] == "R8"
    })
    .await;
    wait_owner_everywhere(&lab, "8114", Some("ss3")).await;
    let scheduled_after_acw = node(&lab, "ss1")
        .journal()
        .since(0, usize::MAX)
        .iter()
        .filter(|e| e.kind == "agent.acw_ended" || e.kind == "ownership.move_scheduled")
        .map(|e| e.kind)
        .collect::<Vec<_>>();
    assert_eq!(
        scheduled_after_acw,
        ["agent.acw_ended", "ownership.move_scheduled"]
    );
    lab.shutdown().await;
}

/// R8 + R12 (S4.3–S4.5): the softphone fails over to ss3 while its binding at ss1 lives; when
/// that binding expires the DN goes out of service at ss1, the agent is logged out, and the DN
/// moves to ss3 at once; the desktop at ss1 now registers it remotely and sees it back.
#[tokio::test]
async fn r8_r12_expired_softphone_registration_moves_the_dn_at_once() {
    let lab = start_lab(|t| t).await;
    let first = UdpPhone::new(node(&lab, "ss1").sip_addr()).await;
    assert_eq!(status_of(&first.register("7108", 2).await), 200);
    wait_owner_everywhere(&lab, "7108", Some("ss1")).await;
    let (gws1, mut ev1) = client_at(&lab, "ss1", "gws1").await;
    request(&gws1, Request::register_address("7108")).await;
    assert_eq!(
        request(&gws1, agent_login("7108")).await.name,
        MessageName::EventAgentLogin
    );

    let failed_over = UdpPhone::new(node(&lab, "ss3").sip_addr()).await;
    assert_eq!(status_of(&failed_over.register("7108", 60).await), 200);
    wait_journal(node(&lab, "ss1"), "ownership.move_requested", |d| {
        d["dn"] == "7108"
    })
    .await;
    assert_eq!(
        owner_seen_by(node(&lab, "ss1"), "7108").await.as_deref(),
        Some("ss1")
    );

    expect_event(&mut ev1, MessageName::EventDNOutOfService).await;
    expect_event(&mut ev1, MessageName::EventAgentLogout).await;
    let scheduled = wait_journal(node(&lab, "ss1"), "ownership.move_scheduled", |d| {
        d["dn"] == "7108"
    })
    .await;
    assert_eq!(
        scheduled["delay_ms"], 0,
        "an expired softphone DN moves at once"
    );
    wait_owner_everywhere(&lab, "7108", Some("ss3")).await;
    expect_event(&mut ev1, MessageName::EventDNBackInService).await;
    lab.shutdown().await;
}

/// R9: the old client neither unregisters nor disconnects, so ownership never moves.
#[tokio::test]
async fn r9_no_unregister_no_move() {
    let lab = start_lab(|t| t).await;
    let (gws1, _ev1) = client_at(&lab, "ss1", "gws1").await;
    request(&gws1, Request::register_address("8109")).await;
    request(&gws1, agent_login("8109")).await;
    let (gws3, _ev3) = client_at(&lab, "ss3", "gws3").await;
    request(&gws3, Request::register_address("8109")).await;
    wait_journal(node(&lab, "ss1"), "ownership.move_requested", |d| {
        d["dn"] == "8109"
    })
    .await;
    let state = dn_state(node(&lab, "ss1"), "8109").await.unwrap();
    assert_eq!(state["cluster"]["move_candidates"], json!(["ss3"]));
    assert!(state["cluster"]["move_pending"].is_null(), "{state}");
    // Longer than the move delay: still nothing.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(journal_details(node(&lab, "ss1"), "ownership.move_scheduled").is_empty());
    wait_owner_everywhere(&lab, "8109", Some("ss1")).await;
    let state = dn_state(node(&lab, "ss1"), "8109").await.unwrap();
    assert_eq!(state["agent"]["agent_id"], "agent8109", "{state}");
    lab.shutdown().await;
}

/// How a test cuts the TC layer between the DCs.
enum Partition {
    Builtin(FaultMode),
    Iptables(IptablesRules),
}

impl Partition {
    fn cut(&mut self, lab: &Lab) {
        match self {
            Partition::Builtin(mode) => cut_dcs(lab, *mode),
            Partition::Iptables(rules) => rules.drop_tcp_between("127.0.11.0/24", "127.0.12.0/24"),
        }
    }

    fn heal(&mut self, lab: &Lab) {
        match self {
            Partition::Builtin(_) => heal_dcs(lab),
            Partition::Iptables(rules) => rules.clear(),
        }
    }
}

/// R10 (S3.5–S3.8): the desktop of softphone DN 7110 (owner ss4) registered it at ss1. The TC
/// layer between the DCs is cut: ss1 reports the DN out of service and the agent logged out,
/// refuses login and registration in DC1, ss4 logs the agent out (R4 for the lost remote
/// client), and DC2 logs the agent in. On heal the desktop's registration comes back.
async fn r10_scenario(lab: &Lab, partition: &mut Partition) {
    let phone = UdpPhone::new(node(lab, "ss4").sip_addr()).await;
    assert_eq!(status_of(&phone.register("7110", 60).await), 200);
    wait_owner_everywhere(lab, "7110", Some("ss4")).await;
    let (gws1, mut ev1) = client_at(lab, "ss1", "gws1").await;
    let registered = request(&gws1, Request::register_address("7110")).await;
    assert_eq!(
        extension(&registered, "DNStatus"),
        Some(&json!("InService"))
    );
    assert_eq!(
        request(&gws1, agent_login("7110")).await.name,
        MessageName::EventAgentLogin
    );

    partition.cut(lab);
    wait_dcs_split(lab).await;
    expect_event(&mut ev1, MessageName::EventDNOutOfService).await;
    expect_event(&mut ev1, MessageName::EventAgentLogout).await;
    let lost = wait_journal(node(lab, "ss1"), "dn.owner_unreachable", |d| {
        d["dn"] == "7110"
    })
    .await;
    assert_eq!(lost["owner"], "ss4");
    let logout = wait_journal(node(lab, "ss4"), "agent.logout", |d| d["dn"] == "7110").await;
    assert_eq!(
        (&logout["rule"], &logout["cause"]),
        (&json!("R4"), &json!("tc_link_lost"))
    );

    let refused = request(&gws1, agent_login("7110")).await;
    assert_eq!(refused.name, MessageName::EventError);
    assert_eq!(refused.attrs.error_code, Some(error_code::OUT_OF_SERVICE));
    let (gws2, _ev2) = client_at(lab, "ss2", "gws2").await;
    let refused = request(&gws2, Request::register_address("7110")).await;
    assert_eq!(
        refused.attrs.error_code,
        Some(error_code::OUT_OF_SERVICE),
        "{refused:?}"
    );

    let (gws3, _ev3) = client_at(lab, "ss3", "gws3").await;
    request(&gws3, Request::register_address("7110")).await;
    let login = request(&gws3, agent_login("7110")).await;
    assert_eq!(login.name, MessageName::EventAgentLogin, "{login:?}");

    partition.heal(lab);
    wait_full_mesh(lab, Duration::from_secs(30)).await;
    expect_event(&mut ev1, MessageName::EventDNBackInService).await;
    wait_owner_everywhere(lab, "7110", Some("ss4")).await;
}

#[tokio::test]
async fn r10_owner_unreachable_with_builtin_drop() {
    let lab = start_lab(|t| t).await;
    r10_scenario(&lab, &mut Partition::Builtin(FaultMode::Drop)).await;
    lab.shutdown().await;
}

/// The same with the built-in `reject` (RST at once instead of a silent loss).
#[tokio::test]
async fn r10_owner_unreachable_with_builtin_reject() {
    let lab = start_lab(|t| t).await;
    r10_scenario(&lab, &mut Partition::Builtin(FaultMode::Reject)).await;
    lab.shutdown().await;
}

/// The same partition with real iptables DROP rules between the DCs' address ranges gives the
/// same outcome as the built-in `drop`.
#[tokio::test]
async fn r10_owner_unreachable_with_iptables_drop() {
    if !iptables_usable() {
        return;
    }
    let lab = start_lab(own_ranges).await;
    r10_scenario(&lab, &mut Partition::Iptables(IptablesRules::new())).await;
    lab.shutdown().await;
}

/// R10 split brain: while the DCs are cut, the phone of DN 7111 (owned by ss4) registers at ss1,
/// which takes the DN too. On heal the newer claim wins on every node, and both sides journal
/// the conflict and its resolution.
#[tokio::test]
async fn r10_split_brain_resolved_deterministically_on_heal() {
    let lab = start_lab(|t| t).await;
    let dc2_phone = UdpPhone::new(node(&lab, "ss4").sip_addr()).await;
    assert_eq!(status_of(&dc2_phone.register("7111", 60).await), 200);
    wait_owner_everywhere(&lab, "7111", Some("ss4")).await;

    cut_dcs(&lab, FaultMode::Drop);
    wait_dcs_split(&lab).await;
    let dc1_phone = UdpPhone::new(node(&lab, "ss1").sip_addr()).await;
    assert_eq!(status_of(&dc1_phone.register("7111", 60).await), 200);
    wait_journal(node(&lab, "ss1"), "ownership.taken", |d| {
        d["dn"] == "7111" && d["owner"] == "ss1"
    })
    .await;
    assert_eq!(
        owner_seen_by(node(&lab, "ss4"), "7111").await.as_deref(),
        Some("ss4")
    );

    heal_dcs(&lab);
    wait_owner_everywhere(&lab, "7111", Some("ss1")).await;
    let lost = wait_journal(node(&lab, "ss4"), "ownership.conflict", |d| {
        d["dn"] == "7111"
    })
    .await;
    assert_eq!(
        (&lost["won"], &lost["winner"]),
        (&json!(false), &json!("ss1"))
    );
    let won = wait_journal(node(&lab, "ss1"), "ownership.conflict", |d| {
        d["dn"] == "7111"
    })
    .await;
    assert_eq!(won["won"], true);
    lab.shutdown().await;
}

/// R11 (S3.2–S3.4): calls of DNs owned by ss1 live on ss3. With the DCs cut, the desktop gets no
/// events for them and its control has no effect; its release of a call the caller already
/// hung up clears it (no stuck call). On heal the surviving call is reported again and can be
/// released.
#[tokio::test]
async fn r11_calls_in_the_cut_dc_lose_events_and_control_then_resync_on_heal() {
    let gateway = TestPhone::bind().await.unwrap();
    gateway.set_answer(AnswerMode::Auto);
    let lab = start_lab_with_gateway(gateway.local_addr()).await;
    let (gws1, mut ev1) = client_at(&lab, "ss1", "gws1").await;
    for dn in ["8112", "8113"] {
        request(&gws1, Request::register_address(dn)).await;
        request(&gws1, agent_login(dn)).await;
        wait_owner_everywhere(&lab, dn, Some("ss1")).await;
    }
    let caller = TestCaller::bind().await.unwrap();
    let ss3 = node(&lab, "ss3").sip_addr();
    let mut call1 = caller.invite(ss3, "8112", "5550112").await.unwrap();
    call1.wait_for_status(200, WAIT).await.unwrap();
    let conn1 = expect_event(&mut ev1, MessageName::EventEstablished)
        .await
        .attrs
        .conn_id
        .unwrap();
    let mut call2 = caller.invite(ss3, "8113", "5550113").await.unwrap();
    call2.wait_for_status(200, WAIT).await.unwrap();
    let conn2 = expect_event(&mut ev1, MessageName::EventEstablished)
        .await
        .attrs
        .conn_id
        .unwrap();

    cut_dcs(&lab, FaultMode::Drop);
    wait_dcs_split(&lab).await;
    // S3.2/S3.3: the caller hangs up Call1; the release cannot reach the owner's clients.
    assert_eq!(call1.hang_up().await.unwrap(), 200);
    wait_journal(node(&lab, "ss3"), "call.event_lost", |d| {
        d["dn"] == "8112" && d["event"] == "EventReleased"
    })
    .await;
    let cleared = request(&gws1, release("8112", conn1)).await;
    assert_eq!(cleared.name, MessageName::EventReleased, "{cleared:?}");
    wait_journal(node(&lab, "ss1"), "call.cleared_locally", |d| {
        d["dn"] == "8112"
    })
    .await;
    let no_effect = request(
        &gws1,
        Request::HoldCall {
            dn: "8113".into(),
            conn_id: conn2,
        },
    )
    .await;
    assert_eq!(no_effect.name, MessageName::EventError, "{no_effect:?}");

    // S3.4: heal; Call2 is reported again and control works.
    heal_dcs(&lab);
    expect_call_event(&mut ev1, MessageName::EventEstablished, conn2).await;
    let released = request(&gws1, release("8113", conn2)).await;
    assert_eq!(released.name, MessageName::EventReleased, "{released:?}");
    call2
        .wait_for(|e| matches!(e, CallerEvent::Bye), WAIT)
        .await
        .unwrap();
    lab.shutdown().await;
}

/// R10 with a call on the cut-off side (S3.9): 8115 is owned by ss1 (its desktop through
/// "gws1"), its call arrived at ss3. With the TC layer cut, the desktop reconnecting through
/// DC2 registers 8115 at ss3: accepted for the call that lives there, which is reported (R6,
/// `EventDNOutOfService` says `OwnerUnreachable`, R13) and released from there (3pcc back), while
/// the login is refused (EventError 58).
#[tokio::test]
async fn r10_s3_9_registration_at_the_calls_node_gets_3pcc_back_during_the_cut() {
    let gateway = TestPhone::bind().await.unwrap();
    gateway.set_answer(AnswerMode::Auto);
    let lab = start_lab_with_gateway(gateway.local_addr()).await;
    let (gws1, mut ev1) = client_at(&lab, "ss1", "gws1").await;
    request(&gws1, Request::register_address("8115")).await;
    request(&gws1, agent_login("8115")).await;
    wait_owner_everywhere(&lab, "8115", Some("ss1")).await;
    let caller = TestCaller::bind().await.unwrap();
    let mut call = caller
        .invite(node(&lab, "ss3").sip_addr(), "8115", "5550115")
        .await
        .unwrap();
    call.wait_for_status(200, WAIT).await.unwrap();
    let conn = expect_event(&mut ev1, MessageName::EventEstablished)
        .await
        .attrs
        .conn_id
        .unwrap();

    cut_dcs(&lab, FaultMode::Drop);
    wait_dcs_split(&lab).await;
    let (gws3, mut ev3) = client_at(&lab, "ss3", "gws3").await;
    let registered = request(&gws3, Request::register_address("8115")).await;
    assert_eq!(
        registered.name,
        MessageName::EventRegistered,
        "R10: accepted for the call on ss3: {registered:?}"
    );
    assert_eq!(
        extension(&registered, "DNStatus"),
        Some(&json!("OutOfService"))
    );
    expect_call_event(&mut ev3, MessageName::EventEstablished, conn).await;
    let oos = expect_event(&mut ev3, MessageName::EventDNOutOfService).await;
    assert_eq!(
        extension(&oos, "OutOfServiceReason"),
        Some(&json!("OwnerUnreachable")),
        "R13"
    );
    let refused = request(&gws3, agent_login("8115")).await;
    assert_eq!(
        refused.attrs.error_code,
        Some(error_code::OUT_OF_SERVICE),
        "R10"
    );

    let released = request(&gws3, release("8115", conn)).await;
    assert_eq!(released.name, MessageName::EventReleased, "{released:?}");
    call.wait_for(|e| matches!(e, CallerEvent::Bye), WAIT)
        .await
        .unwrap();
    assert!(journal_details(node(&lab, "ss3"), "call.cleared_locally").is_empty());
    heal_dcs(&lab);
    lab.shutdown().await;
}
