//! The Bayeux messages a CometD client sends and how it reads the replies (docs/protocols.md §5.3).
//! Pure: the wire side is in [`crate::gws`] and [`crate::websocket`].

use std::time::Duration;

use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::failure::Failure;
use crate::json::{Message, Notification};
use crate::transport::Transport;

/// The GWS API v2 topics a WWE desktop follows (docs/protocols.md §5.3).
pub const TOPICS: [&str; 4] = [
    "/v2/me/devices",
    "/v2/me/calls",
    "/v2/me/channels",
    "/notifications/services",
];

/// The server's `advice`: how long it holds a connect, how long to wait between connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advice {
    pub timeout: Duration,
    pub interval: Duration,
}

impl Default for Advice {
    /// CometD server defaults until the handshake says otherwise.
    fn default() -> Self {
        Advice {
            timeout: Duration::from_secs(30),
            interval: Duration::ZERO,
        }
    }
}

impl Advice {
    /// This advice updated by the `advice` field of `reply`, if any.
    pub fn updated(self, reply: &Message) -> Advice {
        let advice = reply.advice.unwrap_or_default();
        let field = |ms: Option<u64>, old| ms.map_or(old, Duration::from_millis);
        Advice {
            timeout: field(advice.timeout, self.timeout),
            interval: field(advice.interval, self.interval),
        }
    }
}

/// `/meta/handshake` offering `transport`.
pub fn handshake(id: u64, transport: Transport) -> Value {
    json!([{"id": id.to_string(), "channel": "/meta/handshake", "version": "1.0",
            "minimumVersion": "1.0", "supportedConnectionTypes": [transport.name()]}])
}

/// Subscriptions to every topic plus the first connect, which returns at once (`timeout: 0`):
/// one batch, as the JS client sends after a handshake.
pub fn subscribe_and_connect(id: u64, client_id: &str, transport: Transport) -> Value {
    let mut batch: Vec<Value> = TOPICS
        .iter()
        .enumerate()
        .map(|(i, topic)| {
            json!({"id": (id + i as u64).to_string(), "channel": "/meta/subscribe",
                   "clientId": client_id, "subscription": topic})
        })
        .collect();
    batch.push(connect_message(
        id + TOPICS.len() as u64,
        client_id,
        transport,
        true,
    ));
    Value::Array(batch)
}

/// One `/meta/connect`; `immediate` asks the server not to hold it.
pub fn connect(id: u64, client_id: &str, transport: Transport, immediate: bool) -> Value {
    Value::Array(vec![connect_message(id, client_id, transport, immediate)])
}

fn connect_message(id: u64, client_id: &str, transport: Transport, immediate: bool) -> Value {
    let mut m = json!({"id": id.to_string(), "channel": "/meta/connect", "clientId": client_id,
                       "connectionType": transport.name()});
    if immediate {
        m["advice"] = json!({"timeout": 0});
    }
    m
}

/// `/meta/disconnect`.
pub fn disconnect(id: u64, client_id: &str) -> Value {
    json!([{"id": id.to_string(), "channel": "/meta/disconnect", "clientId": client_id}])
}

/// The messages of a batch (a JSON array). A message that does not fit is dropped: a broken
/// reply then counts as a missing one, a broken notification is not shown.
pub fn parse_batch(bytes: &[u8]) -> Result<Vec<Message>, String> {
    let items: Vec<&RawValue> =
        serde_json::from_slice(bytes).map_err(|_| "not a Bayeux batch".to_owned())?;
    Ok(items
        .iter()
        .filter_map(|m| serde_json::from_str(m.get()).ok())
        .collect())
}

/// A reply batch taken apart: the messages delivered on topics, and the replies on meta
/// channels.
#[derive(Debug, Default, PartialEq)]
pub struct Replies {
    /// `(channel, data)` of every delivered message, in order.
    pub delivered: Vec<(String, Notification)>,
    pub meta: Vec<Message>,
}

impl Replies {
    pub fn new(messages: Vec<Message>) -> Replies {
        let mut out = Replies::default();
        for mut m in messages {
            match m.channel.take() {
                Some(channel) if !channel.starts_with("/meta/") => {
                    out.delivered
                        .push((channel, m.data.take().unwrap_or_default()));
                }
                channel => {
                    m.channel = channel;
                    out.meta.push(m);
                }
            }
        }
        out
    }

    /// Whether the batch answers `channel`: a reply on it, or a failure without a channel.
    pub fn answered(&self, channel: &str) -> bool {
        self.meta
            .iter()
            .any(|r| r.channel.as_deref().is_none_or(|c| c == channel))
    }

    /// The outcome of the reply on `channel` (every one must succeed); a batch without such a
    /// reply is a broken answer.
    pub fn outcome(&self, channel: &str) -> Result<&Message, Failure> {
        let mut found = None;
        for reply in self
            .meta
            .iter()
            .filter(|r| r.channel.as_deref() == Some(channel))
        {
            Failure::of_bayeux(reply)?;
            found = Some(reply);
        }
        // A failed message without a channel (transport-level error) also counts.
        if let Some(bare) = self.meta.iter().find(|r| r.channel.is_none()) {
            Failure::of_bayeux(bare)?;
        }
        found.ok_or_else(|| Failure::Network(format!("no {channel} reply")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_the_js_client_shape() {
        let h = handshake(1, Transport::LongPolling);
        assert_eq!(h[0]["channel"], "/meta/handshake");
        assert_eq!(h[0]["supportedConnectionTypes"][0], "long-polling");
        let s = subscribe_and_connect(2, "c1", Transport::WebSocket);
        assert_eq!(s.as_array().map(Vec::len), Some(5));
        assert_eq!(s[3]["subscription"], "/notifications/services");
        assert_eq!(s[4]["channel"], "/meta/connect");
        assert_eq!(s[4]["advice"]["timeout"], 0);
        assert_eq!(s[4]["connectionType"], "websocket");
        assert!(connect(9, "c1", Transport::LongPolling, false)[0]
            .get("advice")
            .is_none());
        assert_eq!(disconnect(10, "c1")[0]["clientId"], "c1");
    }

    fn replies(batch: Value) -> Replies {
        Replies::new(parse_batch(batch.to_string().as_bytes()).unwrap())
    }

    #[test]
    fn replies_split_into_deliveries_and_meta() {
        let r = replies(json!([
            {"channel": "/v2/me/devices", "data": {"messageType": "DeviceStateChangeMessage"}},
            {"channel": "/meta/connect", "successful": true, "advice": {"timeout": 1000, "interval": 5}}
        ]));
        assert_eq!(r.delivered.len(), 1);
        assert_eq!(
            r.delivered[0].1.message_type.as_deref(),
            Some("DeviceStateChangeMessage")
        );
        assert!(r.answered("/meta/connect"));
        assert!(!r.answered("/meta/handshake"));
        let reply = r.outcome("/meta/connect").unwrap();
        let advice = Advice::default().updated(reply);
        assert_eq!(advice.timeout, Duration::from_secs(1));
        assert_eq!(advice.interval, Duration::from_millis(5));
        assert!(matches!(
            r.outcome("/meta/handshake"),
            Err(Failure::Network(_))
        ));
        let unknown = replies(json!([{"channel": "/meta/connect", "successful": false,
                                      "error": "402::Unknown client"}]));
        assert_eq!(
            unknown.outcome("/meta/connect"),
            Err(Failure::UnknownClient)
        );
        let transport = replies(json!([{"successful": false, "error": "400::Empty batch"}]));
        assert!(matches!(
            transport.outcome("/meta/connect"),
            Err(Failure::Refused { .. })
        ));
    }

    #[test]
    fn broken_batches_and_messages_are_refused_or_dropped() {
        assert!(parse_batch(b"\"junk\"").is_err());
        assert!(parse_batch(b"{\"channel\": \"/meta/connect\"}").is_err());
        let r = replies(json!([{"channel": "/meta/connect", "successful": "yes"},
                               {"channel": "/v2/me/calls", "data": {"call": {"id": 1}}},
                               {"channel": "/v2/me/calls", "data": {"messageType": "X"}}]));
        assert!(r.meta.is_empty(), "the broken reply is dropped");
        assert_eq!(r.delivered.len(), 1, "so is the broken notification");
    }
}
