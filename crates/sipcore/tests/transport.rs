//! Transport over loopback: UDP and TCP request → response, keep-alives, 400 for garbage,
//! outgoing connections, close_all.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use netfault::Faults;
use sipcore::{
    bad_request_response, parse_message, response_for, Incoming, IncomingMessage, RequestBuilder,
    SipFrame, SipStreamCodec, SipTransport, Source, TransportKind, TransportOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::codec::Decoder;

const WAIT: Duration = Duration::from_secs(5);

async fn server() -> (SipTransport, mpsc::Receiver<Incoming>) {
    SipTransport::bind(
        &Faults::new(),
        "sip:test",
        "127.0.0.1:0".parse().unwrap(),
        TransportOptions::default(),
    )
    .await
    .unwrap()
}

/// Answers every request with 200 OK and every invalid request with 400.
fn spawn_echo_server(t: SipTransport, mut rx: mpsc::Receiver<Incoming>) {
    tokio::spawn(async move {
        while let Some(inc) = rx.recv().await {
            let bytes = match inc.msg {
                IncomingMessage::Sip(rsip::SipMessage::Request(req)) => {
                    Bytes::from(response_for(&req, rsip::StatusCode::OK).to_string())
                }
                IncomingMessage::Sip(rsip::SipMessage::Response(_)) => continue,
                IncomingMessage::Invalid { raw, error } => {
                    match bad_request_response(&raw, &error.to_string()) {
                        Some(b) => b,
                        None => continue,
                    }
                }
            };
            let _ = t.send(&inc.source, bytes).await;
        }
    });
}

fn register(local: SocketAddr, transport: rsip::Transport) -> rsip::Request {
    RequestBuilder::register("sip:127.0.0.1", "sip:1001@example.com", local, 1800)
        .transport(transport)
        .build()
        .unwrap()
}

fn status_of(bytes: &[u8]) -> u16 {
    match parse_message(bytes).unwrap() {
        rsip::SipMessage::Response(r) => r.status_code.code(),
        rsip::SipMessage::Request(_) => panic!("expected a response"),
    }
}

#[tokio::test]
async fn udp_request_response_and_invalid() {
    let (t, rx) = server().await;
    let addr = t.local_addr();
    spawn_echo_server(t.clone(), rx);

    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let req = register(client.local_addr().unwrap(), rsip::Transport::Udp);
    client
        .send_to(req.to_string().as_bytes(), addr)
        .await
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, from) = timeout(WAIT, client.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(from, addr);
    assert_eq!(status_of(&buf[..n]), 200);

    // Keep-alive: ignored, no answer; then a malformed request gets a 400.
    client.send_to(b"\r\n\r\n", addr).await.unwrap();
    // rsip is lax about values but rejects a header line without a colon.
    let bad = req
        .to_string()
        .replace("Max-Forwards: 70", "This line is broken");
    client.send_to(bad.as_bytes(), addr).await.unwrap();
    let (n, _) = timeout(WAIT, client.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status_of(&buf[..n]), 400);
    assert_eq!(
        t.stats()
            .keepalives
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    t.close_all();
}

#[tokio::test]
async fn tcp_request_response_ping_pong_and_invalid() {
    let (t, rx) = server().await;
    let addr = t.local_addr();
    spawn_echo_server(t.clone(), rx);

    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = register(s.local_addr().unwrap(), rsip::Transport::Tcp);
    // Ping, a request split over two writes, a garbage-but-framed request.
    s.write_all(b"\r\n\r\n").await.unwrap();
    let text = req.to_string();
    let (a, b) = text.as_bytes().split_at(40);
    s.write_all(a).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    s.write_all(b).await.unwrap();
    let bad = text.replace("Max-Forwards: 70", "This line is broken");
    s.write_all(bad.as_bytes()).await.unwrap();

    let mut codec = SipStreamCodec::default();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    while frames.len() < 3 {
        while let Some(f) = codec.decode(&mut buf).unwrap() {
            frames.push(f);
        }
        if frames.len() >= 3 {
            break;
        }
        let n = timeout(WAIT, s.read_buf(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "server closed the connection");
    }
    assert!(matches!(frames[0], SipFrame::Pong), "{:?}", frames[0]);
    let codes: Vec<u16> = frames[1..]
        .iter()
        .map(|f| match f {
            SipFrame::Message(rsip::SipMessage::Response(r)) => r.status_code.code(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(codes, vec![200, 400]);
    assert_eq!(t.connection_count(), 1);

    // Closing the client is noticed and the connection forgotten.
    drop(s);
    timeout(WAIT, async {
        while t.connection_count() != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn transport_to_transport_over_tcp_reuses_the_connection() {
    let (server_t, server_rx) = server().await;
    spawn_echo_server(server_t.clone(), server_rx);
    let (client_t, mut client_rx) = server().await;

    let dest = Source::tcp(server_t.local_addr());
    for _ in 0..3 {
        let req = register(client_t.local_addr(), rsip::Transport::Tcp);
        client_t
            .send(&dest, Bytes::from(req.to_string()))
            .await
            .unwrap();
        let inc = timeout(WAIT, client_rx.recv()).await.unwrap().unwrap();
        assert_eq!(inc.source.transport, TransportKind::Tcp);
        assert_eq!(inc.source.remote, server_t.local_addr());
        assert!(inc.source.conn.is_some());
        match inc.msg {
            IncomingMessage::Sip(rsip::SipMessage::Response(r)) => {
                assert_eq!(r.status_code.code(), 200)
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(client_t.connection_count(), 1);
    assert_eq!(server_t.connection_count(), 1);
    assert_eq!(
        client_t
            .stats()
            .tcp_connected
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    // Dropping every handle closes the sockets: the server sees the connection go.
    drop(client_t);
    drop(client_rx);
    timeout(WAIT, async {
        while server_t.connection_count() != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn udp_between_transports_and_close_all_releases_the_port() {
    let (server_t, server_rx) = server().await;
    let addr = server_t.local_addr();
    spawn_echo_server(server_t.clone(), server_rx);
    let (client_t, mut client_rx) = server().await;
    let req = register(client_t.local_addr(), rsip::Transport::Udp);
    client_t
        .send(&Source::udp(addr), Bytes::from(req.to_string()))
        .await
        .unwrap();
    let inc = timeout(WAIT, client_rx.recv()).await.unwrap().unwrap();
    assert_eq!(inc.source, Source::udp(addr));

    server_t.close_all();
    drop(server_t);
    // The port can be bound again once the tasks are gone.
    timeout(WAIT, async {
        loop {
            if SipTransport::bind(
                &Faults::new(),
                "sip:again",
                addr,
                TransportOptions::default(),
            )
            .await
            .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn idle_tcp_connections_are_closed() {
    let opts = TransportOptions {
        idle_timeout_secs: 1,
        ..TransportOptions::default()
    };
    let (t, _rx) = SipTransport::bind(
        &Faults::new(),
        "sip:idle",
        "127.0.0.1:0".parse().unwrap(),
        opts,
    )
    .await
    .unwrap();
    let mut s = TcpStream::connect(t.local_addr()).await.unwrap();
    let mut buf = [0u8; 16];
    let n = timeout(WAIT, s.read(&mut buf)).await.unwrap().unwrap_or(0);
    assert_eq!(n, 0, "expected EOF from the idle timeout");
}

#[tokio::test]
async fn fault_rules_of_the_link_apply() {
    let (server_t, server_rx) = server().await;
    spawn_echo_server(server_t.clone(), server_rx);
    let faults = Faults::new();
    let (client_t, _rx) = SipTransport::bind(
        &faults,
        "sip:client",
        "127.0.0.1:0".parse().unwrap(),
        TransportOptions::default(),
    )
    .await
    .unwrap();
    let id = faults
        .add(netfault::FaultRule::new(
            "sip:client",
            netfault::FaultMode::Reject,
        ))
        .unwrap();
    let req = Bytes::from(register(client_t.local_addr(), rsip::Transport::Udp).to_string());
    let udp = client_t
        .send(&Source::udp(server_t.local_addr()), req.clone())
        .await;
    assert_eq!(
        udp.unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused
    );
    let tcp = client_t
        .send(&Source::tcp(server_t.local_addr()), req.clone())
        .await;
    assert_eq!(
        tcp.unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused
    );
    assert!(faults.remove(id));
    client_t
        .send(&Source::tcp(server_t.local_addr()), req)
        .await
        .unwrap();
}
