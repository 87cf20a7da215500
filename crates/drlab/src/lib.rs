//! `drlab`: runs a two-DC Genesys lab — the SIP Cluster nodes, the GWS nodes and the proxy in
//! front of each DC's GWS nodes — from a topology file, in one process.
//!
//! * [`topology`] — the TOML topology, with the default of docs/architecture.md §2 compiled in;
//! * [`lab`] — starting and stopping every node of a topology;
//! * [`orchestra`] — the layer every front end shares: lab handle, actors, named faults,
//!   roles, one merged history, status;
//! * [`scenario`] — `drlab scenario`: the seed's DR scenarios, checked id by id;
//! * [`report`] — the scenario report: a ladder diagram per case, in a browser;
//! * [`bench`] — benchmarks that run a lab and print figures (`drlab bench cluster`);
//! * [`node`] — one node of a topology (`drlab node`, what each container runs);
//! * [`containers`] — the image, the Compose project and partitions in containers.

pub mod bench;
pub mod containers;
pub mod lab;
pub mod node;
pub mod orchestra;
pub mod report;
pub mod scenario;
pub mod storm;
pub mod topology;

pub use lab::Lab;
pub use topology::{Topology, DEFAULT_TOPOLOGY};
