//! Two node cores joined by in-memory TC links, driven without sockets on the paused clock.

use std::time::Duration;

use tlib::{error_code, AgentWorkMode, MessageName, Request};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::precedence;
use crate::config::NodeConfig;
use crate::core::tests::{answered_call, ask, caller_hangs_up, client, core_with, drain, names};
use crate::core::NodeCore;
use crate::tc::TcMessage;

/// Two cores and the frames each queued for the other.
pub(crate) struct Pair {
    pub(crate) a: NodeCore,
    pub(crate) b: NodeCore,
    to_b: Option<mpsc::Receiver<TcMessage>>,
    to_a: Option<mpsc::Receiver<TcMessage>>,
    link: u64,
}

impl Pair {
    pub(crate) fn new(a: &str, b: &str) -> Pair {
        Pair::with(a, b, |_| {})
    }

    /// Two cores with the same tuning of their configuration.
    pub(crate) fn with(a: &str, b: &str, tune: impl Fn(&mut NodeConfig)) -> Pair {
        Pair {
            a: core_with(a, &tune),
            b: core_with(b, &tune),
            to_b: None,
            to_a: None,
            link: 0,
        }
    }

    pub(crate) fn connect(&mut self) {
        self.link += 1;
        let (ta, ra) = mpsc::channel(100_000);
        let (tb, rb) = mpsc::channel(100_000);
        let (an, bn) = (
            self.a.node_name().to_string(),
            self.b.node_name().to_string(),
        );
        self.a.tc_link_up(&bn, self.link, ta);
        self.b.tc_link_up(&an, self.link, tb);
        self.to_b = Some(ra);
        self.to_a = Some(rb);
        self.pump();
    }

    pub(crate) fn cut(&mut self) {
        let (an, bn) = (
            self.a.node_name().to_string(),
            self.b.node_name().to_string(),
        );
        self.a.tc_link_down(&bn, self.link, "cut");
        self.b.tc_link_down(&an, self.link, "cut");
        self.to_a = None;
        self.to_b = None;
    }

    /// Delivers queued frames both ways until none are left.
    pub(crate) fn pump(&mut self) {
        let (an, bn) = (
            self.a.node_name().to_string(),
            self.b.node_name().to_string(),
        );
        loop {
            let mut moved = false;
            while let Some(m) = self.to_b.as_mut().and_then(|r| r.try_recv().ok()) {
                self.b.on_tc_frame_of(&an, self.link, m, Instant::now());
                moved = true;
            }
            while let Some(m) = self.to_a.as_mut().and_then(|r| r.try_recv().ok()) {
                self.a.on_tc_frame_of(&bn, self.link, m, Instant::now());
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }
}

fn owner(core: &NodeCore, dn: &str) -> Option<String> {
    core.owner_of(dn).map(|o| o.to_string())
}

pub(crate) fn journal_kinds(core: &NodeCore, kind: &str) -> Vec<serde_json::Value> {
    core.journal
        .since(0, usize::MAX)
        .iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.detail())
        .collect()
}

#[test]
fn records_rank_by_epoch_then_claim_then_lower_name() {
    assert!(precedence(2, Some("ss4")) > precedence(1, Some("ss1")));
    assert!(
        precedence(2, Some("ss4")) > precedence(2, None),
        "a claim beats a release"
    );
    assert!(
        precedence(2, Some("ss1")) > precedence(2, Some("ss4")),
        "lower name wins"
    );
    assert!(precedence(3, None) > precedence(2, Some("ss1")));
}

#[tokio::test(start_paused = true)]
async fn claims_replicate_and_remote_registration_relays_answers() {
    let mut p = Pair::new("ss1", "ss3");
    p.connect();
    let mut owner_client = client(&mut p.a, 1);
    ask(&mut p.a, 1, Request::register_address("8001"));
    p.pump();
    assert_eq!(owner(&p.b, "8001").as_deref(), Some("ss1"), "R1 replicated");
    assert!(names(&mut owner_client).contains(&MessageName::EventRegistered));

    // R2: a client at ss3 registers the DN; ss3 forwards, ss1 answers, ss3 relays.
    let mut remote = client(&mut p.b, 1);
    ask(&mut p.b, 1, Request::register_address("8001"));
    p.pump();
    assert!(names(&mut remote).contains(&MessageName::EventRegistered));
    assert_eq!(owner(&p.a, "8001").as_deref(), Some("ss1"));
    assert_eq!(journal_kinds(&p.a, "ownership.move_requested").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn split_brain_resolves_to_the_same_owner_on_both_sides() {
    let mut p = Pair::new("ss1", "ss4");
    // Never linked: both take the PSTN DN at epoch 1.
    let _a = client(&mut p.a, 1);
    let mut b_client = client(&mut p.b, 1);
    ask(&mut p.a, 1, Request::register_address("8002"));
    ask(&mut p.b, 1, Request::register_address("8002"));
    assert_eq!(owner(&p.a, "8002").as_deref(), Some("ss1"));
    assert_eq!(owner(&p.b, "8002").as_deref(), Some("ss4"));
    names(&mut b_client);

    p.connect();
    assert_eq!(owner(&p.a, "8002").as_deref(), Some("ss1"));
    assert_eq!(
        owner(&p.b, "8002").as_deref(),
        Some("ss1"),
        "equal epochs: the lower name wins"
    );
    let lost = journal_kinds(&p.b, "ownership.conflict");
    assert_eq!(lost[0]["won"], false);
    let won = journal_kinds(&p.a, "ownership.conflict");
    assert_eq!(won[0]["won"], true);
    // The loser's client hears the DN left it, then gets it back through the winner (R2).
    let seen = names(&mut b_client);
    assert!(seen.contains(&MessageName::EventDNOutOfService), "{seen:?}");
    assert!(
        seen.contains(&MessageName::EventDNBackInService),
        "{seen:?}"
    );
}

/// ss1 owns `dn` through its client 1; client 1 of ss3 registered it too (remote, R2). Returns
/// the pair and both clients' events (read so far).
fn registered_at_both(
    dn: &str,
) -> (
    Pair,
    mpsc::Receiver<tlib::Message>,
    mpsc::Receiver<tlib::Message>,
) {
    let mut p = Pair::new("ss1", "ss3");
    p.connect();
    let mut a = client(&mut p.a, 1);
    ask(&mut p.a, 1, Request::register_address(dn));
    let mut b = client(&mut p.b, 1);
    ask(&mut p.b, 1, Request::register_address(dn));
    p.pump();
    drain(&mut a);
    drain(&mut b);
    (p, a, b)
}

/// ss1 owns 8003 with a local client; a client at ss3 registered it too; the local one leaves.
fn move_pending() -> Pair {
    let (mut p, _a, _b) = registered_at_both("8003");
    ask(
        &mut p.a,
        1,
        Request::UnregisterAddress { dn: "8003".into() },
    );
    let scheduled = journal_kinds(&p.a, "ownership.move_scheduled");
    assert_eq!(scheduled[0]["delay_ms"], 1000);
    assert_eq!(scheduled[0]["to"], "ss3");
    p
}

#[tokio::test(start_paused = true)]
async fn move_waits_the_full_delay() {
    let mut p = move_pending();
    tokio::time::advance(Duration::from_millis(999)).await;
    p.a.on_timer(Instant::now());
    assert_eq!(owner(&p.a, "8003").as_deref(), Some("ss1"));
    tokio::time::advance(Duration::from_millis(1)).await;
    p.a.on_timer(Instant::now());
    p.pump();
    assert_eq!(owner(&p.a, "8003").as_deref(), Some("ss3"));
    assert_eq!(owner(&p.b, "8003").as_deref(), Some("ss3"));
}

#[tokio::test(start_paused = true)]
async fn a_cut_link_cancels_the_move_and_the_asker_takes_the_dn_after_heal() {
    let mut p = move_pending();
    tokio::time::advance(Duration::from_millis(500)).await;
    p.a.on_timer(Instant::now());
    p.cut();
    // The remote registration went with the link: the move is off and nothing registers the DN
    // at ss1 any more, so ss1 lets it go; ss3 reports it out of service (R10).
    assert_eq!(journal_kinds(&p.a, "ownership.move_cancelled").len(), 1);
    assert_eq!(owner(&p.a, "8003"), None);
    assert_eq!(owner(&p.b, "8003").as_deref(), Some("ss1"));
    assert_eq!(journal_kinds(&p.b, "dn.owner_unreachable").len(), 1);
    tokio::time::advance(Duration::from_secs(1)).await;
    p.a.on_timer(Instant::now());
    assert!(journal_kinds(&p.a, "ownership.moved").is_empty());

    // Healed: ss1's snapshot no longer names the DN; ss3 has the only registration and takes it.
    p.connect();
    assert_eq!(owner(&p.a, "8003").as_deref(), Some("ss3"));
    assert_eq!(owner(&p.b, "8003").as_deref(), Some("ss3"));
}

#[tokio::test(start_paused = true)]
async fn a_forgotten_dn_is_claimed_past_its_release() {
    let mut p = Pair::new("ss1", "ss3");
    p.connect();
    let _a = client(&mut p.a, 1);
    ask(&mut p.a, 1, Request::register_address("8004"));
    ask(
        &mut p.a,
        1,
        Request::UnregisterAddress { dn: "8004".into() },
    );
    p.pump();
    // Released (epoch 2) and idle: ss1 keeps nothing about the DN.
    assert!(!p.a.dns.contains("8004"));
    ask(&mut p.a, 1, Request::register_address("8004"));
    p.pump();
    assert_eq!(p.a.dns["8004"].epoch, 3);
    assert_eq!(owner(&p.b, "8004").as_deref(), Some("ss1"));
}

pub(crate) fn login(dn: &str) -> Request {
    Request::AgentLogin {
        dn: dn.into(),
        agent_id: Some(format!("agent{dn}")),
        password: None,
        work_mode: AgentWorkMode::AutoIn,
        queue: None,
        reasons: None,
        extensions: None,
    }
}

/// Advances the paused clock and runs both cores' due timers, then delivers their frames.
pub(crate) async fn advance(p: &mut Pair, by: Duration) {
    tokio::time::advance(by).await;
    p.a.on_timer(Instant::now());
    p.b.on_timer(Instant::now());
    p.pump();
}

/// The seed's case (S1.6, S1.8, S2.6): ss1 owns PSTN DN 8002, its only T-Lib client logged the
/// agent in, a call to 8002 on ss1 is answered, then that client vanishes (a GWS crash).
/// Returns the pair and the caller's Call-ID.
fn only_registrant_lost_during_a_call(p: &mut Pair) -> String {
    p.connect();
    let _gws1 = client(&mut p.a, 1);
    ask(&mut p.a, 1, Request::register_address("8002"));
    ask(&mut p.a, 1, login("8002"));
    p.pump();
    let call = answered_call(&mut p.a, "8002", "5550102");
    assert_eq!(p.a.dns["8002"].calls.len(), 1, "the call is up on ss1");
    let epoch = p.a.dns["8002"].epoch;
    p.a.client_gone(1, "connection reset");
    p.pump();
    let logout = journal_kinds(&p.a, "agent.logout");
    assert_eq!(logout[0]["rule"], "R4", "R4: the agent is logged out");
    assert_eq!(
        owner(&p.a, "8002").as_deref(),
        Some("ss1"),
        "R8/S1.8: the owner keeps a DN with a call when its last registration goes"
    );
    assert_eq!(owner(&p.b, "8002").as_deref(), Some("ss1"));
    assert_eq!(p.a.dns["8002"].epoch, epoch, "no ownership record was made");
    assert!(journal_kinds(&p.a, "ownership.released").is_empty());
    assert_eq!(journal_kinds(&p.a, "ownership.kept")[0]["dn"], "8002");
    call
}

#[tokio::test(start_paused = true)]
async fn r8_crash_of_the_only_registrant_during_a_call_keeps_the_owner_r2_r5_then_moves() {
    let mut p = Pair::new("ss1", "ss3");
    let call = only_registrant_lost_during_a_call(&mut p);

    // R2: a registration at ss3 meanwhile is remote; R6 reports the call; R5 refuses the login.
    let mut gws3 = client(&mut p.b, 1);
    ask(&mut p.b, 1, Request::register_address("8002"));
    p.pump();
    let seen = drain(&mut gws3);
    let registered = seen
        .iter()
        .find(|m| m.name == MessageName::EventRegistered)
        .expect("EventRegistered relayed from the owner");
    assert_eq!(
        registered.attrs.extensions.as_ref().unwrap()["Owner"],
        "ss1",
        "R2: the registration at ss3 is remote"
    );
    assert!(
        seen.iter().any(|m| m.name == MessageName::EventEstablished),
        "R6: the call is reported: {seen:?}"
    );
    assert_eq!(owner(&p.a, "8002").as_deref(), Some("ss1"));
    assert_eq!(journal_kinds(&p.a, "ownership.move_requested").len(), 1);
    ask(&mut p.b, 1, login("8002"));
    p.pump();
    let refused = drain(&mut gws3)
        .into_iter()
        .find(|m| m.name == MessageName::EventError)
        .expect("R5: the login during the call is refused");
    assert_eq!(
        refused.attrs.error_code,
        Some(error_code::CTL_INV_CALL_STATE)
    );
    advance(&mut p, Duration::from_secs(2)).await;
    assert_eq!(
        owner(&p.b, "8002").as_deref(),
        Some("ss1"),
        "no move during the call"
    );

    // The call ends (no ACW: the agent was logged out); the agent logs in through ss3 before
    // the delay is over, so the move logs it out first (R8: it logs on twice).
    caller_hangs_up(&mut p.a, &call);
    p.pump();
    let scheduled = journal_kinds(&p.a, "ownership.move_scheduled");
    assert_eq!(
        (
            scheduled[0]["to"].as_str(),
            scheduled[0]["delay_ms"].as_u64()
        ),
        (Some("ss3"), Some(1000))
    );
    ask(&mut p.b, 1, login("8002"));
    p.pump();
    assert!(names(&mut gws3).contains(&MessageName::EventAgentLogin));
    advance(&mut p, Duration::from_millis(999)).await;
    assert_eq!(
        owner(&p.a, "8002").as_deref(),
        Some("ss1"),
        "R8: the full delay"
    );
    advance(&mut p, Duration::from_millis(1)).await;
    let logouts = journal_kinds(&p.a, "agent.logout");
    assert_eq!(
        logouts.last().unwrap()["rule"],
        "R8",
        "logged out before the move"
    );
    assert_eq!(owner(&p.a, "8002").as_deref(), Some("ss3"));
    assert_eq!(owner(&p.b, "8002").as_deref(), Some("ss3"));
    let seen = names(&mut gws3);
    assert!(seen.contains(&MessageName::EventAgentLogout), "{seen:?}");
}

/// With `logout_on_disconnect = false` the agent stays logged in when its client vanishes, so
/// the call's ACW keeps the DN too; the move follows the end of ACW and the delay.
#[tokio::test(start_paused = true)]
async fn r8_crash_during_a_call_then_acw_then_the_delay_then_the_move() {
    let mut p = Pair::with("ss1", "ss3", |c| c.options.logout_on_disconnect = false);
    p.connect();
    let _gws1 = client(&mut p.a, 1);
    ask(&mut p.a, 1, Request::register_address("8002"));
    ask(&mut p.a, 1, login("8002"));
    let call = answered_call(&mut p.a, "8002", "5550102");
    p.a.client_gone(1, "connection reset");
    let _gws3 = client(&mut p.b, 1);
    ask(&mut p.b, 1, Request::register_address("8002"));
    p.pump();
    caller_hangs_up(&mut p.a, &call);
    p.pump();
    assert_eq!(journal_kinds(&p.a, "agent.acw_started").len(), 1, "R7");
    assert!(
        journal_kinds(&p.a, "ownership.move_scheduled").is_empty(),
        "no move during ACW"
    );
    assert_eq!(owner(&p.a, "8002").as_deref(), Some("ss1"));
    advance(&mut p, Duration::from_secs(1)).await;
    assert_eq!(journal_kinds(&p.a, "agent.acw_ended").len(), 1);
    assert_eq!(journal_kinds(&p.a, "ownership.move_scheduled").len(), 1);
    assert_eq!(owner(&p.a, "8002").as_deref(), Some("ss1"));
    advance(&mut p, Duration::from_secs(1)).await;
    assert_eq!(journal_kinds(&p.a, "agent.logout")[0]["rule"], "R8");
    assert_eq!(owner(&p.a, "8002").as_deref(), Some("ss3"));
    assert_eq!(owner(&p.b, "8002").as_deref(), Some("ss3"));
}

/// No registration anywhere when the call ends: the DN is released (unowned), as it is at once
/// without a call.
#[tokio::test(start_paused = true)]
async fn r8_with_no_registration_left_the_dn_is_released_after_the_call() {
    let mut p = Pair::new("ss1", "ss3");
    let call = only_registrant_lost_during_a_call(&mut p);
    caller_hangs_up(&mut p.a, &call);
    p.pump();
    assert_eq!(journal_kinds(&p.a, "ownership.released")[0]["dn"], "8002");
    assert_eq!(owner(&p.a, "8002"), None);
    assert_eq!(owner(&p.b, "8002"), None);
}

fn reason(m: &tlib::Message) -> Option<&serde_json::Value> {
    m.attrs
        .extensions
        .as_ref()
        .and_then(|e| e.get("OutOfServiceReason"))
}

/// R10 with a call on the unreachable owner's peer (S3.9): ss1 owns PSTN DN 8001, the call to
/// 8001 arrived at ss3, then the TC link is cut. A client at ss3 that registers 8001 is accepted
/// for the call that lives there: it sees the call (R6) and releases it, while the DN stays out
/// of service for agent state (login refused, EventError 58). A DN without such a call is
/// refused as before.
#[tokio::test(start_paused = true)]
async fn r10_registration_at_the_calls_node_is_accepted_for_its_calls_s3_9() {
    let mut p = Pair::new("ss1", "ss3");
    p.connect();
    let _gws1 = client(&mut p.a, 1);
    for dn in ["8001", "8004"] {
        ask(&mut p.a, 1, Request::register_address(dn));
    }
    ask(&mut p.a, 1, login("8001"));
    p.pump();
    let _call = answered_call(&mut p.b, "8001", "5550101");
    p.pump();
    p.cut();

    let mut gws3 = client(&mut p.b, 1);
    ask(&mut p.b, 1, Request::register_address("8001"));
    let seen = drain(&mut gws3);
    let names: Vec<MessageName> = seen.iter().map(|m| m.name.clone()).collect();
    assert_eq!(
        names,
        [
            MessageName::EventRegistered,
            MessageName::EventEstablished,
            MessageName::EventDNOutOfService
        ],
        "R10/R6: accepted, the call reported, the DN out of service"
    );
    let ext = seen[0].attrs.extensions.as_ref().unwrap();
    assert_eq!(
        (&ext["DNStatus"], &ext["Owner"]),
        (&"OutOfService".into(), &"ss1".into())
    );
    assert_eq!(reason(&seen[2]), Some(&"OwnerUnreachable".into()), "R13");
    let conn_id = seen[1].attrs.conn_id.unwrap();

    ask(&mut p.b, 1, login("8001"));
    let refused = drain(&mut gws3);
    assert_eq!(refused[0].name, MessageName::EventError);
    assert_eq!(
        refused[0].attrs.error_code,
        Some(error_code::OUT_OF_SERVICE),
        "R10"
    );

    // 3pcc: the release reaches the call's two legs.
    ask(
        &mut p.b,
        1,
        Request::ReleaseCall {
            dn: "8001".into(),
            conn_id,
        },
    );
    let released = drain(&mut gws3);
    assert_eq!(released[0].name, MessageName::EventReleased, "{released:?}");
    assert_eq!(released[0].attrs.reference_id, Some(1));
    assert_eq!(p.b.calls.len(), 0, "the call is released on ss3");
    let byes =
        p.b.take_outbox()
            .iter()
            .filter(|(_, b)| b.starts_with(b"BYE "))
            .count();
    assert_eq!(byes, 2, "BYE to the caller and to the gateway");
    assert!(journal_kinds(&p.b, "call.cleared_locally").is_empty());

    // No call of 8004 here: the registration is refused (R10 as before).
    ask(&mut p.b, 1, Request::register_address("8004"));
    let refused = drain(&mut gws3);
    assert_eq!(refused[0].name, MessageName::EventError, "{refused:?}");
    assert_eq!(
        refused[0].attrs.error_code,
        Some(error_code::OUT_OF_SERVICE)
    );
}

/// R13: `EventDNOutOfService` says why. A non-owner that lost the owner says
/// `OwnerUnreachable` (R10); the owner that takes the DN out of service says
/// `OwnerOutOfService` (R8 move here; R12 in the core's tests).
#[tokio::test(start_paused = true)]
async fn r13_out_of_service_events_carry_their_reason() {
    let (mut p, _gws1, mut gws3) = registered_at_both("8003");
    ask(
        &mut p.a,
        1,
        Request::UnregisterAddress { dn: "8003".into() },
    );
    p.pump();
    drain(&mut gws3);
    advance(&mut p, Duration::from_secs(1)).await;
    assert_eq!(owner(&p.b, "8003").as_deref(), Some("ss3"), "R8: moved");
    let seen = drain(&mut gws3);
    let oos = seen
        .iter()
        .find(|m| m.name == MessageName::EventDNOutOfService)
        .expect("the old owner takes the DN out of service");
    assert_eq!(reason(oos), Some(&"OwnerOutOfService".into()));
    assert_eq!(
        seen.last().map(|m| m.name.clone()),
        Some(MessageName::EventDNBackInService),
        "the new owner puts it back in service: {seen:?}"
    );

    let (mut p, _gws1, mut gws3) = registered_at_both("8001");
    p.cut();
    let oos = drain(&mut gws3)
        .into_iter()
        .find(|m| m.name == MessageName::EventDNOutOfService)
        .expect("R10: the DN is out of service at ss3");
    assert_eq!(reason(&oos), Some(&"OwnerUnreachable".into()));
}
