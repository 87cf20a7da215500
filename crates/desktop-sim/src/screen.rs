//! What the agent sees on the desktop: the connection banner (R13), the voice channel (agent
//! state, or out of service when the SIP side is lost — R13, S2.3, S3.5), the calls with their
//! state, and the last notice (a refused request, an `ErrorMessage`). Plain data, changed only by
//! pure functions of the GWS notifications and REST answers (domain.md §3.3–§3.4).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::connection::Connection;

/// The voice channel as WWE shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state")]
pub enum Voice {
    /// Nothing heard yet.
    Unknown,
    /// The device is `Inactive` or the channel `OutOfService`: no phone, or GWS lost its SIP node.
    OutOfService,
    LoggedOut,
    LoggedIn,
    Ready,
    NotReady {
        #[serde(skip_serializing_if = "Option::is_none")]
        work_mode: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

/// One call on the desktop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallView {
    pub id: String,
    /// `Dialing`, `Ringing`, `Established`, `Held` (`Released` calls leave the screen).
    pub state: String,
    /// The other party's number.
    pub party: String,
    /// What the agent may do now (`Answer`, `Hangup`, …).
    pub capabilities: Vec<String>,
}

/// The whole screen.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Screen {
    pub user: String,
    /// The agent's DN, from the login answer.
    pub dn: Option<String>,
    pub connection: Connection,
    /// The banner: [`crate::RECONNECTING`] or [`crate::UNABLE_TO_CONNECT`].
    pub banner: Option<&'static str>,
    pub voice: Voice,
    /// The `Voice` services GWS reports (`/notifications/services`: one per SIP node of its
    /// list, active when its T-Lib link is up to it), by name.
    pub voice_services: BTreeMap<String, bool>,
    pub calls: BTreeMap<String, CallView>,
    pub notice: Option<String>,
}

/// A change the agent could notice, for the journal.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    Voice(Voice),
    VoiceService(bool),
    Call { id: String, state: String },
    Notice(String),
}

/// Calls kept at most; a flood of call ids cannot grow the screen without bound.
const MAX_CALLS: usize = 64;
/// Voice services kept at most (one per SIP node of the GWS node's list).
const MAX_SERVICES: usize = 16;

impl Screen {
    pub fn new(user: &str) -> Self {
        Screen {
            user: user.to_owned(),
            dn: None,
            connection: Connection::LoggedOut,
            banner: None,
            voice: Voice::Unknown,
            voice_services: BTreeMap::new(),
            calls: BTreeMap::new(),
            notice: None,
        }
    }

    /// Sets the connection and the banner that goes with it.
    pub fn set_connection(&mut self, connection: Connection) {
        self.connection = connection;
        self.banner = connection.banner();
    }

    /// The login answer (`GET /api/v2/me`): the DN and, when present, device state.
    pub fn logged_in(&mut self, me: &Value) -> Vec<Seen> {
        let user = me.get("user").unwrap_or(&Value::Null);
        self.dn = user
            .pointer("/devices/0/phoneNumber")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or(self.dn.take());
        self.load(user)
    }

    /// The state reload after a (re)connect (`GET /api/v2/me?subresources=devices,calls,…`):
    /// the device and the calls replace what the screen showed.
    pub fn load(&mut self, user: &Value) -> Vec<Seen> {
        let mut seen = Vec::new();
        if let Some(device) = user.pointer("/devices/0") {
            seen.extend(self.set_voice(voice_of_device(device)));
        }
        if let Some(calls) = user.get("calls").and_then(Value::as_array) {
            let fresh: BTreeMap<String, CallView> = calls
                .iter()
                .filter_map(call_of)
                .filter(|c| c.state != "Released")
                .take(MAX_CALLS)
                .map(|c| (c.id.clone(), c))
                .collect();
            for (id, c) in &fresh {
                if self.calls.get(id).map(|old| &old.state) != Some(&c.state) {
                    seen.push(Seen::Call {
                        id: id.clone(),
                        state: c.state.clone(),
                    });
                }
            }
            for id in self.calls.keys().filter(|id| !fresh.contains_key(*id)) {
                seen.push(Seen::Call {
                    id: id.clone(),
                    state: "Released".into(),
                });
            }
            self.calls = fresh;
        }
        seen
    }

    /// One CometD message on `channel`.
    pub fn notify(&mut self, channel: &str, data: &Value) -> Vec<Seen> {
        let kind = data
            .get("messageType")
            .and_then(Value::as_str)
            .unwrap_or("");
        match (channel, kind) {
            ("/v2/me/devices", "DeviceStateChangeMessage") => match data.pointer("/devices/0") {
                Some(device) => self.set_voice(voice_of_device(device)),
                None => Vec::new(),
            },
            ("/v2/me/devices", "ErrorMessage") => {
                let text = data
                    .get("errorMessage")
                    .and_then(Value::as_str)
                    .unwrap_or("Error");
                self.set_notice(text.to_owned())
            }
            ("/v2/me/channels", "ChannelStateChangeMessage") => {
                let out = data
                    .pointer("/channels/0/userState/state")
                    .and_then(Value::as_str)
                    == Some("OutOfService");
                if out {
                    self.set_voice(Voice::OutOfService)
                } else {
                    Vec::new()
                }
            }
            ("/v2/me/calls", "CallStateChangeMessage") => {
                match data.get("call").and_then(call_of) {
                    Some(call) => self.set_call(call),
                    None => Vec::new(),
                }
            }
            ("/notifications/services", "ServiceStateChangeMessage") => {
                let text = |p: &str| data.pointer(p).and_then(Value::as_str);
                let (Some("Voice"), Some(name)) = (text("/service/type"), text("/service/name"))
                else {
                    return Vec::new();
                };
                let was = self.voice_service_available();
                let active = text("/service/state") == Some("Active");
                if self.voice_services.len() < MAX_SERVICES
                    || self.voice_services.contains_key(name)
                {
                    self.voice_services.insert(name.to_owned(), active);
                }
                let now = self.voice_service_available();
                if now != was {
                    vec![Seen::VoiceService(now)]
                } else {
                    Vec::new()
                }
            }
            _ => Vec::new(),
        }
    }

    /// Whether the voice service is available: no report yet, or one SIP node's link up.
    pub fn voice_service_available(&self) -> bool {
        self.voice_services.is_empty() || self.voice_services.values().any(|active| *active)
    }

    /// Shows a notice (a refused request, a failed contact-center session …).
    pub fn set_notice(&mut self, text: String) -> Vec<Seen> {
        self.notice = Some(text.clone());
        vec![Seen::Notice(text)]
    }

    fn set_voice(&mut self, voice: Voice) -> Vec<Seen> {
        if self.voice == voice {
            return Vec::new();
        }
        self.voice = voice.clone();
        vec![Seen::Voice(voice)]
    }

    fn set_call(&mut self, call: CallView) -> Vec<Seen> {
        let seen = Seen::Call {
            id: call.id.clone(),
            state: call.state.clone(),
        };
        if call.state == "Released" {
            self.calls.remove(&call.id);
        } else if self.calls.len() < MAX_CALLS || self.calls.contains_key(&call.id) {
            self.calls.insert(call.id.clone(), call);
        }
        vec![seen]
    }
}

/// The voice channel of one `devices[]` element.
fn voice_of_device(device: &Value) -> Voice {
    if device.get("deviceState").and_then(Value::as_str) != Some("Active") {
        return Voice::OutOfService;
    }
    let user_state = device.get("userState").unwrap_or(&Value::Null);
    let text = |k: &str| user_state.get(k).and_then(Value::as_str).map(str::to_owned);
    match text("state").as_deref() {
        Some("Ready") => Voice::Ready,
        Some("NotReady") => Voice::NotReady {
            work_mode: text("workMode"),
            reason: text("reason"),
        },
        Some("LoggedIn") => Voice::LoggedIn,
        Some("LoggedOut") => Voice::LoggedOut,
        Some("OutOfService") => Voice::OutOfService,
        _ => Voice::Unknown,
    }
}

/// One `call` object; None when it has no id or state.
fn call_of(call: &Value) -> Option<CallView> {
    let text = |p: &str| call.pointer(p).and_then(Value::as_str).map(str::to_owned);
    Some(CallView {
        id: text("/id")?,
        state: text("/state")?,
        party: text("/participants/0/phoneNumber").unwrap_or_default(),
        capabilities: call
            .get("capabilities")
            .and_then(Value::as_array)
            .map(|caps| {
                caps.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn device(state: &str, user_state: Value) -> Value {
        json!({"messageType": "DeviceStateChangeMessage",
               "devices": [{"deviceState": state, "userState": user_state, "phoneNumber": "8001"}]})
    }

    #[test]
    fn device_messages_set_the_voice_channel() {
        let mut s = Screen::new("agent8001");
        let seen = s.notify(
            "/v2/me/devices",
            &device("Active", json!({"state": "LoggedIn"})),
        );
        assert_eq!(seen, [Seen::Voice(Voice::LoggedIn)]);
        s.notify(
            "/v2/me/devices",
            &device("Active", json!({"state": "Ready"})),
        );
        assert_eq!(s.voice, Voice::Ready);
        assert!(s
            .notify(
                "/v2/me/devices",
                &device("Active", json!({"state": "Ready"}))
            )
            .is_empty());
        s.notify(
            "/v2/me/devices",
            &device(
                "Active",
                json!({"state": "NotReady", "workMode": "AuxWork", "reason": "Lunch"}),
            ),
        );
        assert_eq!(
            s.voice,
            Voice::NotReady {
                work_mode: Some("AuxWork".into()),
                reason: Some("Lunch".into())
            }
        );
        // R13 / S2.3: GWS lost its SIP node.
        s.notify(
            "/v2/me/devices",
            &json!({"messageType": "DeviceStateChangeMessage",
                                           "devices": [{"deviceState": "Inactive"}]}),
        );
        assert_eq!(s.voice, Voice::OutOfService);
        let service = |name: &str, state: &str| {
            json!({"messageType": "ServiceStateChangeMessage",
                   "service": {"type": "Voice", "name": name, "state": state}})
        };
        assert!(s.voice_service_available());
        let seen = s.notify("/notifications/services", &service("ss1", "Inactive"));
        assert_eq!(seen, [Seen::VoiceService(false)]);
        assert!(s
            .notify("/notifications/services", &service("ss2", "Inactive"))
            .is_empty());
        assert!(!s.voice_service_available());
        // Back on ss1 while ss2 stays down: available.
        let seen = s.notify("/notifications/services", &service("ss1", "Active"));
        assert_eq!(seen, [Seen::VoiceService(true)]);
        assert!(s
            .notify("/notifications/services", &service("ss2", "Inactive"))
            .is_empty());
    }

    #[test]
    fn calls_come_and_go_with_their_state() {
        let mut s = Screen::new("agent7001");
        let msg = |state: &str| {
            json!({"messageType": "CallStateChangeMessage",
            "call": {"id": "c1", "state": state, "capabilities": ["Answer"],
                     "participants": [{"phoneNumber": "5551234"}]}})
        };
        assert_eq!(
            s.notify("/v2/me/calls", &msg("Ringing")),
            [Seen::Call {
                id: "c1".into(),
                state: "Ringing".into()
            }]
        );
        assert_eq!(s.calls["c1"].party, "5551234");
        assert_eq!(s.calls["c1"].capabilities, ["Answer"]);
        s.notify("/v2/me/calls", &msg("Established"));
        assert_eq!(s.calls["c1"].state, "Established");
        s.notify("/v2/me/calls", &msg("Released"));
        assert!(s.calls.is_empty());
    }

    #[test]
    fn state_reload_replaces_calls_and_reports_vanished_ones() {
        let mut s = Screen::new("agent8001");
        s.notify(
            "/v2/me/calls",
            &json!({"messageType": "CallStateChangeMessage",
                                         "call": {"id": "old", "state": "Established"}}),
        );
        let seen = s.logged_in(&json!({"user": {
            "devices": [{"deviceState": "Active", "phoneNumber": "8001", "userState": {"state": "Ready"}}],
            "calls": [{"id": "new", "state": "Established"}]}}));
        assert_eq!(s.dn.as_deref(), Some("8001"));
        assert!(seen.contains(&Seen::Call {
            id: "old".into(),
            state: "Released".into()
        }));
        assert!(seen.contains(&Seen::Call {
            id: "new".into(),
            state: "Established".into()
        }));
        assert_eq!(s.calls.keys().collect::<Vec<_>>(), ["new"]);
        assert_eq!(s.voice, Voice::Ready);
    }

    #[test]
    fn malformed_messages_change_nothing() {
        let mut s = Screen::new("agent8001");
        for junk in [
            json!(null),
            json!(7),
            json!({"messageType": 3}),
            json!({"messageType": "CallStateChangeMessage", "call": {"id": 1}}),
            json!({"messageType": "DeviceStateChangeMessage", "devices": "x"}),
        ] {
            for ch in ["/v2/me/devices", "/v2/me/calls", "/v2/me/channels", "/x"] {
                assert!(s.notify(ch, &junk).is_empty());
            }
        }
        for i in 0..100 {
            s.notify(
                "/v2/me/calls",
                &json!({"messageType": "CallStateChangeMessage",
                                             "call": {"id": i.to_string(), "state": "Ringing"}}),
            );
        }
        assert_eq!(s.calls.len(), MAX_CALLS);
        s.set_connection(Connection::GaveUp);
        assert_eq!(s.banner, Some(crate::connection::UNABLE_TO_CONNECT));
    }
}
