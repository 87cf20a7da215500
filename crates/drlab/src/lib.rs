//! `drlab`: runs a two-DC Genesys lab — the SIP Cluster nodes, the GWS nodes and the proxy in
//! front of each DC's GWS nodes — from a topology file, in one process.
//!
//! * [`topology`] — the TOML topology, with the default of docs/architecture.md §2 compiled in;
//! * [`lab`] — starting and stopping every node of a topology;
//! * [`fault`] — `drlab fault cut|heal` through the nodes' control planes;
//! * [`bench`] — benchmarks that run a lab and print figures (`drlab bench cluster`).

pub mod bench;
pub mod fault;
pub mod lab;
pub mod topology;

pub use lab::Lab;
pub use topology::{Topology, DEFAULT_TOPOLOGY};
