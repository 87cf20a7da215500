//! `sipcore`: the SIP layer every SIP side of drlab shares, on top of `rsip` 0.4.
//!
//! rsip gives us the message model; this crate adds what rsip lacks:
//!
//! * [`normalize`]: compact names, folding, bare LF and multi-value Contact/Via fixed up before
//!   rsip sees the bytes (borrowed when nothing needs fixing),
//! * [`parse`]: datagram parsing honouring Content-Length, keep-alives, log-safe errors,
//! * [`codec`]: tokio-util framing for TCP with RFC 5626 ping/pong and non-fatal bad messages,
//! * [`bad_request`]: a best-effort 400 built from raw header lines,
//! * [`builder`] / [`fields`] / [`ids`]: responses, test requests, header readers, identifiers,
//! * [`transaction`]: RFC 3261 §17.2 server transaction table (pure state, explicit time),
//! * [`client_transaction`]: RFC 3261 §17.1 client transactions, Timers A/B/E/F (pure state),
//! * [`transport`]: UDP + TCP on one address over the `netfault` fault layer.

pub mod bad_request;
pub mod builder;
pub mod client_transaction;
pub mod codec;
pub mod fields;
pub mod framing;
pub mod ids;
pub mod normalize;
pub mod parse;
pub mod transaction;
pub mod transport;

pub use bad_request::bad_request_response;
pub use builder::{response_for, RequestBuilder};
pub use codec::{CodecError, SipFrame, SipStreamCodec};
pub use fields::FieldError;
pub use ids::{branch, call_id, tag};
pub use normalize::normalize;
pub use parse::{parse_datagram, parse_frame, parse_message, Datagram, ParseError};
pub use transaction::{ServerTransactions, TimerConfig, TxKey, TxVerdict};
pub use transport::{
    ConnId, Incoming, IncomingMessage, SipTransport, Source, TransportKind, TransportOptions,
};

/// Re-exported so dependants use the exact rsip version this crate was written against.
pub use rsip;
