//! What a desktop reads in GWS's JSON — REST answers, Bayeux messages and the notifications they
//! carry (docs/protocols.md §5) — as typed views holding only the fields WWE shows or acts on.
//! Everything else in a body is skipped while parsing, which is most of it: a swarm parses a few
//! bodies per login, and building a full `serde_json::Value` for each cost more CPU than the
//! HTTP exchange around it. Absent fields take their defaults; a body that does not fit is
//! refused by the parser as a whole (the callers say what that means). Pure data.

use serde::Deserialize;

/// A GWS REST answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RestAnswer {
    pub status_code: Option<i64>,
    pub status_message: Option<String>,
    /// `GET /api/v2/me`.
    pub user: Option<User>,
    /// Operations that failed in a partly successful one (`statusCode` 7).
    pub failed: Vec<Failed>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Failed {
    pub status_message: Option<String>,
}

/// The `user` of `GET /api/v2/me` with its subresources.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct User {
    pub devices: Vec<Device>,
    /// Present when asked for (`subresources=calls`): the calls replace the shown ones.
    pub calls: Option<Vec<Call>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Device {
    pub device_state: Option<String>,
    pub phone_number: Option<String>,
    pub user_state: Option<UserState>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct UserState {
    pub state: Option<String>,
    pub work_mode: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Call {
    pub id: Option<String>,
    pub state: Option<String>,
    pub participants: Vec<Participant>,
    pub capabilities: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Participant {
    pub phone_number: Option<String>,
}

/// One Bayeux message: a reply on a meta channel, or a notification delivered on a topic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Message {
    pub channel: Option<String>,
    pub successful: Option<bool>,
    pub error: Option<String>,
    pub client_id: Option<String>,
    pub advice: Option<AdviceFields>,
    pub data: Option<Notification>,
}

/// A reply's `advice`, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct AdviceFields {
    pub timeout: Option<u64>,
    pub interval: Option<u64>,
}

/// The `data` of a GWS notification.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Notification {
    pub message_type: Option<String>,
    /// `DeviceStateChangeMessage`.
    pub devices: Vec<Device>,
    /// `ErrorMessage`.
    pub error_message: Option<String>,
    /// `ChannelStateChangeMessage`.
    pub channels: Vec<Channel>,
    /// `CallStateChangeMessage`.
    pub call: Option<Call>,
    /// `ServiceStateChangeMessage`.
    pub service: Option<Service>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Channel {
    pub user_state: Option<UserState>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Service {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub name: Option<String>,
    pub state: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_answer_keeps_what_the_desktop_shows() {
        let body = br#"{"statusCode":0,"user":{"id":"u1","roles":["ROLE_AGENT"],
            "devices":[{"id":"d1","deviceState":"Active","phoneNumber":"8001",
                        "userState":{"state":"NotReady","workMode":"AuxWork","displayName":"x"},
                        "capabilities":["DoNotDisturbOn"]}],
            "channels":[{"channel":"voice"}]}}"#;
        let a: RestAnswer = serde_json::from_slice(body).unwrap();
        assert_eq!(a.status_code, Some(0));
        let user = a.user.unwrap();
        assert_eq!(user.calls, None, "not asked for");
        let d = &user.devices[0];
        assert_eq!(d.phone_number.as_deref(), Some("8001"));
        let state = d.user_state.as_ref().unwrap();
        assert_eq!(state.work_mode.as_deref(), Some("AuxWork"));
    }

    #[test]
    fn bayeux_messages_carry_replies_and_notifications() {
        let batch = br#"[{"channel":"/meta/connect","successful":true,"advice":{"timeout":30000}},
            {"channel":"/notifications/services","data":{"messageType":"ServiceStateChangeMessage",
             "service":{"type":"Voice","name":"ss1","state":"Active"}}}]"#;
        let m: Vec<Message> = serde_json::from_slice(batch).unwrap();
        assert_eq!(m[0].advice.unwrap().timeout, Some(30_000));
        let service = m[1].data.as_ref().unwrap().service.as_ref().unwrap();
        assert_eq!(service.kind.as_deref(), Some("Voice"));
        assert!(serde_json::from_slice::<Message>(br#"{"channel": 7}"#).is_err());
    }
}
