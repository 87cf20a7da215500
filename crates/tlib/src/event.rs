//! Constructors for the events a server sends, and the per-server [`EventStamper`].
//!
//! Constructors are pure: they only shape attributes. Sequence numbers and event times are stamped
//! by the server at the moment it sends (`EventStamper::stamp`), so that building an event (in a
//! test, or speculatively) never consumes a sequence number, and sequence order matches send order.
//!
//! Every constructor takes `reference_id: impl Into<Option<u32>>`: pass the request's id for a
//! response, `None` for an unsolicited event.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::attrs::{Attributes, ConnId, KvList};
use crate::enums::{AddressInfoType, AgentWorkMode, CallState, CallType, ServerRole};
use crate::error_code;
use crate::message::Message;
use crate::names::MessageName;

fn event(name: MessageName, reference_id: impl Into<Option<u32>>, attrs: Attributes) -> Message {
    Message::with_attrs(name, attrs).with_reference_id(reference_id)
}

fn dn_attrs(dn: &str) -> Attributes {
    Attributes {
        this_dn: Some(dn.to_owned()),
        ..Attributes::default()
    }
}

/// `EventError` with `ErrorCode` and `ErrorMessage`.
pub fn error(reference_id: impl Into<Option<u32>>, code: u32, text: impl Into<String>) -> Message {
    let attrs = Attributes {
        error_code: Some(code),
        error_message: Some(text.into()),
        ..Attributes::default()
    };
    event(MessageName::EventError, reference_id, attrs)
}

/// `EventError` with the code's default text from [`crate::error_code::default_text`].
pub fn error_default(reference_id: impl Into<Option<u32>>, code: u32) -> Message {
    error(reference_id, code, error_code::default_text(code))
}

/// What `EventServerInfo` tells a client about the node: see [`server_info`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// Node (application) name, e.g. `ss1`: `ApplicationName`.
    pub node: String,
    /// Data center (site), e.g. `dc1`: `Location`.
    pub dc: String,
    /// `ServerRole`.
    pub role: ServerRole,
    /// `ServerVersion`.
    pub version: Option<String>,
}

impl ServerInfo {
    /// Reads the fields back from an `EventServerInfo`; `None` for any other message or when the
    /// node name or DC is missing. A missing role reads as `Primary`.
    pub fn from_message(msg: &Message) -> Option<ServerInfo> {
        if msg.name != MessageName::EventServerInfo {
            return None;
        }
        Some(ServerInfo {
            node: msg.attrs.application_name.clone()?,
            dc: msg.attrs.location.clone()?,
            role: msg.attrs.server_role.unwrap_or(ServerRole::Primary),
            version: msg.attrs.server_version.clone(),
        })
    }
}

/// `EventServerInfo`: the node's name in `ApplicationName`, its DC in `Location`, its role in
/// `ServerRole`, and this crate's version in `ServerVersion`.
pub fn server_info(
    reference_id: impl Into<Option<u32>>,
    node: &str,
    dc: &str,
    role: ServerRole,
) -> Message {
    let attrs = Attributes {
        application_name: Some(node.to_owned()),
        location: Some(dc.to_owned()),
        server_role: Some(role),
        server_version: Some(concat!("drlab-tlib/", env!("CARGO_PKG_VERSION")).to_owned()),
        ..Attributes::default()
    };
    event(MessageName::EventServerInfo, reference_id, attrs)
}

/// `EventLinkConnected`: the node's switch (SIP) side is up. Unsolicited.
pub fn link_connected() -> Message {
    Message::new(MessageName::EventLinkConnected)
}

/// `EventLinkDisconnected`: the node's switch side is lost (node isolated). Unsolicited.
pub fn link_disconnected() -> Message {
    Message::new(MessageName::EventLinkDisconnected)
}

/// `EventACK`: a request was accepted and has no specific response event.
pub fn ack(reference_id: impl Into<Option<u32>>) -> Message {
    event(MessageName::EventACK, reference_id, Attributes::default())
}

/// `EventRegistered` for `ThisDN`.
pub fn registered(reference_id: impl Into<Option<u32>>, dn: &str) -> Message {
    event(MessageName::EventRegistered, reference_id, dn_attrs(dn))
}

/// `EventUnregistered` for `ThisDN`.
pub fn unregistered(reference_id: impl Into<Option<u32>>, dn: &str) -> Message {
    event(MessageName::EventUnregistered, reference_id, dn_attrs(dn))
}

/// `EventAgentLogin`.
pub fn agent_login(
    reference_id: impl Into<Option<u32>>,
    dn: &str,
    agent_id: Option<&str>,
    work_mode: Option<AgentWorkMode>,
) -> Message {
    let mut a = dn_attrs(dn);
    a.agent_id = agent_id.map(str::to_owned);
    a.agent_work_mode = work_mode;
    event(MessageName::EventAgentLogin, reference_id, a)
}

/// `EventAgentLogout`.
pub fn agent_logout(
    reference_id: impl Into<Option<u32>>,
    dn: &str,
    agent_id: Option<&str>,
) -> Message {
    let mut a = dn_attrs(dn);
    a.agent_id = agent_id.map(str::to_owned);
    event(MessageName::EventAgentLogout, reference_id, a)
}

/// `EventAgentReady`.
pub fn agent_ready(
    reference_id: impl Into<Option<u32>>,
    dn: &str,
    agent_id: Option<&str>,
    work_mode: Option<AgentWorkMode>,
) -> Message {
    let mut a = dn_attrs(dn);
    a.agent_id = agent_id.map(str::to_owned);
    a.agent_work_mode = work_mode;
    event(MessageName::EventAgentReady, reference_id, a)
}

/// `EventAgentNotReady`, e.g. `AfterCallWork` after a call (unsolicited) or `AuxWork` with
/// `Reasons {ReasonCode}`.
pub fn agent_not_ready(
    reference_id: impl Into<Option<u32>>,
    dn: &str,
    agent_id: Option<&str>,
    work_mode: Option<AgentWorkMode>,
    reasons: Option<KvList>,
) -> Message {
    let mut a = dn_attrs(dn);
    a.agent_id = agent_id.map(str::to_owned);
    a.agent_work_mode = work_mode;
    a.reasons = reasons;
    event(MessageName::EventAgentNotReady, reference_id, a)
}

/// `EventDNOutOfService` (the phone's registration expired or was removed). Unsolicited.
pub fn dn_out_of_service(dn: &str) -> Message {
    Message::with_attrs(MessageName::EventDNOutOfService, dn_attrs(dn))
}

/// `EventDNBackInService` (the phone registered again). Unsolicited.
pub fn dn_back_in_service(dn: &str) -> Message {
    Message::with_attrs(MessageName::EventDNBackInService, dn_attrs(dn))
}

/// `EventAddressInfo` answering `RequestQueryAddress`; the status details go in `Extensions`.
pub fn address_info(
    reference_id: impl Into<Option<u32>>,
    dn: &str,
    info_type: AddressInfoType,
    extensions: Option<KvList>,
) -> Message {
    let mut a = dn_attrs(dn);
    a.address_info_type = Some(info_type);
    a.extensions = extensions;
    event(MessageName::EventAddressInfo, reference_id, a)
}

/// The call attributes shared by every call event, as seen from `this_dn`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CallInfo {
    pub conn_id: ConnId,
    pub call_uuid: Option<String>,
    pub this_dn: String,
    pub other_dn: Option<String>,
    pub ani: Option<String>,
    pub dnis: Option<String>,
    pub call_type: Option<CallType>,
    pub call_state: Option<CallState>,
    pub user_data: Option<KvList>,
}

impl CallInfo {
    fn attrs(&self) -> Attributes {
        Attributes {
            conn_id: Some(self.conn_id),
            call_uuid: self.call_uuid.clone(),
            this_dn: Some(self.this_dn.clone()),
            other_dn: self.other_dn.clone(),
            ani: self.ani.clone(),
            dnis: self.dnis.clone(),
            call_type: self.call_type,
            call_state: self.call_state,
            user_data: self.user_data.clone(),
            ..Attributes::default()
        }
    }

    /// Reads the call attributes back from a call event (client side). `None` without `ConnID`
    /// or `ThisDN`.
    pub fn from_message(msg: &Message) -> Option<CallInfo> {
        let a = &msg.attrs;
        Some(CallInfo {
            conn_id: a.conn_id?,
            call_uuid: a.call_uuid.clone(),
            this_dn: a.this_dn.clone()?,
            other_dn: a.other_dn.clone(),
            ani: a.ani.clone(),
            dnis: a.dnis.clone(),
            call_type: a.call_type,
            call_state: a.call_state,
            user_data: a.user_data.clone(),
        })
    }
}

/// Any call event (`EventRinging`, `EventEstablished` …) from a [`CallInfo`].
pub fn call_event(
    name: MessageName,
    reference_id: impl Into<Option<u32>>,
    call: &CallInfo,
) -> Message {
    event(name, reference_id, call.attrs())
}

/// `EventRinging`.
pub fn ringing(reference_id: impl Into<Option<u32>>, call: &CallInfo) -> Message {
    call_event(MessageName::EventRinging, reference_id, call)
}

/// `EventDialing`.
pub fn dialing(reference_id: impl Into<Option<u32>>, call: &CallInfo) -> Message {
    call_event(MessageName::EventDialing, reference_id, call)
}

/// `EventNetworkReached`.
pub fn network_reached(reference_id: impl Into<Option<u32>>, call: &CallInfo) -> Message {
    call_event(MessageName::EventNetworkReached, reference_id, call)
}

/// `EventEstablished`.
pub fn established(reference_id: impl Into<Option<u32>>, call: &CallInfo) -> Message {
    call_event(MessageName::EventEstablished, reference_id, call)
}

/// `EventReleased`.
pub fn released(reference_id: impl Into<Option<u32>>, call: &CallInfo) -> Message {
    call_event(MessageName::EventReleased, reference_id, call)
}

/// `EventHeld`.
pub fn held(reference_id: impl Into<Option<u32>>, call: &CallInfo) -> Message {
    call_event(MessageName::EventHeld, reference_id, call)
}

/// `EventRetrieved`.
pub fn retrieved(reference_id: impl Into<Option<u32>>, call: &CallInfo) -> Message {
    call_event(MessageName::EventRetrieved, reference_id, call)
}

/// Stamps `EventSequenceNumber`, `TimeinSecs` and `TimeinuSecs` on outgoing events.
///
/// One per server (share it behind an `Arc` across connection tasks); the sequence number rises
/// by one per stamped event across all of the server's clients, as T-Server's does.
#[derive(Debug)]
pub struct EventStamper {
    next: AtomicU64,
}

impl Default for EventStamper {
    fn default() -> Self {
        Self::new()
    }
}

impl EventStamper {
    /// Starts at sequence number 1.
    pub fn new() -> Self {
        Self::starting_at(1)
    }

    /// Starts at `first` (e.g. to continue after a restart).
    pub fn starting_at(first: u64) -> Self {
        EventStamper {
            next: AtomicU64::new(first),
        }
    }

    /// Stamps an event with the next sequence number and the current wall time; returns the
    /// number. Non-events (requests, `Ping`/`Pong`) are left alone and get `None`.
    pub fn stamp(&self, msg: &mut Message) -> Option<u64> {
        self.stamp_at(msg, SystemTime::now())
    }

    /// [`stamp`](Self::stamp) with an explicit time (tests, replay).
    pub fn stamp_at(&self, msg: &mut Message, time: SystemTime) -> Option<u64> {
        if !msg.name.is_event() {
            return None;
        }
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        // A clock before 1970 is a broken host; stamp 0 rather than fail the send.
        let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        msg.attrs.event_sequence_number = Some(seq);
        msg.attrs.time_in_secs = Some(since_epoch.as_secs());
        msg.attrs.time_in_usecs = Some(since_epoch.subsec_micros());
        Some(seq)
    }

    /// The number the next stamped event will get.
    pub fn peek_next(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    #[test]
    fn error_event() {
        let e = error(7, error_code::NOT_CONFIGURED, "DN 9999 is not configured");
        assert_eq!(e.name, MessageName::EventError);
        assert_eq!(e.reference_id(), Some(7));
        assert_eq!(e.attrs.error_code, Some(59));
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"message": "EventError", "ReferenceID": 7, "ErrorCode": 59,
                   "ErrorMessage": "DN 9999 is not configured"})
        );
        let e = error_default(None, 41);
        assert_eq!(e.reference_id(), None);
        assert_eq!(
            e.attrs.error_message.as_deref(),
            Some(error_code::default_text(41))
        );
    }

    #[test]
    fn server_info_round_trips() {
        let m = server_info(1, "ss1", "dc1", ServerRole::Primary);
        let info = ServerInfo::from_message(&m).unwrap();
        assert_eq!(info.node, "ss1");
        assert_eq!(info.dc, "dc1");
        assert_eq!(info.role, ServerRole::Primary);
        assert!(info.version.is_some());
        assert_eq!(ServerInfo::from_message(&link_connected()), None);
    }

    #[test]
    fn agent_and_dn_events() {
        let m = agent_not_ready(
            None,
            "7001",
            Some("agent7001"),
            Some(AgentWorkMode::AfterCallWork),
            None,
        );
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            json!({"message": "EventAgentNotReady", "ThisDN": "7001", "AgentID": "agent7001",
                   "AgentWorkMode": "AfterCallWork"})
        );
        assert_eq!(registered(3, "7001").this_dn(), Some("7001"));
        assert_eq!(dn_out_of_service("7001").reference_id(), None);
        assert_eq!(
            dn_back_in_service("7001").name,
            MessageName::EventDNBackInService
        );
    }

    #[test]
    fn call_events_carry_call_info() {
        let call = CallInfo {
            conn_id: ConnId(0x10),
            call_uuid: Some("UUID1".into()),
            this_dn: "7001".into(),
            other_dn: Some("5551234".into()),
            ani: Some("5551234".into()),
            dnis: Some("7001".into()),
            call_type: Some(CallType::Inbound),
            call_state: Some(CallState::Ok),
            user_data: None,
        };
        let m = ringing(None, &call);
        assert_eq!(m.name, MessageName::EventRinging);
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["ConnID"], json!("0000000000000010"));
        assert_eq!(v["CallType"], json!("Inbound"));
        assert_eq!(CallInfo::from_message(&m), Some(call.clone()));
        for (m, n) in [
            (dialing(1, &call), MessageName::EventDialing),
            (established(None, &call), MessageName::EventEstablished),
            (released(None, &call), MessageName::EventReleased),
            (held(2, &call), MessageName::EventHeld),
            (retrieved(3, &call), MessageName::EventRetrieved),
            (
                network_reached(None, &call),
                MessageName::EventNetworkReached,
            ),
        ] {
            assert_eq!(m.name, n);
            assert_eq!(m.attrs.conn_id, Some(ConnId(0x10)));
        }
    }

    #[test]
    fn stamper_rises_and_skips_non_events() {
        let s = EventStamper::new();
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        let mut a = registered(1, "7001");
        let mut b = link_connected();
        let mut ping = Message::ping();
        assert_eq!(s.stamp_at(&mut a, t), Some(1));
        assert_eq!(s.stamp_at(&mut ping, t), None);
        assert_eq!(s.stamp(&mut b), Some(2));
        assert_eq!(a.attrs.time_in_secs, Some(1_700_000_000));
        assert_eq!(a.attrs.time_in_usecs, Some(123_456));
        assert_eq!(ping.attrs.event_sequence_number, None);
        assert_eq!(s.peek_next(), 3);
    }
}
