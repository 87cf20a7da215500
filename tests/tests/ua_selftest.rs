//! The test user agents (`drlab_tests::ua`) against each other, before the B2BUA exists: the
//! caller INVITEs the phone directly at `sip:7001@<phone address>`.

use std::time::Duration;

use drlab_tests::ua::{AnswerMode, CallerEvent, PhoneEvent, TestCaller, TestPhone};
use drlab_tests::PATIENCE;
use sipcore::rsip::{self, Header};
use sipcore::{fields, parse_message, RequestBuilder};
use tokio::net::UdpSocket;

async fn pair(mode: AnswerMode) -> (TestPhone, TestCaller) {
    let phone = TestPhone::bind().await.unwrap();
    phone.set_answer(mode);
    (phone, TestCaller::bind().await.unwrap())
}

fn is_ack(e: &PhoneEvent) -> bool {
    matches!(e, PhoneEvent::Ack { .. })
}

#[tokio::test]
async fn auto_answer_ack_and_caller_bye() {
    let (mut phone, caller) = pair(AnswerMode::Auto).await;
    let mut call = caller
        .invite(phone.local_addr(), "7001", "5001")
        .await
        .unwrap();

    let PhoneEvent::Invite {
        call_id,
        request_uri,
        from_user,
        sdp,
        ..
    } = phone.next_event(PATIENCE).await.unwrap()
    else {
        panic!("first phone event is not the INVITE")
    };
    assert_eq!(call_id, call.call_id());
    assert_eq!(request_uri, format!("sip:7001@{}", phone.local_addr()));
    assert_eq!(from_user, "5001");
    assert!(sdp.contains("m=audio"), "{sdp}");

    assert_eq!(call.next_response(PATIENCE).await.unwrap().status, 180);
    let ok = call.next_response(PATIENCE).await.unwrap();
    assert_eq!(ok.status, 200);
    assert!(ok.body.contains("m=audio"), "{}", ok.body);
    let contact = ok.header("Contact").unwrap();
    assert!(
        contact.contains(&phone.local_addr().to_string()),
        "{contact}"
    );

    phone.wait_for(is_ack, PATIENCE).await.unwrap();
    assert_eq!(call.hang_up().await.unwrap(), 200);
    let bye = phone
        .wait_for(|e| matches!(e, PhoneEvent::Bye { .. }), PATIENCE)
        .await
        .unwrap();
    assert_eq!(
        bye,
        PhoneEvent::Bye {
            call_id: call.call_id().to_owned()
        }
    );
}

#[tokio::test]
async fn notify_talk_answers_then_phone_hangs_up() {
    let (mut phone, caller) = pair(AnswerMode::OnNotifyTalk).await;
    let mut call = caller
        .invite(phone.local_addr(), "7001", "5001")
        .await
        .unwrap();
    assert_eq!(call.next_response(PATIENCE).await.unwrap().status, 180);
    // Ringing, not answered on its own.
    assert!(call
        .next_response(Duration::from_millis(300))
        .await
        .is_err());

    assert_eq!(call.notify("talk").await.unwrap(), 200);
    let notify = phone
        .wait_for(|e| matches!(e, PhoneEvent::Notify { .. }), PATIENCE)
        .await
        .unwrap();
    assert_eq!(
        notify,
        PhoneEvent::Notify {
            call_id: call.call_id().to_owned(),
            event: "talk".into(),
            status: 200
        }
    );
    assert_eq!(call.next_response(PATIENCE).await.unwrap().status, 200);
    phone.wait_for(is_ack, PATIENCE).await.unwrap();

    // Hold in the confirmed dialog is acknowledged but changes nothing.
    assert_eq!(call.notify("hold").await.unwrap(), 200);
    assert_eq!(phone.hang_up().await.unwrap(), 200);
    call.wait_for(|e| *e == CallerEvent::Bye, PATIENCE)
        .await
        .unwrap();
    let answered = phone
        .wait_for(|e| matches!(e, PhoneEvent::ByeAnswered { .. }), PATIENCE)
        .await
        .unwrap();
    assert_eq!(
        answered,
        PhoneEvent::ByeAnswered {
            call_id: call.call_id().to_owned(),
            status: 200
        }
    );
    // The dialog is over: a second hang-up has nothing to end.
    assert!(phone.hang_up().await.is_err());
}

#[tokio::test]
async fn cancel_while_ringing_gets_487() {
    let (mut phone, caller) = pair(AnswerMode::Never).await;
    let mut call = caller
        .invite(phone.local_addr(), "7001", "5001")
        .await
        .unwrap();
    assert_eq!(call.next_response(PATIENCE).await.unwrap().status, 180);
    assert_eq!(call.cancel().await.unwrap(), 200);
    call.wait_for_status(487, PATIENCE).await.unwrap();
    phone
        .wait_for(|e| matches!(e, PhoneEvent::Cancel { .. }), PATIENCE)
        .await
        .unwrap();
    phone.wait_for(is_ack, PATIENCE).await.unwrap();
    // No dialog: BYE is refused locally.
    assert!(call.hang_up().await.is_err());
}

#[tokio::test]
async fn reject_486_after_ringing() {
    let (mut phone, caller) = pair(AnswerMode::Reject(486)).await;
    let mut call = caller
        .invite(phone.local_addr(), "7001", "5001")
        .await
        .unwrap();
    assert_eq!(call.next_response(PATIENCE).await.unwrap().status, 180);
    assert_eq!(call.next_response(PATIENCE).await.unwrap().status, 486);
    let answered = phone
        .wait_for(|e| matches!(e, PhoneEvent::Answered { .. }), PATIENCE)
        .await
        .unwrap();
    assert_eq!(
        answered,
        PhoneEvent::Answered {
            call_id: call.call_id().to_owned(),
            status: 486
        }
    );
    phone.wait_for(is_ack, PATIENCE).await.unwrap();
}

#[tokio::test]
async fn answer_after_delay() {
    let (mut phone, caller) = pair(AnswerMode::AfterDelay(Duration::from_millis(300))).await;
    let mut call = caller
        .invite(phone.local_addr(), "7001", "5001")
        .await
        .unwrap();
    assert_eq!(call.next_response(PATIENCE).await.unwrap().status, 180);
    assert!(call
        .next_response(Duration::from_millis(150))
        .await
        .is_err());
    call.wait_for_status(200, PATIENCE).await.unwrap();
    phone.wait_for(is_ack, PATIENCE).await.unwrap();
}

/// The To tag of the next response with status `want` received on `node`.
async fn recv_status(node: &UdpSocket, want: u16) -> String {
    let mut buf = vec![0u8; 65536];
    loop {
        let n = tokio::time::timeout(PATIENCE, node.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let Ok(rsip::SipMessage::Response(r)) = parse_message(&buf[..n]) else {
            continue;
        };
        if r.status_code.code() == want {
            return fields::to_tag(&r).unwrap().unwrap();
        }
    }
}

/// A bare socket as the node: the phone REGISTERs, answers a retransmitted INVITE with the same
/// response (same To tag), and reports `X-Genesys-CallUUID`.
#[tokio::test]
async fn register_retransmitted_invite_and_call_uuid() {
    let node = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let node_addr = node.local_addr().unwrap();
    let mut phone = TestPhone::bind().await.unwrap();
    let mut buf = vec![0u8; 65536];

    let register = async {
        let (n, src) = node.recv_from(&mut buf).await.unwrap();
        let rsip::SipMessage::Request(req) = parse_message(&buf[..n]).unwrap() else {
            panic!()
        };
        assert_eq!(req.method, rsip::Method::Register);
        assert_eq!(fields::expires_of_contact(&req).unwrap(), Some(1800));
        let ok = sipcore::response_for(&req, sipcore::builder::status(200));
        node.send_to(ok.to_string().as_bytes(), src).await.unwrap();
    };
    let (status, ()) = tokio::join!(phone.register(node_addr, "7001", 1800), register);
    assert_eq!(status.unwrap(), 200);

    let invite = RequestBuilder::invite(
        &format!("sip:node@{node_addr}"),
        &format!("sip:7001@{}", phone.local_addr()),
        node_addr,
        sipcore::builder::sdp_offer(node_addr.ip(), 30000),
    )
    .header(Header::Other("X-Genesys-CallUUID".into(), "UUID-42".into()))
    .build()
    .unwrap();
    node.send_to(invite.to_string().as_bytes(), phone.local_addr())
        .await
        .unwrap();
    let ringing_tag = recv_status(&node, 180).await;
    let first = recv_status(&node, 200).await;
    node.send_to(invite.to_string().as_bytes(), phone.local_addr())
        .await
        .unwrap();
    let again = recv_status(&node, 200).await;
    assert_eq!((&ringing_tag, &first), (&again, &again));

    let PhoneEvent::Invite { call_uuid, .. } = phone.next_event(PATIENCE).await.unwrap() else {
        panic!("first event is the INVITE")
    };
    assert_eq!(call_uuid.as_deref(), Some("UUID-42"));
    // The retransmission is not a new call.
    let next = phone.next_event(PATIENCE).await.unwrap();
    assert!(
        matches!(next, PhoneEvent::Answered { status: 200, .. }),
        "{next:?}"
    );
    assert!(phone.next_event(Duration::from_millis(200)).await.is_err());
}

/// A bare socket as the callee: the caller retransmits the INVITE (Timer A) until answered,
/// ACKs the 2xx with a new branch, ACKs a retransmitted 2xx again and reports it once.
#[tokio::test]
async fn caller_retransmits_invite_and_reacks_2xx() {
    let callee = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let callee_addr = callee.local_addr().unwrap();
    let caller = TestCaller::bind().await.unwrap();
    let mut call = caller.invite(callee_addr, "7001", "5001").await.unwrap();

    let mut buf = vec![0u8; 65536];
    let mut next_request = async || {
        let n = tokio::time::timeout(PATIENCE, callee.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let rsip::SipMessage::Request(r) = parse_message(&buf[..n]).unwrap() else {
            panic!()
        };
        r
    };
    let first = next_request().await;
    let again = next_request().await; // Timer A after 500 ms
    assert_eq!(again.to_string(), first.to_string());
    let mut ok = sipcore::response_for(&first, sipcore::builder::status(200));
    sipcore::builder::add_contact(&mut ok, &format!("<sip:7001@{callee_addr}>"), None);
    for _ in 0..2 {
        callee
            .send_to(ok.to_string().as_bytes(), caller.local_addr())
            .await
            .unwrap();
        let ack = next_request().await;
        assert_eq!(ack.method, rsip::Method::Ack);
        assert_eq!(ack.uri.to_string(), format!("sip:7001@{callee_addr}"));
        assert_ne!(
            fields::top_via(&ack).unwrap().branch,
            fields::top_via(&first).unwrap().branch
        );
    }
    assert_eq!(call.next_response(PATIENCE).await.unwrap().status, 200);
    assert!(call
        .next_response(Duration::from_millis(200))
        .await
        .is_err());
}
