//! The T-Library message model.
//!
//! A message is ONE flat JSON object: `{"message": "<Name>", <attributes>…}`. Decoding is two
//! phases: the frame codec yields a raw JSON object (a frame error kills the connection), then
//! [`Message::from_object`] types it (a [`MessageError`] does not: the server answers `EventError`
//! 53 and carries on).

use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::attrs::Attributes;
use crate::error_code;
use crate::names::MessageName;

/// A typed T-Library message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The `"message"` key.
    pub name: MessageName,
    /// Everything else.
    pub attrs: Attributes,
}

/// A JSON object that is not a valid message. Not fatal for the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The `"message"` key is missing or not a string (`attribute == "message"`), or an attribute
    /// has the wrong type or an unknown enumeration value.
    #[error("invalid attribute {attribute}: {reason}")]
    InvalidAttribute {
        attribute: String,
        reason: String,
        /// The request's `ReferenceID`, salvaged from the raw object when it is a valid u32, so
        /// the `EventError` can still be correlated by the client.
        reference_id: Option<u32>,
    },
}

impl MessageError {
    /// The `ReferenceID` salvaged from the rejected object.
    pub fn reference_id(&self) -> Option<u32> {
        match self {
            MessageError::InvalidAttribute { reference_id, .. } => *reference_id,
        }
    }

    /// The attribute that was rejected.
    pub fn attribute(&self) -> &str {
        match self {
            MessageError::InvalidAttribute { attribute, .. } => attribute,
        }
    }

    /// The T-Library error code to answer with (always `INVALID_ATTR`, 53).
    pub fn error_code(&self) -> u32 {
        error_code::INVALID_ATTR
    }
}

impl Message {
    /// A message with no attributes.
    pub fn new(name: MessageName) -> Self {
        Message {
            name,
            attrs: Attributes::default(),
        }
    }

    /// A message with the given attributes.
    pub fn with_attrs(name: MessageName, attrs: Attributes) -> Self {
        Message { name, attrs }
    }

    /// `{"message":"Ping"}` (ADDP).
    pub fn ping() -> Self {
        Message::new(MessageName::Ping)
    }

    /// `{"message":"Pong"}` (ADDP).
    pub fn pong() -> Self {
        Message::new(MessageName::Pong)
    }

    /// Builder-style access to the attributes:
    /// `Message::new(name).with(|a| a.this_dn = Some("7001".into()))`.
    pub fn with(mut self, f: impl FnOnce(&mut Attributes)) -> Self {
        f(&mut self.attrs);
        self
    }

    /// Sets (or with `None` clears) the `ReferenceID`.
    pub fn with_reference_id(mut self, reference_id: impl Into<Option<u32>>) -> Self {
        self.attrs.reference_id = reference_id.into();
        self
    }

    /// The `ReferenceID`, if any.
    pub fn reference_id(&self) -> Option<u32> {
        self.attrs.reference_id
    }

    /// `ThisDN`, if any.
    pub fn this_dn(&self) -> Option<&str> {
        self.attrs.this_dn.as_deref()
    }

    /// True if this is `EventError`.
    pub fn is_error(&self) -> bool {
        self.name == MessageName::EventError
    }

    /// Second decoding phase: types a raw JSON object from the frame codec.
    pub fn from_object(mut obj: Map<String, Value>) -> Result<Message, MessageError> {
        // Salvage the reference id first, from the raw object, so that even a message whose
        // ReferenceID is the broken attribute yields a correlatable error when possible.
        let reference_id = obj
            .get("ReferenceID")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok());
        let name = match obj.remove("message") {
            Some(Value::String(s)) => MessageName::from_name(&s),
            Some(other) => {
                return Err(MessageError::InvalidAttribute {
                    attribute: "message".into(),
                    reason: format!("must be a string, got {}", json_type(&other)),
                    reference_id,
                })
            }
            None => {
                return Err(MessageError::InvalidAttribute {
                    attribute: "message".into(),
                    reason: "missing".into(),
                    reference_id,
                })
            }
        };
        let attrs = Attributes::from_object(obj).map_err(|e| MessageError::InvalidAttribute {
            attribute: e.attribute,
            reason: e.reason,
            reference_id,
        })?;
        Ok(Message { name, attrs })
    }

    /// The message as one flat JSON object.
    pub fn to_object(&self) -> Map<String, Value> {
        let mut obj = self.attrs.to_object();
        obj.insert(
            "message".into(),
            Value::String(self.name.as_str().to_owned()),
        );
        obj
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl From<MessageName> for Message {
    fn from(name: MessageName) -> Self {
        Message::new(name)
    }
}

impl Serialize for Message {
    /// `"message"` first (readable captures), then the typed attributes, then the extras.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("message", &self.name)?;
        self.attrs.serialize_entries(&mut map)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let obj = Map::<String, Value>::deserialize(d)?;
        Message::from_object(obj).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AgentWorkMode, ConnId};
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn flat_object_round_trip() {
        let raw = obj(json!({
            "message": "RequestAgentNotReady",
            "ReferenceID": 4,
            "ThisDN": "7001",
            "AgentWorkMode": "AfterCallWork",
            "Reasons": {"ReasonCode": "ACW"},
            "SomethingNew": [1, 2, 3]
        }));
        let msg = Message::from_object(raw.clone()).unwrap();
        assert_eq!(msg.name, MessageName::RequestAgentNotReady);
        assert_eq!(msg.reference_id(), Some(4));
        assert_eq!(
            msg.attrs.agent_work_mode,
            Some(AgentWorkMode::AfterCallWork)
        );
        assert_eq!(msg.to_object(), raw);
        let text = serde_json::to_string(&msg).unwrap();
        assert!(text.starts_with(r#"{"message":"RequestAgentNotReady","ReferenceID":4"#));
        let back: Message = serde_json::from_str(&text).unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn unknown_message_names_survive() {
        let raw = obj(json!({"message": "RequestInitiateTransfer", "ConnID": "0000000000000001"}));
        let msg = Message::from_object(raw.clone()).unwrap();
        assert_eq!(msg.name.as_str(), "RequestInitiateTransfer");
        assert_eq!(msg.attrs.conn_id, Some(ConnId(1)));
        assert_eq!(msg.to_object(), raw);
    }

    #[test]
    fn missing_or_bad_message_key() {
        let err = Message::from_object(obj(json!({"ReferenceID": 9}))).unwrap_err();
        assert_eq!(err.attribute(), "message");
        assert_eq!(err.reference_id(), Some(9));
        let err = Message::from_object(obj(json!({"message": 5}))).unwrap_err();
        assert_eq!(err.attribute(), "message");
        assert_eq!(err.reference_id(), None);
        assert_eq!(err.error_code(), 53);
    }

    #[test]
    fn bad_attribute_salvages_reference_id() {
        let err = Message::from_object(obj(json!({
            "message": "RequestAgentReady",
            "ReferenceID": 77,
            "AgentWorkMode": "Sleeping"
        })))
        .unwrap_err();
        assert_eq!(
            err,
            MessageError::InvalidAttribute {
                attribute: "AgentWorkMode".into(),
                reason: err_reason(&err),
                reference_id: Some(77),
            }
        );
        // A reference id that is itself broken cannot be salvaged.
        let err = Message::from_object(obj(
            json!({"message": "RequestAgentReady", "ReferenceID": -3}),
        ))
        .unwrap_err();
        assert_eq!(err.attribute(), "ReferenceID");
        assert_eq!(err.reference_id(), None);
    }

    fn err_reason(e: &MessageError) -> String {
        match e {
            MessageError::InvalidAttribute { reason, .. } => reason.clone(),
        }
    }

    #[test]
    fn builder_helpers() {
        let m = Message::new(MessageName::RequestRegisterAddress)
            .with_reference_id(3)
            .with(|a| a.this_dn = Some("7001".into()));
        assert_eq!(m.this_dn(), Some("7001"));
        assert_eq!(m.reference_id(), Some(3));
        assert_eq!(
            serde_json::to_string(&Message::ping()).unwrap(),
            r#"{"message":"Ping"}"#
        );
    }
}
