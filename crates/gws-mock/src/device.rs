//! An agent's voice device as GWS sees it through T-Library: device state, agent state and
//! calls, and how each T-Event changes them (docs/protocols.md §2.2, §5.3). Plain data and one pure
//! function, [`Device::apply`], so the mapping is tested without sockets.

use serde_json::Value;
use tlib::{AgentWorkMode, CallType, ConnId, KvList, Message, MessageName};
use tokio::time::Instant;

/// Calls kept per device; a desktop has one or two at a time, so more means lost releases.
const MAX_CALLS: usize = 16;

/// `deviceState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceState {
    Active,
    Inactive,
}

/// The agent's state on the voice channel (`userState.state`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentState {
    LoggedOut,
    /// Between `EventAgentLogin` and the first Ready / NotReady.
    LoggedIn,
    Ready,
    NotReady {
        work_mode: AgentWorkMode,
        /// `Reasons.ReasonCode`, as text.
        reason: Option<String>,
    },
}

/// `call.state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallState {
    Dialing,
    Ringing,
    Established,
    Held,
    Released,
}

impl CallState {
    pub fn as_str(self) -> &'static str {
        match self {
            CallState::Dialing => "Dialing",
            CallState::Ringing => "Ringing",
            CallState::Established => "Established",
            CallState::Held => "Held",
            CallState::Released => "Released",
        }
    }
}

/// A call on the device.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// `call.id`: the CallUUID (the ConnID when the SIP node sent none).
    pub id: String,
    pub conn_id: ConnId,
    pub state: CallState,
    pub ani: Option<String>,
    pub dnis: Option<String>,
    pub other_dn: Option<String>,
    pub call_type: Option<CallType>,
    /// T-Event `Extensions` seen so far (`WrapUpTime`, `BusinessCall` …).
    pub extensions: KvList,
    pub user_data: KvList,
    /// The first event of the call reached this node (for `duration`).
    pub started: Instant,
}

/// The REST operations on a call this mock carries out — and so the only ones a call's
/// `capabilities` name (transfers and conferences are not modelled).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallOperation {
    Answer,
    Hangup,
    Hold,
    Retrieve,
    ClearCall,
    AttachUserData,
    UpdateUserData,
    DeleteUserData,
    SendDtmf,
}

impl CallOperation {
    pub const ALL: [CallOperation; 9] = [
        CallOperation::Answer,
        CallOperation::Hangup,
        CallOperation::Hold,
        CallOperation::Retrieve,
        CallOperation::ClearCall,
        CallOperation::AttachUserData,
        CallOperation::UpdateUserData,
        CallOperation::DeleteUserData,
        CallOperation::SendDtmf,
    ];

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CallOperation::Answer => "Answer",
            CallOperation::Hangup => "Hangup",
            CallOperation::Hold => "Hold",
            CallOperation::Retrieve => "Retrieve",
            CallOperation::ClearCall => "ClearCall",
            CallOperation::AttachUserData => "AttachUserData",
            CallOperation::UpdateUserData => "UpdateUserData",
            CallOperation::DeleteUserData => "DeleteUserData",
            CallOperation::SendDtmf => "SendDtmf",
        }
    }

    /// Whether the operation applies to a call in `state`.
    fn applies_in(self, state: CallState) -> bool {
        use CallState::*;
        match self {
            CallOperation::Answer => state == Ringing,
            CallOperation::Hangup => matches!(state, Dialing | Established | Held),
            CallOperation::Hold => state == Established,
            CallOperation::Retrieve => state == Held,
            CallOperation::ClearCall => matches!(state, Ringing | Established | Held),
            CallOperation::AttachUserData
            | CallOperation::UpdateUserData
            | CallOperation::DeleteUserData => state != Released,
            CallOperation::SendDtmf => matches!(state, Dialing | Established),
        }
    }
}

impl Call {
    /// `call.capabilities` in this state: the operations this mock carries out on it.
    pub fn capabilities(&self) -> Vec<&'static str> {
        CallOperation::ALL
            .into_iter()
            .filter(|op| self.allows(*op))
            .map(CallOperation::as_str)
            .collect()
    }

    /// Whether `op` is allowed now (GWS: "allowed = the call's capabilities").
    pub fn allows(&self, op: CallOperation) -> bool {
        op.applies_in(self.state)
    }

    /// `duration`: whole seconds since the call reached this node.
    pub fn duration(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.started).as_secs()
    }
}

/// Why the SIP node took a DN out of service (R13), from `EventDNOutOfService`'s
/// `Extensions.OutOfServiceReason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutOfService {
    /// `OwnerUnreachable`: a node that is not the DN's owner lost its link to the owner (R10).
    /// The DN may well be fine at its owner; the voice channel is only unavailable here.
    OwnerUnreachable,
    /// `OwnerOutOfService`, or no reason at all (as a real SIP Server sends it): the owner took
    /// the DN out of service (registration expired or removed, R12; ownership moved, R8).
    AtOwner,
}

impl OutOfService {
    /// The reason an `EventDNOutOfService` gives; None for any other message.
    pub fn of(msg: &Message) -> Option<OutOfService> {
        if msg.name != MessageName::EventDNOutOfService {
            return None;
        }
        let reason = msg
            .attrs
            .extensions
            .as_ref()
            .and_then(|e| e.get("OutOfServiceReason"))
            .and_then(Value::as_str);
        Some(match reason {
            Some("OwnerUnreachable") => OutOfService::OwnerUnreachable,
            _ => OutOfService::AtOwner,
        })
    }
}

/// What a T-Event changed, for the notification to send.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Device or agent state: `DeviceStateChangeMessage`.
    Device,
    /// A call's state, as it is after the event: `CallStateChangeMessage` `StatusChange`.
    Call(Box<Call>),
    /// A call's user data: `CallStateChangeMessage` `AttachedDataChanged`.
    CallData(Box<Call>),
}

/// One voice device.
#[derive(Clone, Debug, PartialEq)]
pub struct Device {
    pub dn: String,
    /// The device's id in URIs (a UUID in real GWS; stable per DN here).
    pub id: String,
    pub state: DeviceState,
    pub agent: AgentState,
    pub calls: Vec<Call>,
    /// StartContactCenterSession registered the DN at the SIP node for the user (unregistered
    /// by EndContactCenterSession or when the DN's last session ends).
    pub contact_center: bool,
    /// Do Not Disturb, set by `DoNotDisturbOn` / `DoNotDisturbOff` (kept by GWS only).
    pub dnd: bool,
    /// Where `ForwardCallsOn` forwards calls to, until `CancelForward` (kept by GWS only).
    pub forward_to: Option<String>,
}

impl Device {
    /// A device the SIP node has not reported yet: inactive, agent logged out.
    pub fn new(dn: &str) -> Device {
        Device {
            dn: dn.to_owned(),
            id: device_id(dn),
            state: DeviceState::Inactive,
            agent: AgentState::LoggedOut,
            calls: Vec::new(),
            contact_center: false,
            dnd: false,
            forward_to: None,
        }
    }

    /// `capabilities`: the device operations that apply now.
    pub fn capabilities(&self) -> Vec<&'static str> {
        let dnd = if self.dnd {
            "DoNotDisturbOff"
        } else {
            "DoNotDisturbOn"
        };
        let forward = if self.forward_to.is_some() {
            "CancelForward"
        } else {
            "ForwardCallsOn"
        };
        vec![dnd, forward]
    }

    pub fn call(&self, id: &str) -> Option<&Call> {
        self.calls.iter().find(|c| c.id == id)
    }

    /// R13: the SIP link is gone, so GWS knows nothing about the device any more.
    /// Returns whether anything changed.
    pub fn link_lost(&mut self) -> bool {
        let changed = self.state != DeviceState::Inactive;
        self.state = DeviceState::Inactive;
        changed
    }

    /// Applies one T-Event addressed to this device's DN.
    pub fn apply(&mut self, msg: &Message) -> Option<Change> {
        let a = &msg.attrs;
        match msg.name {
            // Both carry the DN's status in `Extensions`: the answer to GWS's registration, and to
            // the query GWS sends when a desktop first opens the device.
            MessageName::EventRegistered | MessageName::EventAddressInfo => {
                let ext = a.extensions.as_ref();
                let text = |k: &str| ext.and_then(|e| e.get(k)).and_then(Value::as_str);
                self.state = match text("DNStatus") {
                    Some("OutOfService") => DeviceState::Inactive,
                    _ => DeviceState::Active,
                };
                self.agent = match text("AgentStatus") {
                    Some("Ready") => AgentState::Ready,
                    Some("NotReady") => AgentState::NotReady {
                        work_mode: text("AgentWorkMode")
                            .and_then(AgentWorkMode::from_name)
                            .unwrap_or(AgentWorkMode::AuxWork),
                        reason: None,
                    },
                    Some("LoggedIn") => AgentState::LoggedIn,
                    _ => AgentState::LoggedOut,
                };
                Some(Change::Device)
            }
            MessageName::EventDNBackInService => {
                self.state = DeviceState::Active;
                Some(Change::Device)
            }
            MessageName::EventDNOutOfService => {
                self.state = DeviceState::Inactive;
                Some(Change::Device)
            }
            MessageName::EventAgentLogin => {
                self.agent = AgentState::LoggedIn;
                Some(Change::Device)
            }
            MessageName::EventAgentLogout => {
                self.agent = AgentState::LoggedOut;
                Some(Change::Device)
            }
            MessageName::EventAgentReady => {
                self.agent = AgentState::Ready;
                Some(Change::Device)
            }
            MessageName::EventAgentNotReady => {
                let reason =
                    a.reasons
                        .as_ref()
                        .and_then(|r| r.get("ReasonCode"))
                        .map(|v| match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        });
                self.agent = AgentState::NotReady {
                    work_mode: match a.agent_work_mode {
                        None | Some(AgentWorkMode::Unknown) => AgentWorkMode::AuxWork,
                        Some(m) => m,
                    },
                    reason,
                };
                Some(Change::Device)
            }
            MessageName::EventRinging => self.call_event(msg, CallState::Ringing),
            MessageName::EventDialing => self.call_event(msg, CallState::Dialing),
            MessageName::EventEstablished | MessageName::EventRetrieved => {
                self.call_event(msg, CallState::Established)
            }
            MessageName::EventHeld => self.call_event(msg, CallState::Held),
            MessageName::EventReleased => self.call_event(msg, CallState::Released),
            // The event carries the call's whole user data (a delete leaves none).
            MessageName::EventAttachedDataChanged => {
                let call = self
                    .calls
                    .iter_mut()
                    .find(|c| Some(c.conn_id) == a.conn_id)?;
                call.user_data = a.user_data.clone().unwrap_or_default();
                Some(Change::CallData(Box::new(call.clone())))
            }
            _ => None,
        }
    }

    fn call_event(&mut self, msg: &Message, state: CallState) -> Option<Change> {
        let a = &msg.attrs;
        let conn_id = a.conn_id?;
        let pos = self.calls.iter().position(|c| c.conn_id == conn_id);
        let mut call = match pos {
            Some(i) => self.calls.remove(i),
            None => Call {
                id: a.call_uuid.clone().unwrap_or_else(|| conn_id.to_string()),
                conn_id,
                state,
                ani: None,
                dnis: None,
                other_dn: None,
                call_type: None,
                extensions: KvList::new(),
                user_data: KvList::new(),
                started: Instant::now(),
            },
        };
        call.state = state;
        // Later events may carry what earlier ones lacked; never erase what is known.
        fill(&mut call.ani, &a.ani);
        fill(&mut call.dnis, &a.dnis);
        fill(&mut call.other_dn, &a.other_dn);
        if a.call_type.is_some() {
            call.call_type = a.call_type;
        }
        if let Some(ext) = &a.extensions {
            call.extensions.extend(ext.clone());
        }
        if let Some(ud) = &a.user_data {
            call.user_data.extend(ud.clone());
        }
        if state != CallState::Released {
            if self.calls.len() >= MAX_CALLS {
                self.calls.remove(0);
            }
            self.calls.push(call.clone());
        }
        Some(Change::Call(Box::new(call)))
    }
}

fn fill(slot: &mut Option<String>, value: &Option<String>) {
    if value.is_some() {
        slot.clone_from(value);
    }
}

/// A stable UUID-shaped id for the DN's device.
pub fn device_id(dn: &str) -> String {
    let digits: String = dn.chars().filter(char::is_ascii_digit).take(12).collect();
    format!("6c0a0d5e-0000-4000-8000-{digits:0>12}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tlib::event::{self, CallInfo};

    fn kv(v: Value) -> KvList {
        match v {
            Value::Object(m) => m,
            _ => KvList::new(),
        }
    }

    fn call_info(conn: u64) -> CallInfo {
        CallInfo {
            conn_id: ConnId(conn),
            call_uuid: Some(format!("uuid-{conn}")),
            this_dn: "7001".into(),
            other_dn: Some("5551234".into()),
            ani: Some("5551234".into()),
            dnis: Some("7001".into()),
            call_type: Some(CallType::Inbound),
            call_state: None,
            user_data: None,
        }
    }

    #[test]
    fn registration_reports_service_and_agent_state() {
        let mut d = Device::new("7001");
        assert_eq!(d.state, DeviceState::Inactive);
        let mut reg = event::registered(1, "7001");
        reg.attrs.extensions = Some(kv(json!({
            "DNStatus": "InService", "AgentStatus": "NotReady", "AgentWorkMode": "AfterCallWork"
        })));
        assert_eq!(d.apply(&reg), Some(Change::Device));
        assert_eq!(d.state, DeviceState::Active);
        assert_eq!(
            d.agent,
            AgentState::NotReady {
                work_mode: AgentWorkMode::AfterCallWork,
                reason: None
            }
        );
        reg.attrs.extensions = Some(kv(json!({"DNStatus": "OutOfService"})));
        d.apply(&reg);
        assert_eq!(d.state, DeviceState::Inactive);
        assert_eq!(d.agent, AgentState::LoggedOut);
    }

    #[test]
    fn login_ready_not_ready_with_reason() {
        let mut d = Device::new("7001");
        d.apply(&event::agent_login(None, "7001", Some("agent7001"), None));
        assert_eq!(d.agent, AgentState::LoggedIn);
        d.apply(&event::agent_ready(None, "7001", None, None));
        assert_eq!(d.agent, AgentState::Ready);
        d.apply(&event::agent_not_ready(
            None,
            "7001",
            None,
            None,
            Some(kv(json!({"ReasonCode": "Lunch"}))),
        ));
        assert_eq!(
            d.agent,
            AgentState::NotReady {
                work_mode: AgentWorkMode::AuxWork,
                reason: Some("Lunch".into())
            }
        );
        d.apply(&event::agent_logout(None, "7001", None));
        assert_eq!(d.agent, AgentState::LoggedOut);
    }

    #[test]
    fn call_life_cycle_and_capabilities() {
        let mut d = Device::new("7001");
        let info = call_info(0xabc);
        let Some(Change::Call(c)) = d.apply(&event::ringing(None, &info)) else {
            panic!("call change expected")
        };
        assert_eq!(c.id, "uuid-2748");
        assert_eq!(c.state, CallState::Ringing);
        assert!(c.allows(CallOperation::Answer));
        assert!(!c.allows(CallOperation::Hangup));
        let mut est = event::established(None, &info);
        est.attrs.extensions = Some(kv(json!({"WrapUpTime": 20, "BusinessCall": 1})));
        d.apply(&est);
        let c = d.call("uuid-2748").unwrap();
        assert_eq!(c.state, CallState::Established);
        assert_eq!(c.extensions["WrapUpTime"], json!(20));
        assert!(c.allows(CallOperation::Hangup) && c.allows(CallOperation::Hold));
        d.apply(&event::held(None, &info));
        assert!(d.call("uuid-2748").unwrap().allows(CallOperation::Retrieve));
        d.apply(&event::retrieved(None, &info));
        assert_eq!(d.call("uuid-2748").unwrap().state, CallState::Established);
        let Some(Change::Call(c)) = d.apply(&event::released(None, &info)) else {
            panic!("call change expected")
        };
        assert_eq!(c.state, CallState::Released);
        assert_eq!(c.ani.as_deref(), Some("5551234"));
        assert!(d.calls.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn duration_counts_whole_seconds_from_the_first_event() {
        let mut d = Device::new("7001");
        d.apply(&event::ringing(None, &call_info(7)));
        tokio::time::advance(std::time::Duration::from_millis(2500)).await;
        d.apply(&event::established(None, &call_info(7)));
        let c = d.call("uuid-7").unwrap();
        assert_eq!(c.duration(Instant::now()), 2);
        assert_eq!(
            c.capabilities(),
            [
                "Hangup",
                "Hold",
                "ClearCall",
                "AttachUserData",
                "UpdateUserData",
                "DeleteUserData",
                "SendDtmf"
            ]
        );
        let mut changed =
            event::call_event(MessageName::EventAttachedDataChanged, None, &call_info(7));
        changed.attrs.user_data = Some(kv(json!({"Case": "42"})));
        let Some(Change::CallData(c)) = d.apply(&changed) else {
            panic!("user data change expected")
        };
        assert_eq!(c.user_data["Case"], "42");
        changed.attrs.user_data = None;
        d.apply(&changed);
        assert!(d.call("uuid-7").unwrap().user_data.is_empty(), "deleted");
    }

    #[test]
    fn calls_are_bounded_and_link_loss_deactivates() {
        let mut d = Device::new("7001");
        for n in 0..(MAX_CALLS as u64 + 5) {
            d.apply(&event::ringing(None, &call_info(n)));
        }
        assert_eq!(d.calls.len(), MAX_CALLS);
        assert_eq!(d.apply(&event::error(3, 58, "out of service")), None);
        d.apply(&event::dn_back_in_service("7001"));
        assert!(d.link_lost());
        assert_eq!(d.state, DeviceState::Inactive);
        assert!(!d.link_lost());
    }
}
