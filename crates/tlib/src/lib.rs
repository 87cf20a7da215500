//! The drlab T-Library-style protocol: what a SIP Cluster node's T-Lib port speaks, and what its
//! TC-layer links are framed with.
//!
//! # Wire format
//!
//! Each frame is a 4-byte unsigned big-endian length `N` (at most 1 MiB) followed by `N` bytes of
//! UTF-8 JSON holding exactly one object. `"message"` holds the T-Library message name; every
//! other key is a T-Library attribute name without the `Attribute` prefix. Enumerations travel as
//! their names, `ConnID` as 16 lowercase hex digits, KV lists (`Extensions`, `UserData`,
//! `Reasons`) as JSON objects. A 146-byte (`0x92`) request, wrapped here for display:
//!
//! ```text
//! 00 00 00 92  {"message":"RequestRegisterAddress","ReferenceID":3,"ThisDN":"7001",
//!              "RegisterMode":"ModeShare","ControlMode":"RegisterDefault","AddressType":"DN"}
//! ```
//!
//! A session opens with `RequestRegisterClient {ApplicationName, ReferenceID}`, answered by
//! `EventServerInfo` (node in `ApplicationName`, DC in `Location`, `ServerRole`) and then
//! `EventLinkConnected`. Each request carries a client-chosen `ReferenceID` that its response
//! echoes; unsolicited events carry none. Servers stamp events with `EventSequenceNumber`,
//! `TimeinSecs` and `TimeinuSecs`. `{"message":"Ping"}` / `{"message":"Pong"}` are the ADDP-style
//! keepalive.
//!
//! # Layers
//!
//! Decoding has three phases with distinct failure policies:
//!
//! 1. [`JsonFrameCodec`] (`frame`): bytes → JSON object. A [`FrameError`] is fatal for the
//!    connection.
//! 2. [`Message::from_object`] (`message`, `attrs`, `names`, `enums`): object → typed message,
//!    lossless (unknown names and attributes are kept). A [`MessageError`] is answered with
//!    `EventError` 53 and the connection stays up.
//! 3. [`Request::parse`] (`request`): message → typed request with defaults applied. A
//!    [`RequestError`] (51 or 53) is answered with its `to_event()`.
//!
//! [`event`] builds the server's events, [`EventStamper`] stamps them, [`addp`] is the keepalive
//! state machine, and [`TlibClient`] is a complete async client.
//!
//! ```
//! use tlib::{Message, MessageName, Request};
//!
//! let msg = Request::register_address("7001").to_message(3);
//! let text = serde_json::to_string(&msg).unwrap();
//! assert!(text.starts_with(r#"{"message":"RequestRegisterAddress","ReferenceID":3"#));
//! let back: Message = serde_json::from_str(&text).unwrap();
//! assert_eq!(back.name, MessageName::RequestRegisterAddress);
//! assert_eq!(Request::parse(&back).unwrap(), (Some(3), Request::register_address("7001")));
//! ```

pub mod addp;
pub mod attrs;
pub mod client;
pub mod enums;
pub mod error_code;
pub mod event;
pub mod frame;
pub mod message;
pub mod names;
pub mod request;

pub use addp::{Addp, AddpAction, AddpConfig};
pub use attrs::{AttributeError, Attributes, ConnId, InvalidConnId, KvList};
pub use client::{ClientConfig, ClientError, ClientEvent, DisconnectReason, Events, TlibClient};
pub use enums::{
    AddressInfoType, AddressType, AgentWorkMode, CallState, CallType, ControlMode, MakeCallType,
    RegisterMode, ServerRole, UnknownEnumValue,
};
pub use event::{CallInfo, EventStamper, ServerInfo};
pub use frame::{FrameError, JsonFrameCodec, DEFAULT_MAX_FRAME_LEN};
pub use message::{Message, MessageError};
pub use names::MessageName;
pub use request::{Request, RequestError};
