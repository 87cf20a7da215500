//! Typed requests (docs/protocols.md §2.1), the third decoding phase on the server side.
//!
//! `frame → Message::from_object → Request::parse`. Each phase has its own failure: a frame error
//! closes the connection, a [`crate::MessageError`] or a [`RequestError`] is answered with
//! `EventError` (see [`RequestError::to_event`]) and the connection stays up. Clients build their
//! requests from the same model with [`Request::to_message`], so both sides agree on attribute
//! names and defaults by construction.

use crate::attrs::{Attributes, ConnId, KvList};
use crate::enums::{
    AddressInfoType, AddressType, AgentWorkMode, ControlMode, MakeCallType, RegisterMode,
};
use crate::error_code;
use crate::event;
use crate::message::{Message, MessageError};
use crate::names::MessageName;

/// A request a T-Lib server understands.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Opens the session; answered by `EventServerInfo` then `EventLinkConnected`.
    RegisterClient {
        application_name: String,
        extensions: Option<KvList>,
    },
    /// Answered by `EventServerInfo`.
    QueryServer,
    /// Answered by `EventAddressInfo`. `AddressInfoType` defaults to `AddressStatus`.
    QueryAddress {
        dn: String,
        info_type: AddressInfoType,
    },
    /// Answered by `EventRegistered`. Defaults: `ModeShare`, `RegisterDefault`, `DN` (what PSDK
    /// clients send).
    RegisterAddress {
        dn: String,
        register_mode: RegisterMode,
        control_mode: ControlMode,
        address_type: AddressType,
    },
    /// Answered by `EventUnregistered`.
    UnregisterAddress {
        dn: String,
    },
    /// Answered by `EventAgentLogin`. `AgentWorkMode` defaults to `ManualIn`.
    AgentLogin {
        dn: String,
        agent_id: Option<String>,
        password: Option<String>,
        work_mode: AgentWorkMode,
        queue: Option<String>,
        reasons: Option<KvList>,
        extensions: Option<KvList>,
    },
    /// Answered by `EventAgentLogout`.
    AgentLogout {
        dn: String,
        reasons: Option<KvList>,
        extensions: Option<KvList>,
    },
    /// Answered by `EventAgentReady`.
    AgentReady {
        dn: String,
        work_mode: Option<AgentWorkMode>,
        reasons: Option<KvList>,
        extensions: Option<KvList>,
    },
    /// Answered by `EventAgentNotReady` (e.g. `AfterCallWork` + `{ReasonCode}`).
    AgentNotReady {
        dn: String,
        work_mode: Option<AgentWorkMode>,
        reasons: Option<KvList>,
        extensions: Option<KvList>,
    },
    /// Answered by `EventDialing` …. `destination` is `OtherDN`; `MakeCallType` defaults to
    /// `Regular`.
    MakeCall {
        dn: String,
        destination: String,
        make_call_type: MakeCallType,
        user_data: Option<KvList>,
    },
    AnswerCall {
        dn: String,
        conn_id: ConnId,
    },
    ReleaseCall {
        dn: String,
        conn_id: ConnId,
    },
    HoldCall {
        dn: String,
        conn_id: ConnId,
    },
    RetrieveCall {
        dn: String,
        conn_id: ConnId,
    },
    ClearCall {
        dn: String,
        conn_id: ConnId,
    },
    /// Adds `user_data` to the call's (keys already there are replaced); answered by
    /// `EventAttachedDataChanged`.
    AttachUserData {
        dn: String,
        conn_id: ConnId,
        user_data: KvList,
    },
    /// Replaces the keys of `user_data` in the call's; answered by `EventAttachedDataChanged`.
    UpdateUserData {
        dn: String,
        conn_id: ConnId,
        user_data: KvList,
    },
    /// Removes all the call's user data; answered by `EventAttachedDataChanged`.
    DeleteUserData {
        dn: String,
        conn_id: ConnId,
    },
    /// Answered by `EventDTMFSent`.
    SendDtmf {
        dn: String,
        conn_id: ConnId,
        digits: String,
    },
}

/// Why a request cannot be served; answer it with [`RequestError::to_event`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("T-Library error {code}: {message}")]
pub struct RequestError {
    /// `UNSUP_OPER` (51) or `INVALID_ATTR` (53).
    pub code: u32,
    /// Human-readable text for `ErrorMessage`.
    pub message: String,
    /// The request's `ReferenceID`, to echo.
    pub reference_id: Option<u32>,
    /// The offending attribute for code 53.
    pub attribute: Option<String>,
}

impl RequestError {
    fn unsupported(name: &MessageName, reference_id: Option<u32>) -> Self {
        RequestError {
            code: error_code::UNSUP_OPER,
            message: format!(
                "{}: {}",
                error_code::default_text(error_code::UNSUP_OPER),
                name
            ),
            reference_id,
            attribute: None,
        }
    }

    fn invalid(attribute: &str, reason: &str, reference_id: Option<u32>) -> Self {
        RequestError {
            code: error_code::INVALID_ATTR,
            message: format!(
                "{} {attribute}: {reason}",
                error_code::default_text(error_code::INVALID_ATTR)
            ),
            reference_id,
            attribute: Some(attribute.to_owned()),
        }
    }

    /// The `EventError` that answers this error.
    pub fn to_event(&self) -> Message {
        event::error(self.reference_id, self.code, self.message.clone())
    }
}

impl From<MessageError> for RequestError {
    fn from(e: MessageError) -> Self {
        match e {
            MessageError::InvalidAttribute {
                attribute,
                reason,
                reference_id,
            } => RequestError::invalid(&attribute, &reason, reference_id),
        }
    }
}

/// Extracts a required, non-empty string attribute.
fn required(
    value: &Option<String>,
    key: &str,
    reference_id: Option<u32>,
) -> Result<String, RequestError> {
    match value.as_deref() {
        Some(s) if !s.is_empty() => Ok(s.to_owned()),
        Some(_) => Err(RequestError::invalid(key, "empty", reference_id)),
        None => Err(RequestError::invalid(key, "missing", reference_id)),
    }
}

fn required_conn_id(
    value: Option<ConnId>,
    reference_id: Option<u32>,
) -> Result<ConnId, RequestError> {
    value.ok_or_else(|| RequestError::invalid("ConnID", "missing", reference_id))
}

impl Request {
    /// Types a request message. Returns the `ReferenceID` with it.
    ///
    /// ADDP `Ping`/`Pong` must be handled before this; here they are unsupported like any
    /// non-request.
    pub fn parse(msg: &Message) -> Result<(Option<u32>, Request), RequestError> {
        let rid = msg.reference_id();
        let a = &msg.attrs;
        let dn = || required(&a.this_dn, "ThisDN", rid);
        let call = |dn: String| -> Result<(String, ConnId), RequestError> {
            Ok((dn, required_conn_id(a.conn_id, rid)?))
        };
        let req = match msg.name {
            MessageName::RequestRegisterClient => Request::RegisterClient {
                application_name: required(&a.application_name, "ApplicationName", rid)?,
                extensions: a.extensions.clone(),
            },
            MessageName::RequestQueryServer => Request::QueryServer,
            MessageName::RequestQueryAddress => Request::QueryAddress {
                dn: dn()?,
                info_type: a
                    .address_info_type
                    .unwrap_or(AddressInfoType::AddressStatus),
            },
            MessageName::RequestRegisterAddress => Request::RegisterAddress {
                dn: dn()?,
                register_mode: a.register_mode.unwrap_or(RegisterMode::ModeShare),
                control_mode: a.control_mode.unwrap_or(ControlMode::RegisterDefault),
                address_type: a.address_type.unwrap_or(AddressType::Dn),
            },
            MessageName::RequestUnregisterAddress => Request::UnregisterAddress { dn: dn()? },
            MessageName::RequestAgentLogin => Request::AgentLogin {
                dn: dn()?,
                agent_id: a.agent_id.clone(),
                password: a.password.clone(),
                work_mode: a.agent_work_mode.unwrap_or(AgentWorkMode::ManualIn),
                queue: a.this_queue.clone(),
                reasons: a.reasons.clone(),
                extensions: a.extensions.clone(),
            },
            MessageName::RequestAgentLogout => Request::AgentLogout {
                dn: dn()?,
                reasons: a.reasons.clone(),
                extensions: a.extensions.clone(),
            },
            MessageName::RequestAgentReady => Request::AgentReady {
                dn: dn()?,
                work_mode: a.agent_work_mode,
                reasons: a.reasons.clone(),
                extensions: a.extensions.clone(),
            },
            MessageName::RequestAgentNotReady => Request::AgentNotReady {
                dn: dn()?,
                work_mode: a.agent_work_mode,
                reasons: a.reasons.clone(),
                extensions: a.extensions.clone(),
            },
            MessageName::RequestMakeCall => Request::MakeCall {
                dn: dn()?,
                destination: required(&a.other_dn, "OtherDN", rid)?,
                make_call_type: a.make_call_type.unwrap_or(MakeCallType::Regular),
                user_data: a.user_data.clone(),
            },
            MessageName::RequestAnswerCall => {
                let (dn, conn_id) = call(dn()?)?;
                Request::AnswerCall { dn, conn_id }
            }
            MessageName::RequestReleaseCall => {
                let (dn, conn_id) = call(dn()?)?;
                Request::ReleaseCall { dn, conn_id }
            }
            MessageName::RequestHoldCall => {
                let (dn, conn_id) = call(dn()?)?;
                Request::HoldCall { dn, conn_id }
            }
            MessageName::RequestRetrieveCall => {
                let (dn, conn_id) = call(dn()?)?;
                Request::RetrieveCall { dn, conn_id }
            }
            MessageName::RequestClearCall => {
                let (dn, conn_id) = call(dn()?)?;
                Request::ClearCall { dn, conn_id }
            }
            MessageName::RequestAttachUserData | MessageName::RequestUpdateUserData => {
                let (dn, conn_id) = call(dn()?)?;
                let Some(user_data) = a.user_data.clone() else {
                    return Err(RequestError::invalid("UserData", "missing", rid));
                };
                if msg.name == MessageName::RequestAttachUserData {
                    Request::AttachUserData {
                        dn,
                        conn_id,
                        user_data,
                    }
                } else {
                    Request::UpdateUserData {
                        dn,
                        conn_id,
                        user_data,
                    }
                }
            }
            MessageName::RequestDeleteUserData => {
                let (dn, conn_id) = call(dn()?)?;
                Request::DeleteUserData { dn, conn_id }
            }
            MessageName::RequestSendDTMF => {
                let (dn, conn_id) = call(dn()?)?;
                let digits = required(&a.dtmf_digits, "DTMFDigits", rid)?;
                Request::SendDtmf {
                    dn,
                    conn_id,
                    digits,
                }
            }
            ref other => return Err(RequestError::unsupported(other, rid)),
        };
        Ok((rid, req))
    }

    /// The message name of this request.
    pub fn name(&self) -> MessageName {
        match self {
            Request::RegisterClient { .. } => MessageName::RequestRegisterClient,
            Request::QueryServer => MessageName::RequestQueryServer,
            Request::QueryAddress { .. } => MessageName::RequestQueryAddress,
            Request::RegisterAddress { .. } => MessageName::RequestRegisterAddress,
            Request::UnregisterAddress { .. } => MessageName::RequestUnregisterAddress,
            Request::AgentLogin { .. } => MessageName::RequestAgentLogin,
            Request::AgentLogout { .. } => MessageName::RequestAgentLogout,
            Request::AgentReady { .. } => MessageName::RequestAgentReady,
            Request::AgentNotReady { .. } => MessageName::RequestAgentNotReady,
            Request::MakeCall { .. } => MessageName::RequestMakeCall,
            Request::AnswerCall { .. } => MessageName::RequestAnswerCall,
            Request::ReleaseCall { .. } => MessageName::RequestReleaseCall,
            Request::HoldCall { .. } => MessageName::RequestHoldCall,
            Request::RetrieveCall { .. } => MessageName::RequestRetrieveCall,
            Request::ClearCall { .. } => MessageName::RequestClearCall,
            Request::AttachUserData { .. } => MessageName::RequestAttachUserData,
            Request::UpdateUserData { .. } => MessageName::RequestUpdateUserData,
            Request::DeleteUserData { .. } => MessageName::RequestDeleteUserData,
            Request::SendDtmf { .. } => MessageName::RequestSendDTMF,
        }
    }

    /// The DN the request is about (`ThisDN`), if it has one.
    pub fn dn(&self) -> Option<&str> {
        match self {
            Request::RegisterClient { .. } | Request::QueryServer => None,
            Request::QueryAddress { dn, .. }
            | Request::RegisterAddress { dn, .. }
            | Request::UnregisterAddress { dn }
            | Request::AgentLogin { dn, .. }
            | Request::AgentLogout { dn, .. }
            | Request::AgentReady { dn, .. }
            | Request::AgentNotReady { dn, .. }
            | Request::MakeCall { dn, .. }
            | Request::AnswerCall { dn, .. }
            | Request::ReleaseCall { dn, .. }
            | Request::HoldCall { dn, .. }
            | Request::RetrieveCall { dn, .. }
            | Request::ClearCall { dn, .. }
            | Request::AttachUserData { dn, .. }
            | Request::UpdateUserData { dn, .. }
            | Request::DeleteUserData { dn, .. }
            | Request::SendDtmf { dn, .. } => Some(dn),
        }
    }

    /// Builds the wire message. Defaults are written out explicitly, so any server sees the same
    /// values this crate's parser would assume.
    pub fn to_message(&self, reference_id: impl Into<Option<u32>>) -> Message {
        let mut a = Attributes {
            reference_id: reference_id.into(),
            this_dn: self.dn().map(str::to_owned),
            ..Attributes::default()
        };
        match self {
            Request::RegisterClient {
                application_name,
                extensions,
            } => {
                a.application_name = Some(application_name.clone());
                a.extensions = extensions.clone();
            }
            Request::QueryServer | Request::UnregisterAddress { .. } => {}
            Request::QueryAddress { info_type, .. } => a.address_info_type = Some(*info_type),
            Request::RegisterAddress {
                register_mode,
                control_mode,
                address_type,
                ..
            } => {
                a.register_mode = Some(*register_mode);
                a.control_mode = Some(*control_mode);
                a.address_type = Some(*address_type);
            }
            Request::AgentLogin {
                agent_id,
                password,
                work_mode,
                queue,
                reasons,
                extensions,
                ..
            } => {
                a.agent_id = agent_id.clone();
                a.password = password.clone();
                a.agent_work_mode = Some(*work_mode);
                a.this_queue = queue.clone();
                a.reasons = reasons.clone();
                a.extensions = extensions.clone();
            }
            Request::AgentLogout {
                reasons,
                extensions,
                ..
            } => {
                a.reasons = reasons.clone();
                a.extensions = extensions.clone();
            }
            Request::AgentReady {
                work_mode,
                reasons,
                extensions,
                ..
            }
            | Request::AgentNotReady {
                work_mode,
                reasons,
                extensions,
                ..
            } => {
                a.agent_work_mode = *work_mode;
                a.reasons = reasons.clone();
                a.extensions = extensions.clone();
            }
            Request::MakeCall {
                destination,
                make_call_type,
                user_data,
                ..
            } => {
                a.other_dn = Some(destination.clone());
                a.make_call_type = Some(*make_call_type);
                a.user_data = user_data.clone();
            }
            Request::AnswerCall { conn_id, .. }
            | Request::ReleaseCall { conn_id, .. }
            | Request::HoldCall { conn_id, .. }
            | Request::RetrieveCall { conn_id, .. }
            | Request::ClearCall { conn_id, .. }
            | Request::DeleteUserData { conn_id, .. } => a.conn_id = Some(*conn_id),
            Request::AttachUserData {
                conn_id, user_data, ..
            }
            | Request::UpdateUserData {
                conn_id, user_data, ..
            } => {
                a.conn_id = Some(*conn_id);
                a.user_data = Some(user_data.clone());
            }
            Request::SendDtmf {
                conn_id, digits, ..
            } => {
                a.conn_id = Some(*conn_id);
                a.dtmf_digits = Some(digits.clone());
            }
        }
        Message::with_attrs(self.name(), a)
    }

    /// `RegisterAddress` with the PSDK defaults (`ModeShare`, `RegisterDefault`, `DN`).
    pub fn register_address(dn: impl Into<String>) -> Request {
        Request::RegisterAddress {
            dn: dn.into(),
            register_mode: RegisterMode::ModeShare,
            control_mode: ControlMode::RegisterDefault,
            address_type: AddressType::Dn,
        }
    }
}

impl From<Request> for Message {
    /// The message without a `ReferenceID` (the client assigns one).
    fn from(r: Request) -> Self {
        r.to_message(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map, Value};

    fn msg(v: Value) -> Message {
        match v {
            Value::Object(m) => Message::from_object(m).unwrap(),
            _ => panic!("not an object"),
        }
    }

    fn kv(v: Value) -> KvList {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn all_requests() -> Vec<Request> {
        let dn = || "7001".to_string();
        let c = ConnId(0xabc);
        vec![
            Request::RegisterClient {
                application_name: "gws1".into(),
                extensions: Some(kv(json!({"x": 1}))),
            },
            Request::QueryServer,
            Request::QueryAddress {
                dn: dn(),
                info_type: AddressInfoType::DnStatus,
            },
            Request::register_address("7001"),
            Request::UnregisterAddress { dn: dn() },
            Request::AgentLogin {
                dn: dn(),
                agent_id: Some("agent7001".into()),
                password: Some("password".into()),
                work_mode: AgentWorkMode::AutoIn,
                queue: Some("Q1".into()),
                reasons: None,
                extensions: Some(kv(json!({"AgentEmuLoginOnCall": true}))),
            },
            Request::AgentLogout {
                dn: dn(),
                reasons: None,
                extensions: None,
            },
            Request::AgentReady {
                dn: dn(),
                work_mode: None,
                reasons: None,
                extensions: None,
            },
            Request::AgentNotReady {
                dn: dn(),
                work_mode: Some(AgentWorkMode::AfterCallWork),
                reasons: Some(kv(json!({"ReasonCode": "ACW"}))),
                extensions: None,
            },
            Request::MakeCall {
                dn: dn(),
                destination: "8001".into(),
                make_call_type: MakeCallType::Regular,
                user_data: Some(kv(json!({"BusinessCall": 1}))),
            },
            Request::AnswerCall {
                dn: dn(),
                conn_id: c,
            },
            Request::ReleaseCall {
                dn: dn(),
                conn_id: c,
            },
            Request::HoldCall {
                dn: dn(),
                conn_id: c,
            },
            Request::RetrieveCall {
                dn: dn(),
                conn_id: c,
            },
            Request::ClearCall {
                dn: dn(),
                conn_id: c,
            },
            Request::AttachUserData {
                dn: dn(),
                conn_id: c,
                user_data: kv(json!({"Case": "42"})),
            },
            Request::UpdateUserData {
                dn: dn(),
                conn_id: c,
                user_data: kv(json!({"Case": "43", "n": 1})),
            },
            Request::DeleteUserData {
                dn: dn(),
                conn_id: c,
            },
            Request::SendDtmf {
                dn: dn(),
                conn_id: c,
                digits: "12#".into(),
            },
        ]
    }

    #[test]
    fn every_request_round_trips_through_the_wire_form() {
        for (i, req) in all_requests().into_iter().enumerate() {
            let rid = i as u32 + 1;
            let m = req.to_message(rid);
            assert_eq!(m.name, req.name());
            // Through JSON text, as on the wire.
            let text = serde_json::to_string(&m).unwrap();
            let back: Message = serde_json::from_str(&text).unwrap();
            assert_eq!(Request::parse(&back), Ok((Some(rid), req)));
        }
    }

    #[test]
    fn defaults_apply() {
        let (rid, req) = Request::parse(&msg(json!({
            "message": "RequestRegisterAddress", "ReferenceID": 2, "ThisDN": "7001"
        })))
        .unwrap();
        assert_eq!(rid, Some(2));
        assert_eq!(req, Request::register_address("7001"));
        let (_, req) = Request::parse(&msg(json!({
            "message": "RequestAgentLogin", "ThisDN": "7001", "AgentID": "a"
        })))
        .unwrap();
        assert!(matches!(
            req,
            Request::AgentLogin {
                work_mode: AgentWorkMode::ManualIn,
                password: None,
                ..
            }
        ));
    }

    #[test]
    fn missing_required_attribute_is_53_naming_it() {
        for (value, attribute) in [
            (
                json!({"message": "RequestRegisterAddress", "ReferenceID": 5}),
                "ThisDN",
            ),
            (
                json!({"message": "RequestRegisterAddress", "ReferenceID": 5, "ThisDN": ""}),
                "ThisDN",
            ),
            (
                json!({"message": "RequestAnswerCall", "ReferenceID": 5, "ThisDN": "7001"}),
                "ConnID",
            ),
            (
                json!({"message": "RequestMakeCall", "ReferenceID": 5, "ThisDN": "7001"}),
                "OtherDN",
            ),
            (
                json!({"message": "RequestRegisterClient", "ReferenceID": 5}),
                "ApplicationName",
            ),
        ] {
            let err = Request::parse(&msg(value)).unwrap_err();
            assert_eq!(err.code, error_code::INVALID_ATTR);
            assert_eq!(err.attribute.as_deref(), Some(attribute));
            assert_eq!(err.reference_id, Some(5));
            assert!(err.message.contains(attribute));
            let ev = err.to_event();
            assert_eq!(ev.name, MessageName::EventError);
            assert_eq!(ev.attrs.error_code, Some(53));
            assert_eq!(ev.reference_id(), Some(5));
        }
    }

    #[test]
    fn unknown_requests_and_events_are_51() {
        for name in ["RequestInitiateTransfer", "EventRinging", "Ping", "Bogus"] {
            let err = Request::parse(&msg(json!({"message": name, "ReferenceID": 8}))).unwrap_err();
            assert_eq!(err.code, error_code::UNSUP_OPER, "{name}");
            assert_eq!(err.reference_id, Some(8));
            assert!(err.message.contains(name));
        }
    }

    #[test]
    fn message_errors_convert_to_53() {
        let raw = json!({"message": "RequestAgentReady", "ReferenceID": 3, "AgentWorkMode": 3});
        let Value::Object(m) = raw else {
            unreachable!()
        };
        let err: RequestError = Message::from_object(m).unwrap_err().into();
        assert_eq!(err.code, 53);
        assert_eq!(err.attribute.as_deref(), Some("AgentWorkMode"));
        assert_eq!(err.reference_id, Some(3));
    }
}
