//! What the agent sees on the desktop: the connection banner (R13), the voice channel (agent
//! state, or out of service when the SIP side is lost — R13, S2.3, S3.5), the calls with their
//! state, and the last notice (a refused request, an `ErrorMessage`). Plain data, changed only by
//! pure functions of the GWS notifications and REST answers (docs/protocols.md §5).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::connection::Connection;
use crate::json::{Call, Device, Notification, User};

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

    /// The login answer's `user` (`GET /api/v2/me`): the DN and, when present, device state.
    pub fn logged_in(&mut self, user: &User) -> Vec<Seen> {
        let dn = user.devices.first().and_then(|d| d.phone_number.clone());
        self.dn = dn.or(self.dn.take());
        self.load(user)
    }

    /// The state reload after a (re)connect (`GET /api/v2/me?subresources=devices,calls,…`):
    /// the device and the calls replace what the screen showed.
    pub fn load(&mut self, user: &User) -> Vec<Seen> {
        let mut seen = Vec::new();
        if let Some(device) = user.devices.first() {
            seen.extend(self.set_voice(voice_of_device(device)));
        }
        if let Some(calls) = &user.calls {
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
    pub fn notify(&mut self, channel: &str, data: &Notification) -> Vec<Seen> {
        let kind = data.message_type.as_deref().unwrap_or("");
        match (channel, kind) {
            ("/v2/me/devices", "DeviceStateChangeMessage") => match data.devices.first() {
                Some(device) => self.set_voice(voice_of_device(device)),
                None => Vec::new(),
            },
            ("/v2/me/devices", "ErrorMessage") => {
                let text = data.error_message.as_deref().unwrap_or("Error");
                self.set_notice(text.to_owned())
            }
            ("/v2/me/channels", "ChannelStateChangeMessage") => {
                let state = data
                    .channels
                    .first()
                    .and_then(|c| c.user_state.as_ref())
                    .and_then(|u| u.state.as_deref());
                if state == Some("OutOfService") {
                    self.set_voice(Voice::OutOfService)
                } else {
                    Vec::new()
                }
            }
            ("/v2/me/calls", "CallStateChangeMessage") => {
                match data.call.as_ref().and_then(call_of) {
                    Some(call) => self.set_call(call),
                    None => Vec::new(),
                }
            }
            ("/notifications/services", "ServiceStateChangeMessage") => {
                let Some(service) = &data.service else {
                    return Vec::new();
                };
                let (Some("Voice"), Some(name)) =
                    (service.kind.as_deref(), service.name.as_deref())
                else {
                    return Vec::new();
                };
                let was = self.voice_service_available();
                let active = service.state.as_deref() == Some("Active");
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

    /// Whether the agent is logged in on the voice channel (LoggedIn, Ready or NotReady): a
    /// session can be open while the agent login was refused (R5: a call in progress) or the
    /// channel is out of service (R10, R13).
    pub fn agent_logged_in(&self) -> bool {
        matches!(
            self.voice,
            Voice::LoggedIn | Voice::Ready | Voice::NotReady { .. }
        )
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
fn voice_of_device(device: &Device) -> Voice {
    if device.device_state.as_deref() != Some("Active") {
        return Voice::OutOfService;
    }
    let Some(user_state) = &device.user_state else {
        return Voice::Unknown;
    };
    match user_state.state.as_deref() {
        Some("Ready") => Voice::Ready,
        Some("NotReady") => Voice::NotReady {
            work_mode: user_state.work_mode.clone(),
            reason: user_state.reason.clone(),
        },
        Some("LoggedIn") => Voice::LoggedIn,
        Some("LoggedOut") => Voice::LoggedOut,
        Some("OutOfService") => Voice::OutOfService,
        _ => Voice::Unknown,
    }
}

/// One `call` object; None when it has no id or state.
fn call_of(call: &Call) -> Option<CallView> {
    Some(CallView {
        id: call.id.clone()?,
        state: call.state.clone()?,
        party: call
            .participants
            .first()
            .and_then(|p| p.phone_number.clone())
            .unwrap_or_default(),
        capabilities: call.capabilities.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// A notification as GWS sends it.
    fn n(v: Value) -> Notification {
        serde_json::from_value(v).unwrap()
    }

    fn device(state: &str, user_state: Value) -> Notification {
        n(json!({"messageType": "DeviceStateChangeMessage",
                 "devices": [{"deviceState": state, "userState": user_state, "phoneNumber": "8001"}]}))
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
            &n(json!({"messageType": "DeviceStateChangeMessage",
                      "devices": [{"deviceState": "Inactive"}]})),
        );
        assert_eq!(s.voice, Voice::OutOfService);
        let service = |name: &str, state: &str| {
            n(json!({"messageType": "ServiceStateChangeMessage",
                     "service": {"type": "Voice", "name": name, "state": state}}))
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
            n(json!({"messageType": "CallStateChangeMessage",
            "call": {"id": "c1", "state": state, "capabilities": ["Answer"],
                     "participants": [{"phoneNumber": "5551234"}]}}))
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
            &n(json!({"messageType": "CallStateChangeMessage",
                      "call": {"id": "old", "state": "Established"}})),
        );
        let user = serde_json::from_value(json!({
            "devices": [{"deviceState": "Active", "phoneNumber": "8001", "userState": {"state": "Ready"}}],
            "calls": [{"id": "new", "state": "Established"}]}))
        .unwrap();
        let seen = s.logged_in(&user);
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
        // Wrong types are refused by the parser (the message is dropped before the screen).
        for junk in [
            json!(null),
            json!(7),
            json!({"messageType": 3}),
            json!({"messageType": "CallStateChangeMessage", "call": {"id": 1}}),
            json!({"messageType": "DeviceStateChangeMessage", "devices": "x"}),
        ] {
            assert!(serde_json::from_value::<Notification>(junk).is_err());
        }
        // What parses but lacks what matters changes nothing.
        for hollow in [
            json!({}),
            json!({"messageType": "CallStateChangeMessage", "call": {"state": "Ringing"}}),
            json!({"messageType": "DeviceStateChangeMessage"}),
            json!({"messageType": "ChannelStateChangeMessage", "channels": [{}]}),
            json!({"messageType": "ServiceStateChangeMessage", "service": {"type": "Chat"}}),
        ] {
            for ch in ["/v2/me/devices", "/v2/me/calls", "/v2/me/channels", "/x"] {
                assert!(s.notify(ch, &n(hollow.clone())).is_empty());
            }
        }
        for i in 0..100 {
            s.notify(
                "/v2/me/calls",
                &n(json!({"messageType": "CallStateChangeMessage",
                          "call": {"id": i.to_string(), "state": "Ringing"}})),
            );
        }
        assert_eq!(s.calls.len(), MAX_CALLS);
        s.set_connection(Connection::GaveUp);
        assert_eq!(s.banner, Some(crate::connection::UNABLE_TO_CONNECT));
    }
}
