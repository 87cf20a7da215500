//! Helpers for the GWS tests: a gws-mock node in front of a SIP node, and [`Desktop`], a minimal
//! WWE-like client (REST with its `JSESSIONID`, CometD long-polling with its `BAYEUX_BROWSER`).

use std::collections::VecDeque;

use gws_mock::{GwsConfig, GwsNode, SipNodeRef};
use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sipserver_mock::SipNode;
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
        Desktop {
            http: reqwest::Client::new(),
            base: format!("http://{}", node.http_addr()),
            session: None,
            browser: None,
            client_id: None,
            unread: VecDeque::new(),
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
        let resp = self
            .http
            .get(format!(
                "{}/api/v2/me?subresources=features,devices,channels",
                self.base
            ))
            .basic_auth(user, Some(password))
            .send()
            .await
            .expect("GWS answers");
        self.finish(resp).await
    }

    pub async fn get(&mut self, path: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, self.cookies())
            .send()
            .await
            .expect("GWS answers");
        self.finish(resp).await
    }

    /// POSTs raw bytes as JSON.
    pub async fn post_raw(&mut self, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, self.cookies())
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

    /// One CometD batch; returns the reply array.
    pub async fn bayeux(&mut self, batch: Value) -> Vec<Value> {
        let (status, body) = self.post("/api/v2/notifications", batch).await;
        assert_eq!(status, StatusCode::OK, "{body}");
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

    /// One long-poll `/meta/connect`: the messages it delivered and its own reply.
    pub async fn connect(&mut self) -> (Vec<Value>, Value) {
        let id = self.client_id.clone().expect("handshaken");
        let mut replies = self
            .bayeux(json!([{"channel": "/meta/connect", "clientId": id,
                             "connectionType": "long-polling"}]))
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
