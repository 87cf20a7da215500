//! Test upstreams: tiny hyper servers that answer with their own name, set `JSESSIONID` on
//! `/login`, stream on `/stream`, hold `/hold/{ms}` that long before answering (a CometD
//! long-poll), and can be killed (listener and connections dropped) and restarted on the same
//! port.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use proxy::{Config, ServerConfig, Sticky};

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct TestUpstream {
    pub name: String,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicU64>,
    task: Option<JoinHandle<()>>,
}

impl TestUpstream {
    pub async fn start(name: &str) -> Self {
        let mut u = TestUpstream {
            name: name.to_string(),
            addr: "127.0.0.1:0".parse().unwrap(),
            hits: Arc::new(AtomicU64::new(0)),
            task: None,
        };
        u.restart().await;
        u
    }

    /// Drops the listener and every connection: new connections are refused.
    pub fn kill(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    /// Listens again on the same address.
    pub async fn restart(&mut self) {
        self.kill();
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("rebind {}: {e}", self.addr),
            }
        };
        self.addr = listener.local_addr().unwrap();
        let name = self.name.clone();
        let hits = self.hits.clone();
        self.task = Some(tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            let sessions = Arc::new(AtomicU64::new(0));
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (name, hits, sessions) = (name.clone(), hits.clone(), sessions.clone());
                conns.spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let (name, hits, sessions) =
                                (name.clone(), hits.clone(), sessions.clone());
                            async move {
                                hits.fetch_add(1, Ordering::SeqCst);
                                Ok::<_, Infallible>(answer(&name, &sessions, req).await)
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        }));
    }

    pub fn server(&self) -> ServerConfig {
        let mut s = ServerConfig::new(self.addr.to_string());
        s.name = Some(self.name.clone());
        s
    }
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        self.kill();
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn answer(
    name: &str,
    sessions: &AtomicU64,
    mut req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    if req.uri().path() == "/ws" {
        // Echo server behind an Upgrade: the first bytes sent are the node's name.
        let on = hyper::upgrade::on(&mut req);
        let name = name.to_string();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let Ok(up) = on.await else { return };
            let mut io = TokioIo::new(up);
            let _ = io
                .write_all(format!("hello from {name}\n").as_bytes())
                .await;
            let mut buf = [0u8; 1024];
            loop {
                match io.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if io.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let mut resp = Response::new(Full::new(Bytes::new()).boxed());
        *resp.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
        resp.headers_mut()
            .insert("upgrade", "websocket".parse().unwrap());
        resp.headers_mut()
            .insert("connection", "upgrade".parse().unwrap());
        return resp;
    }
    let path = req.uri().path().to_string();
    let xff = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let hop =
        req.headers().contains_key("proxy-connection") || req.headers().contains_key("keep-alive");
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut resp = match path.as_str() {
        "/stream" => {
            // One chunk now, the next one after 1.5 s.
            let name = name.to_string();
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(2);
            tokio::spawn(async move {
                let _ = tx
                    .send(Ok(Frame::data(Bytes::from(format!("{name}:first;")))))
                    .await;
                tokio::time::sleep(Duration::from_millis(1500)).await;
                let _ = tx
                    .send(Ok(Frame::data(Bytes::from_static(b"second"))))
                    .await;
            });
            let stream = futures_stream(rx);
            Response::new(StreamBody::new(stream).boxed())
        }
        hold if hold.starts_with("/hold/") => {
            let ms = hold["/hold/".len()..].parse().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Response::new(Full::new(Bytes::from(format!("{name}:held"))).boxed())
        }
        "/echo" => Response::new(Full::new(Bytes::from(format!("{name}:{}", body.len()))).boxed()),
        "/headers" => {
            Response::new(Full::new(Bytes::from(format!("{name}|xff={xff}|hop={hop}"))).boxed())
        }
        _ => Response::new(Full::new(Bytes::from(name.to_string())).boxed()),
    };
    if path == "/login" {
        let n = sessions.fetch_add(1, Ordering::SeqCst);
        let cookie = format!("JSESSIONID={name}-{n}; Path=/; HttpOnly");
        resp.headers_mut()
            .insert("set-cookie", cookie.parse().unwrap());
    }
    resp
}

/// An mpsc receiver as a `Stream`.
fn futures_stream<T>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A proxy configuration in front of `ups` with fast test timers.
pub fn config(ups: &[&TestUpstream], sticky: Sticky) -> Config {
    let mut cfg = Config::new(
        "127.0.0.1:0".parse().unwrap(),
        ups.iter()
            .map(|u| {
                let mut s = u.server();
                s.fail_timeout = Duration::from_secs(1);
                s
            })
            .collect(),
    );
    cfg.name = "proxy-test".into();
    cfg.proxy_connect_timeout = Duration::from_secs(1);
    cfg.proxy_read_timeout = Duration::from_secs(5);
    cfg.upstreams[0].sticky = sticky;
    cfg
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// GET `path` through the proxy with an optional cookie; returns (status, body, set-cookie).
pub async fn get(
    c: &reqwest::Client,
    proxy: SocketAddr,
    path: &str,
    cookie: Option<&str>,
) -> (u16, String, Option<String>) {
    let mut rb = c.get(format!("http://{proxy}{path}"));
    if let Some(ck) = cookie {
        rb = rb.header("cookie", ck);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    let set_cookie = resp
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string());
    (status, resp.text().await.unwrap(), set_cookie)
}

/// Reads from `s` up to the end of a request head (and whatever came with it); `None` if the
/// connection ends first.
pub async fn read_head(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    Some(got)
}

/// An upstream that reads a request and then closes the connection without answering; with
/// the number of requests it read.
pub async fn dying_upstream() -> (SocketAddr, Arc<AtomicU64>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    let s2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            let seen = s2.clone();
            tokio::spawn(async move {
                if read_head(&mut s).await.is_none() {
                    return;
                }
                seen.fetch_add(1, Ordering::SeqCst);
                let _ = s.set_zero_linger();
                drop(s);
            });
        }
    });
    (addr, seen)
}
