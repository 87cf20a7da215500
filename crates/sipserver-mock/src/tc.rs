//! The TC layer: a link from this node to every other node of the cluster (docs/protocols.md §3,
//! docs/architecture.md §4.1). Same framing as T-Lib, own messages, ADDP-style keepalive, reconnect
//! with jittered backoff. This module moves frames and reports link state to the core; what
//! travels over the links (ownership, relayed events and control) is the core's business.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use netfault::{FaultStream, Faults};
use serde::{Deserialize, Serialize};
use tlib::{Addp, AddpAction, AddpConfig, ConnId, JsonFrameCodec, Message};
use tokio::sync::mpsc;
use tokio::time::{sleep, sleep_until, timeout, Instant};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use crate::node::Input;

/// Another node of the cluster, as this node reaches it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerNode {
    pub name: String,
    pub dc: String,
    /// The peer's TC-layer address.
    pub tc: SocketAddr,
}

/// A T-Lib client as the node that sends a TC message numbers it.
pub type RemoteClient = u64;

/// Where the owner's phone for a softphone DN is registered, so any node can reach it (calls
/// live where they arrived, R11, not where the phone registered).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhoneContact {
    pub uri: String,
    pub source: SocketAddr,
}

/// One DN of an ownership snapshot: the sender owns it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OwnedDn {
    pub dn: String,
    pub epoch: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<PhoneContact>,
}

/// One call of a calls snapshot: the sender's call on `dn`, in the state `event` reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallReport {
    pub dn: String,
    pub conn_id: ConnId,
    pub event: Message,
}

/// TC-layer messages (the node-to-node family, distinct from T-Lib's; docs/protocols.md §3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "message")]
pub enum TcMessage {
    /// First frame both ways: who is at the other end.
    TcHello {
        node: String,
        dc: String,
    },
    Ping,
    Pong,
    /// The DN's owner is now `owner` (None: unowned) as of `epoch`; sent by the node that took,
    /// released or handed over the DN. The highest epoch wins (see `cluster/mod.rs`).
    Owner {
        dn: String,
        owner: Option<String>,
        epoch: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        contact: Option<PhoneContact>,
    },
    /// Sent once per link-up, in parts: every DN the sender owns (`done` on the last part).
    OwnerSnapshot {
        owned: Vec<OwnedDn>,
        done: bool,
    },
    /// R8: the sender has a controlling registration for a DN the receiver owns.
    MoveRequest {
        dn: String,
    },
    /// The sender's controlling registration for `dn` is gone.
    MoveCancel {
        dn: String,
    },
    /// R2: a request of the sender's client for a DN the receiver owns.
    Request {
        client: RemoteClient,
        hops: u8,
        request: Message,
    },
    /// R11: call control of the owner's client for a call that lives on the receiver.
    CallControl {
        client: RemoteClient,
        request: Message,
    },
    /// An event for the receiver's client `client` (the answer to a relayed request, or an event
    /// of a DN that client registered remotely).
    Event {
        client: RemoteClient,
        event: Message,
    },
    /// The sender's client is gone (disconnect): the receiver applies R4 to what it did remotely.
    ClientGone {
        client: RemoteClient,
    },
    /// R11: an event of a call that lives on the sender, for the clients of the DN's owner.
    /// `requester` is the owner's client that asked for it; `ended` says the call is over and
    /// whether it had been answered (then the owner starts ACW, R7).
    CallEvent {
        dn: String,
        conn_id: ConnId,
        event: Message,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        requester: Option<(RemoteClient, Option<u32>)>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ended: Option<bool>,
    },
    /// Sent once per link-up after the ownership snapshot, in parts: the sender's calls.
    CallsSnapshot {
        calls: Vec<CallReport>,
        done: bool,
    },
}

/// The fault-layer name of the link between two nodes: `tc:<lower>-<higher>`, the same on both.
pub fn link_name(a: &str, b: &str) -> String {
    if a <= b {
        format!("tc:{a}-{b}")
    } else {
        format!("tc:{b}-{a}")
    }
}

/// Everything a link task needs to know about its own node.
#[derive(Clone)]
pub struct LinkContext {
    pub node: String,
    pub dc: String,
    pub address: IpAddr,
    pub faults: Faults,
    pub addp: AddpConfig,
    pub core: mpsc::Sender<Input>,
}

/// Frames queued towards a peer before the link counts as stuck (then it is closed and the
/// reconnect's snapshots bring the peer back in line).
pub const LINK_QUEUE: usize = 64 * 1024;
/// How long the peer has to say who it is.
const HELLO_TIMEOUT: Duration = Duration::from_secs(3);
/// Reconnect backoff bounds (jittered 50–100 %, doubling).
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Keeps a link to `peer` up until `stop`: connect, serve, back off, again. Only the node with
/// the lower name dials, so each pair has one link.
pub async fn dial(ctx: LinkContext, peer: PeerNode, stop: CancellationToken) {
    let link = link_name(&ctx.node, &peer.name);
    let mut failures = 0u32;
    loop {
        let attempt = async {
            let connect = netfault::tcp::connect(&ctx.faults, &link, Some(ctx.address), peer.tc);
            match timeout(HELLO_TIMEOUT, connect).await {
                Ok(Ok(stream)) => serve(ctx.clone(), stream, Some(peer.name.clone())).await,
                Ok(Err(e)) => tracing::debug!(%link, error = %e, "TC connect failed"),
                Err(_) => tracing::debug!(%link, "TC connect timed out"),
            }
        };
        let started = Instant::now();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = attempt => {}
        }
        // A link that lived a while resets the backoff.
        failures = if started.elapsed() > BACKOFF_MAX {
            0
        } else {
            failures.saturating_add(1)
        };
        let ceiling = BACKOFF_MIN
            .saturating_mul(1 << failures.min(6))
            .min(BACKOFF_MAX);
        let wait = ceiling.mul_f64(0.5 + rand::random::<f64>() * 0.5);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = sleep(wait) => {}
        }
    }
}

/// Serves one TC connection (dialled or accepted) until it ends.
pub async fn serve(ctx: LinkContext, stream: FaultStream, expected: Option<String>) {
    let mut framed = Framed::new(stream, JsonFrameCodec::new());
    let hello = TcMessage::TcHello {
        node: ctx.node.clone(),
        dc: ctx.dc.clone(),
    };
    if framed.send(&hello).await.is_err() {
        return;
    }
    let peer = match timeout(HELLO_TIMEOUT, framed.next()).await {
        Ok(Some(Ok(object))) => match serde_json::from_value::<TcMessage>(object.into()) {
            Ok(TcMessage::TcHello { node, .. }) => node,
            _ => return,
        },
        _ => return,
    };
    if expected.as_ref().is_some_and(|e| *e != peer) || peer == ctx.node {
        tracing::warn!(node = %ctx.node, %peer, "TC hello from an unexpected node; closing");
        return;
    }
    let (tx, mut outbound) = mpsc::channel::<TcMessage>(LINK_QUEUE);
    let link_id = rand::random::<u64>();
    if ctx
        .core
        .send(Input::TcLinkUp {
            peer: peer.clone(),
            link_id,
            tx,
        })
        .await
        .is_err()
    {
        return;
    }
    let mut keepalive = Addp::new(ctx.addp, Instant::now());
    let reason = loop {
        tokio::select! {
            frame = framed.next() => match frame {
                None => break "connection closed".to_string(),
                Some(Err(e)) => break format!("bad frame: {e}"),
                Some(Ok(object)) => {
                    keepalive.on_received(Instant::now());
                    match serde_json::from_value::<TcMessage>(object.into()) {
                        Ok(TcMessage::Ping) => {
                            if framed.send(&TcMessage::Pong).await.is_err() {
                                break "write failed".into();
                            }
                            keepalive.on_sent(Instant::now());
                        }
                        Ok(TcMessage::Pong) | Ok(TcMessage::TcHello { .. }) => {}
                        Ok(msg) => {
                            let frame = Input::TcFrame { peer: peer.clone(), link_id, msg: Box::new(msg) };
                            if ctx.core.send(frame).await.is_err() {
                                break "node stopped".into();
                            }
                        }
                        Err(e) => tracing::debug!(%peer, error = %e, "unknown TC message ignored"),
                    }
                }
            },
            msg = outbound.recv() => match msg {
                None => break "replaced or node stopped".into(),
                Some(msg) => {
                    if framed.send(&msg).await.is_err() {
                        break "write failed".into();
                    }
                    keepalive.on_sent(Instant::now());
                }
            },
            _ = sleep_until(keepalive.next_deadline()) => match keepalive.poll(Instant::now()) {
                AddpAction::Dead => break "ADDP timeout".into(),
                AddpAction::SendPing => {
                    if framed.send(&TcMessage::Ping).await.is_err() {
                        break "write failed".into();
                    }
                    keepalive.on_sent(Instant::now());
                }
                AddpAction::Idle => {}
            },
        }
    };
    let _ = ctx
        .core
        .send(Input::TcLinkDown {
            peer,
            link_id,
            reason,
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_names_are_symmetric() {
        assert_eq!(link_name("ss1", "ss3"), "tc:ss1-ss3");
        assert_eq!(link_name("ss3", "ss1"), "tc:ss1-ss3");
    }

    #[test]
    fn messages_on_the_wire() {
        let hello = TcMessage::TcHello {
            node: "ss1".into(),
            dc: "dc1".into(),
        };
        let json = serde_json::to_value(&hello).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"message": "TcHello", "node": "ss1", "dc": "dc1"})
        );
        assert_eq!(
            serde_json::to_value(TcMessage::Ping).unwrap(),
            serde_json::json!({"message": "Ping"})
        );
    }
}
