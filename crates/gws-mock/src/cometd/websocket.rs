//! The WebSocket transport: each text frame is a batch; messages for the client are pushed as
//! soon as they are queued, and a `/meta/connect` is answered when `advice.timeout` passes (or at
//! once when it must not be held), as CometD's WebSocket transport does.

use std::sync::Arc;

use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{json, Value};
use tokio::time::{sleep_until, Instant};

use super::bayeux::{self, Connect, Origin, Transport};
use super::Parked;
use crate::ctx::{random_id, Ctx};
use crate::rest::auth::notification_session;

/// `GET /api/v2/notifications` with `Upgrade: websocket`.
pub async fn upgrade(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    // The session is settled at the upgrade: a cookie-less client with Basic credentials finds
    // or opens it here (the 101 answer cannot carry a cookie the client would keep anyway).
    let session = notification_session(&ctx, &headers)
        .await
        .map(|(sid, _)| sid);
    let max = ctx.cfg.max_body_bytes;
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| async move {
            Connection {
                ctx,
                socket,
                session,
                client: None,
                pending: None,
            }
            .run()
            .await
        })
}

struct Connection {
    ctx: Arc<Ctx>,
    socket: WebSocket,
    session: Option<String>,
    /// The client this socket carries (learnt from its handshake or connects).
    client: Option<String>,
    /// The held connect and when it must be answered.
    pending: Option<(Connect, Instant, Parked)>,
}

impl Connection {
    async fn run(mut self) {
        loop {
            // Register interest before pushing what is queued, so a message queued in between
            // still wakes the select below. Without a client, a Notify nobody fires.
            let notify = self
                .client
                .as_deref()
                .and_then(|id| self.ctx.state().clients.get(id).map(|c| c.notify.clone()))
                .unwrap_or_default();
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.push_queued().await {
                return;
            }
            let deadline = self.pending.as_ref().map(|(_, at, _)| *at);
            tokio::select! {
                frame = self.socket.recv() => match frame {
                    Some(Ok(WsMessage::Text(text))) => {
                        if !self.on_batch(text.as_bytes()).await {
                            return;
                        }
                    }
                    Some(Ok(WsMessage::Binary(_))) => {
                        if !self.send(json!([{"successful": false, "error": "400::Binary frames are not Bayeux"}])).await {
                            return;
                        }
                    }
                    Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
                    Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => return,
                },
                () = &mut notified => {
                    if !self.push_queued().await {
                        return;
                    }
                }
                () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    if !self.answer_connect().await {
                        return;
                    }
                }
            }
        }
    }

    /// Processes one frame; false when the socket is gone.
    async fn on_batch(&mut self, bytes: &[u8]) -> bool {
        let batch = match bayeux::parse_batch(bytes, self.ctx.cfg.cometd.max_batch) {
            Ok(b) => b,
            Err(e) => {
                return self
                    .send(json!([{"successful": false, "error": e.to_string()}]))
                    .await
            }
        };
        let processed = {
            let mut st = self.ctx.state();
            let origin = Origin {
                session: self.session.as_deref(),
                transport: Transport::WebSocket,
            };
            bayeux::process(&mut st, &origin, batch, Instant::now(), &mut random_id)
        };
        for r in &processed.replies {
            if r["channel"] == "/meta/handshake" && r["successful"] == true {
                self.client = r["clientId"].as_str().map(str::to_owned);
            }
        }
        if !self.send(Value::Array(processed.replies)).await {
            return false;
        }
        let Some(connect) = processed.connect else {
            return true;
        };
        self.client = Some(connect.client_id.clone());
        // A connect replaces one still held (the client gave up on it).
        if !self.answer_connect().await {
            return false;
        }
        if connect.hold {
            let at = Instant::now() + self.ctx.cfg.cometd.timeout;
            let parked = Parked::new(&self.ctx, &connect.client_id);
            self.pending = Some((connect, at, parked));
            true
        } else {
            self.finish(&connect).await
        }
    }

    /// Pushes what is queued for the client; answers a held connect at once when the client or
    /// its session went away. False when the socket is gone.
    async fn push_queued(&mut self) -> bool {
        let Some(id) = self.client.clone() else {
            return true;
        };
        let (messages, gone) = {
            let mut st = self.ctx.state();
            let gone = st
                .clients
                .get(&id)
                .is_none_or(|c| st.sessions.get(&c.session).is_none());
            (st.clients.drain(&id), gone)
        };
        if !messages.is_empty() && !self.send(Value::Array(messages)).await {
            return false;
        }
        if gone && self.pending.is_some() {
            return self.answer_connect().await;
        }
        true
    }

    /// Answers the held connect, if any.
    async fn answer_connect(&mut self) -> bool {
        let Some((connect, _, parked)) = self.pending.take() else {
            return true;
        };
        drop(parked);
        self.finish(&connect).await
    }

    /// Sends the connect reply (after what is queued).
    async fn finish(&mut self, connect: &Connect) -> bool {
        let replies = {
            let mut st = self.ctx.state();
            bayeux::finish_connect(&mut st, connect, Instant::now())
        };
        if replies.iter().any(|r| r["error"] == "402::Unknown client") {
            self.client = None;
        }
        self.send(Value::Array(replies)).await
    }

    async fn send(&mut self, batch: Value) -> bool {
        self.socket
            .send(WsMessage::Text(batch.to_string().into()))
            .await
            .is_ok()
    }
}
