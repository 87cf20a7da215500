//! The GWS API v2 subset at its real paths (docs/protocols.md §5, docs/gws-api.md): [`me`] (the
//! user, devices and calls, contact-center session, agent state on all channels), [`voice`]
//! (agent state), [`devices`] (one device: its settings, DND, forwarding), [`calls`] (reading and
//! controlling calls, dial).
//! Every POST checks its body first ([`body`]), then the caller ([`auth`]), then asks the SIP node
//! ([`tlib_call`]); failures are GWS `statusCode`s ([`error`]).

pub mod auth;
pub mod body;
pub mod calls;
pub mod devices;
pub mod error;
pub mod me;
pub mod tlib_call;
pub mod voice;
