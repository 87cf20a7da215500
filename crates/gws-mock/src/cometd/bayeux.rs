//! The Bayeux protocol over the node state, independent of the transport (docs/protocols.md §5.3):
//! a batch of messages in, replies out, plus at most one `/meta/connect` for the transport to
//! hold. The transports ([`super::long_polling`], [`super::websocket`]) only move bytes and wait.

use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::clients::SubscribeError;
use crate::state::{GwsState, HandshakeRefused};

/// Which transport carries the batch (a handshake must offer it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    LongPolling,
    WebSocket,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::LongPolling => "long-polling",
            Transport::WebSocket => "websocket",
        }
    }
}

/// Why a request body is not a batch (the transport answers 400).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("400::Malformed JSON: {0}")]
    Malformed(String),
    #[error("400::Empty batch")]
    Empty,
    #[error("400::Too many messages in one batch (limit {0})")]
    TooMany(usize),
}

/// A body is a JSON array of messages, or one message object.
pub fn parse_batch(body: &[u8], max_batch: usize) -> Result<Vec<Value>, BatchError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| BatchError::Malformed(e.to_string()))?;
    let batch = match v {
        Value::Array(items) => items,
        other => vec![other],
    };
    if batch.is_empty() {
        return Err(BatchError::Empty);
    }
    if batch.len() > max_batch {
        return Err(BatchError::TooMany(max_batch));
    }
    Ok(batch)
}

/// Who sends the batch.
pub struct Origin<'a> {
    /// The `JSESSIONID` cookie, if any.
    pub session: Option<&'a str>,
    pub transport: Transport,
}

/// A `/meta/connect` the transport must answer with [`finish_connect`], after holding it for
/// `advice.timeout` when `hold` is set and nothing arrives sooner.
#[derive(Debug, PartialEq)]
pub struct Connect {
    pub client_id: String,
    /// The message's `id`, echoed in the reply.
    pub id: Option<Value>,
    pub hold: bool,
}

/// What a batch produced.
#[derive(Debug, Default)]
pub struct Processed {
    pub replies: Vec<Value>,
    pub connect: Option<Connect>,
    /// A handshake succeeded (the transport sets `BAYEUX_BROWSER` if the browser had none).
    pub handshaken: bool,
}

fn reply(channel: &str, msg: &Map<String, Value>) -> Map<String, Value> {
    let mut r = Map::new();
    r.insert("channel".into(), json!(channel));
    if let Some(id) = msg.get("id") {
        r.insert("id".into(), id.clone());
    }
    r
}

fn failed(mut r: Map<String, Value>, error: &str) -> Value {
    r.insert("successful".into(), json!(false));
    r.insert("error".into(), json!(error));
    Value::Object(r)
}

/// `402::Unknown client` with the advice to handshake again (and so re-subscribe).
fn unknown_client(mut r: Map<String, Value>) -> Value {
    r.insert(
        "advice".into(),
        json!({"reconnect": "handshake", "interval": 0}),
    );
    failed(r, "402::Unknown client")
}

fn advice(state: &GwsState) -> Value {
    let s = state.clients.settings();
    json!({
        "reconnect": "retry",
        "interval": s.interval.as_millis() as u64,
        "timeout": s.timeout.as_millis() as u64,
        "maxInterval": s.max_interval.as_millis() as u64,
    })
}

/// Processes one batch. `new_id` makes client ids.
pub fn process(
    state: &mut GwsState,
    origin: &Origin<'_>,
    batch: Vec<Value>,
    now: Instant,
    new_id: &mut dyn FnMut() -> String,
) -> Processed {
    let mut out = Processed::default();
    for msg in batch {
        let Value::Object(msg) = msg else {
            out.replies
                .push(failed(Map::new(), "400::Message is not an object"));
            continue;
        };
        let Some(channel) = msg
            .get("channel")
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            out.replies
                .push(failed(reply("", &msg), "400::Missing channel"));
            continue;
        };
        let r = reply(&channel, &msg);
        if channel == "/meta/handshake" {
            out.replies
                .push(handshake(state, origin, &msg, r, now, new_id));
            out.handshaken |= out.replies.last().is_some_and(|v| v["successful"] == true);
            continue;
        }
        // Everything else needs a known client.
        let client_id = msg.get("clientId").and_then(Value::as_str);
        let Some(client_id) = client_id.filter(|id| state.clients.get(id).is_some()) else {
            out.replies.push(unknown_client(r));
            continue;
        };
        let client_id = client_id.to_owned();
        touch(state, &client_id, now);
        let mut r = r;
        r.insert("clientId".into(), json!(client_id));
        let answer = match channel.as_str() {
            "/meta/connect" => {
                if out.connect.is_some() {
                    failed(r, "400::Only one connect per batch")
                } else {
                    out.connect = Some(connect(state, &client_id, &msg));
                    continue;
                }
            }
            "/meta/subscribe" => subscribe(state, &client_id, &msg, r, true),
            "/meta/unsubscribe" => subscribe(state, &client_id, &msg, r, false),
            "/meta/disconnect" => {
                state.remove_client(&client_id);
                r.insert("successful".into(), json!(true));
                Value::Object(r)
            }
            c if c.starts_with("/meta/") => failed(r, "400::Unknown meta channel"),
            _ => failed(r, "403::Publishing not allowed"),
        };
        out.replies.push(answer);
    }
    out
}

fn touch(state: &mut GwsState, client_id: &str, now: Instant) {
    if let Some(c) = state.clients.get_mut(client_id) {
        c.last_active = now;
        let sid = c.session.clone();
        if let Some(s) = state.sessions.get_mut(&sid) {
            s.last_seen = now;
        }
    }
}

fn handshake(
    state: &mut GwsState,
    origin: &Origin<'_>,
    msg: &Map<String, Value>,
    mut r: Map<String, Value>,
    now: Instant,
    new_id: &mut dyn FnMut() -> String,
) -> Value {
    let offered = msg
        .get("supportedConnectionTypes")
        .and_then(Value::as_array)
        .is_some_and(|types| types.iter().any(|t| t == origin.transport.name()));
    if !offered {
        r.insert(
            "supportedConnectionTypes".into(),
            json!(["long-polling", "websocket"]),
        );
        return failed(r, "301::Unsupported connection types");
    }
    let Some(sid) = origin.session else {
        r.insert("advice".into(), json!({"reconnect": "none"}));
        return failed(r, "403::Unknown session");
    };
    let id = new_id();
    match state.handshake(sid, id.clone(), now) {
        Err(HandshakeRefused::UnknownSession) => {
            r.insert("advice".into(), json!({"reconnect": "none"}));
            failed(r, "403::Unknown session")
        }
        Ok(()) => {
            r.insert("successful".into(), json!(true));
            r.insert("clientId".into(), json!(id));
            r.insert("version".into(), json!("1.0"));
            r.insert("minimumVersion".into(), json!("1.0"));
            r.insert(
                "supportedConnectionTypes".into(),
                json!(["long-polling", "websocket"]),
            );
            r.insert("advice".into(), advice(state));
            Value::Object(r)
        }
    }
}

fn connect(state: &mut GwsState, client_id: &str, msg: &Map<String, Value>) -> Connect {
    // The first connect, and one that asks for `timeout: 0`, return at once (CometD 3).
    let no_wait = msg
        .get("advice")
        .and_then(|a| a.get("timeout"))
        .and_then(Value::as_u64)
        == Some(0);
    let hold = match state.clients.get_mut(client_id) {
        Some(c) => {
            let first = !c.connected;
            c.connected = true;
            !first && !no_wait && !c.has_queued()
        }
        None => false,
    };
    Connect {
        client_id: client_id.to_owned(),
        id: msg.get("id").cloned(),
        hold,
    }
}

fn subscribe(
    state: &mut GwsState,
    client_id: &str,
    msg: &Map<String, Value>,
    mut r: Map<String, Value>,
    on: bool,
) -> Value {
    let channels: Vec<String> = match msg.get("subscription") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    if let Some(sub) = msg.get("subscription") {
        r.insert("subscription".into(), sub.clone());
    }
    if channels.is_empty() {
        return failed(r, "400::Missing subscription");
    }
    for ch in &channels {
        if on {
            match state.clients.subscribe(client_id, ch) {
                Ok(()) => {}
                Err(SubscribeError::Denied) => return failed(r, "403::Subscription denied"),
                Err(SubscribeError::TooMany) => return failed(r, "403::Too many subscriptions"),
            }
        } else {
            state.clients.unsubscribe(client_id, ch);
        }
    }
    r.insert("successful".into(), json!(true));
    Value::Object(r)
}

/// The answer to a connect once it may return: what is queued, then the connect reply — or
/// `402` when the client or its session went away meanwhile.
pub fn finish_connect(state: &mut GwsState, connect: &Connect, now: Instant) -> Vec<Value> {
    let mut r = Map::new();
    r.insert("channel".into(), json!("/meta/connect"));
    if let Some(id) = &connect.id {
        r.insert("id".into(), id.clone());
    }
    r.insert("clientId".into(), json!(connect.client_id));
    state.set_parked(&connect.client_id, false, now);
    let Some(client) = state.clients.get(&connect.client_id) else {
        return vec![unknown_client(r)];
    };
    let session_alive = state.sessions.get(&client.session).is_some();
    let mut out = state.clients.drain(&connect.client_id);
    if session_alive {
        r.insert("successful".into(), json!(true));
        r.insert("advice".into(), advice(state));
        out.push(Value::Object(r));
    } else {
        state.remove_client(&connect.client_id);
        out.push(unknown_client(r));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GwsConfig;
    use crate::users::User;

    fn state_with_session() -> (GwsState, Instant) {
        let cfg = GwsConfig::new("gws1", "dc1", [127, 0, 0, 1].into());
        let mut st = GwsState::new(&cfg, "http://gws".into());
        let now = Instant::now();
        st.sessions.create(
            "S1".into(),
            "T".into(),
            User {
                name: "agent7001".into(),
                dn: "7001".into(),
            },
            now,
        );
        (st, now)
    }

    fn run(st: &mut GwsState, session: Option<&str>, batch: Value, now: Instant) -> Processed {
        let origin = Origin {
            session,
            transport: Transport::LongPolling,
        };
        let mut n = 0;
        let Value::Array(batch) = batch else {
            panic!("array")
        };
        process(st, &origin, batch, now, &mut || {
            n += 1;
            format!("c{n}")
        })
    }

    #[test]
    fn batches_are_parsed_and_bounded() {
        assert_eq!(
            parse_batch(br#"{"channel":"/meta/connect"}"#, 4)
                .unwrap()
                .len(),
            1
        );
        assert!(matches!(
            parse_batch(b"[{", 4),
            Err(BatchError::Malformed(_))
        ));
        assert_eq!(parse_batch(b"[]", 4), Err(BatchError::Empty));
        assert_eq!(parse_batch(b"[1,2,3]", 2), Err(BatchError::TooMany(2)));
    }

    #[test]
    fn handshake_subscribe_connect_disconnect() {
        let (mut st, now) = state_with_session();
        let p = run(
            &mut st,
            Some("S1"),
            json!([{"id": "1", "channel": "/meta/handshake", "version": "1.0",
                     "supportedConnectionTypes": ["long-polling"]}]),
            now,
        );
        let h = &p.replies[0];
        assert_eq!(h["successful"], true);
        assert_eq!(h["clientId"], "c1");
        assert_eq!(h["id"], "1");
        assert_eq!(h["advice"]["reconnect"], "retry");
        assert!(p.handshaken);
        // Subscribe and the first connect in one batch: the connect is not held.
        let p = run(
            &mut st,
            Some("S1"),
            json!([{"id": "2", "channel": "/meta/subscribe", "clientId": "c1", "subscription": "/v2/me/devices"},
                   {"id": "3", "channel": "/meta/connect", "clientId": "c1", "connectionType": "long-polling"}]),
            now,
        );
        assert_eq!(p.replies[0]["successful"], true);
        assert_eq!(p.replies[0]["subscription"], "/v2/me/devices");
        let c = p.connect.unwrap();
        assert!(!c.hold);
        let done = finish_connect(&mut st, &c, now);
        assert_eq!(done.last().unwrap()["successful"], true);
        // The next connect is held, unless something is queued.
        let p = run(
            &mut st,
            None,
            json!([{"channel": "/meta/connect", "clientId": "c1"}]),
            now,
        );
        assert!(p.connect.unwrap().hold);
        st.notify_session("S1", "/v2/me/devices", &json!({"messageType": "X"}));
        let p = run(
            &mut st,
            None,
            json!([{"channel": "/meta/connect", "clientId": "c1"}]),
            now,
        );
        let c = p.connect.unwrap();
        assert!(!c.hold);
        let done = finish_connect(&mut st, &c, now);
        assert_eq!(done[0]["channel"], "/v2/me/devices");
        assert_eq!(done[0]["data"]["messageType"], "X");
        assert_eq!(done[1]["channel"], "/meta/connect");
        let p = run(
            &mut st,
            None,
            json!([{"channel": "/meta/disconnect", "clientId": "c1"}]),
            now,
        );
        assert_eq!(p.replies[0]["successful"], true);
        assert!(st.clients.is_empty());
    }

    #[test]
    fn unknown_client_gets_402_and_handshake_advice() {
        let (mut st, now) = state_with_session();
        for ch in ["/meta/connect", "/meta/subscribe", "/v2/me/calls"] {
            let p = run(
                &mut st,
                Some("S1"),
                json!([{"channel": ch, "clientId": "nope"}]),
                now,
            );
            assert_eq!(p.replies[0]["successful"], false, "{ch}");
            assert_eq!(p.replies[0]["error"], "402::Unknown client");
            assert_eq!(p.replies[0]["advice"]["reconnect"], "handshake");
        }
    }

    #[test]
    fn refusals() {
        let (mut st, now) = state_with_session();
        let p = run(
            &mut st,
            Some("nope"),
            json!([{"channel": "/meta/handshake", "supportedConnectionTypes": ["long-polling"]}]),
            now,
        );
        assert_eq!(p.replies[0]["error"], "403::Unknown session");
        let p = run(
            &mut st,
            Some("S1"),
            json!([{"channel": "/meta/handshake", "supportedConnectionTypes": ["callback-polling"]}]),
            now,
        );
        assert_eq!(p.replies[0]["error"], "301::Unsupported connection types");
        let p = run(
            &mut st,
            Some("S1"),
            json!([{"channel": "/meta/handshake", "supportedConnectionTypes": ["long-polling"]},
                   7, {"no": "channel"},
                   {"channel": "/meta/subscribe", "clientId": "c1", "subscription": "/meta/connect"},
                   {"channel": "/meta/bogus", "clientId": "c1"},
                   {"channel": "/v2/me/calls", "clientId": "c1", "data": {}}]),
            now,
        );
        let errors: Vec<&str> = p.replies[1..]
            .iter()
            .map(|r| r["error"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(
            errors,
            [
                "400::Message is not an object",
                "400::Missing channel",
                "403::Subscription denied",
                "400::Unknown meta channel",
                "403::Publishing not allowed"
            ]
        );
    }

    #[test]
    fn connect_after_session_end_delivers_then_402() {
        let (mut st, now) = state_with_session();
        run(
            &mut st,
            Some("S1"),
            json!([{"channel": "/meta/handshake", "supportedConnectionTypes": ["long-polling"]},
                   {"channel": "/meta/subscribe", "clientId": "c1", "subscription": "/v2/me/*"}]),
            now,
        );
        st.notify_session("S1", "/v2/me/devices", &json!({"messageType": "Last"}));
        st.end_session("S1", "test");
        let c = Connect {
            client_id: "c1".into(),
            id: None,
            hold: false,
        };
        let done = finish_connect(&mut st, &c, now);
        assert_eq!(done[0]["data"]["messageType"], "Last");
        assert_eq!(done[1]["error"], "402::Unknown client");
        assert!(st.clients.is_empty());
    }
}
