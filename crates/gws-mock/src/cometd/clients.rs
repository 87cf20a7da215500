//! CometD clients of the node: subscriptions, the bounded queue of messages waiting for the next
//! `/meta/connect`, and expiry by `maxInterval`. Plain data; the transports wait on
//! [`Client::notify`], which is fired (under the state lock) whenever a message is queued or the
//! client is removed.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio::time::{Duration, Instant};

use crate::config::CometdSettings;

/// One handshaken CometD client.
#[derive(Debug)]
pub struct Client {
    pub id: String,
    /// The desktop session (`JSESSIONID`) it belongs to.
    pub session: String,
    subscriptions: Vec<String>,
    queue: VecDeque<Value>,
    /// Woken (`notify_waiters`) when a message is queued or the client goes away.
    pub notify: Arc<Notify>,
    /// Whether a first `/meta/connect` was seen (that one is answered at once).
    pub connected: bool,
    /// A `/meta/connect` is held for it right now.
    pub parked: bool,
    /// When its last request ended (for `maxInterval`).
    pub last_active: Instant,
    /// Messages dropped because its queue was full.
    pub dropped: u64,
}

impl Client {
    pub fn subscriptions(&self) -> &[String] {
        &self.subscriptions
    }

    pub fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    fn wants(&self, channel: &str) -> bool {
        self.subscriptions
            .iter()
            .any(|p| channel_matches(p, channel))
    }
}

/// Why a subscription was refused (the Bayeux `error` text).
#[derive(Debug, PartialEq, Eq)]
pub enum SubscribeError {
    /// Not a channel a desktop may subscribe to.
    Denied,
    TooMany,
}

/// Every client of the node.
#[derive(Debug)]
pub struct Clients {
    map: HashMap<String, Client>,
    settings: CometdSettings,
}

impl Clients {
    pub fn new(settings: CometdSettings) -> Self {
        Clients {
            map: HashMap::new(),
            settings,
        }
    }

    pub fn settings(&self) -> &CometdSettings {
        &self.settings
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&Client> {
        self.map.get(id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Client> {
        self.map.get_mut(id)
    }

    /// Adds a client with the given (random) id.
    pub fn add(&mut self, id: String, session: &str, now: Instant) {
        self.map.insert(
            id.clone(),
            Client {
                id,
                session: session.to_owned(),
                subscriptions: Vec::new(),
                queue: VecDeque::new(),
                notify: Arc::new(Notify::new()),
                connected: false,
                parked: false,
                last_active: now,
                dropped: 0,
            },
        );
    }

    /// Removes a client and wakes its parked connect, which then answers `402`.
    pub fn remove(&mut self, id: &str) -> Option<Client> {
        let c = self.map.remove(id)?;
        c.notify.notify_waiters();
        Some(c)
    }

    pub fn subscribe(&mut self, id: &str, channel: &str) -> Result<(), SubscribeError> {
        if !subscribable(channel) {
            return Err(SubscribeError::Denied);
        }
        let max = self.settings.max_subscriptions;
        let Some(c) = self.map.get_mut(id) else {
            return Err(SubscribeError::Denied);
        };
        if c.subscriptions.iter().any(|s| s == channel) {
            return Ok(());
        }
        if c.subscriptions.len() >= max {
            return Err(SubscribeError::TooMany);
        }
        c.subscriptions.push(channel.to_owned());
        Ok(())
    }

    pub fn unsubscribe(&mut self, id: &str, channel: &str) {
        if let Some(c) = self.map.get_mut(id) {
            c.subscriptions.retain(|s| s != channel);
        }
    }

    /// Queues `{channel, data}` for each of `ids` subscribed to `channel` and wakes them.
    /// Returns how many clients got it; a full queue loses its oldest message.
    pub fn publish(&mut self, ids: &[String], channel: &str, data: &Value) -> usize {
        let max = self.settings.max_queued_messages;
        let mut delivered = 0;
        for id in ids {
            let Some(c) = self.map.get_mut(id) else {
                continue;
            };
            if !c.wants(channel) {
                continue;
            }
            if c.queue.len() >= max {
                c.queue.pop_front();
                c.dropped += 1;
            }
            c.queue.push_back(json!({"channel": channel, "data": data}));
            c.notify.notify_waiters();
            delivered += 1;
        }
        delivered
    }

    /// Takes every queued message of a client.
    pub fn drain(&mut self, id: &str) -> Vec<Value> {
        self.map
            .get_mut(id)
            .map(|c| c.queue.drain(..).collect())
            .unwrap_or_default()
    }

    /// Clients that neither hold a connect nor made a request within `maxInterval`.
    pub fn expired(&self, now: Instant) -> Vec<String> {
        let max: Duration = self.settings.max_interval;
        self.map
            .values()
            .filter(|c| !c.parked && now.saturating_duration_since(c.last_active) >= max)
            .map(|c| c.id.clone())
            .collect()
    }
}

/// The channels a desktop may subscribe to: GWS's `/v2/…` topics and `/notifications/…`, with
/// the Bayeux wildcards; never meta or service channels.
fn subscribable(channel: &str) -> bool {
    (channel.starts_with("/v2/") || channel.starts_with("/notifications/"))
        && channel.len() <= 256
        && !channel.contains("//")
}

/// Bayeux channel matching: `*` is one segment at the end, `**` any number of segments.
pub fn channel_matches(pattern: &str, channel: &str) -> bool {
    if let Some(prefix) = pattern.strip_suffix("/**") {
        return channel
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1);
    }
    if let Some(prefix) = pattern.strip_suffix("/*") {
        return channel
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|seg| !seg.is_empty() && !seg.contains('/'));
    }
    pattern == channel
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clients(max_queue: usize) -> Clients {
        Clients::new(CometdSettings {
            max_queued_messages: max_queue,
            max_subscriptions: 2,
            ..CometdSettings::default()
        })
    }

    #[test]
    fn wildcards() {
        assert!(channel_matches("/v2/me/*", "/v2/me/calls"));
        assert!(!channel_matches("/v2/me/*", "/v2/me/calls/x"));
        assert!(!channel_matches("/v2/me/*", "/v2/me"));
        assert!(channel_matches("/v2/**", "/v2/me/calls/x"));
        assert!(!channel_matches("/v2/**", "/v2"));
        assert!(channel_matches("/v2/me/calls", "/v2/me/calls"));
        assert!(!channel_matches("/v2/me/calls", "/v2/me/devices"));
    }

    #[test]
    fn subscriptions_are_checked_and_bounded() {
        let now = Instant::now();
        let mut c = clients(10);
        c.add("c1".into(), "s1", now);
        assert_eq!(
            c.subscribe("c1", "/meta/connect"),
            Err(SubscribeError::Denied)
        );
        assert_eq!(c.subscribe("c1", "/service/x"), Err(SubscribeError::Denied));
        assert_eq!(
            c.subscribe("nobody", "/v2/me/calls"),
            Err(SubscribeError::Denied)
        );
        assert_eq!(c.subscribe("c1", "/v2/me/calls"), Ok(()));
        assert_eq!(c.subscribe("c1", "/v2/me/calls"), Ok(()));
        assert_eq!(c.subscribe("c1", "/v2/me/devices"), Ok(()));
        assert_eq!(
            c.subscribe("c1", "/notifications/services"),
            Err(SubscribeError::TooMany)
        );
        c.unsubscribe("c1", "/v2/me/calls");
        assert_eq!(c.get("c1").unwrap().subscriptions(), ["/v2/me/devices"]);
    }

    #[test]
    fn publish_goes_to_subscribers_and_queues_are_bounded() {
        let now = Instant::now();
        let mut c = clients(2);
        c.add("c1".into(), "s1", now);
        c.add("c2".into(), "s1", now);
        c.subscribe("c1", "/v2/me/*").unwrap();
        let ids = vec!["c1".to_string(), "c2".to_string(), "gone".to_string()];
        for n in 0..3 {
            assert_eq!(c.publish(&ids, "/v2/me/devices", &json!(n)), 1);
        }
        assert_eq!(c.get("c1").unwrap().dropped, 1);
        let got = c.drain("c1");
        assert_eq!(
            got,
            [
                json!({"channel": "/v2/me/devices", "data": 1}),
                json!({"channel": "/v2/me/devices", "data": 2})
            ]
        );
        assert!(c.drain("c2").is_empty());
    }

    #[test]
    fn expiry_spares_parked_clients() {
        let t0 = Instant::now();
        let mut c = clients(2);
        c.add("c1".into(), "s1", t0);
        c.add("c2".into(), "s1", t0);
        c.get_mut("c2").unwrap().parked = true;
        let later = t0 + CometdSettings::default().max_interval;
        assert_eq!(c.expired(later), ["c1"]);
        assert!(c.remove("c1").is_some());
        assert!(c.remove("c1").is_none());
    }
}
