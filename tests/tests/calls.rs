//! Calls on one SIP Cluster node over real sockets: the node as a B2BUA between a caller and an
//! agent's phone, T-Events to the desktop's T-Lib client, third-party call control, R5, R6, R7.

use std::time::Duration;

use drlab_tests::ua::{AnswerMode, CallerEvent, PhoneEvent, TestCaller, TestPhone};
use drlab_tests::*;
use netfault::Faults;
use serde_json::Value;
use tlib::{error_code, AgentWorkMode, ClientEvent, Events, Message, MessageName, Request};

const WAIT: Duration = Duration::from_secs(5);

/// Every message until (and including) the first `last`.
async fn collect_until(events: &mut Events, last: MessageName) -> Vec<Message> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(ClientEvent::Message(m))) => {
                let done = m.name == last;
                seen.push(m);
                if done {
                    return seen;
                }
            }
            Ok(Some(_)) => {}
            other => panic!("no {} (saw {:?}): {other:?}", last.as_str(), names(&seen)),
        }
    }
}

fn names(msgs: &[Message]) -> Vec<&str> {
    msgs.iter().map(|m| m.name.as_str()).collect()
}

/// A node with quick wrap-up, a registered phone for `dn` and a logged-in desktop client.
async fn agent_with_phone(
    dn: &str,
    mode: AnswerMode,
) -> (sipserver_mock::SipNode, TestPhone, tlib::TlibClient, Events) {
    let node = start_node("ss1", |c| {
        c.options.wrap_up_time = Duration::from_millis(300)
    })
    .await;
    let phone = TestPhone::bind().await.unwrap();
    phone.set_answer(mode);
    assert_eq!(phone.register(node.sip_addr(), dn, 300).await.unwrap(), 200);
    let (client, mut events) = tlib_client(&node, &Faults::new(), "tlib:gws1-ss1").await;
    request(&client, Request::register_address(dn)).await;
    assert_eq!(
        request(&client, agent_login(dn)).await.name,
        MessageName::EventAgentLogin
    );
    expect_event(&mut events, MessageName::EventAgentReady).await;
    (node, phone, client, events)
}

async fn state(node: &sipserver_mock::SipNode) -> Value {
    node.state().await
}

/// R7 and the event order of docs/protocols.md §2.2: Ringing → Established → NotReady(ACW) →
/// Released → (wrap-up) Ready; SDP passes through unchanged so media is direct.
#[tokio::test]
async fn r7_inbound_call_events_in_documented_order_and_acw_ends_by_timer() {
    let (node, mut phone, _client, mut events) =
        agent_with_phone("7001", AnswerMode::AfterDelay(Duration::from_millis(100))).await;
    let caller = TestCaller::bind().await.unwrap();
    let mut call = caller
        .invite(node.sip_addr(), "7001", "5551234")
        .await
        .unwrap();

    let invite = phone
        .wait_for(|e| matches!(e, PhoneEvent::Invite { .. }), WAIT)
        .await
        .unwrap();
    let PhoneEvent::Invite {
        sdp,
        call_uuid,
        from_user,
        ..
    } = invite
    else {
        unreachable!()
    };
    assert!(
        sdp.contains(&format!("c=IN IP4 {}", caller.local_addr().ip())),
        "caller SDP passed through: {sdp}"
    );
    assert!(
        sdp.contains(&format!(
            "m=audio {}",
            caller.local_addr().port().wrapping_add(1)
        )),
        "{sdp}"
    );
    assert!(call_uuid.is_some(), "X-Genesys-CallUUID on the agent leg");
    assert_eq!(from_user, "5551234");
    call.wait_for_status(180, WAIT).await.unwrap();
    let ok = call.wait_for_status(200, WAIT).await.unwrap();
    assert!(
        ok.body.contains(&format!(
            "m=audio {}",
            phone.local_addr().port().wrapping_add(1)
        )) || ok.body.contains("m=audio"),
        "phone SDP back to the caller: {}",
        ok.body
    );
    phone
        .wait_for(|e| matches!(e, PhoneEvent::Ack { .. }), WAIT)
        .await
        .unwrap();

    let up = collect_until(&mut events, MessageName::EventEstablished).await;
    assert_eq!(names(&up), ["EventRinging", "EventEstablished"]);
    let established = up.last().unwrap();
    let conn = established.attrs.conn_id.expect("ConnID");
    assert_eq!(conn.to_string().len(), 16);
    assert_eq!(established.attrs.call_uuid, call_uuid);
    assert_eq!(established.attrs.ani.as_deref(), Some("5551234"));
    assert_eq!(established.attrs.dnis.as_deref(), Some("7001"));
    assert_eq!(established.attrs.call_type, Some(tlib::CallType::Inbound));
    assert!(established
        .attrs
        .extensions
        .as_ref()
        .unwrap()
        .contains_key("WrapUpTime"));
    assert!(established.attrs.event_sequence_number.is_some());
    assert_eq!(state(&node).await["calls"].as_array().unwrap().len(), 1);

    assert_eq!(call.hang_up().await.unwrap(), 200);
    phone
        .wait_for(|e| matches!(e, PhoneEvent::Bye { .. }), WAIT)
        .await
        .unwrap();
    let down = collect_until(&mut events, MessageName::EventAgentReady).await;
    assert_eq!(
        names(&down),
        ["EventAgentNotReady", "EventReleased", "EventAgentReady"],
        "ACW before Released, then Ready by timer"
    );
    assert_eq!(
        down[0].attrs.agent_work_mode,
        Some(AgentWorkMode::AfterCallWork)
    );
    assert_eq!(down[1].attrs.conn_id, Some(conn));
    assert_eq!(state(&node).await["calls"].as_array().unwrap().len(), 0);
}

/// The phone hangs up first: the caller gets a BYE and the desktop EventReleased.
#[tokio::test]
async fn phone_hangs_up_first() {
    let (node, mut phone, _client, mut events) = agent_with_phone("7002", AnswerMode::Auto).await;
    let caller = TestCaller::bind().await.unwrap();
    let mut call = caller
        .invite(node.sip_addr(), "7002", "5550002")
        .await
        .unwrap();
    call.wait_for_status(200, WAIT).await.unwrap();
    phone
        .wait_for(|e| matches!(e, PhoneEvent::Ack { .. }), WAIT)
        .await
        .unwrap();
    assert_eq!(phone.hang_up().await.unwrap(), 200);
    call.wait_for(|e| matches!(e, CallerEvent::Bye), WAIT)
        .await
        .unwrap();
    let seen = collect_until(&mut events, MessageName::EventReleased).await;
    assert!(
        names(&seen).ends_with(&["EventAgentNotReady", "EventReleased"]),
        "{:?}",
        names(&seen)
    );
}

/// Session audit: a call whose phone vanished (no answer to in-dialog OPTIONS) is released by
/// the node: the caller gets a BYE and the desktop EventReleased (needed by scenario S4.1).
#[tokio::test]
async fn call_whose_phone_vanished_is_released_by_session_audit() {
    let (node, mut phone, _client, mut events) = agent_with_phone("7007", AnswerMode::Auto).await;
    let caller = TestCaller::bind().await.unwrap();
    let mut call = caller
        .invite(node.sip_addr(), "7007", "5550007")
        .await
        .unwrap();
    call.wait_for_status(200, WAIT).await.unwrap();
    expect_event(&mut events, MessageName::EventEstablished).await;
    // The phone answers the audit while it is up.
    phone
        .wait_for(|e| matches!(e, PhoneEvent::Options), WAIT)
        .await
        .unwrap();
    assert_eq!(state(&node).await["calls"].as_array().unwrap().len(), 1);
    drop(phone);
    call.wait_for(|e| matches!(e, CallerEvent::Bye), WAIT)
        .await
        .unwrap();
    expect_event(&mut events, MessageName::EventReleased).await;
    let lost = node
        .journal()
        .since(0, 10_000)
        .into_iter()
        .find(|e| e.kind == "call.leg_lost")
        .expect("journal names the lost leg");
    assert_eq!(lost.detail()["side"], "phone");
}

/// Third-party call control from T-Lib: answer (NOTIFY Event: talk), hold, retrieve, release.
#[tokio::test]
async fn tlib_answer_hold_retrieve_release() {
    let (node, mut phone, client, mut events) =
        agent_with_phone("7003", AnswerMode::OnNotifyTalk).await;
    let caller = TestCaller::bind().await.unwrap();
    let mut call = caller
        .invite(node.sip_addr(), "7003", "5550003")
        .await
        .unwrap();
    let ringing = expect_event(&mut events, MessageName::EventRinging).await;
    let conn = ringing.attrs.conn_id.unwrap();

    let answer = Request::AnswerCall {
        dn: "7003".into(),
        conn_id: conn,
    };
    client.send(answer.to_message(None)).await.unwrap();
    let talk = phone
        .wait_for(|e| matches!(e, PhoneEvent::Notify { .. }), WAIT)
        .await
        .unwrap();
    assert!(
        matches!(talk, PhoneEvent::Notify { ref event, .. } if event == "talk"),
        "{talk:?}"
    );
    expect_event(&mut events, MessageName::EventEstablished).await;
    call.wait_for_status(200, WAIT).await.unwrap();

    let held = request(
        &client,
        Request::HoldCall {
            dn: "7003".into(),
            conn_id: conn,
        },
    )
    .await;
    assert_eq!(held.name, MessageName::EventHeld);
    let hold = phone
        .wait_for(|e| matches!(e, PhoneEvent::Notify { .. }), WAIT)
        .await
        .unwrap();
    assert!(matches!(hold, PhoneEvent::Notify { ref event, .. } if event == "hold"));
    let again = request(
        &client,
        Request::HoldCall {
            dn: "7003".into(),
            conn_id: conn,
        },
    )
    .await;
    assert_eq!(again.attrs.error_code, Some(error_code::CTL_INV_CALL_STATE));
    let retrieved = request(
        &client,
        Request::RetrieveCall {
            dn: "7003".into(),
            conn_id: conn,
        },
    )
    .await;
    assert_eq!(retrieved.name, MessageName::EventRetrieved);

    let wrong = request(
        &client,
        Request::ReleaseCall {
            dn: "7003".into(),
            conn_id: tlib::ConnId(42),
        },
    )
    .await;
    assert_eq!(wrong.attrs.error_code, Some(error_code::INV_CONNID));
    let released = request(
        &client,
        Request::ReleaseCall {
            dn: "7003".into(),
            conn_id: conn,
        },
    )
    .await;
    assert_eq!(released.name, MessageName::EventReleased);
    phone
        .wait_for(|e| matches!(e, PhoneEvent::Bye { .. }), WAIT)
        .await
        .unwrap();
    call.wait_for(|e| matches!(e, CallerEvent::Bye), WAIT)
        .await
        .unwrap();
}

/// RequestMakeCall (RFC 3725 flow I): the agent's phone rings first and offers, then the
/// destination gets that offer (media is direct); EventDialing → EventEstablished; the
/// destination hangs up and the phone gets a BYE.
#[tokio::test]
async fn tlib_make_call_phone_first_then_destination() {
    let (node, mut phone, client, mut events) = agent_with_phone("7012", AnswerMode::Auto).await;
    let mut callee = TestPhone::bind().await.unwrap();
    assert_eq!(
        callee.register(node.sip_addr(), "7013", 300).await.unwrap(),
        200
    );

    let make = Request::MakeCall {
        dn: "7012".into(),
        destination: "7013".into(),
        make_call_type: tlib::MakeCallType::Regular,
        user_data: None,
    };
    let dialing = request(&client, make).await;
    assert_eq!(dialing.name, MessageName::EventDialing);
    assert_eq!(dialing.attrs.call_type, Some(tlib::CallType::Internal));
    let to_phone = phone
        .wait_for(|e| matches!(e, PhoneEvent::Invite { .. }), WAIT)
        .await
        .unwrap();
    let PhoneEvent::Invite { sdp, .. } = to_phone else {
        unreachable!()
    };
    assert!(sdp.is_empty(), "the phone is asked for an offer: {sdp}");
    let to_callee = callee
        .wait_for(|e| matches!(e, PhoneEvent::Invite { .. }), WAIT)
        .await
        .unwrap();
    let PhoneEvent::Invite { sdp, .. } = to_callee else {
        unreachable!()
    };
    assert!(
        sdp.contains(&format!(
            "m=audio {}",
            phone.local_addr().port().wrapping_add(1)
        )),
        "the phone's offer reaches the destination: {sdp}"
    );
    phone
        .wait_for(|e| matches!(e, PhoneEvent::Ack { .. }), WAIT)
        .await
        .unwrap();
    callee
        .wait_for(|e| matches!(e, PhoneEvent::Ack { .. }), WAIT)
        .await
        .unwrap();
    let up = expect_event(&mut events, MessageName::EventEstablished).await;
    assert_eq!(up.attrs.conn_id, dialing.attrs.conn_id);

    assert_eq!(callee.hang_up().await.unwrap(), 200);
    phone
        .wait_for(|e| matches!(e, PhoneEvent::Bye { .. }), WAIT)
        .await
        .unwrap();
    expect_event(&mut events, MessageName::EventReleased).await;
    assert_eq!(state(&node).await["calls"].as_array().unwrap().len(), 0);

    // An unknown number with no gateway: EventError (invalid called DN).
    let nowhere = Request::MakeCall {
        dn: "7012".into(),
        destination: "+15550000".into(),
        make_call_type: tlib::MakeCallType::Regular,
        user_data: None,
    };
    assert_eq!(
        request(&client, nowhere).await.attrs.error_code,
        Some(error_code::INV_CALD_DN)
    );
}

/// RequestReleaseCall while the destination of a RequestMakeCall still rings: CANCEL there,
/// BYE to the phone.
#[tokio::test]
async fn tlib_release_during_make_call_cancels_destination() {
    let (node, mut phone, client, mut events) = agent_with_phone("7014", AnswerMode::Auto).await;
    let mut callee = TestPhone::bind().await.unwrap();
    callee.set_answer(AnswerMode::Never);
    assert_eq!(
        callee.register(node.sip_addr(), "7015", 300).await.unwrap(),
        200
    );
    let make = Request::MakeCall {
        dn: "7014".into(),
        destination: "7015".into(),
        make_call_type: tlib::MakeCallType::Regular,
        user_data: None,
    };
    let dialing = request(&client, make).await;
    let conn = dialing.attrs.conn_id.unwrap();
    callee
        .wait_for(|e| matches!(e, PhoneEvent::Invite { .. }), WAIT)
        .await
        .unwrap();
    expect_event(&mut events, MessageName::EventNetworkReached).await;
    let released = request(
        &client,
        Request::ReleaseCall {
            dn: "7014".into(),
            conn_id: conn,
        },
    )
    .await;
    assert_eq!(released.name, MessageName::EventReleased);
    callee
        .wait_for(|e| matches!(e, PhoneEvent::Cancel { .. }), WAIT)
        .await
        .unwrap();
    phone
        .wait_for(|e| matches!(e, PhoneEvent::Bye { .. }), WAIT)
        .await
        .unwrap();
    let _ = node;
}

/// R6 + R5: a desktop that registers the DN during the call gets the call and can release it,
/// but cannot log in during the call or during ACW; after ACW it can.
#[tokio::test]
async fn r5_r6_reconnecting_desktop_controls_call_but_cannot_log_in() {
    // The first desktop stays connected (variant b: GWS1 still up), so its agent stays logged in.
    let (node, _phone, _first, _events) = agent_with_phone("7004", AnswerMode::Auto).await;
    let caller = TestCaller::bind().await.unwrap();
    let mut call = caller
        .invite(node.sip_addr(), "7004", "5550004")
        .await
        .unwrap();
    call.wait_for_status(200, WAIT).await.unwrap();

    let (second, mut events) = tlib_client(&node, &Faults::new(), "tlib:gws2-ss1").await;
    let reg = request(&second, Request::register_address("7004")).await;
    assert_eq!(reg.name, MessageName::EventRegistered);
    let reported = expect_event(&mut events, MessageName::EventEstablished).await;
    let conn = reported
        .attrs
        .conn_id
        .expect("R6: the call is reported with its ConnID");

    let refused = request(&second, agent_login("7004")).await;
    assert_eq!(
        refused.name,
        MessageName::EventError,
        "R5: no login during a call"
    );
    assert_eq!(
        refused.attrs.error_code,
        Some(error_code::CTL_INV_CALL_STATE)
    );

    let released = request(
        &second,
        Request::ReleaseCall {
            dn: "7004".into(),
            conn_id: conn,
        },
    )
    .await;
    assert_eq!(released.name, MessageName::EventReleased);
    call.wait_for(|e| matches!(e, CallerEvent::Bye), WAIT)
        .await
        .unwrap();
    // The agent is still logged in through the first desktop, so ACW runs.
    let during_acw = request(&second, agent_login("7004")).await;
    assert_eq!(
        during_acw.attrs.error_code,
        Some(error_code::CTL_INV_CALL_STATE),
        "R5: no login during ACW"
    );
    expect_event(&mut events, MessageName::EventAgentReady).await;
    let ok = request(&second, agent_login("7004")).await;
    assert_eq!(
        ok.name,
        MessageName::EventAgentLogin,
        "after ACW the login succeeds"
    );
}

/// CANCEL before answer: 487 to the caller, CANCEL to the phone, EventReleased.
#[tokio::test]
async fn cancel_before_answer() {
    let (node, mut phone, _client, mut events) = agent_with_phone("7005", AnswerMode::Never).await;
    let caller = TestCaller::bind().await.unwrap();
    let mut call = caller
        .invite(node.sip_addr(), "7005", "5550005")
        .await
        .unwrap();
    call.wait_for_status(180, WAIT).await.unwrap();
    expect_event(&mut events, MessageName::EventRinging).await;
    assert_eq!(call.cancel().await.unwrap(), 200);
    call.wait_for_status(487, WAIT).await.unwrap();
    phone
        .wait_for(|e| matches!(e, PhoneEvent::Cancel { .. }), WAIT)
        .await
        .unwrap();
    let seen = collect_until(&mut events, MessageName::EventReleased).await;
    assert!(
        !names(&seen).contains(&"EventAgentNotReady"),
        "no ACW for an unanswered call"
    );
}

/// A PSTN agent's call goes to the gateway at the agent's external number.
#[tokio::test]
async fn pstn_dn_call_through_gateway() {
    let mut gateway = TestPhone::bind().await.unwrap();
    gateway.set_answer(AnswerMode::Auto);
    let gw = gateway.local_addr();
    let node = start_node("ss1", |c| c.pstn_gateway = Some(gw)).await;
    let (client, mut events) = tlib_client(&node, &Faults::new(), "tlib:gws1-ss1").await;
    request(&client, Request::register_address("8001")).await;
    request(&client, agent_login("8001")).await;
    let caller = TestCaller::bind().await.unwrap();
    let mut call = caller
        .invite(node.sip_addr(), "8001", "5558001")
        .await
        .unwrap();
    let invite = gateway
        .wait_for(|e| matches!(e, PhoneEvent::Invite { .. }), WAIT)
        .await
        .unwrap();
    let PhoneEvent::Invite { request_uri, .. } = invite else {
        unreachable!()
    };
    assert!(request_uri.starts_with("sip:+15558001@"), "{request_uri}");
    call.wait_for_status(200, WAIT).await.unwrap();
    expect_event(&mut events, MessageName::EventEstablished).await;
    assert_eq!(call.hang_up().await.unwrap(), 200);
    gateway
        .wait_for(|e| matches!(e, PhoneEvent::Bye { .. }), WAIT)
        .await
        .unwrap();
    expect_event(&mut events, MessageName::EventReleased).await;
}

/// Bad input: unknown DN 404, unregistered phone 480, malformed SDP 400, missing header 400,
/// BYE outside a dialog 481; after a burst of failed calls nothing is left.
#[tokio::test]
async fn bad_calls_get_errors_and_nothing_leaks() {
    let node = start_node("ss1", |c| {
        c.sip_timers.t1 = Duration::from_millis(10);
        c.sip_timers.t4 = Duration::from_millis(50);
    })
    .await;
    let mut phone = TestPhone::bind().await.unwrap();
    phone.set_answer(AnswerMode::Reject(486));
    assert_eq!(
        phone.register(node.sip_addr(), "7006", 300).await.unwrap(),
        200
    );
    let caller = TestCaller::bind().await.unwrap();

    let mut unknown = caller.invite(node.sip_addr(), "4242", "1").await.unwrap();
    unknown.wait_for_status(404, WAIT).await.unwrap();
    let mut nobody = caller.invite(node.sip_addr(), "7777", "1").await.unwrap();
    nobody.wait_for_status(480, WAIT).await.unwrap();

    let raw = UdpPhone::new(node.sip_addr()).await;
    let local = raw.local();
    let target = node.sip_addr();
    let bad_sdp = format!(
        "INVITE sip:7006@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKsdp1\r\nFrom: <sip:1@{local}>;tag=x\r\nTo: <sip:7006@{target}>\r\nCall-ID: badsdp\r\nCSeq: 1 INVITE\r\nContact: <sip:1@{local}>\r\nContent-Type: application/sdp\r\nContent-Length: 5\r\n\r\nhello"
    );
    assert_eq!(status_of(&raw.exchange(bad_sdp.as_bytes()).await), 400);
    let no_cseq = format!(
        "INVITE sip:7006@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKnocseq\r\nFrom: <sip:1@{local}>;tag=x\r\nTo: <sip:7006@{target}>\r\nCall-ID: nocseq\r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(status_of(&raw.exchange(no_cseq.as_bytes()).await), 400);
    let stray_bye = format!(
        "BYE sip:7006@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKbye1\r\nFrom: <sip:1@{local}>;tag=x\r\nTo: <sip:7006@{target}>;tag=y\r\nCall-ID: nosuchdialog\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(status_of(&raw.exchange(stray_bye.as_bytes()).await), 481);

    // A burst of calls the phone refuses.
    for i in 0..20 {
        let mut call = caller
            .invite(node.sip_addr(), "7006", &format!("55500{i:02}"))
            .await
            .unwrap();
        call.wait_for_status(486, WAIT).await.unwrap();
    }
    phone
        .wait_for(|e| matches!(e, PhoneEvent::Ack { .. }), WAIT)
        .await
        .unwrap();

    // Two calls ringing at once, both cancelled.
    phone.set_answer(AnswerMode::Never);
    let mut first = caller.invite(node.sip_addr(), "7006", "1").await.unwrap();
    first.wait_for_status(180, WAIT).await.unwrap();
    let mut second = caller.invite(node.sip_addr(), "7006", "2").await.unwrap();
    second.wait_for_status(180, WAIT).await.unwrap();
    assert_eq!(state(&node).await["calls"].as_array().unwrap().len(), 2);
    for call in [&mut first, &mut second] {
        call.cancel().await.unwrap();
        call.wait_for_status(487, WAIT).await.unwrap();
    }

    // Calls, client requests and server transactions all drain (64·T1 = 640 ms here).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = state(&node).await;
        let left = (
            s["calls"].as_array().unwrap().len(),
            s["pending_requests"].as_u64().unwrap(),
            s["transactions"].as_u64().unwrap(),
        );
        if left == (0, 0, 0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "left behind (calls, requests, transactions): {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Interop: SIPp's built-in `uac` calls a DN whose phone is a SIPp `uas`; 500 calls, zero
/// failures, over UDP and TCP.
#[tokio::test]
async fn sipp_uac_to_sipp_uas_500_calls_over_udp_and_tcp() {
    if !sipp_available() {
        return;
    }
    for (transport, dn) in [("u1", "7100"), ("t1", "7101")] {
        let node = start_node("ss1", |_| {}).await;
        let uas_port = free_port();
        // SIPp -bg forks into the background once it listens; `timeout` bounds its life.
        let ran = tokio::process::Command::new("timeout")
            .args([
                "120",
                "sipp",
                "-sn",
                "uas",
                "-t",
                transport,
                "-i",
                "127.0.0.1",
                "-p",
                &uas_port.to_string(),
                "-nostdin",
                "-bg",
            ])
            .output()
            .await
            .expect("start sipp uas");
        // The foreground parent exits 99 after printing `Background mode - PID=[n]`.
        let said = String::from_utf8_lossy(&ran.stdout).into_owned();
        let uas_pid: u32 = said
            .split("PID=[")
            .nth(1)
            .and_then(|r| r.split(']').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "sipp uas did not start: {said} {}",
                    String::from_utf8_lossy(&ran.stderr)
                )
            });
        // The background uas outlives `timeout`: the guard kills it whatever happens below.
        let _uas = KillOnDrop(uas_pid);
        let contact = if transport == "t1" {
            format!("<sip:{dn}@127.0.0.1:{uas_port};transport=tcp>")
        } else {
            format!("<sip:{dn}@127.0.0.1:{uas_port}>")
        };
        let reg = UdpPhone::new(node.sip_addr()).await;
        let req = format!(
            "REGISTER sip:{0} SIP/2.0\r\nVia: SIP/2.0/UDP {1};branch=z9hG4bKreg{dn}\r\nFrom: <sip:{dn}@{0}>;tag=r\r\nTo: <sip:{dn}@{0}>\r\nCall-ID: reg{dn}\r\nCSeq: 1 REGISTER\r\nContact: {contact}\r\nExpires: 300\r\nContent-Length: 0\r\n\r\n",
            node.sip_addr(),
            reg.local()
        );
        assert_eq!(status_of(&reg.exchange(req.as_bytes()).await), 200);
        let uac = tokio::process::Command::new("timeout")
            .args([
                "120",
                "sipp",
                "-sn",
                "uac",
                "-t",
                transport,
                "-s",
                dn,
                "-i",
                "127.0.0.1",
                "-p",
                "0",
                "-m",
                "500",
                "-r",
                "250",
                "-l",
                "100",
                "-nostdin",
                "-trace_err",
            ])
            .arg(node.sip_addr().to_string())
            .output()
            .await
            .expect("run sipp uac");
        let out = String::from_utf8_lossy(&uac.stdout);
        assert!(
            uac.status.success(),
            "SIPp uac over {transport} failed: {:?}\n{out}",
            uac.status
        );
        let successful = out
            .lines()
            .find(|l| l.contains("Successful call"))
            .unwrap_or("");
        assert!(
            successful.trim_end().ends_with("500"),
            "500 successful calls over {transport}: {successful}"
        );
        node.shutdown().await;
    }
}

/// Kills a background process (by PID) when dropped.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SIPp in background mode ignores SIGTERM.
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .status();
    }
}

/// A free UDP+TCP port on 127.0.0.1 (bound and released).
fn free_port() -> u16 {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.local_addr().unwrap().port()
}
