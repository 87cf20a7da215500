//! Forwarding details: streaming, headers, keep-alive pooling.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{client, config, get, TestUpstream};
use proxy::Sticky;

#[tokio::test]
async fn response_body_streams_without_buffering() {
    let up = TestUpstream::start("gws1").await;
    let p = proxy::start(config(&[&up], Sticky::None)).await.unwrap();
    let t = Instant::now();
    let mut r = client()
        .get(format!("http://{}/stream", p.local_addr()))
        .send()
        .await
        .unwrap();
    let first = r.chunk().await.unwrap().unwrap();
    assert_eq!(&first[..], b"gws1:first;");
    assert!(
        t.elapsed() < Duration::from_millis(1000),
        "first chunk arrives at once"
    );
    let mut rest = Vec::new();
    while let Some(c) = r.chunk().await.unwrap() {
        rest.extend_from_slice(&c);
    }
    assert_eq!(rest, b"second");
    assert!(t.elapsed() >= Duration::from_millis(1400));
}

#[tokio::test]
async fn adds_x_forwarded_for_and_strips_hop_by_hop() {
    let up = TestUpstream::start("gws1").await;
    let p = proxy::start(config(&[&up], Sticky::None)).await.unwrap();
    let r = client()
        .get(format!("http://{}/headers", p.local_addr()))
        .header("x-forwarded-for", "10.9.8.7")
        .header("proxy-connection", "keep-alive")
        .header("keep-alive", "timeout=5")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.text().await.unwrap(),
        "gws1|xff=10.9.8.7, 127.0.0.1|hop=false"
    );
}

#[tokio::test]
async fn upstream_connections_are_kept_alive() {
    let up = TestUpstream::start("gws1").await;
    let p = proxy::start(config(&[&up], Sticky::None)).await.unwrap();
    let c = client();
    for _ in 0..20 {
        assert_eq!(get(&c, p.local_addr(), "/", None).await.0, 200);
    }
    assert_eq!(up.hits.load(Ordering::SeqCst), 20);
    assert!(
        p.status()["upstream_connections"].as_u64().unwrap() <= 2,
        "{}",
        p.status()
    );
}

#[tokio::test]
async fn fault_layer_reject_on_the_link_counts_as_connect_error() {
    let a = TestUpstream::start("gws1").await;
    let b = TestUpstream::start("gws2").await;
    let p = proxy::start(config(&[&a, &b], Sticky::None)).await.unwrap();
    let rule: netfault::FaultRule = serde_json::from_value(serde_json::json!({
        "link": "http:proxy-test-gws1", "mode": "reject"
    }))
    .unwrap();
    p.faults().add(rule).unwrap();
    let c = client();
    for _ in 0..4 {
        let (status, who, _) = get(&c, p.local_addr(), "/", None).await;
        assert_eq!((status, who.as_str()), (200, "gws2"));
    }
    assert_eq!(a.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn websocket_upgrade_is_tunnelled() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let up = TestUpstream::start("gws1").await;
    let p = proxy::start(config(&[&up], Sticky::None)).await.unwrap();
    let s = tokio::net::TcpStream::connect(p.local_addr())
        .await
        .unwrap();
    let mut s = BufReader::new(s);
    s.get_mut()
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: gws\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .unwrap();
    let mut line = String::new();
    s.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("HTTP/1.1 101"), "{line}");
    let mut head = String::new();
    loop {
        line.clear();
        s.read_line(&mut line).await.unwrap();
        if line == "\r\n" {
            break;
        }
        head.push_str(&line.to_ascii_lowercase());
    }
    assert!(head.contains("upgrade: websocket"), "{head}");
    line.clear();
    s.read_line(&mut line).await.unwrap();
    assert_eq!(line, "hello from gws1\n");
    for msg in ["ping 1\n", "ping 2\n"] {
        s.get_mut().write_all(msg.as_bytes()).await.unwrap();
        line.clear();
        s.read_line(&mut line).await.unwrap();
        assert_eq!(line, msg);
    }
}

#[tokio::test]
async fn websocket_tunnel_closes_after_read_timeout_of_silence() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = TestUpstream::start("gws1").await;
    let mut cfg = config(&[&up], Sticky::None);
    cfg.proxy_read_timeout = Duration::from_millis(400);
    let p = proxy::start(cfg).await.unwrap();
    let mut s = tokio::net::TcpStream::connect(p.local_addr())
        .await
        .unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: gws\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .unwrap();
    let t = Instant::now();
    let mut all = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
            Err(_) => panic!("tunnel not closed"),
        }
    }
    assert!(String::from_utf8_lossy(&all).contains("hello from gws1"));
    assert!(t.elapsed() >= Duration::from_millis(380));
}

/// Sends `requests` one after another on one client connection (no client-side timers) and
/// returns each response's status and body, with the time the whole exchange took.
async fn exchange(
    proxy: std::net::SocketAddr,
    requests: Vec<hyper::Request<http_body_util::Full<bytes::Bytes>>>,
) -> (Vec<(u16, String)>, Duration) {
    use http_body_util::BodyExt;
    let t = tokio::time::Instant::now();
    let tcp = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut out = Vec::new();
    for req in requests {
        let resp = send.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        out.push((status, String::from_utf8_lossy(&body).into_owned()));
    }
    (out, t.elapsed())
}

/// A CometD `/meta/connect`: a POST the server holds `hold_ms` before answering.
fn meta_connect(hold_ms: u64) -> hyper::Request<http_body_util::Full<bytes::Bytes>> {
    hyper::Request::post(format!("/hold/{hold_ms}"))
        .header("host", "gws")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"[{}]",
        )))
        .unwrap()
}

/// The proxy of a CometD deployment: `proxy_read_timeout` above the server's hold (as nginx
/// needs), and client timers much shorter than the hold, which must not apply while it lasts.
fn long_poll_config(up: &TestUpstream) -> proxy::Config {
    let mut cfg = config(&[up], Sticky::None);
    cfg.proxy_read_timeout = Duration::from_secs(70);
    cfg.client_header_timeout = Duration::from_secs(10);
    cfg.client_body_timeout = Duration::from_secs(10);
    cfg
}

/// Two 60-second long-polls in a row on one keep-alive connection, as a CometD client sends
/// them. Every timer involved (proxy, upstream, client) is a tokio timer, so the paused clock
/// runs the full 60 s holds over real sockets without waiting for them; a timer that wrongly
/// applied during the hold (client header/body timeouts at 10 s) would fire in this test.
#[tokio::test(start_paused = true)]
async fn sixty_second_long_polls_pass_through_on_a_kept_alive_connection() {
    let up = TestUpstream::start("gws1").await;
    let p = proxy::start(long_poll_config(&up)).await.unwrap();
    let (out, took) = exchange(
        p.local_addr(),
        vec![meta_connect(60_000), meta_connect(60_000)],
    )
    .await;
    assert_eq!(
        out,
        vec![(200, "gws1:held".into()), (200, "gws1:held".into())]
    );
    assert!(took >= Duration::from_secs(120), "{took:?}");
    assert!(took < Duration::from_secs(121), "{took:?}");
    assert_eq!(p.status()["upstream_connections"], 1, "{}", p.status());
}

/// The same hold past `proxy_read_timeout` is cut at exactly that timeout with 504 (and the
/// POST, already sent, is not retried): the paused clock does make the proxy's timers fire.
#[tokio::test(start_paused = true)]
async fn long_poll_held_past_proxy_read_timeout_gets_504_at_the_timeout() {
    let up = TestUpstream::start("gws1").await;
    let p = proxy::start(long_poll_config(&up)).await.unwrap();
    let (out, took) = exchange(p.local_addr(), vec![meta_connect(80_000)]).await;
    assert_eq!(out[0].0, 504);
    assert!(took >= Duration::from_secs(70), "{took:?}");
    assert!(took < Duration::from_secs(71), "{took:?}");
    assert_eq!(up.hits.load(Ordering::SeqCst), 1);
}

/// The 60-second long-poll on the wall clock (what the paused-clock test stands for).
#[tokio::test]
#[ignore = "waits a real 60 s; sixty_second_long_polls_pass_through_on_a_kept_alive_connection covers it in virtual time"]
async fn sixty_second_long_poll_passes_through_in_real_time() {
    let up = TestUpstream::start("gws1").await;
    let p = proxy::start(long_poll_config(&up)).await.unwrap();
    let (out, took) = exchange(p.local_addr(), vec![meta_connect(60_000)]).await;
    assert_eq!(out, vec![(200, "gws1:held".into())]);
    assert!(took >= Duration::from_secs(60), "{took:?}");
}
