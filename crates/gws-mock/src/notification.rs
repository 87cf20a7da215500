//! The JSON a desktop sees: REST resources and CometD notification bodies, shaped as in
//! docs/protocols.md §5.2–§5.3 (after real GWS). Pure functions of the device state; `base`
//! is the node's `http://host:port` for `uri` fields.

use serde_json::{json, Value};
use tlib::AgentWorkMode;
use tokio::time::Instant;

use crate::device::{AgentState, Call, Device, DeviceState};

/// CometD channels (topics) of GWS API v2.
pub mod channel {
    pub const DEVICES: &str = "/v2/me/devices";
    pub const CALLS: &str = "/v2/me/calls";
    pub const CHANNELS: &str = "/v2/me/channels";
    pub const SERVICES: &str = "/notifications/services";
}

/// `userState`, with the ids and display names of the system agent states
/// ([`crate::agent_states`]). A NotReady other than after-call work is shown as the documented
/// sample shows it — the NotReady state with its `workMode` and `reason` — since the SIP node
/// reports AuxWork for a NotReady without a work mode, so the events cannot tell them apart.
pub fn user_state(agent: &AgentState) -> Value {
    use crate::agent_states::system;
    let shown = |s: &system::System| json!({"id": s.id, "displayName": s.display_name});
    match agent {
        AgentState::LoggedOut => {
            let mut v = shown(&system::OFFLINE);
            v["state"] = json!("LoggedOut");
            v
        }
        AgentState::LoggedIn => json!({"displayName": "Logged In", "state": "LoggedIn"}),
        AgentState::Ready => {
            let mut v = shown(&system::READY);
            v["state"] = json!("Ready");
            v
        }
        AgentState::NotReady { work_mode, reason } => {
            let shown_as = match work_mode {
                AgentWorkMode::AfterCallWork => &system::AFTER_CALL_WORK,
                _ => &system::NOT_READY,
            };
            let mut v = shown(shown_as);
            v["state"] = json!("NotReady");
            v["workMode"] = json!(work_mode.as_str());
            if let Some(r) = reason {
                v["reason"] = json!(r);
            }
            v
        }
    }
}

/// One element of `devices[]`. An inactive device has no `userState` (observed).
pub fn device(d: &Device, base: &str) -> Value {
    let mut v = json!({
        "id": d.id,
        "deviceState": match d.state { DeviceState::Active => "Active", DeviceState::Inactive => "Inactive" },
        "phoneNumber": d.dn,
        "e164Number": d.dn,
        "telephonyNetwork": "Private",
        "doNotDisturb": on_off(d.dnd),
        "voiceEnvironmentUri": format!("{base}/api/v2/voice-environments/voice"),
        "capabilities": d.capabilities(),
        "channels": ["voice"],
        "dynamicPhoneNumber": "",
        "uri": format!("{base}/api/v2/devices/{}", d.id),
        "path": format!("/devices/{}", d.id),
    });
    if d.state == DeviceState::Active {
        v["userState"] = user_state(&d.agent);
    }
    if let Some(to) = &d.forward_to {
        v["callForwardingDestination"] = json!(to);
    }
    v
}

fn on_off(on: bool) -> &'static str {
    if on {
        "On"
    } else {
        "Off"
    }
}

/// One element of `calls[]`. The participant is the other party: the first of `OtherDN`, ANI
/// and DNIS that is not the device's own DN (a dialled call's events may name the agent's DN
/// as `OtherDN`; its DNIS is the destination).
pub fn call(c: &Call, d: &Device, base: &str, now: Instant) -> Value {
    let other = [&c.other_dn, &c.ani, &c.dnis]
        .into_iter()
        .filter_map(|v| v.as_deref())
        .find(|n| *n != d.dn)
        .unwrap_or("");
    let call_type = c.call_type.map(|t| t.as_str()).unwrap_or("Unknown");
    json!({
        "id": c.id,
        "state": c.state.as_str(),
        "callUuid": c.id,
        "connId": c.conn_id.to_string(),
        "deviceUri": format!("{base}/api/v2/devices/{}", d.id),
        "participants": [{"e164Number": "", "formattedPhoneNumber": other, "phoneNumber": other, "digits": other}],
        "ani": c.ani,
        "dnis": c.dnis,
        "callType": call_type,
        "capabilities": c.capabilities(),
        "userData": c.user_data,
        "duration": c.duration(now).to_string(),
        "mute": "Off",
        "supervisorListeningIn": false,
        "monitoredUserMuted": false,
        "monitoring": false,
        "uri": format!("{base}/api/v2/me/calls/{}", c.id),
        "path": format!("/calls/{}", c.id),
    })
}

/// `DeviceStateChangeMessage` on `/v2/me/devices`.
pub fn device_state_change(d: &Device, base: &str) -> Value {
    json!({"messageType": "DeviceStateChangeMessage", "devices": [device(d, base)]})
}

/// `CallStateChangeMessage` on `/v2/me/calls`; `notification_type` is `StatusChange` or
/// `AttachedDataChanged`.
pub fn call_state_change(
    c: &Call,
    d: &Device,
    base: &str,
    now: Instant,
    notification_type: &str,
) -> Value {
    json!({
        "messageType": "CallStateChangeMessage",
        "notificationType": notification_type,
        "call": call(c, d, base, now),
        "phoneNumber": d.dn,
        "extensions": c.extensions,
    })
}

/// `ChannelStateChangeMessage` on `/v2/me/channels`: the voice channel and its agent state.
/// An inactive device's channel is out of service.
pub fn channel_state_change(d: &Device) -> Value {
    let user_state = match d.state {
        DeviceState::Active => user_state(&d.agent),
        DeviceState::Inactive => json!({"displayName": "Out Of Service", "state": "OutOfService"}),
    };
    json!({"messageType": "ChannelStateChangeMessage",
           "channels": [{"channel": "voice", "userState": user_state, "dndState": on_off(d.dnd)}]})
}

/// `ErrorMessage` on `/v2/me/devices` (observed shape, plus the T-Library error).
pub fn error(d: &Device, code: u32, text: &str, base: &str) -> Value {
    json!({
        "messageType": "ErrorMessage",
        "devicePath": format!("/devices/{}", d.id),
        "deviceUri": format!("{base}/api/v2/devices/{}", d.id),
        "errorCode": code,
        "errorMessage": text,
    })
}

/// One element of `GET /api/v2/services`: the SIP node as the `Voice` service.
pub fn service(name: &str, active: bool, base: &str) -> Value {
    json!({
        "id": name,
        "name": name,
        "type": "Voice",
        "state": if active { "Active" } else { "Inactive" },
        "uri": format!("{base}/api/v2/services/{name}"),
        "path": format!("/services/{name}"),
    })
}

/// `ServiceStateChangeMessage` on `/notifications/services` (an [I] shape: GWS 8.5 names the
/// channel, the v3 API calls it `ServiceStateChanged` with VOICE / UNAVAILABLE).
pub fn service_state_change(name: &str, active: bool, base: &str) -> Value {
    json!({"messageType": "ServiceStateChangeMessage", "service": service(name, active, base)})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::CallState;
    use tlib::{CallType, ConnId, KvList};

    #[test]
    fn device_message_matches_the_observed_shape() {
        let mut d = Device::new("5005");
        let v = device_state_change(&d, "http://gws:8090");
        assert_eq!(v["messageType"], "DeviceStateChangeMessage");
        assert_eq!(v["devices"][0]["deviceState"], "Inactive");
        assert!(v["devices"][0].get("userState").is_none());
        d.state = DeviceState::Active;
        d.agent = AgentState::NotReady {
            work_mode: AgentWorkMode::AuxWork,
            reason: Some("Lunch".into()),
        };
        let v = device_state_change(&d, "http://gws:8090");
        let u = &v["devices"][0]["userState"];
        assert_eq!(u["state"], "NotReady");
        assert_eq!(u["workMode"], "AuxWork");
        assert_eq!(u["reason"], "Lunch");
        assert_eq!(v["devices"][0]["phoneNumber"], "5005");
        assert_eq!(channel_state_change(&d)["channels"][0]["channel"], "voice");
    }

    #[test]
    fn call_message_matches_the_observed_shape() {
        let d = Device::new("1002");
        let c = Call {
            id: "u1".into(),
            conn_id: ConnId(0x006c03a7194aa020),
            state: CallState::Ringing,
            ani: Some("1003".into()),
            dnis: Some("1002".into()),
            other_dn: None,
            call_type: Some(CallType::Internal),
            extensions: KvList::new(),
            user_data: KvList::new(),
            started: Instant::now(),
        };
        let v = call_state_change(&c, &d, "http://gws:8090", c.started, "StatusChange");
        assert_eq!(v["call"]["duration"], "0");
        // A dialled call: its events name the agent's own DN; the participant is the DNIS.
        let dialled = Call {
            other_dn: Some("1002".into()),
            ani: Some("1002".into()),
            dnis: Some("7041".into()),
            ..c.clone()
        };
        let p = &call(&dialled, &d, "http://gws:8090", c.started)["participants"][0];
        assert_eq!(p["phoneNumber"], "7041");
        assert_eq!(v["notificationType"], "StatusChange");
        assert_eq!(v["call"]["connId"], "006c03a7194aa020");
        assert_eq!(v["call"]["participants"][0]["phoneNumber"], "1003");
        assert_eq!(v["call"]["callType"], "Internal");
        assert_eq!(v["call"]["capabilities"][0], "Answer");
        assert_eq!(v["call"]["uri"], "http://gws:8090/api/v2/me/calls/u1");
        assert_eq!(v["phoneNumber"], "1002");
        let s = service_state_change("ss1", false, "http://gws:8090");
        assert_eq!(s["service"]["type"], "Voice");
        assert_eq!(s["service"]["state"], "Inactive");
    }
}
