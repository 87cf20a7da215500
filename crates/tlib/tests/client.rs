//! `TlibClient` against a tiny fake T-Lib server written here, over `tokio::io::duplex` (with
//! tokio's paused clock where timers matter) and over loopback TCP for the RST case.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tlib::{
    error_code, event, AddpConfig, ClientConfig, ClientError, ClientEvent, DisconnectReason,
    Events, JsonFrameCodec, Message, MessageName, Request, ServerRole, TlibClient,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::time::Instant;
use tokio_util::codec::Framed;

/// The server side of one connection.
struct FakeServer<S> {
    framed: Framed<S, JsonFrameCodec>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> FakeServer<S> {
    fn new(stream: S) -> Self {
        FakeServer {
            framed: Framed::new(stream, JsonFrameCodec::new()),
        }
    }

    /// The next message, whatever it is; panics on EOF or a bad frame (test harness only).
    async fn recv_any(&mut self) -> Message {
        let obj = self
            .framed
            .next()
            .await
            .expect("client closed the connection")
            .expect("bad frame from client");
        Message::from_object(obj).expect("invalid message from client")
    }

    /// The next message that is not a keepalive.
    async fn recv(&mut self) -> Message {
        loop {
            let m = self.recv_any().await;
            if !m.name.is_keepalive() {
                return m;
            }
        }
    }

    async fn send(&mut self, msg: Message) {
        self.framed.send(&msg).await.expect("send to client");
    }

    /// Answers the handshake like a SIP node; returns the `RequestRegisterClient`.
    async fn accept_handshake(&mut self) -> Message {
        let reg = self.recv().await;
        assert_eq!(reg.name, MessageName::RequestRegisterClient);
        self.send(event::server_info(
            reg.reference_id(),
            "ss1",
            "dc1",
            ServerRole::Primary,
        ))
        .await;
        self.send(event::link_connected()).await;
        reg
    }
}

fn fast_addp() -> AddpConfig {
    AddpConfig::from_millis(1_000, 3_000)
}

async fn connect_with(cfg: ClientConfig) -> (TlibClient, Events, FakeServer<DuplexStream>) {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let mut server = FakeServer::new(server_io);
    let (res, reg) = tokio::join!(
        TlibClient::handshake_with(client_io, cfg),
        server.accept_handshake()
    );
    assert_eq!(reg.attrs.application_name.as_deref(), Some("test-app"));
    let (client, events) = res.expect("handshake");
    (client, events, server)
}

async fn connect(addp: AddpConfig) -> (TlibClient, Events, FakeServer<DuplexStream>) {
    let mut cfg = ClientConfig::new("test-app");
    cfg.addp = addp;
    connect_with(cfg).await
}

async fn next_message(events: &mut Events) -> Message {
    match events.recv().await {
        Some(ClientEvent::Message(m)) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}

/// Skips the two handshake events.
async fn skip_handshake_events(events: &mut Events) {
    assert_eq!(
        next_message(events).await.name,
        MessageName::EventServerInfo
    );
    assert_eq!(
        next_message(events).await.name,
        MessageName::EventLinkConnected
    );
}

#[tokio::test(start_paused = true)]
async fn handshake_registers_and_exposes_server_info() {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let mut server = FakeServer::new(server_io);
    let (res, reg) = tokio::join!(
        TlibClient::handshake(client_io, "gws1", fast_addp()),
        server.accept_handshake()
    );
    assert_eq!(reg.reference_id(), Some(1));
    assert_eq!(reg.attrs.application_name.as_deref(), Some("gws1"));
    let (client, mut events) = res.unwrap();
    assert_eq!(client.server_info().name, MessageName::EventServerInfo);
    assert_eq!(client.server_info().reference_id(), Some(1));
    let info = client.server().unwrap();
    assert_eq!((info.node.as_str(), info.dc.as_str()), ("ss1", "dc1"));
    assert_eq!(info.role, ServerRole::Primary);
    assert!(client.is_connected());
    skip_handshake_events(&mut events).await;
    assert!(events.try_recv().is_none());
}

#[tokio::test(start_paused = true)]
async fn handshake_answers_pings_and_tolerates_early_events() {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let mut server = FakeServer::new(server_io);
    let server_side = async {
        let reg = server.recv().await;
        server.send(Message::ping()).await;
        assert_eq!(server.recv_any().await.name, MessageName::Pong);
        server
            .send(event::server_info(
                reg.reference_id(),
                "ss2",
                "dc1",
                ServerRole::Backup,
            ))
            .await;
        server.send(event::dn_out_of_service("7001")).await;
        server.send(event::link_connected()).await;
    };
    let (res, ()) = tokio::join!(
        TlibClient::handshake(client_io, "test-app", fast_addp()),
        server_side
    );
    let (client, mut events) = res.unwrap();
    assert_eq!(client.server().unwrap().role, ServerRole::Backup);
    let names: Vec<MessageName> = vec![
        next_message(&mut events).await.name,
        next_message(&mut events).await.name,
        next_message(&mut events).await.name,
    ];
    assert_eq!(
        names,
        [
            MessageName::EventServerInfo,
            MessageName::EventDNOutOfService,
            MessageName::EventLinkConnected
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn handshake_times_out_when_the_server_is_silent() {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let mut server = FakeServer::new(server_io);
    let start = Instant::now();
    let mut cfg = ClientConfig::new("test-app");
    cfg.handshake_timeout = Duration::from_secs(2);
    let (res, _reg) = tokio::join!(TlibClient::handshake_with(client_io, cfg), server.recv());
    assert!(matches!(res, Err(ClientError::Timeout)), "{res:?}");
    assert_eq!(start.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn handshake_rejected_with_event_error() {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let mut server = FakeServer::new(server_io);
    let server_side = async {
        let reg = server.recv().await;
        server
            .send(event::error(
                reg.reference_id(),
                error_code::NO_SWITCH,
                "isolated",
            ))
            .await;
    };
    let (res, ()) = tokio::join!(
        TlibClient::handshake(client_io, "test-app", fast_addp()),
        server_side
    );
    match res {
        Err(ClientError::Rejected(m)) => assert_eq!(m.attrs.error_code, Some(54)),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn handshake_fails_fast_on_eof() {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    drop(server_io);
    let start = Instant::now();
    let res = TlibClient::handshake(client_io, "test-app", fast_addp()).await;
    assert!(
        matches!(res, Err(ClientError::LinkDown(_))),
        "unexpected {res:?}"
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn responses_are_correlated_out_of_order_and_events_keep_arrival_order() {
    let (client, mut events, mut server) = connect(fast_addp()).await;
    skip_handshake_events(&mut events).await;

    let c1 = client.clone();
    let r1 = tokio::spawn(async move { c1.request(Request::register_address("7001")).await });
    let c2 = client.clone();
    let r2 = tokio::spawn(async move { c2.request(Request::register_address("7002")).await });

    let a = server.recv().await;
    let b = server.recv().await;
    let (req1, req2) = if a.this_dn() == Some("7001") {
        (a, b)
    } else {
        (b, a)
    };
    assert_ne!(req1.reference_id(), req2.reference_id());
    assert!(req1.reference_id().unwrap() > 1 && req2.reference_id().unwrap() > 1);
    assert_eq!(
        Request::parse(&req1).unwrap().1,
        Request::register_address("7001")
    );

    server.send(event::dn_out_of_service("7003")).await;
    server
        .send(event::registered(req2.reference_id(), "7002"))
        .await;
    server
        .send(event::registered(req1.reference_id(), "7001"))
        .await;

    let resp1 = r1.await.unwrap().unwrap();
    let resp2 = r2.await.unwrap().unwrap();
    assert_eq!(resp1.name, MessageName::EventRegistered);
    assert_eq!(resp1.this_dn(), Some("7001"));
    assert_eq!(resp1.reference_id(), req1.reference_id());
    assert_eq!(resp2.this_dn(), Some("7002"));

    let order: Vec<(MessageName, Option<String>)> = [
        next_message(&mut events).await,
        next_message(&mut events).await,
        next_message(&mut events).await,
    ]
    .into_iter()
    .map(|m| (m.name.clone(), m.attrs.this_dn.clone()))
    .collect();
    assert_eq!(
        order,
        [
            (MessageName::EventDNOutOfService, Some("7003".into())),
            (MessageName::EventRegistered, Some("7002".into())),
            (MessageName::EventRegistered, Some("7001".into())),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn event_error_is_returned_as_a_response() {
    let (client, _events, mut server) = connect(fast_addp()).await;
    let server_side = async {
        let req = server.recv().await;
        assert_eq!(req.name, MessageName::RequestAgentLogin);
        server
            .send(event::error(
                req.reference_id(),
                error_code::SOFT_AGENT_ALREADY_LOGGED_IN,
                "logged in elsewhere",
            ))
            .await;
    };
    let login = Request::AgentLogin {
        dn: "7001".into(),
        agent_id: Some("agent7001".into()),
        password: None,
        work_mode: tlib::AgentWorkMode::ManualIn,
        queue: None,
        reasons: None,
        extensions: None,
    };
    let (resp, ()) = tokio::join!(client.request(login), server_side);
    let resp = resp.unwrap();
    assert!(resp.is_error());
    assert_eq!(resp.attrs.error_code, Some(1706));
    assert_eq!(
        resp.attrs.error_message.as_deref(),
        Some("logged in elsewhere")
    );
}

#[tokio::test(start_paused = true)]
async fn addp_pings_when_idle_and_answers_pings_with_pongs() {
    let (client, mut events, mut server) = connect(fast_addp()).await;
    skip_handshake_events(&mut events).await;
    let start = Instant::now();

    // The client has sent nothing since the handshake: it pings after `interval`.
    let m = server.recv_any().await;
    assert_eq!(m.name, MessageName::Ping);
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(
        serde_json::to_value(&m).unwrap(),
        json!({"message": "Ping"})
    );

    // Our ping is answered.
    server.send(Message::ping()).await;
    loop {
        let m = server.recv_any().await;
        if m.name == MessageName::Pong {
            break;
        }
        assert_eq!(m.name, MessageName::Ping);
    }

    // A server that answers pings keeps the link up indefinitely.
    let keep_alive = async {
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            let m = server.recv_any().await;
            if m.name == MessageName::Ping {
                server.send(Message::pong()).await;
            }
        }
    };
    keep_alive.await;
    assert!(client.is_connected());
    // Keepalives never show up as events.
    assert!(events.try_recv().is_none());
}

#[tokio::test(start_paused = true)]
async fn silent_peer_is_declared_dead_after_the_timeout() {
    let (client, mut events, server) = connect(fast_addp()).await;
    skip_handshake_events(&mut events).await;
    let start = Instant::now();
    // The server keeps its socket open and reads, but never says anything (iptables DROP).
    let mut framed = server.framed;
    let sink = tokio::spawn(async move { while let Some(Ok(_)) = framed.next().await {} });

    let pending = {
        let c = client.clone();
        tokio::spawn(async move {
            c.request_with_timeout(
                Message::new(MessageName::RequestQueryServer),
                Duration::from_secs(60),
            )
            .await
        })
    };
    match events.recv().await {
        Some(ClientEvent::Disconnected { reason }) => {
            assert_eq!(
                reason,
                DisconnectReason::AddpTimeout(Duration::from_secs(3))
            )
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    assert!(events.recv().await.is_none());
    assert!(!client.is_connected());
    match pending.await.unwrap() {
        Err(ClientError::LinkDown(DisconnectReason::AddpTimeout(_))) => {}
        other => panic!("unexpected {other:?}"),
    }
    match client
        .send(Message::new(MessageName::RequestQueryServer))
        .await
    {
        Err(ClientError::LinkDown(DisconnectReason::AddpTimeout(_))) => {}
        other => panic!("unexpected {other:?}"),
    }
    // The client closed the socket: the server's read ends.
    sink.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn eof_is_detected_at_once_and_fails_pending_requests() {
    let (client, mut events, mut server) = connect(fast_addp()).await;
    skip_handshake_events(&mut events).await;
    let c = client.clone();
    let pending = tokio::spawn(async move { c.request(Request::QueryServer).await });
    let _ = server.recv().await;
    let start = Instant::now();
    drop(server);
    match events.recv().await {
        Some(ClientEvent::Disconnected { reason }) => assert_eq!(reason, DisconnectReason::Eof),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(start.elapsed(), Duration::ZERO, "no timer was involved");
    match pending.await.unwrap() {
        Err(ClientError::LinkDown(DisconnectReason::Eof)) => {}
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(client.closed().await, DisconnectReason::Eof);
}

#[tokio::test]
async fn tcp_reset_is_detected_at_once() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_task = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        let mut server = FakeServer::new(sock);
        server.accept_handshake().await;
        // Wait for the client's first request, then reset the connection.
        let _ = server.recv().await;
        let sock = server.framed.into_inner();
        sock.set_zero_linger().unwrap();
        drop(sock);
    });
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // A long ADDP timeout: only the RST itself can end the link quickly.
    let (client, mut events) =
        TlibClient::handshake(stream, "test-app", AddpConfig::from_millis(30_000, 60_000))
            .await
            .unwrap();
    skip_handshake_events(&mut events).await;
    let start = std::time::Instant::now();
    let res = client.request(Request::QueryServer).await;
    assert!(matches!(res, Err(ClientError::LinkDown(_))), "{res:?}");
    let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("disconnect must be reported promptly");
    match ev {
        Some(ClientEvent::Disconnected {
            reason: DisconnectReason::Io(_) | DisconnectReason::Eof,
        }) => {}
        other => panic!("unexpected {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(5));
    server_task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn request_timeout_then_late_response_is_still_an_event() {
    let (client, mut events, mut server) = connect(fast_addp()).await;
    skip_handshake_events(&mut events).await;
    let (res, req) = tokio::join!(
        client.request_with_timeout(Request::QueryServer, Duration::from_millis(500)),
        server.recv()
    );
    assert!(matches!(res, Err(ClientError::Timeout)), "{res:?}");
    server
        .send(event::server_info(
            req.reference_id(),
            "ss1",
            "dc1",
            ServerRole::Primary,
        ))
        .await;
    let late = next_message(&mut events).await;
    assert_eq!(late.reference_id(), req.reference_id());
    assert!(client.is_connected());
}

#[tokio::test(start_paused = true)]
async fn slow_event_consumer_loses_events_not_responses() {
    let mut cfg = ClientConfig::new("test-app");
    cfg.addp = fast_addp();
    cfg.event_capacity = 8;
    let (client, mut events, mut server) = connect_with(cfg).await;
    // Nobody reads `events` while the server floods it.
    const FLOOD: usize = 100;
    let server_side = async {
        for i in 0..FLOOD {
            server
                .send(event::dn_out_of_service(&format!("{}", 7000 + i)))
                .await;
        }
        let req = server.recv().await;
        server.send(event::ack(req.reference_id())).await;
    };
    let (resp, ()) = tokio::join!(client.request(Request::QueryServer), server_side);
    assert_eq!(resp.unwrap().name, MessageName::EventACK);

    let mut messages = 0u64;
    let mut missed = 0u64;
    let mut lagged_markers = 0;
    while let Some(ev) = events.try_recv() {
        match ev {
            ClientEvent::Message(_) => messages += 1,
            ClientEvent::Lagged { missed: n } => {
                missed += n;
                lagged_markers += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(messages, 8, "the queue holds exactly its capacity");
    // The marker is delivered once there is room again: push one more event.
    server.send(event::link_connected()).await;
    let ev = events.recv().await;
    match ev {
        Some(ClientEvent::Lagged { missed: n }) => {
            missed += n;
            lagged_markers += 1;
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(lagged_markers, 1);
    // 2 handshake events + FLOOD + the ACK were offered to the queue.
    assert_eq!(messages + missed, 2 + FLOOD as u64 + 1);
    assert_eq!(
        next_message(&mut events).await.name,
        MessageName::EventLinkConnected
    );
}

#[tokio::test(start_paused = true)]
async fn invalid_response_fails_the_request_and_is_reported() {
    let (client, mut events, mut server) = connect(fast_addp()).await;
    skip_handshake_events(&mut events).await;
    let server_side = async {
        let req = server.recv().await;
        let bad = json!({"message": "EventRegistered", "ReferenceID": req.reference_id(), "ThisDN": 7001});
        let Value::Object(bad) = bad else {
            unreachable!()
        };
        server.framed.send(&bad).await.unwrap();
    };
    let (res, ()) = tokio::join!(
        client.request(Request::register_address("7001")),
        server_side
    );
    match res {
        Err(ClientError::InvalidResponse(e)) => assert_eq!(e.attribute(), "ThisDN"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(events.recv().await, Some(ClientEvent::Invalid(_))));
    assert!(client.is_connected(), "an invalid message is not fatal");
}

#[tokio::test(start_paused = true)]
async fn broken_framing_from_the_server_closes_the_link() {
    let (client, mut events, server) = connect(fast_addp()).await;
    skip_handshake_events(&mut events).await;
    let mut raw = server.framed.into_inner();
    raw.write_all(&[0, 0, 0, 3, b'[', b']', b' '])
        .await
        .unwrap();
    match events.recv().await {
        Some(ClientEvent::Disconnected {
            reason: DisconnectReason::Protocol(_),
        }) => {}
        other => panic!("unexpected {other:?}"),
    }
    assert!(!client.is_connected());
}

#[tokio::test(start_paused = true)]
async fn close_and_drop_end_the_link() {
    // Explicit close.
    let (client, mut events, mut server) = connect(fast_addp()).await;
    skip_handshake_events(&mut events).await;
    client
        .send(Message::new(MessageName::RequestQueryServer))
        .await
        .unwrap();
    client.close().await;
    // What was queued before close() is flushed; then EOF.
    assert_eq!(server.recv().await.name, MessageName::RequestQueryServer);
    assert!(server.framed.next().await.is_none());
    match events.recv().await {
        Some(ClientEvent::Disconnected { reason }) => assert_eq!(reason, DisconnectReason::Closed),
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        client.request(Request::QueryServer).await,
        Err(ClientError::LinkDown(DisconnectReason::Closed))
    ));

    // Dropping every handle closes the link too.
    let (client, _events, mut server) = connect(fast_addp()).await;
    let clone = client.clone();
    drop(client);
    drop(clone);
    loop {
        match server.framed.next().await {
            None => break,
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("unexpected {e}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn oversized_messages_fail_at_the_call_site() {
    let mut cfg = ClientConfig::new("test-app");
    cfg.addp = fast_addp();
    cfg.max_frame_len = 4096;
    let (client, _events, _server) = connect_with(cfg).await;
    let big = Message::new(MessageName::RequestQueryServer)
        .with(|a| a.this_dn = Some("x".repeat(10_000)));
    assert!(matches!(
        client.send(big.clone()).await,
        Err(ClientError::Frame(tlib::FrameError::TooLong { .. }))
    ));
    assert!(matches!(
        client.request(big).await,
        Err(ClientError::Frame(_))
    ));
    assert!(client.is_connected());
}
