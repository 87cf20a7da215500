//! The CometD WebSocket transport of one desktop: one socket to `/api/v2/notifications`, opened
//! with the desktop's cookies (the proxy routes it by `JSESSIONID`, GWS finds the session by
//! it), carrying batches both ways — replies and pushed messages arrive as text frames whenever
//! the server has them.

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{header, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::bayeux;
use crate::cookies::CookieJar;
use crate::http::link::MAX_BODY_BYTES;
use crate::http::Origin;
use crate::json;

/// Boxed: a desktop keeps one between exchanges, and most desktops of a swarm never open one.
pub type Socket = Box<WebSocketStream<TcpStream>>;

/// Bytes read from the socket at a time.
const READ_BUFFER: usize = 4096;

/// Where and how to open a socket: the origin and the upgrade request's `Cookie` value.
pub struct Opener {
    origin: Origin,
    cookies: String,
}

impl Opener {
    pub fn new(origin: &Origin, jar: &CookieJar) -> Self {
        let mut cookies = Vec::new();
        jar.write_pairs(&mut cookies);
        Opener {
            origin: origin.clone(),
            cookies: String::from_utf8_lossy(&cookies).into_owned(),
        }
    }

    /// Connects and upgrades.
    pub async fn open(&self) -> Result<Socket, String> {
        let authority = self.origin.authority();
        let url = format!("ws://{authority}/api/v2/notifications");
        let mut request = url
            .into_client_request()
            .map_err(|e| format!("bad WebSocket request: {e}"))?;
        if !self.cookies.is_empty() {
            let cookies = HeaderValue::from_str(&self.cookies)
                .map_err(|_| "cookies unfit for a header".to_owned())?;
            request.headers_mut().insert(header::COOKIE, cookies);
        }
        let stream = TcpStream::connect(authority)
            .await
            .map_err(|e| format!("connect failed: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("connect failed: {e}"))?;
        // Frames are batches of small messages; a bigger one is a broken server. The library's
        // 128 KiB read and write buffers would make a swarm of sockets cost gigabytes: reads
        // start small, and every frame is written at once (one batch at a time anyway).
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_BODY_BYTES))
            .max_frame_size(Some(MAX_BODY_BYTES))
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(0);
        let (socket, _) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(config))
                .await
                .map_err(|e| format!("WebSocket upgrade failed: {e}"))?;
        Ok(Box::new(socket))
    }
}

/// Sends one batch as a text frame.
pub async fn send(socket: &mut Socket, batch: &Value) -> Result<(), String> {
    socket
        .send(Message::text(batch.to_string()))
        .await
        .map_err(|e| format!("WebSocket send failed: {e}"))
}

/// The messages of the next text frame (pings are answered by the library meanwhile).
pub async fn receive(socket: &mut Socket) -> Result<Vec<json::Message>, String> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => return bayeux::parse_batch(text.as_bytes()),
            Some(Ok(Message::Close(_))) | None => return Err("WebSocket closed".into()),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("WebSocket failed: {e}")),
        }
    }
}

/// How long an exchange on the socket reads.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    /// Until the reply on this meta channel (or a failure without a channel) has arrived.
    Reply(&'static str),
    /// One frame: whatever the server pushed, or the reply to a held connect.
    Frame,
}

/// An exchange done: the messages received, and the socket unless it failed.
pub struct Received {
    pub socket: Option<Socket>,
    pub messages: Result<Vec<json::Message>, String>,
}

/// Sends `batch` (if any) on `socket` — opened with `opener` when there is none — and reads
/// frames `until`, all by `deadline`. A socket that failed or ran out of time is closed.
pub async fn exchange(
    socket: Option<Socket>,
    opener: Option<Opener>,
    batch: Option<&Value>,
    until: Until,
    deadline: tokio::time::Instant,
) -> Received {
    let mut slot = socket;
    let run = async {
        let socket = match slot {
            Some(ref mut s) => s,
            None => {
                let opener = opener.ok_or_else(|| "no WebSocket to use".to_owned())?;
                slot.insert(opener.open().await?)
            }
        };
        if let Some(batch) = batch {
            send(socket, batch).await?;
        }
        let mut messages = Vec::new();
        loop {
            messages.extend(receive(socket).await?);
            let done = match until {
                Until::Frame => true,
                Until::Reply(channel) => messages
                    .iter()
                    .any(|m| m.channel.as_deref().is_none_or(|c| c == channel)),
            };
            if done {
                return Ok(messages);
            }
        }
    };
    let messages = match tokio::time::timeout_at(deadline, run).await {
        Ok(result) => result,
        Err(_) => Err("timeout".to_owned()),
    };
    Received {
        socket: if messages.is_ok() { slot } else { None },
        messages,
    }
}
