//! `sipserver-mock`: one SIP Cluster node double (docs/architecture.md §1, §4.1).
//!
//! A node speaks SIP over UDP and TCP as a registrar for softphone DNs, serves the T-Lib protocol
//! on its T-Lib port (DN registration, agent login/logout/ready/not ready, queries, DN service
//! events), carries calls as a back-to-back UA with T-Events and third-party call control, keeps
//! a TC-layer link to every other node, applies the DR rules of docs/scenarios.md (R1–R12), and
//! serves the common control plane (state, journal, metrics, faults, crash, restart). Start one
//! with [`start`]; `drlab` starts several in one process.
//!
//! Layout: [`core::NodeCore`] is the state and its transitions — `sip.rs` (SIP dispatch, the
//! registrar, OPTIONS), `calls/` (calls), `tcontroller.rs` (T-Lib requests) and [`cluster`]
//! (ownership, moves, relaying and resynchronisation over the TC layer) — driven by one task in
//! [`node`]. [`registrar`], [`agent`], [`call`] and [`dn_table`] are plain data with pure
//! transitions; `tlib_conn.rs` moves T-Lib frames and [`tc`] TC-layer frames.

pub mod agent;
pub mod call;
mod calls;
pub mod cluster;
pub mod config;
pub mod core;
pub mod dn;
pub mod dn_table;
pub mod metrics;
pub mod node;
pub mod registrar;
mod sip;
pub mod tc;
mod tcontroller;
mod tlib_conn;
mod user_data;

pub use config::{AddpSettings, AgentOptions, NodeConfig, RegistrarConfig};
pub use dn::{DnKind, DnRange};
pub use node::{start, SipNode};
pub use tc::PeerNode;
