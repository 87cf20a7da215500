//! Typed message attributes (docs/protocols.md §1).
//!
//! JSON keys are the T-Library attribute names without the `Attribute` prefix (`ThisDN`,
//! `ReferenceID` …). The attributes the lab uses have typed fields; every other key is kept verbatim
//! in [`Attributes::extra`], so decoding and re-encoding a message never loses anything.
//!
//! Decoding is done key by key rather than through a derived `Deserialize` so that a type error
//! names the offending attribute: the server turns that into `EventError` 53 (`INVALID_ATTR`)
//! naming it, and keeps the connection.

use std::fmt;
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::enums::{
    AddressInfoType, AddressType, AgentWorkMode, CallState, CallType, ControlMode, MakeCallType,
    RegisterMode, ServerRole,
};

/// A T-Library key-value list (`Extensions`, `UserData`, `Reasons`) as a JSON object.
pub type KvList = Map<String, Value>;

/// A connection (call leg) id: a 64-bit number, on the wire exactly 16 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ConnId(pub u64);

/// The error for a string that is not exactly 16 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ConnID must be exactly 16 hex digits, got {0:?}")]
pub struct InvalidConnId(pub String);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnId({self})")
    }
}

impl FromStr for ConnId {
    type Err = InvalidConnId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // `from_str_radix` alone would accept a sign and shorter strings; the contract is exactly
        // 16 hex digits.
        if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(InvalidConnId(s.to_owned()));
        }
        u64::from_str_radix(s, 16)
            .map(ConnId)
            .map_err(|_| InvalidConnId(s.to_owned()))
    }
}

impl Serialize for ConnId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ConnId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An attribute whose value has the wrong type or is not a known enumeration value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("attribute {attribute}: {reason}")]
pub struct AttributeError {
    /// The JSON key.
    pub attribute: String,
    /// Why it was rejected.
    pub reason: String,
}

fn parse_attr<T: DeserializeOwned>(key: &str, value: Value) -> Result<Option<T>, AttributeError> {
    // `null` means "absent": it is what most JSON producers emit for a missing optional value.
    if value.is_null() {
        return Ok(None);
    }
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| AttributeError {
            attribute: key.to_owned(),
            reason: e.to_string(),
        })
}

macro_rules! attributes {
    ( $( $(#[$doc:meta])* $field:ident : $ty:ty => $key:literal, )+ ) => {
        /// The attributes of a message. All typed fields are optional; see the module docs.
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct Attributes {
            $( $(#[$doc])* #[doc = concat!("\n\nJSON key `", $key, "`.")] pub $field: Option<$ty>, )+
            /// Every other attribute, verbatim. Keys that have a typed field (and `"message"`)
            /// are ignored here when encoding, so a stray duplicate can never reach the wire.
            pub extra: Map<String, Value>,
        }

        impl Attributes {
            /// The JSON keys that have typed fields.
            pub const KNOWN_KEYS: &'static [&'static str] = &[$($key),+];

            /// Decodes attributes from a JSON object (the `"message"` key, if present, is
            /// ignored).
            pub fn from_object(mut obj: Map<String, Value>) -> Result<Self, AttributeError> {
                obj.remove("message");
                let mut attrs = Attributes::default();
                $(
                    if let Some(v) = obj.remove($key) {
                        attrs.$field = parse_attr::<$ty>($key, v)?;
                    }
                )+
                attrs.extra = obj;
                Ok(attrs)
            }

            /// Writes every present attribute as map entries (used by `Message` to put
            /// `"message"` first without an intermediate map).
            pub(crate) fn serialize_entries<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
                $(
                    if let Some(v) = &self.$field {
                        map.serialize_entry($key, v)?;
                    }
                )+
                for (k, v) in &self.extra {
                    if !Self::is_reserved_key(k) {
                        map.serialize_entry(k, v)?;
                    }
                }
                Ok(())
            }
        }
    };
}

attributes! {
    /// Chosen by the client per request, echoed by the response event.
    reference_id: u32 => "ReferenceID",
    this_dn: String => "ThisDN",
    other_dn: String => "OtherDN",
    this_queue: String => "ThisQueue",
    agent_id: String => "AgentID",
    password: String => "Password",
    agent_work_mode: AgentWorkMode => "AgentWorkMode",
    register_mode: RegisterMode => "RegisterMode",
    control_mode: ControlMode => "ControlMode",
    address_type: AddressType => "AddressType",
    address_info_type: AddressInfoType => "AddressInfoType",
    conn_id: ConnId => "ConnID",
    call_uuid: String => "CallUUID",
    call_state: CallState => "CallState",
    call_type: CallType => "CallType",
    ani: String => "ANI",
    dnis: String => "DNIS",
    /// `EventError`: one of [`crate::error_code`].
    error_code: u32 => "ErrorCode",
    error_message: String => "ErrorMessage",
    extensions: KvList => "Extensions",
    user_data: KvList => "UserData",
    reasons: KvList => "Reasons",
    /// Stamped on events by [`crate::EventStamper`]; rises per server.
    event_sequence_number: u64 => "EventSequenceNumber",
    time_in_secs: u64 => "TimeinSecs",
    time_in_usecs: u32 => "TimeinuSecs",
    application_name: String => "ApplicationName",
    server_role: ServerRole => "ServerRole",
    server_version: String => "ServerVersion",
    location: String => "Location",
    make_call_type: MakeCallType => "MakeCallType",
    /// `RequestSendDTMF` / `EventDTMFSent`: the digits.
    dtmf_digits: String => "DTMFDigits",
}

impl Attributes {
    fn is_reserved_key(key: &str) -> bool {
        key == "message" || Self::KNOWN_KEYS.contains(&key)
    }

    /// Decodes attributes from a JSON value that must be an object.
    pub fn from_value(value: Value) -> Result<Self, AttributeError> {
        match value {
            Value::Object(obj) => Self::from_object(obj),
            _ => Err(AttributeError {
                attribute: "message".into(),
                reason: "not a JSON object".into(),
            }),
        }
    }

    /// The attributes as a JSON object.
    pub fn to_object(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            // Serializing plain strings, numbers and maps into a `Value` cannot fail.
            _ => Map::new(),
        }
    }
}

impl Serialize for Attributes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        self.serialize_entries(&mut map)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for Attributes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let obj = Map::<String, Value>::deserialize(d)?;
        Attributes::from_object(obj).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn conn_id_is_sixteen_lowercase_hex_digits() {
        let id = ConnId(0x0089_02ab_cdef_0001);
        assert_eq!(id.to_string(), "008902abcdef0001");
        assert_eq!(serde_json::to_value(id).unwrap(), json!("008902abcdef0001"));
        assert_eq!("008902ABCDEF0001".parse::<ConnId>(), Ok(id));
        assert_eq!(ConnId(1).to_string(), "0000000000000001");
        for bad in [
            "",
            "1",
            "008902abcdef00011",
            "+08902abcdef0001",
            "00890zabcdef0001",
        ] {
            assert!(bad.parse::<ConnId>().is_err(), "{bad:?} accepted");
        }
        assert!(serde_json::from_value::<ConnId>(json!(17)).is_err());
    }

    #[test]
    fn typed_fields_and_extra_round_trip_losslessly() {
        let input = obj(json!({
            "ReferenceID": 12,
            "ThisDN": "7001",
            "AgentWorkMode": "AfterCallWork",
            "ConnID": "00000000000000ff",
            "Reasons": {"ReasonCode": "Lunch"},
            "ThisDNRole": "Destination",
            "Server": "ss1",
        }));
        let attrs = Attributes::from_object(input.clone()).unwrap();
        assert_eq!(attrs.reference_id, Some(12));
        assert_eq!(attrs.agent_work_mode, Some(AgentWorkMode::AfterCallWork));
        assert_eq!(attrs.conn_id, Some(ConnId(255)));
        assert_eq!(attrs.extra.len(), 2);
        assert_eq!(attrs.to_object(), input);
    }

    #[test]
    fn null_means_absent() {
        let attrs = Attributes::from_object(obj(json!({"ThisDN": null}))).unwrap();
        assert_eq!(attrs.this_dn, None);
        assert!(attrs.extra.is_empty());
    }

    #[test]
    fn wrong_types_name_the_attribute() {
        for (key, value) in [
            ("ReferenceID", json!("12")),
            ("ReferenceID", json!(-1)),
            ("ReferenceID", json!(4_294_967_296u64)),
            ("ThisDN", json!(7001)),
            ("AgentWorkMode", json!("Lunch")),
            ("ConnID", json!("abc")),
            ("Extensions", json!([1])),
            ("ErrorCode", json!(1.5)),
        ] {
            let mut m = Map::new();
            m.insert(key.to_owned(), value);
            let err = Attributes::from_object(m).unwrap_err();
            assert_eq!(err.attribute, key);
        }
    }

    #[test]
    fn stray_duplicates_in_extra_never_reach_the_wire() {
        let mut attrs = Attributes {
            this_dn: Some("7001".into()),
            ..Default::default()
        };
        attrs.extra.insert("ThisDN".into(), json!("9999"));
        attrs.extra.insert("message".into(), json!("EventBogus"));
        attrs.extra.insert("Custom".into(), json!(1));
        let text = serde_json::to_string(&attrs).unwrap();
        assert_eq!(text, r#"{"ThisDN":"7001","Custom":1}"#);
    }
}
