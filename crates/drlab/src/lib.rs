//! `drlab`: runs a two-DC Genesys SIP Cluster lab (and, as their crates land, GWS nodes, proxies
//! and simulators) from a topology file, in one process.
//!
//! * [`topology`] — the TOML topology, with the default of architecture §2 compiled in;
//! * [`lab`] — starting and stopping every node of a topology;
//! * [`orchestra`] — the layer every front end shares: lab handle, actors, named faults,
//!   roles, one merged history, status;
//! * [`fault`] — `drlab fault cut|heal` through the nodes' control planes;
//! * [`bench`] — benchmarks that run a lab and print figures (`drlab bench cluster`).

pub mod bench;
pub mod fault;
pub mod lab;
pub mod orchestra;
pub mod topology;

pub use lab::Lab;
pub use topology::{Topology, DEFAULT_TOPOLOGY};
