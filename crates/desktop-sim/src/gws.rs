//! One desktop's side of the wire: GWS API v2 REST calls and CometD long-polling over HTTP/1.1,
//! with the desktop's own cookie jar (domain.md §3.1–§3.4). Every exchange is bounded in time
//! and size and ends in a [`Failure`] the desktop can act on, never a panic.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::{Method, RequestBuilder};
use serde_json::{json, Value};

use crate::bayeux::{self, Advice, Replies};
use crate::config::DesktopConfig;
use crate::cookies::CookieJar;
use crate::failure::Failure;

/// Largest answer body read; a bigger one is a broken answer.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// An HTTP answer, detached from the connection.
#[derive(Debug)]
pub struct Answer {
    status: u16,
    set_cookies: Vec<String>,
    body: Value,
}

/// A long-poll in flight. It owns everything it needs, so the desktop can run REST calls while
/// it is parked (the JS client keeps two connections for that).
pub type PendingConnect = Pin<Box<dyn Future<Output = Result<Answer, Failure>> + Send>>;

/// What one `/meta/connect` brought: the messages delivered (even on a failed connect, the
/// server flushes the queue first) and how the connect itself ended.
#[derive(Debug)]
pub struct Polled {
    pub delivered: Vec<(String, Value)>,
    pub outcome: Result<(), Failure>,
}

/// The HTTP client state of one desktop.
pub struct Gws {
    http: reqwest::Client,
    cfg: DesktopConfig,
    jar: CookieJar,
    client_id: Option<String>,
    advice: Advice,
    next_id: u64,
}

impl Gws {
    /// `http` may be shared by many desktops (one connection pool); cookies are not.
    pub fn new(http: reqwest::Client, cfg: DesktopConfig) -> Self {
        Gws {
            http,
            cfg,
            jar: CookieJar::new(),
            client_id: None,
            advice: Advice::default(),
            next_id: 1,
        }
    }

    pub fn jar(&self) -> &CookieJar {
        &self.jar
    }

    /// The CometD hold time and interval the server advised last.
    pub fn advice(&self) -> Advice {
        self.advice
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.cfg.url))
            .timeout(self.cfg.request_timeout);
        if let Some(cookies) = self.jar.header() {
            req = req.header(COOKIE, cookies);
        }
        req
    }

    async fn rest(&mut self, req: RequestBuilder) -> Result<Value, Failure> {
        let answer = send(req).await?;
        self.absorb(&answer);
        Failure::of_rest(answer.status, &answer.body)?;
        Ok(answer.body)
    }

    fn absorb(&mut self, answer: &Answer) {
        for c in &answer.set_cookies {
            self.jar.store(c);
        }
    }

    /// A new login: a clean browser (no cookies, no CometD client), then the WWE login probe
    /// `GET /api/v2/me` with Basic credentials, which opens the session (`JSESSIONID`).
    pub async fn log_in(&mut self) -> Result<Value, Failure> {
        self.jar.clear();
        self.client_id = None;
        let req = self
            .request(
                Method::GET,
                "/api/v2/me?subresources=features,devices,channels",
            )
            .basic_auth(&self.cfg.user, Some(&self.cfg.password));
        self.rest(req).await
    }

    /// `StartContactCenterSession` on the voice channel (RegisterAddress + AgentLogin).
    pub async fn start_contact_center_session(&mut self) -> Result<Value, Failure> {
        let body = json!({"operationName": "StartContactCenterSession", "channels": ["voice"]});
        self.rest(self.request(Method::POST, "/api/v2/me").json(&body))
            .await
    }

    /// `EndContactCenterSession`: the agent logs out.
    pub async fn end_contact_center_session(&mut self) -> Result<Value, Failure> {
        let body = json!({"operationName": "EndContactCenterSession"});
        self.rest(self.request(Method::POST, "/api/v2/me").json(&body))
            .await
    }

    /// The state WWE loads after every (re)connect: device, calls and channels.
    pub async fn load_state(&mut self) -> Result<Value, Failure> {
        let req = self.request(
            Method::GET,
            "/api/v2/me?subresources=devices,calls,channels",
        );
        self.rest(req).await
    }

    /// `POST /api/v2/me/channels/voice` with `operationName` (Ready, NotReady …).
    pub async fn voice(&mut self, operation: &str, reason: Option<&str>) -> Result<Value, Failure> {
        let mut body = json!({ "operationName": operation });
        if let Some(r) = reason {
            body["reasonCode"] = json!(r);
        }
        self.rest(
            self.request(Method::POST, "/api/v2/me/channels/voice")
                .json(&body),
        )
        .await
    }

    /// `POST /api/v2/me/calls/{id}` with `operationName` (Answer, Hangup …).
    pub async fn call(&mut self, id: &str, operation: &str) -> Result<Value, Failure> {
        let body = json!({ "operationName": operation });
        let path = format!("/api/v2/me/calls/{id}");
        self.rest(self.request(Method::POST, &path).json(&body))
            .await
    }

    fn message_id(&mut self, count: u64) -> u64 {
        let id = self.next_id;
        self.next_id += count;
        id
    }

    /// One CometD batch, POSTed to `…/notifications/<type>` as the JS client does
    /// (`appendMessageTypeToURL`).
    fn bayeux_request(
        &self,
        message_type: &str,
        batch: &Value,
        timeout: Duration,
    ) -> RequestBuilder {
        self.request(
            Method::POST,
            &format!("/api/v2/notifications/{message_type}"),
        )
        .timeout(timeout)
        .json(batch)
    }

    fn replies(&mut self, answer: Result<Answer, Failure>) -> Result<Replies, Failure> {
        let answer = answer?;
        self.absorb(&answer);
        if answer.status != 200 && !answer.body.is_array() {
            return Err(Failure::Network(format!("HTTP {}", answer.status)));
        }
        Ok(Replies::split(answer.body))
    }

    /// Handshake, subscribe to every topic and the first (immediate) connect. Returns what that
    /// connect delivered.
    pub async fn handshake(&mut self) -> Result<Vec<(String, Value)>, Failure> {
        self.client_id = None;
        let id = self.message_id(1);
        let req = self.bayeux_request(
            "handshake",
            &bayeux::handshake(id),
            self.cfg.request_timeout,
        );
        let replies = self.replies(send(req).await)?;
        let reply = replies.outcome("/meta/handshake")?;
        let client_id = reply
            .get("clientId")
            .and_then(Value::as_str)
            .ok_or_else(|| Failure::Network("handshake without clientId".into()))?
            .to_owned();
        self.advice = self.advice.updated(reply);
        let id = self.message_id(bayeux::TOPICS.len() as u64 + 1);
        let batch = bayeux::subscribe_and_connect(id, &client_id);
        self.client_id = Some(client_id);
        let req = self.bayeux_request("connect", &batch, self.cfg.request_timeout);
        let mut replies = self.replies(send(req).await)?;
        replies.outcome("/meta/subscribe")?;
        let connect = replies.outcome("/meta/connect")?;
        self.advice = self.advice.updated(connect);
        Ok(std::mem::take(&mut replies.delivered))
    }

    /// Starts a `/meta/connect` (held by the server unless `immediate`); finish it with
    /// [`Gws::connected`]. Without a CometD client the future fails at once with
    /// [`Failure::UnknownClient`].
    pub fn connect(&mut self, immediate: bool) -> PendingConnect {
        let Some(client_id) = self.client_id.clone() else {
            return Box::pin(async { Err(Failure::UnknownClient) });
        };
        let id = self.message_id(1);
        let hold = if immediate {
            Duration::ZERO
        } else {
            self.advice.timeout
        };
        let timeout = hold + self.cfg.max_network_delay;
        let req = self.bayeux_request(
            "connect",
            &bayeux::connect(id, &client_id, immediate),
            timeout,
        );
        Box::pin(send(req))
    }

    /// Reads the answer of a [`Gws::connect`].
    pub fn connected(&mut self, answer: Result<Answer, Failure>) -> Polled {
        let mut replies = match self.replies(answer) {
            Ok(r) => r,
            Err(e) => {
                return Polled {
                    delivered: Vec::new(),
                    outcome: Err(e),
                }
            }
        };
        let outcome = replies.outcome("/meta/connect").map(|reply| {
            self.advice = self.advice.updated(reply);
        });
        if outcome == Err(Failure::UnknownClient) {
            self.client_id = None;
        }
        Polled {
            delivered: std::mem::take(&mut replies.delivered),
            outcome,
        }
    }

    /// `/meta/disconnect`, best effort (logging out).
    pub async fn disconnect(&mut self) {
        if let Some(client_id) = self.client_id.take() {
            let id = self.message_id(1);
            let req = self.bayeux_request(
                "disconnect",
                &bayeux::disconnect(id, &client_id),
                self.cfg.request_timeout,
            );
            let _ = send(req).await;
        }
    }
}

/// Sends a request and reads its answer: status, cookies set, JSON body (Null when empty or not
/// JSON), at most [`MAX_BODY_BYTES`].
async fn send(req: RequestBuilder) -> Result<Answer, Failure> {
    let mut resp = req
        .send()
        .await
        .map_err(|e| Failure::Network(describe(&e)))?;
    let status = resp.status().as_u16();
    let set_cookies = resp
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    let mut bytes = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| Failure::Network(describe(&e)))?
    {
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(Failure::Network(format!(
                "answer larger than {MAX_BODY_BYTES} bytes"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok(Answer {
        status,
        set_cookies,
        body,
    })
}

/// A reqwest error in a few words (its Display hides the cause).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect failed"
    } else {
        "request failed"
    };
    match std::error::Error::source(e) {
        Some(cause) => format!("{kind}: {cause}"),
        None => kind.to_owned(),
    }
}
