//! The core driven directly, without sockets, on tokio's paused clock.

use std::sync::Arc;
use std::time::Duration;

use nodekit::Journal;
use sipcore::rsip::SipMessage;
use sipcore::transport::{Incoming, IncomingMessage, Source};
use tlib::{AgentWorkMode, Message, MessageName, Request};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::NodeConfig;
use crate::core::NodeCore;
use crate::metrics::NodeMetrics;

fn core() -> NodeCore {
    let mut config = NodeConfig::new("ss1", "dc1", "127.0.0.1".parse().unwrap()).with_fast_timers();
    config.registrar.min_expires = Duration::from_secs(1);
    NodeCore::new(
        Arc::new(config),
        Journal::new("ss1", 1000),
        Arc::new(NodeMetrics::new("ss1")),
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
    let mut out = Vec::new();
    while let Ok(m) = rx.try_recv() {
        out.push(m.name);
    }
    out
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
    assert!(names(&mut events).contains(&MessageName::EventDNOutOfService));
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
