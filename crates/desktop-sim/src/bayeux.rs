//! The Bayeux messages a CometD long-polling client sends, and how it reads the replies
//! (anchors.md §5). Pure: the HTTP side is in [`crate::gws`].

use std::time::Duration;

use serde_json::{json, Value};

use crate::failure::Failure;

/// The GWS API v2 topics a WWE desktop follows (domain.md §3.4).
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
    pub fn updated(self, reply: &Value) -> Advice {
        let field = |name: &str| {
            reply
                .get("advice")
                .and_then(|a| a.get(name))
                .and_then(Value::as_u64)
                .map(Duration::from_millis)
        };
        Advice {
            timeout: field("timeout").unwrap_or(self.timeout),
            interval: field("interval").unwrap_or(self.interval),
        }
    }
}

/// `/meta/handshake` offering long-polling.
pub fn handshake(id: u64) -> Value {
    json!([{"id": id.to_string(), "channel": "/meta/handshake", "version": "1.0",
            "minimumVersion": "1.0", "supportedConnectionTypes": ["long-polling"]}])
}

/// Subscriptions to every topic plus the first connect, which returns at once (`timeout: 0`):
/// one batch, as the JS client sends after a handshake.
pub fn subscribe_and_connect(id: u64, client_id: &str) -> Value {
    let mut batch: Vec<Value> = TOPICS
        .iter()
        .enumerate()
        .map(|(i, topic)| {
            json!({"id": (id + i as u64).to_string(), "channel": "/meta/subscribe",
                   "clientId": client_id, "subscription": topic})
        })
        .collect();
    batch.push(connect_message(id + TOPICS.len() as u64, client_id, true));
    Value::Array(batch)
}

/// One `/meta/connect`; `immediate` asks the server not to hold it.
pub fn connect(id: u64, client_id: &str, immediate: bool) -> Value {
    Value::Array(vec![connect_message(id, client_id, immediate)])
}

fn connect_message(id: u64, client_id: &str, immediate: bool) -> Value {
    let mut m = json!({"id": id.to_string(), "channel": "/meta/connect", "clientId": client_id,
                       "connectionType": "long-polling"});
    if immediate {
        m["advice"] = json!({"timeout": 0});
    }
    m
}

/// `/meta/disconnect`.
pub fn disconnect(id: u64, client_id: &str) -> Value {
    json!([{"id": id.to_string(), "channel": "/meta/disconnect", "clientId": client_id}])
}

/// A reply batch taken apart: the messages delivered on topics, and the replies on meta
/// channels.
#[derive(Debug, Default, PartialEq)]
pub struct Replies {
    /// `(channel, data)` of every delivered message, in order.
    pub delivered: Vec<(String, Value)>,
    pub meta: Vec<Value>,
}

impl Replies {
    pub fn split(batch: Value) -> Replies {
        let mut out = Replies::default();
        let items = match batch {
            Value::Array(items) => items,
            other => vec![other],
        };
        for mut m in items {
            let channel = m
                .get("channel")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            if channel.starts_with("/meta/") || channel.is_empty() {
                out.meta.push(m);
            } else {
                let data = m.get_mut("data").map(Value::take).unwrap_or(Value::Null);
                out.delivered.push((channel, data));
            }
        }
        out
    }

    /// The outcome of the reply on `channel` (every one must succeed); a batch without such a
    /// reply is a broken answer.
    pub fn outcome(&self, channel: &str) -> Result<&Value, Failure> {
        let mut found = None;
        for reply in self
            .meta
            .iter()
            .filter(|r| r.get("channel").and_then(Value::as_str) == Some(channel))
        {
            Failure::of_bayeux(reply)?;
            found = Some(reply);
        }
        // A failed message without a channel (transport-level error) also counts.
        if let Some(bare) = self.meta.iter().find(|r| r.get("channel").is_none()) {
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
        let h = handshake(1);
        assert_eq!(h[0]["channel"], "/meta/handshake");
        assert_eq!(h[0]["supportedConnectionTypes"][0], "long-polling");
        let s = subscribe_and_connect(2, "c1");
        assert_eq!(s.as_array().map(Vec::len), Some(5));
        assert_eq!(s[3]["subscription"], "/notifications/services");
        assert_eq!(s[4]["channel"], "/meta/connect");
        assert_eq!(s[4]["advice"]["timeout"], 0);
        assert!(connect(9, "c1", false)[0].get("advice").is_none());
        assert_eq!(disconnect(10, "c1")[0]["clientId"], "c1");
    }

    #[test]
    fn replies_split_into_deliveries_and_meta() {
        let r = Replies::split(json!([
            {"channel": "/v2/me/devices", "data": {"messageType": "DeviceStateChangeMessage"}},
            {"channel": "/meta/connect", "successful": true, "advice": {"timeout": 1000, "interval": 5}}
        ]));
        assert_eq!(r.delivered.len(), 1);
        assert_eq!(r.delivered[0].1["messageType"], "DeviceStateChangeMessage");
        let reply = r.outcome("/meta/connect").unwrap();
        let advice = Advice::default().updated(reply);
        assert_eq!(advice.timeout, Duration::from_secs(1));
        assert_eq!(advice.interval, Duration::from_millis(5));
        assert!(matches!(
            r.outcome("/meta/handshake"),
            Err(Failure::Network(_))
        ));
        let unknown = Replies::split(json!([{"channel": "/meta/connect", "successful": false,
                                             "error": "402::Unknown client"}]));
        assert_eq!(
            unknown.outcome("/meta/connect"),
            Err(Failure::UnknownClient)
        );
        let transport = Replies::split(json!([{"successful": false, "error": "400::Empty batch"}]));
        assert!(matches!(
            transport.outcome("/meta/connect"),
            Err(Failure::Refused { .. })
        ));
        assert_eq!(Replies::split(json!("junk")).meta.len(), 1);
    }
}
