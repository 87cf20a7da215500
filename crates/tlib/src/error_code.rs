//! T-Library error codes (`tliberr.h`), carried by `EventError` as `ErrorCode`.
//!
//! Plain `u32` constants rather than an enum: a client must be able to receive and pass on any
//! code, including ones this table does not know. [`default_text`] gives the message a server uses
//! when it has nothing more specific to say.

macro_rules! error_codes {
    ( $( $(#[$doc:meta])* $name:ident = $code:literal, $text:literal; )+ ) => {
        $( $(#[$doc])* pub const $name: u32 = $code; )+

        /// Every known code with its symbol (without the `TERR_` prefix) and default text.
        pub const ALL: &[(u32, &str, &str)] = &[ $( ($code, stringify!($name), $text), )+ ];
    };
}

error_codes! {
    NOMORE_LICENSE = 40, "No more licenses";
    /// The client has not registered the DN.
    NOT_REGISTERED = 41, "DN is not registered by this client";
    RESOURCE_SEIZED = 42, "Resource is seized";
    IN_SAME_STATE = 43, "Object is already in the requested state";
    UNKNOWN_ERROR = 50, "Unknown error";
    /// Unknown or unsupported request (also: an event sent as a request).
    UNSUP_OPER = 51, "Unsupported operation";
    INTERNAL = 52, "Internal error";
    /// A missing or malformed attribute.
    INVALID_ATTR = 53, "Invalid attribute";
    NO_SWITCH = 54, "No connection to the switch";
    PROTO_VERS = 55, "Incorrect protocol version";
    INV_CONNID = 56, "Invalid connection id";
    TIMEOUT = 57, "Timeout expired";
    /// e.g. the DN's owner is unreachable.
    OUT_OF_SERVICE = 58, "DN is out of service";
    /// The DN is not in the configuration.
    NOT_CONFIGURED = 59, "DN is not configured";
    INV_CALD_DN = 71, "Invalid called DN";
    SET_WRONG_STATE = 185, "Request is not allowed in the current agent state";
    INV_CALL_STATE = 496, "Invalid call state";
    INVALID_STATE = 565, "Invalid state";
    AGENT_ALREADY_RESERVED = 1700, "Agent is already reserved";
    SOFT_AGENT_WRONG_ID = 1703, "Wrong agent id";
    SOFT_AGENT_ID_IN_USE = 1704, "Agent id is already in use";
    SOFT_AGENT_PSWD_DOESNT_MATCH = 1705, "Password does not match";
    SOFT_AGENT_ALREADY_LOGGED_IN = 1706, "Agent is already logged in";
    SOFT_AGENT_NOT_LOGGED_IN = 1707, "Agent is not logged in";
    CTL_INV_CALL_STATE = 1712, "Invalid call state for this operation";
}

/// The default text for a code (`"Unknown error"` for a code not in the table).
pub fn default_text(code: u32) -> &'static str {
    ALL.iter()
        .find(|(c, _, _)| *c == code)
        .map_or("Unknown error", |(_, _, text)| text)
}

/// The symbol of a code with its `TERR_` prefix stripped (`"INVALID_ATTR"`), if known.
pub fn symbol(code: u32) -> Option<&'static str> {
    ALL.iter().find(|(c, _, _)| *c == code).map(|(_, s, _)| *s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_texts() {
        assert_eq!(NOT_REGISTERED, 41);
        assert_eq!(INVALID_ATTR, 53);
        assert_eq!(SOFT_AGENT_NOT_LOGGED_IN, 1707);
        assert_eq!(symbol(59), Some("NOT_CONFIGURED"));
        assert_eq!(default_text(51), "Unsupported operation");
        assert_eq!(default_text(9999), "Unknown error");
        assert_eq!(symbol(9999), None);
        let mut codes: Vec<u32> = ALL.iter().map(|(c, _, _)| *c).collect();
        let n = codes.len();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), n, "duplicate codes");
    }
}
