//! T-Library enumerations, with their `tlib_ext.h` names and numbers.
//!
//! On the wire an enumeration is its T-Library name as a JSON string (`"AfterCallWork"`), never a
//! number: names survive log reading and scripting, numbers do not. The C numeric value is still
//! available through `value()` / `from_value()` for logs in the PSDK style and for anyone mapping to
//! the binary protocol. An unknown name is a decoding error (the server answers `EventError` 53).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The error returned when a string is not a known name of an enumeration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {enum_name} value {value:?}")]
pub struct UnknownEnumValue {
    /// The enumeration's T-Library type name, e.g. `TAgentWorkMode`.
    pub enum_name: &'static str,
    /// The rejected value.
    pub value: String,
}

macro_rules! tlib_enum {
    (
        $(#[$meta:meta])*
        $name:ident ($cname:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $wire:literal => $value:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The T-Library name used on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire,)+ }
            }

            /// The numeric value of the C enumeration.
            pub fn value(self) -> i32 {
                match self { $($name::$variant => $value,)+ }
            }

            /// Looks a value up by its wire name (case-sensitive).
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($wire => Some($name::$variant),)+ _ => None }
            }

            /// Looks a value up by its C numeric value.
            pub fn from_value(value: i32) -> Option<Self> {
                match value { $($value => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownEnumValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::from_name(s).ok_or_else(|| UnknownEnumValue {
                    enum_name: $cname,
                    value: s.to_owned(),
                })
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

tlib_enum! {
    /// `TRegisterMode`: how a client registers a DN.
    RegisterMode ("TRegisterMode") {
        /// Shared: every registered client gets the DN's events (what PSDK clients use).
        ModeShare = "ModeShare" => 0,
        /// Exclusive.
        ModePrivate = "ModePrivate" => 1,
        /// Events only, no control.
        ModeMonitor = "ModeMonitor" => 2,
    }
}

tlib_enum! {
    /// `TControlMode`.
    ControlMode ("TControlMode") {
        RegisterDefault = "RegisterDefault" => 0,
        RegisterForce = "RegisterForce" => 1,
        RegisterLocal = "RegisterLocal" => 2,
    }
}

tlib_enum! {
    /// `TAddressType`.
    AddressType ("TAddressType") {
        Unknown = "Unknown" => 0,
        Dn = "DN" => 1,
        Position = "Position" => 2,
        Queue = "Queue" => 3,
        RouteDn = "RouteDN" => 4,
        Trunk = "Trunk" => 5,
        VoiceChannel = "VoiceChannel" => 6,
        DataChannel = "DataChannel" => 7,
        Announcement = "Announcement" => 8,
        Asai = "ASAI" => 9,
        AcdGroup = "ACDGroup" => 10,
        Vsp = "VSP" => 11,
        RouteQueue = "RouteQueue" => 12,
        AgentId = "AgentID" => 13,
        Other = "Other" => 99,
    }
}

tlib_enum! {
    /// `TAgentWorkMode`.
    AgentWorkMode ("TAgentWorkMode") {
        Unknown = "Unknown" => 0,
        ManualIn = "ManualIn" => 1,
        /// Also "LegalGuard" when used with NotReady.
        AutoIn = "AutoIn" => 2,
        AfterCallWork = "AfterCallWork" => 3,
        AuxWork = "AuxWork" => 4,
        NoCallDisconnect = "NoCallDisconnect" => 5,
        WalkAway = "WalkAway" => 6,
        ReturnBack = "ReturnBack" => 7,
    }
}

tlib_enum! {
    /// `TCallType`.
    CallType ("TCallType") {
        Unknown = "Unknown" => 0,
        Internal = "Internal" => 1,
        Inbound = "Inbound" => 2,
        Outbound = "Outbound" => 3,
        Consult = "Consult" => 4,
    }
}

tlib_enum! {
    /// `TCallState`, with its `tlib_ext.h` numbers.
    CallState ("TCallState") {
        Ok = "Ok" => 0,
        Transferred = "Transferred" => 1,
        Conferenced = "Conferenced" => 2,
        GeneralError = "GeneralError" => 3,
        SystemError = "SystemError" => 4,
        RemoteRelease = "RemoteRelease" => 5,
        Busy = "Busy" => 6,
        NoAnswer = "NoAnswer" => 7,
        Cleared = "Cleared" => 19,
        Abandoned = "Abandoned" => 21,
        Redirected = "Redirected" => 22,
        Forwarded = "Forwarded" => 23,
        Consult = "Consult" => 24,
        Dropped = "Dropped" => 26,
        Held = "Held" => 50,
    }
}

tlib_enum! {
    /// `TServerRole`.
    ServerRole ("TServerRole") {
        Primary = "Primary" => 0,
        Backup = "Backup" => 1,
    }
}

tlib_enum! {
    /// `TMakeCallType`.
    MakeCallType ("TMakeCallType") {
        Regular = "Regular" => 0,
        DirectAgent = "DirectAgent" => 1,
        SupervisorAssist = "SupervisorAssist" => 2,
        Priority = "Priority" => 3,
        DirectPriority = "DirectPriority" => 4,
    }
}

tlib_enum! {
    /// `TAddressInfoType`, with its `tlib_ext.h` numbers.
    AddressInfoType ("TAddressInfoType") {
        AddressStatus = "AddressStatus" => 0,
        MessageWaiting = "MessageWaiting" => 1,
        AssociationStatus = "AssociationStatus" => 2,
        CallForwardingStatus = "CallForwardingStatus" => 3,
        AgentStatus = "AgentStatus" => 4,
        DnStatus = "DNStatus" => 17,
        QueueStatus = "QueueStatus" => 18,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values() {
        assert_eq!(AgentWorkMode::AfterCallWork.as_str(), "AfterCallWork");
        assert_eq!(AgentWorkMode::AfterCallWork.value(), 3);
        assert_eq!(AddressType::Dn.as_str(), "DN");
        assert_eq!(AddressType::from_value(99), Some(AddressType::Other));
        assert_eq!(CallState::Held.value(), 50);
        assert_eq!(
            "ModeShare".parse::<RegisterMode>(),
            Ok(RegisterMode::ModeShare)
        );
        let err = "modeshare".parse::<RegisterMode>().unwrap_err();
        assert_eq!(err.enum_name, "TRegisterMode");
        assert_eq!(AddressInfoType::DnStatus.value(), 17);
    }

    #[test]
    fn every_value_round_trips_by_name_value_and_serde() {
        fn check<T>(all: &[T], name: fn(T) -> &'static str, value: fn(T) -> i32)
        where
            T: Copy + PartialEq + fmt::Debug + Serialize + for<'de> Deserialize<'de>,
        {
            for &v in all {
                let json = serde_json::to_value(v).unwrap();
                assert_eq!(json, serde_json::Value::String(name(v).into()));
                assert_eq!(serde_json::from_value::<T>(json).unwrap(), v);
                let _ = value(v);
            }
        }
        check(RegisterMode::ALL, RegisterMode::as_str, RegisterMode::value);
        check(ControlMode::ALL, ControlMode::as_str, ControlMode::value);
        check(AddressType::ALL, AddressType::as_str, AddressType::value);
        check(
            AgentWorkMode::ALL,
            AgentWorkMode::as_str,
            AgentWorkMode::value,
        );
        check(CallType::ALL, CallType::as_str, CallType::value);
        check(CallState::ALL, CallState::as_str, CallState::value);
        check(ServerRole::ALL, ServerRole::as_str, ServerRole::value);
        check(MakeCallType::ALL, MakeCallType::as_str, MakeCallType::value);
        check(
            AddressInfoType::ALL,
            AddressInfoType::as_str,
            AddressInfoType::value,
        );
        for &v in AddressType::ALL {
            assert_eq!(AddressType::from_value(v.value()), Some(v));
            assert_eq!(AddressType::from_name(v.as_str()), Some(v));
        }
    }

    #[test]
    fn numbers_are_not_accepted_on_the_wire() {
        assert!(serde_json::from_str::<AgentWorkMode>("3").is_err());
        assert!(serde_json::from_str::<AgentWorkMode>("\"Bogus\"").is_err());
    }
}
