//! The fault layer over real loopback sockets.

use std::net::SocketAddr;
use std::time::Duration;

use netfault::{tcp, FaultMode, FaultRule, FaultUdpSocket, Faults};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout, Instant};

const LINK: &str = "tlib:gws1-ss1";

/// A plain echo server (the peer without a fault layer) and a client under `faults`.
async fn echo_pair(faults: &Faults) -> (netfault::FaultStream, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let stream = tcp::connect(faults, LINK, Some("127.0.0.1".parse().unwrap()), addr)
        .await
        .unwrap();
    (stream, addr)
}

async fn roundtrip(s: &mut netfault::FaultStream, msg: &[u8]) -> Vec<u8> {
    s.write_all(msg).await.unwrap();
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got).await.unwrap();
    got
}

#[tokio::test]
async fn clear_link_passes_bytes() {
    let faults = Faults::new();
    let (mut s, _) = echo_pair(&faults).await;
    assert_eq!(roundtrip(&mut s, b"hello").await, b"hello");
    assert_eq!(s.link(), LINK);
}

#[tokio::test]
async fn delay_holds_both_directions() {
    let faults = Faults::new();
    let (mut s, _) = echo_pair(&faults).await;
    faults.add(FaultRule::delay("tlib:*", 60)).unwrap();
    let start = Instant::now();
    assert_eq!(roundtrip(&mut s, b"ping").await, b"ping");
    // 60 ms out and 60 ms back.
    assert!(
        start.elapsed() >= Duration::from_millis(120),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn reject_resets_open_connection_and_refuses_new_ones() {
    let faults = Faults::new();
    let (mut s, addr) = echo_pair(&faults).await;
    assert_eq!(roundtrip(&mut s, b"a").await, b"a");
    faults.add(FaultRule::new(LINK, FaultMode::Reject)).unwrap();
    let mut buf = [0u8; 8];
    let n = timeout(Duration::from_secs(2), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "the application sees its connection end");
    let err = tcp::connect(&faults, LINK, None, addr).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    assert_eq!(
        faults
            .stats()
            .reset_connections
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn reject_on_accept_side_resets_the_peer() {
    let faults = Faults::new();
    faults
        .add(FaultRule::new("sip:*", FaultMode::Reject))
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let f = faults.clone();
    tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        assert!(tcp::accept_stream(&f, "sip:ss1", s).is_err());
    });
    let mut peer = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 4];
    let r = timeout(Duration::from_secs(2), peer.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(r, Ok(0) | Err(_)));
}

#[tokio::test]
async fn drop_is_silent_and_heal_delivers_what_waited() {
    let faults = Faults::new();
    let (mut s, _) = echo_pair(&faults).await;
    let id = faults
        .add(FaultRule::new("tlib:*", FaultMode::Drop))
        .unwrap();
    s.write_all(b"lost?").await.unwrap();
    let mut buf = [0u8; 5];
    assert!(
        timeout(Duration::from_millis(200), s.read_exact(&mut buf))
            .await
            .is_err(),
        "nothing crosses a blackhole"
    );
    faults.remove(id);
    timeout(Duration::from_secs(2), s.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"lost?");
}

#[tokio::test]
async fn connect_into_blackhole_waits_for_heal() {
    let faults = Faults::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    faults.add(FaultRule::new(LINK, FaultMode::Drop)).unwrap();
    let pending = timeout(
        Duration::from_millis(150),
        tcp::connect(&faults, LINK, None, addr),
    )
    .await;
    assert!(
        pending.is_err(),
        "connect hangs like a SYN into a blackhole"
    );
    faults.clear();
    timeout(
        Duration::from_secs(2),
        tcp::connect(&faults, LINK, None, addr),
    )
    .await
    .unwrap()
    .unwrap();
}

#[tokio::test]
async fn crash_resets_every_connection() {
    let faults = Faults::new();
    let (mut a, _) = echo_pair(&faults).await;
    let (mut b, _) = echo_pair(&faults).await;
    faults.crash();
    let mut buf = [0u8; 1];
    for s in [&mut a, &mut b] {
        let n = timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n, 0);
    }
}

/// A client under `faults` and the accepted server side of its connection (no fault layer).
async fn client_and_server(faults: &Faults) -> (netfault::FaultStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, accepted) =
        tokio::join!(tcp::connect(faults, LINK, None, addr), listener.accept());
    (client.unwrap(), accepted.unwrap().0)
}

#[tokio::test]
async fn reject_resets_a_connection_its_application_is_not_using() {
    let faults = Faults::new();
    let (_client, mut server) = client_and_server(&faults).await;
    faults.add(FaultRule::new(LINK, FaultMode::Reject)).unwrap();
    // The application never touches `_client`: the peer still sees the reset at once.
    let mut buf = [0u8; 4];
    let r = timeout(Duration::from_secs(2), server.read(&mut buf))
        .await
        .expect("peer sees the connection end");
    assert_eq!(
        r.map_err(|e| e.kind()).unwrap_err(),
        std::io::ErrorKind::ConnectionReset
    );
}

#[tokio::test]
async fn bytes_received_before_a_drop_rule_are_still_delivered() {
    let faults = Faults::new();
    let (mut client, mut server) = client_and_server(&faults).await;
    server.write_all(b"early").await.unwrap();
    // Loopback delivers during the write; give the client's runtime a turn anyway.
    tokio::task::yield_now().await;
    let id = faults.add(FaultRule::new(LINK, FaultMode::Drop)).unwrap();
    let mut buf = [0u8; 5];
    timeout(Duration::from_secs(2), client.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"early");
    // What comes after the rule does not cross until it goes.
    server.write_all(b"later").await.unwrap();
    assert!(
        timeout(Duration::from_millis(200), client.read_exact(&mut buf))
            .await
            .is_err()
    );
    faults.remove(id);
    timeout(Duration::from_secs(2), client.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"later");
}

#[tokio::test]
async fn a_close_right_after_a_drop_rule_waits_in_the_blackhole() {
    let faults = Faults::new();
    let (client, mut server) = client_and_server(&faults).await;
    let id = faults.add(FaultRule::new(LINK, FaultMode::Drop)).unwrap();
    // Closed before anything else ran: the FIN must still not cross the blackhole.
    drop(client);
    let mut buf = [0u8; 4];
    assert!(
        timeout(Duration::from_millis(200), server.read(&mut buf))
            .await
            .is_err(),
        "the peer sees nothing"
    );
    faults.remove(id);
    let n = timeout(Duration::from_secs(2), server.read(&mut buf))
        .await
        .expect("the close arrives after the heal")
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn rules_for_other_links_or_peers_leave_a_connection_alone() {
    let faults = Faults::new();
    let (mut s, _) = echo_pair(&faults).await;
    faults
        .add(FaultRule::new("sip:*", FaultMode::Reject))
        .unwrap();
    let elsewhere: netfault::PeerFilter = "10.0.0.0/8".parse().unwrap();
    faults
        .add(FaultRule::new(LINK, FaultMode::Drop).with_peer(elsewhere))
        .unwrap();
    assert_eq!(roundtrip(&mut s, b"still here").await, b"still here");
    assert_eq!(
        faults
            .stats()
            .reset_connections
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[tokio::test]
async fn udp_drop_delay_loss_and_reject() {
    let faults = Faults::new();
    let a = FaultUdpSocket::bind(&faults, "sip:ss1", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let b = FaultUdpSocket::bind(&Faults::new(), "peer", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    let mut buf = [0u8; 64];

    b.send_to(b"one", a_addr).await.unwrap();
    let (n, from) = a.recv_from(&mut buf).await.unwrap();
    assert_eq!((&buf[..n], from), (&b"one"[..], b_addr));

    // Drop: nothing in either direction.
    let id = faults
        .add(FaultRule::new("sip:*", FaultMode::Drop))
        .unwrap();
    b.send_to(b"two", a_addr).await.unwrap();
    a.send_to(b"out", b_addr).await.unwrap();
    assert!(timeout(Duration::from_millis(100), a.recv_from(&mut buf))
        .await
        .is_err());
    assert!(timeout(Duration::from_millis(100), b.recv_from(&mut buf))
        .await
        .is_err());
    faults.remove(id);

    // Delay applies to received datagrams, order kept.
    let id = faults.add(FaultRule::delay("sip:ss1", 50)).unwrap();
    let start = Instant::now();
    b.send_to(b"d1", a_addr).await.unwrap();
    b.send_to(b"d2", a_addr).await.unwrap();
    let (n, _) = a.recv_from(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"d1");
    let (n, _) = a.recv_from(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"d2");
    assert!(start.elapsed() >= Duration::from_millis(50));
    // And to sent ones.
    let start = Instant::now();
    a.send_to(b"late", b_addr).await.unwrap();
    let (n, _) = b.recv_from(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"late");
    assert!(start.elapsed() >= Duration::from_millis(50));
    faults.remove(id);

    // Loss 1.0 loses all; reject makes sends fail like ICMP unreachable.
    let id = faults.add(FaultRule::loss("sip:ss1", 1.0)).unwrap();
    b.send_to(b"gone", a_addr).await.unwrap();
    assert!(timeout(Duration::from_millis(100), a.recv_from(&mut buf))
        .await
        .is_err());
    faults.remove(id);
    faults
        .add(FaultRule::new("sip:ss1", FaultMode::Reject))
        .unwrap();
    let err = a.send_to(b"x", b_addr).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
}
