//! What every drlab node shares (docs/architecture.md §6): the control plane served over HTTP,
//! the event journal, Prometheus metrics, the crash / restart lifecycle, ADDP settings, duration
//! parsing for configuration files, the common command-line flags and the tracing set-up. Each
//! node type implements [`ControlTarget`]; the same operations back the HTTP endpoints and the
//! in-process `NodeHandle`s, so local and remote control behave alike.

pub mod addp;
pub mod cli;
pub mod config;
pub mod control;
pub mod duration;
pub mod journal;
pub mod lifecycle;
pub mod metrics;
pub mod peer;
pub mod telemetry;

pub use addp::AddpSettings;
pub use control::{serve_control, serve_control_on, ControlServer, ControlTarget};
pub use journal::{Entry, Journal};
pub use lifecycle::{Lifecycle, Services};
pub use metrics::Metrics;
