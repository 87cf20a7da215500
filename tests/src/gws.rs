//! Helpers for the GWS tests: a gws-mock node in front of a SIP node, and [`Desktop`], a minimal
//! WWE-like client (REST with its `JSESSIONID`, CometD long-polling with its `BAYEUX_BROWSER`).

use std::collections::VecDeque;
use std::net::SocketAddr;

use gws_mock::{GwsConfig, GwsNode, SipNodeRef};
use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sipserver_mock::SipNode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::PATIENCE;

/// A gws-mock node on 127.0.0.1 with free ports and the fast profile, connected to `sip`.
pub async fn start_gws(name: &str, sip: &SipNode, tune: impl FnOnce(&mut GwsConfig)) -> GwsNode {
    let mut config = GwsConfig::new(name, "dc1", "127.0.0.1".parse().unwrap())
        .with_ephemeral_ports()
        .with_fast_timers();
    config.sip_nodes = vec![SipNodeRef {
        name: sip.name().to_owned(),
        tlib: sip.tlib_addr(),
    }];
    tune(&mut config);
    let node = gws_mock::start(config).await.expect("gws node starts");
    wait_link_up(&node).await;
    node
}

/// Waits until the node's T-Lib link is up.
pub async fn wait_link_up(node: &GwsNode) {
    let up = node
        .journal()
        .wait_for(0, PATIENCE, |e| e.kind == "tlib.link_up")
        .await;
    assert!(up.is_some(), "T-Lib link of {} not up", node.name());
}

/// One agent desktop.
pub struct Desktop {
    http: reqwest::Client,
    base: String,
    /// The `JSESSIONID`.
    pub session: Option<String>,
    browser: Option<String>,
    /// The CometD client id.
    pub client_id: Option<String>,
    /// Messages delivered by a connect but not yet looked at by [`Desktop::wait_for`].
    unread: VecDeque<Value>,
    /// Where connects are POSTed: `/api/v2/notifications`, or `…/connect` as the CometD JS
    /// client sends them.
    pub connect_path: String,
    /// Basic credentials sent on every request, as the .NET GWS client does.
    pub basic: Option<(String, String)>,
}

fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

impl Desktop {
    pub fn new(node: &GwsNode) -> Desktop {
        Desktop::at(format!("http://{}", node.http_addr()))
    }

    /// A desktop talking to `base` (`http://host:port`: a GWS node or a proxy in front of some).
    pub fn at(base: String) -> Desktop {
        Desktop {
            http: reqwest::Client::new(),
            base,
            session: None,
            browser: None,
            client_id: None,
            unread: VecDeque::new(),
            connect_path: "/api/v2/notifications".into(),
            basic: None,
        }
    }

    /// A reloaded browser page: no cookies, no CometD client, nothing unread.
    pub fn reload(&mut self) {
        self.session = None;
        self.browser = None;
        self.client_id = None;
        self.unread.clear();
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(COOKIE, self.cookies());
        match &self.basic {
            Some((user, password)) => r.basic_auth(user, Some(password)),
            None => r,
        }
    }

    fn cookies(&self) -> String {
        let mut c = Vec::new();
        if let Some(s) = &self.session {
            c.push(format!("JSESSIONID={s}"));
        }
        if let Some(b) = &self.browser {
            c.push(format!("BAYEUX_BROWSER={b}"));
        }
        c.join("; ")
    }

    async fn finish(&mut self, resp: reqwest::Response) -> (StatusCode, Value) {
        if let Some(s) = set_cookie(&resp, "JSESSIONID") {
            self.session = Some(s);
        }
        if let Some(b) = set_cookie(&resp, "BAYEUX_BROWSER") {
            self.browser = Some(b);
        }
        let status = resp.status();
        let body = resp.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// `GET /api/v2/me` with Basic credentials: the login probe that opens the session.
    pub async fn login(&mut self, user: &str, password: &str) -> (StatusCode, Value) {
        self.login_at(
            "/api/v2/me?subresources=features,devices,channels",
            user,
            password,
        )
        .await
    }

    /// A GET of `path` with Basic credentials (and no cookie): opens a session.
    pub async fn login_at(
        &mut self,
        path: &str,
        user: &str,
        password: &str,
    ) -> (StatusCode, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .basic_auth(user, Some(password))
            .send()
            .await
            .expect("GWS answers");
        self.finish(resp).await
    }

    pub async fn get(&mut self, path: &str) -> (StatusCode, Value) {
        let resp = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .expect("GWS answers");
        self.finish(resp).await
    }

    /// POSTs raw bytes as JSON.
    pub async fn post_raw(&mut self, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
        let resp = self
            .request(reqwest::Method::POST, path)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("GWS answers");
        self.finish(resp).await
    }

    pub async fn post(&mut self, path: &str, body: Value) -> (StatusCode, Value) {
        self.post_raw(path, body.to_string().into_bytes()).await
    }

    /// `POST /api/v2/me StartContactCenterSession {channels: [voice]}`.
    pub async fn start_contact_center_session(&mut self) -> (StatusCode, Value) {
        self.post(
            "/api/v2/me",
            json!({"operationName": "StartContactCenterSession", "channels": ["voice"]}),
        )
        .await
    }

    /// StartContactCenterSession that must succeed (statusCode 0), then the device Ready on
    /// CometD (`what` names the step in a failure).
    pub async fn start_session_until_ready(&mut self, what: &str) {
        let (status, body) = self.start_contact_center_session().await;
        assert_eq!(
            (status, body["statusCode"].clone()),
            (StatusCode::OK, json!(0)),
            "{what}: {body}"
        );
        self.wait_for(what, device_is("Active", Some("Ready")))
            .await;
    }

    /// One CometD batch; returns the reply array.
    pub async fn bayeux(&mut self, batch: Value) -> Vec<Value> {
        self.bayeux_at("/api/v2/notifications", batch).await
    }

    /// One CometD batch POSTed to `path` (the URL forms CometD clients use); returns the replies.
    pub async fn bayeux_at(&mut self, path: &str, batch: Value) -> Vec<Value> {
        let (status, body) = self.post(path, batch).await;
        assert_eq!(status, StatusCode::OK, "POST {path}: {body}");
        body.as_array().cloned().unwrap_or_default()
    }

    /// Handshake, subscribe to `channels` and the first connect (returned at once).
    pub async fn cometd_subscribe(&mut self, channels: &[&str]) {
        let replies = self
            .bayeux(
                json!([{"id": "1", "channel": "/meta/handshake", "version": "1.0",
                             "supportedConnectionTypes": ["long-polling"]}]),
            )
            .await;
        assert_eq!(replies[0]["successful"], true, "{replies:?}");
        let id = replies[0]["clientId"]
            .as_str()
            .expect("clientId")
            .to_owned();
        let mut batch: Vec<Value> = channels
            .iter()
            .map(|c| json!({"channel": "/meta/subscribe", "clientId": id, "subscription": c}))
            .collect();
        batch.push(json!({"channel": "/meta/connect", "clientId": id,
                          "connectionType": "long-polling", "advice": {"timeout": 0}}));
        let replies = self.bayeux(Value::Array(batch)).await;
        assert!(
            replies.iter().all(|r| r["successful"] != false),
            "{replies:?}"
        );
        self.client_id = Some(id);
    }

    /// One long-poll `/meta/connect` (POSTed to [`Desktop::connect_path`]): the messages it
    /// delivered and its own reply.
    pub async fn connect(&mut self) -> (Vec<Value>, Value) {
        let id = self.client_id.clone().expect("handshaken");
        let path = self.connect_path.clone();
        let mut replies = self
            .bayeux_at(
                &path,
                json!([{"channel": "/meta/connect", "clientId": id,
                        "connectionType": "long-polling"}]),
            )
            .await;
        let reply = replies.pop().unwrap_or(Value::Null);
        (replies, reply)
    }

    /// Long-polls until a delivered message's `data` matches `pred`; returns that `data`.
    pub async fn wait_for(&mut self, what: &str, mut pred: impl FnMut(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PATIENCE;
        let mut seen = Vec::new();
        loop {
            while let Some(m) = self.unread.pop_front() {
                if pred(&m["data"]) {
                    return m["data"].clone();
                }
                seen.push(m["data"]["messageType"].clone());
            }
            if Instant::now() >= deadline {
                break;
            }
            let (messages, reply) = self.connect().await;
            assert_eq!(reply["successful"], true, "connect failed: {reply}");
            self.unread.extend(messages);
        }
        panic!("no {what} within {PATIENCE:?}; saw {seen:?}")
    }
}

/// A `DeviceStateChangeMessage` predicate: device state and (if given) `userState.state`.
pub fn device_is(
    device_state: &'static str,
    user_state: Option<&'static str>,
) -> impl FnMut(&Value) -> bool {
    move |d| {
        let dev = &d["devices"][0];
        d["messageType"] == "DeviceStateChangeMessage"
            && dev["deviceState"] == device_state
            && user_state.is_none_or(|u| dev["userState"]["state"] == u)
    }
}

/// A `CallStateChangeMessage` predicate on `call.state`.
pub fn call_is(state: &'static str) -> impl FnMut(&Value) -> bool {
    move |d| d["messageType"] == "CallStateChangeMessage" && d["call"]["state"] == state
}

/// Whether a real CometD client library (Python `aiocometd-ng`) is installed. CI sets
/// `DRLAB_REQUIRE_COMETD=1` so a missing library fails there.
pub fn cometd_client_available() -> bool {
    nodekit::peer::available(
        nodekit::peer::runs("python3", &["-c", "import aiocometd_ng"]),
        "the CometD client aiocometd-ng",
        "DRLAB_REQUIRE_COMETD",
        "pip install aiocometd-ng",
    )
}

/// Sends `request` (a whole HTTP/1.1 request) over a bare TCP connection to `addr` and returns
/// the answer's status and head (status line and headers, lower-cased), not waiting for a body.
pub async fn raw_http_head(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("TCP connect");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("request sent");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut byte))
            .await
            .expect("answered in time")
            .expect("answer read");
        assert!(n == 1, "connection closed inside the head: {head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP status line: {head}"));
    (status, head)
}

/// A WebSocket upgrade request (`GET path` with `Upgrade: websocket` and the `extra` headers,
/// e.g. `Origin`) sent to `addr`: the answer's status and head, as [`raw_http_head`].
pub async fn websocket_upgrade(
    addr: SocketAddr,
    path: &str,
    extra: &[(&str, &str)],
) -> (u16, String) {
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (name, value) in extra {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    raw_http_head(addr, &request).await
}

/// The status of [`websocket_upgrade`].
pub async fn websocket_upgrade_status(addr: SocketAddr, path: &str, extra: &[(&str, &str)]) -> u16 {
    websocket_upgrade(addr, path, extra).await.0
}
