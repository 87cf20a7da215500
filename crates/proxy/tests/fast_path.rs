//! The fast path's own cases: a connection moving to the general path mid-way, pipelining,
//! `HEAD`, `Connection: close`, bodies read until close, upstreams that drop kept-alive
//! connections, and request bodies (`Content-Length`): passed on whole, 413, a slow body, no
//! replay of a POST already sent.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{client, config, dying_upstream, get, read_head, TestUpstream};
use proxy::{ServerConfig, Sticky};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Sends `bytes` on one connection and reads until the proxy closes it.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("the proxy closes after `Connection: close`")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn head_answer_has_no_body_and_close_is_honoured() {
    let up = TestUpstream::start("gws1").await;
    let p = proxy::start(config(&[&up], Sticky::None)).await.unwrap();
    let r = exchange(
        p.local_addr(),
        b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let (head, get) = r.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.1 200") && head.contains("content-length: 4"),
        "{r}"
    );
    assert!(get.starts_with("HTTP/1.1 200"), "{r}");
    assert!(
        get.to_ascii_lowercase().contains("connection: close"),
        "{r}"
    );
    assert!(get.ends_with("\r\n\r\ngws1"), "{r}");
}

/// An upstream that answers every request with `answer` and then closes the connection.
async fn one_shot_upstream(answer: &'static [&'static [u8]]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                if read_head(&mut s).await.is_none() {
                    return;
                }
                for part in answer {
                    let _ = s.write_all(part).await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            });
        }
    });
    addr
}

fn proxy_to(addr: SocketAddr) -> proxy::Config {
    let mut cfg = proxy::Config::new(
        "127.0.0.1:0".parse().unwrap(),
        vec![ServerConfig::new(addr.to_string())],
    );
    cfg.proxy_read_timeout = Duration::from_secs(5);
    cfg
}

#[tokio::test]
async fn body_read_until_close_reaches_the_client_chunked() {
    let addr = one_shot_upstream(&[
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart1",
        b"part2",
    ])
    .await;
    let p = proxy::start(proxy_to(addr)).await.unwrap();
    let r = exchange(
        p.local_addr(),
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.contains("transfer-encoding: chunked"), "{r}");
    assert!(r.ends_with("5\r\npart1\r\n5\r\npart2\r\n0\r\n\r\n"), "{r}");
    let c = client();
    assert_eq!(get(&c, p.local_addr(), "/", None).await.1, "part1part2");
}

#[tokio::test]
async fn upstream_closing_kept_alive_connections_costs_no_error() {
    // Keep-alive by HTTP/1.1 rules, yet every connection is closed after one answer.
    let addr = one_shot_upstream(&[b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]).await;
    let p = proxy::start(proxy_to(addr)).await.unwrap();
    let c = client();
    for _ in 0..5 {
        assert_eq!(
            get(&c, p.local_addr(), "/", None).await,
            (200, "ok".into(), None)
        );
        // Give the close time to arrive, and once not: both cases must work.
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    for _ in 0..5 {
        assert_eq!(get(&c, p.local_addr(), "/", None).await.0, 200);
    }
    assert_eq!(p.status()["upstreams"][0]["peers"][0]["failures"], 0);
}

/// GET, a POST with `body` (`framing` its framing field) and GET, pipelined on one connection:
/// three answers in that order.
async fn pipelined_get_post_get(framing: &str, body: &str) {
    let up = TestUpstream::start("gws1").await;
    let p = proxy::start(config(&[&up], Sticky::None)).await.unwrap();
    let requests = format!(
        "GET / HTTP/1.1\r\nHost: x\r\n\r\n\
         POST /echo HTTP/1.1\r\nHost: x\r\n{framing}\r\n\r\n{body}\
         GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let r = exchange(p.local_addr(), requests.as_bytes()).await;
    assert_eq!(r.matches("HTTP/1.1 200").count(), 3, "{r}");
    let first = r.find("\r\n\r\ngws1HTTP/1.1").expect("first answer");
    let second = r.find("gws1:5").expect("second answer");
    assert!(first < second && r.ends_with("gws1"), "{r}");
    assert_eq!(up.hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn pipelined_get_post_get_keep_their_order_on_the_fast_path() {
    pipelined_get_post_get("Content-Length: 5", "hello").await;
}

#[tokio::test]
async fn pipelined_requests_keep_their_order_when_a_chunked_body_moves_the_connection_to_hyper() {
    pipelined_get_post_get("Transfer-Encoding: chunked", "5\r\nhello\r\n0\r\n\r\n").await;
}

/// An upstream that answers each request with the request itself, as it got it (head and
/// `Content-Length` body), on a kept-alive connection.
async fn mirror_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = vec![0u8; 4096];
                loop {
                    let request_end = got.windows(4).position(|w| w == b"\r\n\r\n").map(|i| {
                        let head = String::from_utf8_lossy(&got[..i]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                        i + 4 + len
                    });
                    match request_end {
                        Some(end) if got.len() >= end => {
                            let answer = [
                                format!("HTTP/1.1 200 OK\r\nContent-Length: {end}\r\n\r\n")
                                    .as_bytes(),
                                &got[..end],
                            ]
                            .concat();
                            if s.write_all(&answer).await.is_err() {
                                return;
                            }
                            got.drain(..end);
                        }
                        _ => match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        },
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_post_body_reaches_the_upstream_whole_even_when_it_arrives_in_pieces() {
    let p = proxy::start(proxy_to(mirror_upstream().await))
        .await
        .unwrap();
    let body = format!("{{\"data\":\"{}\"}}", "x".repeat(190));
    let mut s = TcpStream::connect(p.local_addr()).await.unwrap();
    let head = format!(
        "POST /api/v2/me HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    // The head with part of the body, then the rest: the request only goes out whole.
    s.write_all(format!("{head}{}", &body[..50]).as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(&body.as_bytes()[50..]).await.unwrap();
    s.write_all(b"GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let r = String::from_utf8_lossy(&out);
    // The fast path keeps the client's field names as written (hyper's would be lower case).
    let sent = format!(
        "POST /api/v2/me HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         x-forwarded-for: 127.0.0.1\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    assert!(r.contains(&sent), "{r}");
    assert!(
        r.ends_with("GET /next HTTP/1.1\r\nHost: x\r\nx-forwarded-for: 127.0.0.1\r\n\r\n"),
        "{r}"
    );
}

#[tokio::test]
async fn a_body_over_client_max_body_size_gets_413_and_never_reaches_the_upstream() {
    let up = TestUpstream::start("gws1").await;
    let mut cfg = config(&[&up], Sticky::None);
    cfg.client_max_body_size = 10;
    let p = proxy::start(cfg).await.unwrap();
    let r = exchange(
        p.local_addr(),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n01234567890",
    )
    .await;
    let second = r.split("\r\n\r\ngws1").nth(1).unwrap_or_default();
    assert!(second.starts_with("HTTP/1.1 413"), "{r}");
    assert_eq!(up.hits.load(Ordering::SeqCst), 1);
    let r = exchange(
        p.local_addr(),
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\n0123456789",
    )
    .await;
    assert!(
        r.starts_with("HTTP/1.1 200") && r.ends_with("gws1:10"),
        "{r}"
    );
}

#[tokio::test]
async fn a_slow_body_closes_the_connection_without_an_answer_after_client_body_timeout() {
    let up = TestUpstream::start("gws1").await;
    let mut cfg = config(&[&up], Sticky::None);
    cfg.client_body_timeout = Duration::from_millis(300);
    cfg.client_header_timeout = Duration::from_secs(10);
    let p = proxy::start(cfg).await.unwrap();
    let mut s = TcpStream::connect(p.local_addr()).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
        .await
        .unwrap();
    let t = std::time::Instant::now();
    // Bytes keep coming, each within the timeout: the timeout is between two reads.
    for b in ["cd", "ef"] {
        tokio::time::sleep(Duration::from_millis(200)).await;
        s.write_all(b.as_bytes()).await.unwrap();
    }
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("closed by the proxy")
        .unwrap();
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(690), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(up.hits.load(Ordering::SeqCst), 0);
}

/// A proxy whose first peer (round robin starts there) reads a request and closes without
/// answering, and whose second peer answers.
async fn dying_first() -> (proxy::ProxyHandle, TestUpstream, Arc<AtomicU64>) {
    let good = TestUpstream::start("gws2").await;
    let (dying, seen) = dying_upstream().await;
    let mut cfg = config(&[&good], Sticky::None);
    cfg.upstreams[0]
        .servers
        .insert(0, ServerConfig::new(dying.to_string()));
    (proxy::start(cfg).await.unwrap(), good, seen)
}

#[tokio::test]
async fn a_post_the_upstream_died_on_is_not_replayed_but_a_get_is() {
    let (p, good, seen) = dying_first().await;
    let r = exchange(
        p.local_addr(),
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 502"), "{r}");
    assert_eq!(
        (
            seen.load(Ordering::SeqCst),
            good.hits.load(Ordering::SeqCst)
        ),
        (1, 0)
    );
    let failed: Vec<_> = p
        .journal()
        .since(0, 1000)
        .iter()
        .filter(|e| e.kind == "upstream.failed")
        .map(|e| e.detail())
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["request_sent"], true, "{failed:?}");

    // A GET the same peer dies on is replayed on the next one.
    let (p, good, seen) = dying_first().await;
    let r = exchange(
        p.local_addr(),
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200") && r.ends_with("gws2"), "{r}");
    assert_eq!(
        (
            seen.load(Ordering::SeqCst),
            good.hits.load(Ordering::SeqCst)
        ),
        (1, 1)
    );
}

#[tokio::test]
async fn learn_stickiness_learns_the_session_a_post_answer_sets() {
    let a = TestUpstream::start("gws1").await;
    let b = TestUpstream::start("gws2").await;
    let p = proxy::start(config(&[&a, &b], Sticky::Learn))
        .await
        .unwrap();
    let r = exchange(
        p.local_addr(),
        b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    )
    .await;
    let lower = r.to_ascii_lowercase();
    let session = lower
        .split("set-cookie: jsessionid=")
        .nth(1)
        .and_then(|v| v.split(';').next())
        .expect("a session")
        .to_string();
    let owner = session.split('-').next().unwrap().to_string();
    let c = client();
    for _ in 0..4 {
        let cookie = format!("JSESSIONID={session}");
        let (status, who, _) = get(&c, p.local_addr(), "/", Some(&cookie)).await;
        assert_eq!((status, who.as_str()), (200, owner.as_str()));
    }
}
