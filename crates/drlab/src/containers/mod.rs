//! The lab as containers (docs/containers.md): one image built offline, a Compose project
//! generated from any topology, and partitions as iptables rules inside the containers.
//!
//! * [`cli`] — the `drlab image` and `drlab compose` subcommands;
//! * [`docker`] — running `docker` and Compose (the `docker compose` plugin or `docker-compose`);
//! * [`image`] — `drlab image build`: a debootstrap'ed base, then the binaries on top;
//! * [`subnet`] — IPv4 subnets and the addresses drlab hands out from them;
//! * [`plan`] — a topology placed on networks: addresses, container names, the topology the
//!   containers run;
//! * [`compose`] — the Compose file of a plan, and the checks against the running daemon;
//! * [`yaml`] — the small YAML writer the Compose file is written with;
//! * [`partition`] — cutting and healing DCs with iptables in the `wan` router container.

pub mod cli;
pub mod compose;
pub mod docker;
pub mod image;
pub mod partition;
pub mod plan;
pub mod subnet;
pub mod yaml;
