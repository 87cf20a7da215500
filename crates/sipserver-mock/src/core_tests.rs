//! The core driven directly, without sockets, on tokio's paused clock.

use std::sync::Arc;
use std::time::Duration;

use nodekit::Journal;
use sipcore::rsip::prelude::*;
use sipcore::rsip::SipMessage;
use sipcore::transport::{Incoming, IncomingMessage, Source};
use tlib::{AgentWorkMode, CallType, Message, MessageName, Request};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::NodeConfig;
use crate::core::NodeCore;
use crate::metrics::NodeMetrics;

fn core() -> NodeCore {
    core_with("ss1", |c| c.registrar.min_expires = Duration::from_secs(1))
}

/// A node core on the fast timer profile, calling PSTN DNs at [`GATEWAY`]; `tune` adjusts the
/// config.
pub(crate) fn core_with(name: &str, tune: impl FnOnce(&mut NodeConfig)) -> NodeCore {
    let mut config = NodeConfig::new(name, "dc", "127.0.0.1".parse().unwrap()).with_fast_timers();
    config.pstn_gateway = Some(GATEWAY.parse().unwrap());
    // No session audit: nothing answers the node's OPTIONS here.
    config.call_audit_interval = Duration::ZERO;
    tune(&mut config);
    NodeCore::new(
        Arc::new(config),
        Journal::new(name, 10_000),
        Arc::new(NodeMetrics::new(name)),
    )
    .unwrap()
}

pub(crate) fn client(core: &mut NodeCore, id: u64) -> mpsc::Receiver<Message> {
    let (tx, rx) = mpsc::channel(64);
    core.client_up(id, "127.0.0.1:40000".parse().unwrap(), tx);
    rx
}

pub(crate) fn ask(core: &mut NodeCore, id: u64, req: Request) {
    core.client_message(id, Ok(req.to_message(Some(1))));
}

pub(crate) fn names(rx: &mut mpsc::Receiver<Message>) -> Vec<MessageName> {
    drain(rx).into_iter().map(|m| m.name).collect()
}

/// Every message queued for a client so far.
pub(crate) fn drain(rx: &mut mpsc::Receiver<Message>) -> Vec<Message> {
    let mut out = Vec::new();
    while let Ok(m) = rx.try_recv() {
        out.push(m);
    }
    out
}

/// Where the unit tests' PSTN gateway and caller are (nothing listens: the core only queues).
pub(crate) const GATEWAY: &str = "127.0.0.8:5060";
const CALLER: &str = "127.0.0.9:5070";

/// A SIP message fed to the core as if it arrived over UDP from `from`.
fn sip_from(core: &mut NodeCore, msg: SipMessage, from: &str) {
    let incoming = Incoming {
        msg: IncomingMessage::Sip(msg),
        source: Source::udp(from.parse().unwrap()),
    };
    core.on_sip(incoming, Instant::now());
}

/// A call from the PSTN to `dn`, ringing at the phone or gateway that the node's INVITE went to.
pub(crate) struct RingingCall {
    /// The caller's Call-ID, for [`caller_hangs_up`].
    pub(crate) call_id: String,
    /// The node's INVITE to the phone, and where it went.
    invite: sipcore::rsip::Request,
    phone: Source,
    /// The phone's To, with its tag.
    to: sipcore::rsip::headers::To,
}

/// A call from the PSTN to `dn`, ringing at the phone or gateway that the node's INVITE goes to
/// (which must be the only INVITE in the outbox).
pub(crate) fn ringing_call(core: &mut NodeCore, dn: &str, ani: &str) -> RingingCall {
    let (call_id, phone, invite) = offer_call(core, dn, ani);
    let ringing = sipcore::response_for(&invite, sipcore::builder::status(180));
    let to = ringing.to_header().unwrap().clone();
    sip_from(
        core,
        SipMessage::Response(ringing),
        &phone.remote.to_string(),
    );
    RingingCall {
        call_id,
        invite,
        phone,
        to,
    }
}

/// A call from the PSTN to `dn`: the caller's Call-ID, and where the node's INVITE went (it must
/// be the only INVITE in the outbox) with the INVITE.
pub(crate) fn offer_call(
    core: &mut NodeCore,
    dn: &str,
    ani: &str,
) -> (String, Source, sipcore::rsip::Request) {
    let caller: std::net::SocketAddr = CALLER.parse().unwrap();
    let call_id = format!("caller-{dn}-{}", sipcore::tag());
    let sdp = sipcore::builder::sdp_offer(caller.ip(), 4000);
    let invite = sipcore::RequestBuilder::invite(
        &format!("sip:{ani}@{}", caller.ip()),
        &format!("sip:{dn}@127.0.0.1"),
        caller,
        sdp,
    )
    .call_id(call_id.clone())
    .build()
    .unwrap();
    sip_from(core, SipMessage::Request(invite), CALLER);
    let (phone, bytes) = core
        .take_outbox()
        .into_iter()
        .find(|(_, b)| b.starts_with(b"INVITE "))
        .expect("the node calls the agent's phone");
    let SipMessage::Request(invite) = sipcore::parse_message(&bytes).unwrap() else {
        panic!("an INVITE");
    };
    (call_id, phone, invite)
}

/// The phone of a [`ringing_call`] answers. Returns the caller's Call-ID.
pub(crate) fn answer(core: &mut NodeCore, call: RingingCall) -> String {
    let mut ok = sipcore::response_for(&call.invite, sipcore::builder::status(200));
    sipcore::builder::set_header(&mut ok, sipcore::rsip::Header::To(call.to));
    let sdp = sipcore::builder::sdp_offer(call.phone.remote.ip(), 4002);
    sipcore::builder::set_response_body(&mut ok, "application/sdp", sdp.into_bytes());
    sip_from(
        core,
        SipMessage::Response(ok),
        &call.phone.remote.to_string(),
    );
    core.take_outbox();
    call.call_id
}

/// A call from the PSTN to `dn`, answered by the phone or gateway that the node's INVITE goes
/// to (which must be the only INVITE in the outbox). Returns the caller's Call-ID, for
/// [`caller_hangs_up`].
pub(crate) fn answered_call(core: &mut NodeCore, dn: &str, ani: &str) -> String {
    let call = ringing_call(core, dn, ani);
    answer(core, call)
}

/// The caller of [`answered_call`] hangs up (BYE).
pub(crate) fn caller_hangs_up(core: &mut NodeCore, call_id: &str) {
    let bye = sipcore::RequestBuilder::new(
        sipcore::rsip::Method::Bye,
        "sip:127.0.0.1",
        CALLER.parse().unwrap(),
    )
    .call_id(call_id)
    .cseq(2)
    .build()
    .unwrap();
    sip_from(core, SipMessage::Request(bye), CALLER);
    core.take_outbox();
}

fn register(dn: &str, expires: u32) -> Incoming {
    let local = "127.0.0.1:5062".parse().unwrap();
    let req = sipcore::RequestBuilder::register(
        "sip:127.0.0.1:5060",
        &format!("sip:{dn}@127.0.0.1"),
        local,
        expires,
    )
    .build()
    .unwrap();
    Incoming {
        msg: IncomingMessage::Sip(SipMessage::Request(req)),
        source: Source::udp(local),
    }
}

#[tokio::test(start_paused = true)]
async fn r12_binding_expires_on_the_clock() {
    let mut core = core();
    let mut events = client(&mut core, 1);
    ask(&mut core, 1, Request::register_address("7001"));
    assert_eq!(
        names(&mut events),
        [
            MessageName::EventRegistered,
            MessageName::EventDNOutOfService
        ]
    );
    core.on_sip(register("7001", 3), Instant::now());
    let (_, reply) = core.take_outbox().pop().unwrap();
    assert!(reply.starts_with(b"SIP/2.0 200"));
    assert_eq!(names(&mut events), [MessageName::EventDNBackInService]);
    tokio::time::advance(Duration::from_secs(2)).await;
    core.on_timer(Instant::now());
    assert!(names(&mut events).is_empty(), "not yet expired");
    let deadline = core.next_deadline().unwrap();
    tokio::time::advance(deadline - Instant::now()).await;
    core.on_timer(Instant::now());
    let oos = drain(&mut events)
        .into_iter()
        .find(|m| m.name == MessageName::EventDNOutOfService)
        .expect("R12: out of service on expiry");
    let reason = oos.attrs.extensions.as_ref().unwrap()["OutOfServiceReason"].clone();
    assert_eq!(reason, "OwnerOutOfService", "R13: the owner says why");
}

#[tokio::test(start_paused = true)]
async fn r4_logout_only_for_the_client_that_logged_in() {
    let mut core = core();
    let mut gws1 = client(&mut core, 1);
    let mut gws2 = client(&mut core, 2);
    for id in [1, 2] {
        ask(&mut core, id, Request::register_address("8001"));
    }
    ask(
        &mut core,
        1,
        Request::AgentLogin {
            dn: "8001".into(),
            agent_id: Some("a1".into()),
            password: None,
            work_mode: AgentWorkMode::ManualIn,
            queue: None,
            reasons: None,
            extensions: None,
        },
    );
    names(&mut gws1);
    let seen = names(&mut gws2);
    assert!(
        seen.contains(&MessageName::EventAgentLogin)
            && seen.contains(&MessageName::EventAgentNotReady)
    );
    // The observer leaving logs nobody out.
    core.client_gone(2, "test");
    assert!(!names(&mut gws1).contains(&MessageName::EventAgentLogout));
    let mut gws3 = client(&mut core, 3);
    ask(&mut core, 3, Request::register_address("8001"));
    names(&mut gws3);
    // The client that logged the agent in leaving does (R4).
    core.client_gone(1, "test");
    assert!(names(&mut gws3).contains(&MessageName::EventAgentLogout));
}

#[tokio::test(start_paused = true)]
async fn stuck_client_is_disconnected_not_buffered() {
    let mut core = core();
    let (tx, _rx) = mpsc::channel(2);
    core.client_up(9, "127.0.0.1:40000".parse().unwrap(), tx);
    for _ in 0..5 {
        ask(&mut core, 9, Request::QueryServer);
    }
    assert!(
        core.clients.is_empty(),
        "a client that does not read is dropped"
    );
}

/// A node with phones registered for 7003 and 7004, and a client registered for each (events
/// read so far).
fn phones_7003_7004() -> (NodeCore, mpsc::Receiver<Message>, mpsc::Receiver<Message>) {
    let mut core = core();
    let mut clients = Vec::new();
    for (id, dn) in [(1, "7003"), (2, "7004")] {
        core.on_sip(register(dn, 60), Instant::now());
        let mut rx = client(&mut core, id);
        ask(&mut core, id, Request::register_address(dn));
        drain(&mut rx);
        clients.push(rx);
    }
    core.take_outbox();
    let called = clients.pop().unwrap();
    let calling = clients.pop().unwrap();
    (core, calling, called)
}

/// An internal call: the phone of DN 7003 dials 7004 through the node. Both DNs hear of it with
/// the same ConnID and CallType Internal: the calling DN `EventDialing`, `EventEstablished`,
/// `EventReleased`; the called DN `EventRinging`, `EventEstablished`, `EventReleased`.
#[tokio::test(start_paused = true)]
async fn internal_call_dialled_by_a_registered_phone_is_reported_on_both_dns() {
    let (mut core, mut calling, mut called) = phones_7003_7004();

    let call = answered_call(&mut core, "7004", "7003");
    caller_hangs_up(&mut core, &call);
    let (calling, called) = (drain(&mut calling), drain(&mut called));
    let names = |events: &[Message]| events.iter().map(|m| m.name.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&calling),
        [
            MessageName::EventDialing,
            MessageName::EventEstablished,
            MessageName::EventReleased
        ],
        "the calling DN's side of an internal call"
    );
    assert_eq!(
        names(&called),
        [
            MessageName::EventRinging,
            MessageName::EventEstablished,
            MessageName::EventReleased
        ],
        "the called DN's side"
    );
    let conn = calling[0].attrs.conn_id;
    assert!(conn.is_some());
    for m in calling.iter().chain(&called) {
        assert_eq!(m.attrs.call_type, Some(CallType::Internal), "{m:?}");
        assert_eq!(m.attrs.conn_id, conn, "one ConnID on both DNs: {m:?}");
    }
    assert_eq!(
        (
            calling[0].attrs.this_dn.as_deref(),
            calling[0].attrs.other_dn.as_deref()
        ),
        (Some("7003"), Some("7004"))
    );
    assert_eq!(
        (
            called[0].attrs.this_dn.as_deref(),
            called[0].attrs.other_dn.as_deref()
        ),
        (Some("7004"), Some("7003"))
    );
}

/// A caller that is not a registered phone of the switch (the PSTN) makes an inbound call,
/// reported on the called DN only.
#[tokio::test(start_paused = true)]
async fn pstn_call_stays_inbound_on_the_called_dn_only() {
    let (mut core, mut other, mut called) = phones_7003_7004();

    let call = answered_call(&mut core, "7004", "5550100");
    caller_hangs_up(&mut core, &call);
    assert!(drain(&mut other).is_empty());
    let called = drain(&mut called);
    assert_eq!(called.len(), 3, "{called:?}");
    assert!(called
        .iter()
        .all(|m| m.attrs.call_type == Some(CallType::Inbound)));
}
