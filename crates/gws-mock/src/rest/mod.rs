//! The GWS API v2 subset at its real paths (docs/protocols.md §5): [`me`] (the user, devices and
//! calls, contact-center session), [`voice`] (agent state), [`calls`] (call control and dial).
//! Every POST checks its body first ([`body`]), then the caller ([`auth`]), then asks the SIP node
//! ([`tlib_call`]); failures are GWS `statusCode`s ([`error`]).

pub mod auth;
pub mod body;
pub mod calls;
pub mod error;
pub mod me;
pub mod tlib_call;
pub mod voice;
