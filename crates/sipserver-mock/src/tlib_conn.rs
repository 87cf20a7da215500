//! One T-Lib client connection: frames in, frames out, ADDP keepalive. It owns no state; every
//! request goes to the core and every event comes from it.

use futures::{SinkExt, StreamExt};
use netfault::FaultStream;
use tlib::{Addp, AddpAction, AddpConfig, JsonFrameCodec, Message, MessageName};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_util::codec::Framed;

use crate::agent::ClientId;
use crate::core::CLIENT_QUEUE;
use crate::node::Input;

/// Serves one accepted connection until it ends, then tells the core why.
pub async fn serve(id: ClientId, stream: FaultStream, addp: AddpConfig, core: mpsc::Sender<Input>) {
    let peer = stream.peer_addr();
    let (tx, mut outbound) = mpsc::channel::<Message>(CLIENT_QUEUE);
    if core.send(Input::ClientUp { id, peer, tx }).await.is_err() {
        return;
    }
    let mut framed = Framed::new(stream, JsonFrameCodec::new());
    let mut keepalive = Addp::new(addp, Instant::now());
    let reason = loop {
        tokio::select! {
            frame = framed.next() => match frame {
                None => break "connection closed".to_string(),
                Some(Err(e)) => {
                    // Not JSON, not an object or too long: say so, close (docs/protocols.md §1).
                    tracing::warn!(client = id, %peer, error = %e, "bad T-Lib frame; closing");
                    let reply = tlib::event::error(None, tlib::error_code::INVALID_ATTR, format!("bad frame: {e}"));
                    let _ = framed.send(reply).await;
                    break format!("bad frame: {e}");
                }
                Some(Ok(object)) => {
                    keepalive.on_received(Instant::now());
                    let msg = Message::from_object(object);
                    match msg.as_ref().map(|m| &m.name) {
                        Ok(MessageName::Ping) => {
                            if framed.send(Message::pong()).await.is_err() {
                                break "write failed".into();
                            }
                            keepalive.on_sent(Instant::now());
                        }
                        Ok(MessageName::Pong) => {}
                        _ => {
                            if core.send(Input::ClientMessage { id, msg: Box::new(msg) }).await.is_err() {
                                break "node stopped".into();
                            }
                        }
                    }
                }
            },
            event = outbound.recv() => match event {
                // The core dropped us (stuck queue) or stopped.
                None => break "dropped by node".into(),
                Some(event) => {
                    if framed.send(event).await.is_err() {
                        break "write failed".into();
                    }
                    keepalive.on_sent(Instant::now());
                }
            },
            _ = sleep_until(keepalive.next_deadline()) => match keepalive.poll(Instant::now()) {
                AddpAction::Dead => break "ADDP timeout".into(),
                AddpAction::SendPing => {
                    if framed.send(Message::ping()).await.is_err() {
                        break "write failed".into();
                    }
                    keepalive.on_sent(Instant::now());
                }
                AddpAction::Idle => {}
            },
        }
    };
    tracing::info!(client = id, %peer, %reason, "T-Lib client gone");
    let _ = core.send(Input::ClientGone { id, reason }).await;
}
