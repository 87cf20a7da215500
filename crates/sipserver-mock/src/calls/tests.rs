//! The call code driven without sockets on the paused clock: SIP messages and T-Lib requests in,
//! the node's SIP messages and T-Events out. Each test is named after the rule it checks.

use std::time::Duration;

use tlib::{error_code, AgentWorkMode, ConnId, KvList, Message, MessageName, Request};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::agent::AgentStatus;
use crate::cluster::tests::{advance, journal_kinds, login, Pair};
use crate::core::tests::{
    answer, answered_call, ask, caller_hangs_up, client, core_with, drain, names, offer_call,
    ringing_call,
};
use crate::core::NodeCore;

/// A node whose client 1 registered PSTN DN 8001 and logged its agent in (Ready), events read.
fn agent_on_8001() -> (NodeCore, mpsc::Receiver<Message>) {
    let mut core = core_with("ss1", |_| {});
    let mut gws = client(&mut core, 1);
    ask(&mut core, 1, Request::register_address("8001"));
    ask(&mut core, 1, login("8001"));
    drain(&mut gws);
    (core, gws)
}

/// The one `EventError` among `events`.
fn the_error(events: &[Message]) -> &Message {
    let errors: Vec<&Message> = events
        .iter()
        .filter(|m| m.name == MessageName::EventError)
        .collect();
    assert_eq!(errors.len(), 1, "{events:?}");
    errors[0]
}

/// The refusal R5 sends: the one `EventError` among `events`, with error 1712.
fn r5_refusal(events: &[Message]) -> &Message {
    let refused = the_error(events);
    let code = refused.attrs.error_code;
    assert_eq!(code, Some(error_code::CTL_INV_CALL_STATE), "{refused:?}");
    refused
}

/// Messages the node queued for SIP that start with `method`.
fn sent(core: &mut NodeCore, method: &str) -> usize {
    core.take_outbox()
        .iter()
        .filter(|(_, b)| b.starts_with(format!("{method} ").as_bytes()))
        .count()
}

fn position(events: &[Message], name: MessageName) -> usize {
    events
        .iter()
        .position(|m| m.name == name)
        .unwrap_or_else(|| panic!("no {name:?} in {events:?}"))
}

#[tokio::test(start_paused = true)]
async fn r5_login_and_logout_during_a_call_or_acw_are_refused_with_1712() {
    let (mut core, mut gws1) = agent_on_8001();
    let call = answered_call(&mut core, "8001", "5550101");
    drain(&mut gws1);

    // The agent logged in before the call cannot log out during it.
    ask(
        &mut core,
        1,
        Request::AgentLogout {
            dn: "8001".into(),
            reasons: None,
            extensions: None,
        },
    );
    let events = drain(&mut gws1);
    let refused = r5_refusal(&events);
    assert_eq!(refused.attrs.reference_id, Some(1));
    assert!(core.dns["8001"].agent.is_some(), "still logged in");

    // A desktop that reconnects through another client cannot log in during the call either.
    let mut gws2 = client(&mut core, 2);
    ask(&mut core, 2, Request::register_address("8001"));
    drain(&mut gws2);
    ask(&mut core, 2, login("8001"));
    let events = drain(&mut gws2);
    r5_refusal(&events);
    assert!(!events
        .iter()
        .any(|m| m.name == MessageName::EventAgentLogin));

    // Nor during the ACW that follows the call.
    caller_hangs_up(&mut core, &call);
    drain(&mut gws2);
    ask(&mut core, 2, login("8001"));
    let events = drain(&mut gws2);
    let refused = r5_refusal(&events);
    assert!(refused
        .attrs
        .error_message
        .as_deref()
        .is_some_and(|t| t.contains("after-call work")));

    // Once ACW is over, the same login goes through.
    tokio::time::advance(Duration::from_secs(1)).await;
    core.on_timer(Instant::now());
    drain(&mut gws2);
    ask(&mut core, 2, login("8001"));
    assert!(names(&mut gws2).contains(&MessageName::EventAgentLogin));
}

/// R5's exception: the request's `AgentEmuLoginOnCall` lets a login through during a call.
#[tokio::test(start_paused = true)]
async fn r5_agent_emu_login_on_call_allows_the_login() {
    let mut core = core_with("ss1", |_| {});
    let mut gws = client(&mut core, 1);
    ask(&mut core, 1, Request::register_address("8001"));
    let _call = answered_call(&mut core, "8001", "5550101");
    drain(&mut gws);
    let mut ext = KvList::new();
    ext.insert("AgentEmuLoginOnCall".into(), serde_json::json!(1));
    let mut request = login("8001");
    if let Request::AgentLogin { extensions, .. } = &mut request {
        *extensions = Some(ext);
    }
    ask(&mut core, 1, request);
    assert!(names(&mut gws).contains(&MessageName::EventAgentLogin));
}

#[tokio::test(start_paused = true)]
async fn r6_registration_reports_the_calls_in_progress_and_they_can_be_released() {
    let mut core = core_with("ss1", |_| {});
    let _gws1 = client(&mut core, 1);
    for dn in ["8001", "8002"] {
        ask(&mut core, 1, Request::register_address(dn));
    }
    let _up = answered_call(&mut core, "8001", "5550101");
    let _ringing = ringing_call(&mut core, "8002", "5550102");
    core.take_outbox();

    // A desktop that reconnects sees each call in its current state, right after EventRegistered.
    let mut gws2 = client(&mut core, 2);
    ask(&mut core, 2, Request::register_address("8001"));
    let events = drain(&mut gws2);
    let seen: Vec<MessageName> = events.iter().map(|m| m.name.clone()).collect();
    assert_eq!(
        &seen[..2],
        [MessageName::EventRegistered, MessageName::EventEstablished],
        "{events:?}"
    );
    let conn: ConnId = events[1].attrs.conn_id.expect("the call's ConnID");
    assert!(core.calls.contains(&conn));
    assert_eq!(events[1].attrs.this_dn.as_deref(), Some("8001"));
    ask(&mut core, 2, Request::register_address("8002"));
    let events = drain(&mut gws2);
    assert_eq!(events[1].name, MessageName::EventRinging, "{events:?}");

    // ... and can control it: the release ends both legs.
    ask(
        &mut core,
        2,
        Request::ReleaseCall {
            dn: "8001".into(),
            conn_id: conn,
        },
    );
    let released = drain(&mut gws2);
    let answer = &released[position(&released, MessageName::EventReleased)];
    assert_eq!(
        (answer.attrs.conn_id, answer.attrs.reference_id),
        (Some(conn), Some(1))
    );
    assert_eq!(
        sent(&mut core, "BYE"),
        2,
        "BYE to the caller and to the gateway"
    );
    assert!(!core.calls.contains(&conn));
}

#[tokio::test(start_paused = true)]
async fn r7_acw_after_an_answered_call_until_the_wrap_up_time_is_over() {
    let (mut core, mut gws) = agent_on_8001();
    let call = answered_call(&mut core, "8001", "5550101");
    let established = drain(&mut gws);
    let ext = established[position(&established, MessageName::EventEstablished)]
        .attrs
        .extensions
        .clone()
        .unwrap();
    assert_eq!(
        ext["WrapUpTime"],
        serde_json::json!(1.0),
        "the wrap-up time is announced"
    );

    caller_hangs_up(&mut core, &call);
    let events = drain(&mut gws);
    let acw = position(&events, MessageName::EventAgentNotReady);
    assert!(
        acw < position(&events, MessageName::EventReleased),
        "ACW is announced before EventReleased: {events:?}"
    );
    assert_eq!(
        events[acw].attrs.agent_work_mode,
        Some(AgentWorkMode::AfterCallWork)
    );
    assert!(core.dns["8001"].agent.as_ref().unwrap().in_acw());

    // The wrap-up time (1 s on the fast profile), to the millisecond.
    tokio::time::advance(Duration::from_millis(999)).await;
    core.on_timer(Instant::now());
    assert!(names(&mut gws).is_empty(), "still in ACW");
    tokio::time::advance(Duration::from_millis(1)).await;
    core.on_timer(Instant::now());
    assert_eq!(names(&mut gws), [MessageName::EventAgentReady]);
    assert_eq!(
        core.dns["8001"].agent.as_ref().unwrap().status,
        AgentStatus::Ready
    );
    assert_eq!(journal_kinds(&core, "agent.acw_ended").len(), 1);
}

/// No ACW for a call that was never answered; an agent that leaves ACW itself is not made Ready
/// by the wrap-up timer.
#[tokio::test(start_paused = true)]
async fn r7_no_acw_without_an_answer_and_none_left_after_the_agent_moves_on() {
    let (mut core, mut gws) = agent_on_8001();
    let ringing = ringing_call(&mut core, "8001", "5550101");
    let conn = drain(&mut gws)[0].attrs.conn_id.unwrap();
    ask(
        &mut core,
        1,
        Request::ReleaseCall {
            dn: "8001".into(),
            conn_id: conn,
        },
    );
    let events = names(&mut gws);
    assert!(events.contains(&MessageName::EventReleased));
    assert!(
        !events.contains(&MessageName::EventAgentNotReady),
        "{events:?}"
    );
    drop(ringing);

    let call = answered_call(&mut core, "8001", "5550101");
    caller_hangs_up(&mut core, &call);
    drain(&mut gws);
    ask(
        &mut core,
        1,
        Request::AgentNotReady {
            dn: "8001".into(),
            work_mode: Some(AgentWorkMode::AuxWork),
            reasons: None,
            extensions: None,
        },
    );
    drain(&mut gws);
    tokio::time::advance(Duration::from_secs(2)).await;
    core.on_timer(Instant::now());
    assert!(
        names(&mut gws).is_empty(),
        "the wrap-up timer changes nothing"
    );
    assert!(journal_kinds(&core, "agent.acw_ended").is_empty());
}

/// Each ACW has its own wrap-up time: the timer of an ACW the agent left early does not cut a
/// later one short.
#[tokio::test(start_paused = true)]
async fn r7_a_stale_wrap_up_timer_does_not_end_a_later_acw() {
    let (mut core, mut gws) = agent_on_8001();
    let first = answered_call(&mut core, "8001", "5550101");
    caller_hangs_up(&mut core, &first);
    tokio::time::advance(Duration::from_millis(500)).await;
    ask(
        &mut core,
        1,
        Request::AgentReady {
            dn: "8001".into(),
            work_mode: None,
            reasons: None,
            extensions: None,
        },
    );
    let second = answered_call(&mut core, "8001", "5550102");
    caller_hangs_up(&mut core, &second);
    drain(&mut gws);
    // The first ACW's timer is due now; the second ACW has 500 ms to go.
    tokio::time::advance(Duration::from_millis(500)).await;
    core.on_timer(Instant::now());
    assert!(names(&mut gws).is_empty(), "the second ACW goes on");
    assert!(core.dns["8001"].agent.as_ref().unwrap().in_acw());
    tokio::time::advance(Duration::from_millis(500)).await;
    core.on_timer(Instant::now());
    assert_eq!(names(&mut gws), [MessageName::EventAgentReady]);
}

/// Linked ss1 and ss3; ss1 owns PSTN DN 8001 through its client 1 (which logged the agent in when
/// `with_agent`), events read.
fn ss1_owns_8001(with_agent: bool) -> (Pair, mpsc::Receiver<Message>) {
    let mut p = Pair::new("ss1", "ss3");
    p.connect();
    let mut gws1 = client(&mut p.a, 1);
    ask(&mut p.a, 1, Request::register_address("8001"));
    if with_agent {
        ask(&mut p.a, 1, login("8001"));
    }
    p.pump();
    drain(&mut gws1);
    (p, gws1)
}

/// ss1 owns 8001 and its agent; a call to 8001 arrives at ss3 and lives there (R11): ss1's client
/// hears of it through ss1, controls it through ss1, and ACW follows at ss1.
#[tokio::test(start_paused = true)]
async fn r11_a_call_on_another_node_is_reported_and_controlled_at_the_owner() {
    let (mut p, mut gws1) = ss1_owns_8001(true);
    let call = ringing_call(&mut p.b, "8001", "5550101");
    answer(&mut p.b, call);
    p.pump();
    let events = drain(&mut gws1);
    assert_eq!(
        events.iter().map(|m| m.name.clone()).collect::<Vec<_>>(),
        [MessageName::EventRinging, MessageName::EventEstablished],
        "the call's events reach the owner's client"
    );
    let conn = events[0].attrs.conn_id.unwrap();
    assert!(
        p.b.calls.contains(&conn),
        "the call lives at ss3, where it arrived"
    );
    assert_eq!(p.a.calls.len(), 0);
    let ss3 = super::CallTable::new("ss3").new_conn_id();
    assert_eq!(conn.0 >> 48, ss3.0 >> 48, "its ConnID is ss3's");

    // Control from the owner's client is relayed to ss3; the answer carries its ReferenceID.
    ask(
        &mut p.a,
        1,
        Request::HoldCall {
            dn: "8001".into(),
            conn_id: conn,
        },
    );
    p.pump();
    assert_eq!(sent(&mut p.b, "NOTIFY"), 1, "ss3 tells the phone to hold");
    let held = drain(&mut gws1);
    assert_eq!(held[0].name, MessageName::EventHeld, "{held:?}");
    assert_eq!(held[0].attrs.reference_id, Some(1));

    ask(
        &mut p.a,
        1,
        Request::ReleaseCall {
            dn: "8001".into(),
            conn_id: conn,
        },
    );
    p.pump();
    assert_eq!(sent(&mut p.b, "BYE"), 2, "ss3 hangs up both legs");
    assert_eq!(p.b.calls.len(), 0);
    let events = drain(&mut gws1);
    let released = &events[position(&events, MessageName::EventReleased)];
    assert_eq!(released.attrs.reference_id, Some(1));
    // ACW where the agent is: at the owner, announced before the release.
    assert!(
        position(&events, MessageName::EventAgentNotReady)
            < position(&events, MessageName::EventReleased)
    );
    assert_eq!(journal_kinds(&p.a, "agent.acw_started").len(), 1);
    assert!(journal_kinds(&p.b, "agent.acw_started").is_empty());
    advance(&mut p, Duration::from_secs(1)).await;
    assert_eq!(names(&mut gws1), [MessageName::EventAgentReady]);
}

/// With the TC link down the owner's client hears nothing of the call and cannot hold it, but a
/// release clears it from the desktop; the call itself goes on at its node.
#[tokio::test(start_paused = true)]
async fn r11_with_the_link_down_a_release_clears_the_call_at_the_owner_only() {
    let (mut p, mut gws1) = ss1_owns_8001(false);
    let call = answered_call(&mut p.b, "8001", "5550101");
    p.pump();
    let conn = drain(&mut gws1)
        .into_iter()
        .find_map(|m| m.attrs.conn_id)
        .unwrap();
    p.cut();
    drain(&mut gws1);

    ask(
        &mut p.a,
        1,
        Request::HoldCall {
            dn: "8001".into(),
            conn_id: conn,
        },
    );
    let events = drain(&mut gws1);
    assert_eq!(
        the_error(&events).attrs.error_code,
        Some(error_code::NO_SWITCH)
    );

    ask(
        &mut p.a,
        1,
        Request::ReleaseCall {
            dn: "8001".into(),
            conn_id: conn,
        },
    );
    let events = drain(&mut gws1);
    assert_eq!(events[0].name, MessageName::EventReleased, "{events:?}");
    assert_eq!(events[0].attrs.reference_id, Some(1));
    assert_eq!(
        journal_kinds(&p.a, "call.cleared_locally")[0]["rule"],
        "R11"
    );
    assert!(p.b.calls.contains(&conn), "the call goes on at ss3");

    // Its events are lost meanwhile.
    caller_hangs_up(&mut p.b, &call);
    assert_eq!(
        journal_kinds(&p.b, "call.event_lost")[0]["event"],
        "EventReleased"
    );
    assert!(drain(&mut gws1).is_empty());
}

/// The node's INVITE to a phone that never answers: resent over UDP on Timer A (T1 = 20 ms on
/// the fast profile, doubling), given up on Timer B (64·T1) with a 408 to the caller; a phone that
/// rings stops the resending and the timeout.
#[tokio::test(start_paused = true)]
async fn node_invite_is_resent_on_timer_a_and_gives_up_on_timer_b() {
    let mut core = core_with("ss1", |_| {});
    let _gws = client(&mut core, 1);
    ask(&mut core, 1, Request::register_address("8001"));
    let t0 = Instant::now();
    let (_call, _phone, _invite) = offer_call(&mut core, "8001", "5550101");
    let mut resent = Vec::new();
    let mut answer_to_caller = None;
    while let Some(at) = core.next_deadline() {
        if at > t0 + Duration::from_secs(2) {
            break;
        }
        tokio::time::advance(at - Instant::now()).await;
        core.on_timer(Instant::now());
        for (_, bytes) in core.take_outbox() {
            let ms = (Instant::now() - t0).as_millis();
            if bytes.starts_with(b"INVITE ") {
                resent.push(ms);
            } else if bytes.starts_with(b"SIP/2.0 ") {
                answer_to_caller = Some((ms, bytes[8..11].to_vec()));
            }
        }
    }
    assert_eq!(
        resent,
        [20, 60, 140, 300, 620, 1260],
        "Timer A: T1, doubling"
    );
    assert_eq!(
        answer_to_caller,
        Some((1280, b"408".to_vec())),
        "Timer B: 64·T1"
    );
    assert_eq!(core.calls.len(), 0);

    let ringing = ringing_call(&mut core, "8001", "5550101");
    core.take_outbox();
    tokio::time::advance(Duration::from_secs(3)).await;
    core.on_timer(Instant::now());
    assert_eq!(
        sent(&mut core, "INVITE"),
        0,
        "no resend once the phone rings"
    );
    assert_eq!(core.calls.len(), 1, "a ringing call does not time out");
    drop(ringing);
}
