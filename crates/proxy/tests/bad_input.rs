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

#[tokio::test]
async fn slow_loris_is_closed_after_client_header_timeout_without_stalling_others() {
    let up = TestUpstream::start("gws1").await;
    let mut cfg = config(&[&up], Sticky::None);
    cfg.client_header_timeout = Duration::from_millis(300);
    let p = proxy::start(cfg).await.unwrap();
    let mut slow = TcpStream::connect(p.local_addr()).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Others are served meanwhile.
    assert_eq!(get(&client(), p.local_addr(), "/", None).await.0, 200);
    let t = std::time::Instant::now();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf))
        .await
        .expect("slow client closed");
    assert!(t.elapsed() < Duration::from_secs(2));
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
