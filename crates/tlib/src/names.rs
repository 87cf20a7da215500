//! Message names (`TMessageType` of `tlib_ext.h`).
//!
//! The wire carries the name as the `"message"` string. Names this crate does not model are kept
//! verbatim in [`MessageName::Other`] so that a message passes through a proxy or a log unchanged.

use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! message_names {
    ( $( $variant:ident = $id:expr, )+ ) => {
        /// A T-Library message name.
        ///
        /// Build it with [`MessageName::from_name`] (or `parse`) rather than constructing
        /// [`MessageName::Other`] by hand: `Other` must never hold a name that has its own variant,
        /// or equality with that variant would fail.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum MessageName {
            $( $variant, )+
            /// ADDP keepalive probe (`{"message":"Ping"}`); not a T-Library message.
            Ping,
            /// ADDP keepalive answer.
            Pong,
            /// Any other name, kept verbatim.
            Other(String),
        }

        impl MessageName {
            /// Every named variant (not `Other`).
            pub const ALL: &'static [MessageName] = &[$(MessageName::$variant,)+ MessageName::Ping, MessageName::Pong];

            /// The name as it appears in the `"message"` key.
            pub fn as_str(&self) -> &str {
                match self {
                    $( MessageName::$variant => stringify!($variant), )+
                    MessageName::Ping => "Ping",
                    MessageName::Pong => "Pong",
                    MessageName::Other(s) => s,
                }
            }

            /// The `TMessageType` id of `tlib_ext.h`; `None` for Ping, Pong and
            /// `Other`.
            pub fn id(&self) -> Option<u32> {
                match self {
                    $( MessageName::$variant => Some($id), )+
                    MessageName::Ping | MessageName::Pong | MessageName::Other(_) => None,
                }
            }

            /// Maps a wire name to its variant; unknown names become `Other`.
            pub fn from_name(name: &str) -> MessageName {
                match name {
                    $( stringify!($variant) => MessageName::$variant, )+
                    "Ping" => MessageName::Ping,
                    "Pong" => MessageName::Pong,
                    other => MessageName::Other(other.to_owned()),
                }
            }
        }
    };
}

message_names! {
    RequestRegisterClient = 0,
    RequestQueryServer = 1,
    RequestQueryAddress = 2,
    RequestRegisterAddress = 3,
    RequestUnregisterAddress = 4,
    RequestAgentLogin = 8,
    RequestAgentLogout = 9,
    RequestAgentReady = 10,
    RequestAgentNotReady = 11,
    RequestMakeCall = 14,
    RequestAnswerCall = 16,
    RequestReleaseCall = 17,
    RequestHoldCall = 18,
    RequestRetrieveCall = 19,
    RequestClearCall = 110,
    RequestAttachUserData = 30,
    RequestUpdateUserData = 31,
    RequestDeleteUserData = 32,
    RequestSendDTMF = 97,
    EventServerConnected = 50,
    EventServerDisconnected = 51,
    EventError = 52,
    EventRegistered = 53,
    EventUnregistered = 54,
    EventRinging = 60,
    EventDialing = 61,
    EventNetworkReached = 62,
    EventEstablished = 64,
    EventReleased = 65,
    EventHeld = 66,
    EventRetrieved = 67,
    EventAgentLogin = 73,
    EventAgentLogout = 74,
    EventAgentReady = 75,
    EventAgentNotReady = 76,
    EventAttachedDataChanged = 85,
    EventDTMFSent = 98,
    EventAddressInfo = 92,
    EventServerInfo = 93,
    EventLinkDisconnected = 94,
    EventLinkConnected = 95,
    EventUserEvent = 96,
    EventACK = 138,
    EventDNOutOfService = 147,
    EventDNBackInService = 148,
    EventPrivateInfo = 150,
}

impl MessageName {
    /// True for `Request*` names (including unknown ones).
    pub fn is_request(&self) -> bool {
        self.as_str().starts_with("Request")
    }

    /// True for `Event*` names (including unknown ones).
    pub fn is_event(&self) -> bool {
        self.as_str().starts_with("Event")
    }

    /// True for the ADDP keepalive messages.
    pub fn is_keepalive(&self) -> bool {
        matches!(self, MessageName::Ping | MessageName::Pong)
    }
}

impl fmt::Display for MessageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MessageName {
    type Err = Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(MessageName::from_name(s))
    }
}

impl From<&str> for MessageName {
    fn from(s: &str) -> Self {
        MessageName::from_name(s)
    }
}

impl Serialize for MessageName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for MessageName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(MessageName::from_name(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips() {
        for name in MessageName::ALL {
            assert_eq!(&MessageName::from_name(name.as_str()), name);
            assert!(!matches!(name, MessageName::Other(_)));
        }
        assert!(MessageName::ALL.len() >= 43);
    }

    #[test]
    fn ids_match_domain_table() {
        assert_eq!(MessageName::RequestRegisterClient.id(), Some(0));
        assert_eq!(MessageName::RequestClearCall.id(), Some(110));
        assert_eq!(MessageName::EventError.id(), Some(52));
        assert_eq!(MessageName::EventACK.id(), Some(138));
        assert_eq!(MessageName::EventDNBackInService.id(), Some(148));
        assert_eq!(MessageName::EventLinkConnected.id(), Some(95));
        assert_eq!(MessageName::Ping.id(), None);
        // Ids are unique.
        let mut ids: Vec<u32> = MessageName::ALL.iter().filter_map(|n| n.id()).collect();
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), n);
    }

    #[test]
    fn unknown_names_are_kept_verbatim() {
        let n: MessageName = "RequestInitiateTransfer".parse().unwrap();
        assert_eq!(n, MessageName::Other("RequestInitiateTransfer".into()));
        assert_eq!(n.as_str(), "RequestInitiateTransfer");
        assert!(n.is_request());
        assert!(!n.is_event());
        assert_eq!(n.id(), None);
        assert!(MessageName::EventRinging.is_event());
        assert!(MessageName::Pong.is_keepalive());
    }
}
