//! `sipserver-mock`: one SIP Cluster node double (architecture §1).
//!
//! A node speaks SIP over UDP and TCP as a registrar for softphone DNs, serves the
//! T-Library-style protocol on its T-Lib port (DN registration, agent login/logout/ready/not
//! ready, queries, DN service events), carries calls as a back-to-back UA with T-Events and
//! third-party call control, applies the DR rules of `scenarios.md` (R1–R12; the cluster rules
//! over the TC layer with its peers, `cluster.rs`), and exposes the common control plane (state, journal, metrics, faults, crash,
//! restart). Start one with [`start`]; `drlab` starts several in one process.
//!
//! Layout: [`core::NodeCore`] is the state and its transitions (`sip.rs` for SIP,
//! `tcontroller.rs` for T-Lib), driven by one task in [`node`]; [`registrar`] and [`agent`] are
//! pure state machines; `tlib_conn.rs` moves T-Lib frames.

pub mod agent;
mod b2bua;
pub mod call;
pub mod cluster;
pub mod config;
pub mod core;
pub mod dn;
pub mod metrics;
pub mod node;
pub mod registrar;
mod sip;
pub mod tc;
mod tcontroller;
mod tlib_conn;

pub use config::{AddpSettings, AgentOptions, NodeConfig, RegistrarConfig};
pub use dn::{DnKind, DnRange};
pub use node::{start, SipNode};
pub use tc::PeerNode;
