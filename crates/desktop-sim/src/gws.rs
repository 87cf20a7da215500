//! One desktop's side of the wire: GWS API v2 REST calls over HTTP/1.1 and CometD over
//! long-polling or a WebSocket (docs/protocols.md §5), with the desktop's own cookie jar and, when
//! the server hands one out, its CSRF token. Every exchange is bounded in time and size and ends in a [`Failure`] the
//! desktop can act on, never a panic.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::time::Instant;

use base64::Engine;
use serde::Serialize;
use serde_json::{json, Value};

use crate::bayeux::{self, Advice, Replies};
use crate::config::DesktopConfig;
use crate::cookies::CookieJar;
use crate::failure::Failure;
use crate::http::{self, Answer, Exchanged, Links, Method, Origin, Request};
use crate::json::{Notification, RestAnswer};
use crate::transport::Transport;
use crate::websocket::{self, Opener, Received, Socket, Until};

/// A `/meta/connect` in flight. It owns its request and connection (or socket), so the desktop
/// can run REST calls meanwhile (on another connection, as the JS client does).
pub type PendingConnect = Pin<Box<dyn Future<Output = Result<Arrived, Failure>> + Send>>;

/// What a [`PendingConnect`] brought back.
pub enum Arrived {
    Http(Exchanged),
    Socket(Received),
}

/// What one `/meta/connect` brought: the messages delivered (even on a failed connect, the
/// server flushes the queue first) and how the connect itself ended.
#[derive(Debug)]
pub struct Polled {
    pub delivered: Vec<(String, Notification)>,
    pub outcome: Result<(), Failure>,
    /// Over a WebSocket, messages are pushed while the server still holds the connect: wait on.
    pub held: bool,
}

/// The HTTP client state of one desktop.
pub struct Gws {
    cfg: DesktopConfig,
    /// The URL and the fallbacks; `current` is the one in use.
    origins: Vec<Origin>,
    current: usize,
    /// `Basic …` for the login probe.
    authorization: String,
    links: Links,
    jar: CookieJar,
    /// `(header, token)` to send on POSTs, once the server handed a token out.
    csrf: Option<(String, String)>,
    client_id: Option<String>,
    /// The CometD socket while it is open and not lent to a [`PendingConnect`].
    socket: Option<Socket>,
    /// When the connect the server holds on the socket must have been answered.
    held_until: Option<Instant>,
    advice: Advice,
    next_id: u64,
    /// Buffers reused by every exchange but the long-poll's (which runs alongside them).
    request: Vec<u8>,
    body: Vec<u8>,
}

impl Gws {
    /// `origins`: the URL first, then its fallbacks (at least one).
    pub fn new(cfg: DesktopConfig, origins: Vec<Origin>) -> Self {
        let credentials = format!("{}:{}", cfg.user, cfg.password);
        let authorization = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        );
        Gws {
            cfg,
            origins,
            current: 0,
            authorization,
            links: Links::default(),
            jar: CookieJar::new(),
            csrf: None,
            client_id: None,
            socket: None,
            held_until: None,
            advice: Advice::default(),
            next_id: 1,
            request: Vec::new(),
            body: Vec::new(),
        }
    }

    fn origin(&self) -> &Origin {
        &self.origins[self.current]
    }

    /// Moves to the next URL of the list (the first again after the last), as a browser whose
    /// DNS name now resolves elsewhere: new connections, no CometD client; the cookies stay, so
    /// the other side answers "unknown session" and the relogin policy decides. None with one
    /// URL only.
    pub fn next_url(&mut self) -> Option<String> {
        if self.origins.len() < 2 {
            return None;
        }
        self.current = (self.current + 1) % self.origins.len();
        self.links = Links::default();
        self.close_socket();
        self.client_id = None;
        self.csrf = None;
        Some(self.origin().authority().to_string())
    }

    pub fn jar(&self) -> &CookieJar {
        &self.jar
    }

    /// The CometD hold time and interval the server advised last.
    pub fn advice(&self) -> Advice {
        self.advice
    }

    /// Encodes a request into `out`, with the body (if any) serialized from `body`.
    fn encode(
        &mut self,
        out: &mut Vec<u8>,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
        basic: bool,
    ) {
        self.body.clear();
        if let Some(b) = body {
            // Serializing our own plain data into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut self.body, b);
        }
        let csrf = match (&self.csrf, method) {
            (Some((name, token)), Method::Post) => Some((name.as_str(), token.as_str())),
            _ => None,
        };
        Request {
            method,
            path,
            authority: self.origin().authority(),
            authorization: basic.then_some(self.authorization.as_str()),
            cookies: &self.jar,
            csrf,
            body: body.map(|_| self.body.as_slice()),
        }
        .encode(out);
    }

    /// One exchange on the desktop's request connection.
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
        basic: bool,
    ) -> Result<Answer, Failure> {
        let mut request = std::mem::take(&mut self.request);
        self.encode(&mut request, method, path, body, basic);
        let link = self.links.take();
        let done = http::exchange(self.origin(), link, &request, self.cfg.request_timeout).await;
        self.request = request;
        self.finish(done)
    }

    /// Keeps the connection and absorbs the cookies and CSRF token of an answer.
    fn finish(&mut self, done: Exchanged) -> Result<Answer, Failure> {
        if let Some(link) = done.link {
            self.links.put(link);
        }
        let mut answer = done.answer.map_err(Failure::Network)?;
        for c in &answer.set_cookies {
            self.jar.store(c);
        }
        if let Some(csrf) = answer.csrf.take() {
            self.csrf = Some(csrf);
        }
        Ok(answer)
    }

    async fn rest(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
        basic: bool,
    ) -> Result<RestAnswer, Failure> {
        let answer = self.send(method, path, body, basic).await?;
        // Not a GWS answer (a proxy's error page): no statusCode, classified by the HTTP status.
        let body = serde_json::from_slice(&answer.body).unwrap_or_default();
        Failure::of_rest(answer.status, &body)?;
        Ok(body)
    }

    /// A new login: a reloaded page (no cookies, CSRF token, CometD client or socket; kept-alive
    /// connections stay, as a browser keeps them), then the WWE login probe `GET /api/v2/me`
    /// with Basic credentials, which opens the session (`JSESSIONID`).
    pub async fn log_in(&mut self) -> Result<RestAnswer, Failure> {
        self.jar.clear();
        self.csrf = None;
        self.client_id = None;
        self.close_socket();
        let path = "/api/v2/me?subresources=features,devices,channels";
        self.rest(Method::Get, path, None::<&()>, true).await
    }

    /// `StartContactCenterSession` on the voice channel (RegisterAddress + AgentLogin).
    pub async fn start_contact_center_session(&mut self) -> Result<RestAnswer, Failure> {
        let body = json!({"operationName": "StartContactCenterSession", "channels": ["voice"]});
        self.rest(Method::Post, "/api/v2/me", Some(&body), false)
            .await
    }

    /// `EndContactCenterSession`: the agent logs out.
    pub async fn end_contact_center_session(&mut self) -> Result<RestAnswer, Failure> {
        let body = json!({"operationName": "EndContactCenterSession"});
        self.rest(Method::Post, "/api/v2/me", Some(&body), false)
            .await
    }

    /// The state WWE loads after every (re)connect: device, calls and channels.
    pub async fn load_state(&mut self) -> Result<RestAnswer, Failure> {
        let path = "/api/v2/me?subresources=devices,calls,channels";
        self.rest(Method::Get, path, None::<&()>, false).await
    }

    /// `POST /api/v2/me/channels/voice` with `operationName` (Ready, NotReady …).
    pub async fn voice(
        &mut self,
        operation: &str,
        reason: Option<&str>,
    ) -> Result<RestAnswer, Failure> {
        let mut body = json!({ "operationName": operation });
        if let Some(r) = reason {
            body["reason"] = json!(r);
        }
        let path = "/api/v2/me/channels/voice";
        self.rest(Method::Post, path, Some(&body), false).await
    }

    /// `POST /api/v2/me/calls/{id}` with `operationName` (Answer, Hangup …).
    pub async fn call(&mut self, id: &str, operation: &str) -> Result<RestAnswer, Failure> {
        let body = json!({ "operationName": operation });
        let path = format!("/api/v2/me/calls/{id}");
        self.rest(Method::Post, &path, Some(&body), false).await
    }

    fn message_id(&mut self, count: u64) -> u64 {
        let id = self.next_id;
        self.next_id += count;
        id
    }

    fn close_socket(&mut self) {
        self.socket = None;
        self.held_until = None;
    }

    /// The path of a CometD batch: `…/notifications/<type>`, as the JS client posts it
    /// (`appendMessageTypeToURL`).
    fn bayeux_path(message_type: &str) -> String {
        format!("/api/v2/notifications/{message_type}")
    }

    /// How to open the CometD socket when there is none.
    fn opener(&self) -> Option<Opener> {
        self.socket
            .is_none()
            .then(|| Opener::new(self.origin(), &self.jar))
    }

    /// One CometD batch and its replies, up to the reply on `until`.
    async fn bayeux(
        &mut self,
        message_type: &str,
        batch: &Value,
        until: &'static str,
    ) -> Result<Replies, Failure> {
        match self.cfg.transport {
            Transport::LongPolling => {
                let path = Self::bayeux_path(message_type);
                let answer = self.send(Method::Post, &path, Some(batch), false).await;
                replies(answer)
            }
            Transport::WebSocket => {
                let deadline = Instant::now() + self.cfg.request_timeout;
                let opener = self.opener();
                let socket = self.socket.take();
                let until = Until::Reply(until);
                // Boxed: the upgrade's state is large, and inline it would grow every desktop's
                // task, long-polling ones included.
                let received = Box::pin(websocket::exchange(
                    socket,
                    opener,
                    Some(batch),
                    until,
                    deadline,
                ))
                .await;
                self.received(received)
            }
        }
    }

    /// Keeps the socket (or forgets it and any held connect when it failed).
    fn received(&mut self, received: Received) -> Result<Replies, Failure> {
        self.socket = received.socket;
        if self.socket.is_none() {
            self.held_until = None;
        }
        let messages = received.messages.map_err(Failure::Network)?;
        Ok(Replies::new(messages))
    }

    /// Handshake, subscribe to every topic and the first (immediate) connect. Returns what that
    /// connect delivered.
    pub async fn handshake(&mut self) -> Result<Vec<(String, Notification)>, Failure> {
        self.client_id = None;
        self.held_until = None;
        let transport = self.cfg.transport;
        let id = self.message_id(1);
        let batch = bayeux::handshake(id, transport);
        let replies = self.bayeux("handshake", &batch, "/meta/handshake").await?;
        let reply = replies.outcome("/meta/handshake")?;
        let client_id = reply
            .client_id
            .clone()
            .ok_or_else(|| Failure::Network("handshake without clientId".into()))?;
        self.advice = self.advice.updated(reply);
        let id = self.message_id(bayeux::TOPICS.len() as u64 + 1);
        let batch = bayeux::subscribe_and_connect(id, &client_id, transport);
        self.client_id = Some(client_id);
        let mut replies = self.bayeux("connect", &batch, "/meta/connect").await?;
        replies.outcome("/meta/subscribe")?;
        let connect = replies.outcome("/meta/connect")?;
        self.advice = self.advice.updated(connect);
        Ok(std::mem::take(&mut replies.delivered))
    }

    /// Starts a `/meta/connect` (held by the server unless `immediate`); finish it with
    /// [`Gws::connected`]. Without a CometD client the future fails at once with
    /// [`Failure::UnknownClient`]. Over a WebSocket whose connect the server still holds, nothing
    /// is sent: the future waits for the next frame.
    pub fn connect(&mut self, immediate: bool) -> PendingConnect {
        let id = self.message_id(1);
        let transport = self.cfg.transport;
        let batch = self
            .client_id
            .as_deref()
            .map(|client_id| bayeux::connect(id, client_id, transport, immediate));
        let Some(batch) = batch else {
            return Box::pin(async { Err(Failure::UnknownClient) });
        };
        let hold = if immediate {
            Duration::ZERO
        } else {
            self.advice.timeout
        };
        let deadline = Instant::now() + hold + self.cfg.max_network_delay;
        match transport {
            Transport::LongPolling => {
                let mut request = Vec::new();
                let path = Self::bayeux_path("connect");
                self.encode(&mut request, Method::Post, &path, Some(&batch), false);
                let link = self.links.take();
                let origin = self.origin().clone();
                let timeout = deadline - Instant::now();
                Box::pin(async move {
                    let done = http::exchange(&origin, link, &request, timeout).await;
                    Ok(Arrived::Http(done))
                })
            }
            Transport::WebSocket => {
                // A held connect lives only as long as the socket it was sent on.
                let held_until = self.held_until.filter(|_| self.socket.is_some());
                let (batch, until, deadline) = match held_until {
                    Some(held_until) if !immediate => (None, Until::Frame, held_until),
                    _ if immediate => (Some(batch), Until::Reply("/meta/connect"), deadline),
                    _ => (Some(batch), Until::Frame, deadline),
                };
                if !immediate {
                    self.held_until = Some(deadline);
                }
                let opener = self.opener();
                let socket = self.socket.take();
                Box::pin(async move {
                    let received =
                        websocket::exchange(socket, opener, batch.as_ref(), until, deadline).await;
                    Ok(Arrived::Socket(received))
                })
            }
        }
    }

    /// Reads what a [`Gws::connect`] brought.
    pub fn connected(&mut self, arrived: Result<Arrived, Failure>) -> Polled {
        let replies = arrived.and_then(|arrived| match arrived {
            Arrived::Http(done) => replies(self.finish(done)),
            Arrived::Socket(received) => self.received(received),
        });
        let mut replies = match replies {
            Ok(r) => r,
            Err(e) => {
                return Polled {
                    delivered: Vec::new(),
                    outcome: Err(e),
                    held: false,
                }
            }
        };
        let delivered = std::mem::take(&mut replies.delivered);
        if self.cfg.transport == Transport::WebSocket && !replies.answered("/meta/connect") {
            return Polled {
                delivered,
                outcome: Ok(()),
                held: true,
            };
        }
        self.held_until = None;
        let outcome = replies.outcome("/meta/connect").map(|reply| {
            self.advice = self.advice.updated(reply);
        });
        if outcome == Err(Failure::UnknownClient) {
            self.client_id = None;
        }
        Polled {
            delivered,
            outcome,
            held: false,
        }
    }

    /// `/meta/disconnect`, best effort (logging out). Over a WebSocket lent to a held connect,
    /// a new socket says it; either way the socket is closed after.
    pub async fn disconnect(&mut self) {
        if let Some(client_id) = self.client_id.take() {
            let id = self.message_id(1);
            let batch = bayeux::disconnect(id, &client_id);
            let _ = self.bayeux("disconnect", &batch, "/meta/disconnect").await;
        }
        self.close_socket();
    }
}

/// The replies of a CometD batch; an answer that is not a batch is a lost link.
fn replies(answer: Result<Answer, Failure>) -> Result<Replies, Failure> {
    let answer = answer?;
    match bayeux::parse_batch(&answer.body) {
        Ok(messages) => Ok(Replies::new(messages)),
        Err(_) if answer.status != 200 => Err(Failure::Network(format!("HTTP {}", answer.status))),
        Err(e) => Err(Failure::Network(e)),
    }
}
