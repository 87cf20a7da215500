//! Bad clients get nginx's status codes and never stall the others.

mod common;

use std::time::Duration;

use common::{client, config, get, TestUpstream};
use proxy::Sticky;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn malformed_request_gets_400() {
    let up = TestUpstream::start("gws1").await;
    let p = proxy::start(config(&[&up], Sticky::None)).await.unwrap();
    let r = raw(p.local_addr(), b"GARBAGE\x01 / HTTP/9.9\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
}

#[tokio::test]
async fn oversized_header_gets_431() {
    let up = TestUpstream::start("gws1").await;
    let p = proxy::start(config(&[&up], Sticky::None)).await.unwrap();
    let mut req = b"GET / HTTP/1.1\r\nHost: x\r\nCookie: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 40 * 1024));
    req.extend_from_slice(b"\r\n\r\n");
    let r = raw(p.local_addr(), &req).await;
    assert!(r.starts_with("HTTP/1.1 431"), "{r}");
}

/// Opens a connection, sends `partial` (an unfinished request) and checks what nginx does to
/// such a client: while it dawdles others are served, and after the timeout (300 ms here) its
/// connection is closed without a response (nginx logs 408 and sends nothing). The request
/// never reaches the upstream.
async fn slow_client_is_closed_silently(partial: &[u8], configure: fn(&mut proxy::Config)) {
    let up = TestUpstream::start("gws1").await;
    let mut cfg = config(&[&up], Sticky::None);
    configure(&mut cfg);
    let p = proxy::start(cfg).await.unwrap();
    let t = std::time::Instant::now();
    let mut slow = TcpStream::connect(p.local_addr()).await.unwrap();
    slow.write_all(partial).await.unwrap();
    let c = client();
    for _ in 0..3 {
        assert_eq!(get(&c, p.local_addr(), "/", None).await.0, 200);
    }
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf))
        .await
        .expect("slow client closed")
        .expect("closed, not reset");
    assert!(
        buf.is_empty(),
        "nothing sent: {}",
        String::from_utf8_lossy(&buf)
    );
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(290), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(up.hits.load(std::sync::atomic::Ordering::SeqCst), 3);
}

#[tokio::test]
async fn slow_loris_header_is_closed_after_client_header_timeout_without_stalling_others() {
    slow_client_is_closed_silently(b"GET / HTTP/1.1\r\nHost: x\r\n", |cfg| {
        cfg.client_header_timeout = Duration::from_millis(300)
    })
    .await;
}

#[tokio::test]
async fn slow_loris_body_is_closed_after_client_body_timeout_without_stalling_others() {
    slow_client_is_closed_silently(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab",
        |cfg| cfg.client_body_timeout = Duration::from_millis(300),
    )
    .await;
}

#[tokio::test]
async fn binary_prints_its_resolved_config() {
    let dir = std::env::temp_dir().join(format!("proxy-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("proxy.toml");
    std::fs::write(
        &file,
        "name = \"proxy-dc1\"\nlisten = \"127.0.0.1:0\"\n[[upstream]]\nname = \"gws\"\nsticky = \"learn\"\n\
         [[upstream.server]]\naddress = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_proxy"))
        .arg("--config")
        .arg(&file)
        .arg("--print-config")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("sticky = \"learn\""), "{text}");
    assert!(text.contains("fail_timeout = \"10s\""), "{text}");
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_proxy"))
        .args(["--config", "/nonexistent/proxy.toml"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}
