//! The built-in fault layer of drlab (docs/architecture.md §5; rules: docs/protocols.md §6).
//!
//! Every socket a drlab node opens is tagged with the *link* it serves — `tc:ss1-ss3`,
//! `tlib:gws1-ss1`, `sip:ss1`, `http:proxy-dc1-gws1`, `media:7001` — and goes through this crate.
//! A node's [`Faults`] holds rules such as `{"link": "tc:*dc2*", "mode": "drop"}`; every socket
//! tagged with a matching link obeys them at once, including connections that are already open:
//!
//! * `drop` blackholes silently, both ways: peers must find out with keepalives and timeouts,
//!   exactly as with an `iptables -j DROP` rule or a cut cable;
//! * `reject` resets open TCP connections and refuses new ones (an RST), and makes UDP sends fail
//!   like an ICMP port-unreachable would;
//! * `delay` holds traffic for `ms` milliseconds in both directions, UDP included (the kernel here
//!   has no netem, and Toxiproxy has no UDP);
//! * `loss` loses a `rate` share of datagrams; on TCP a lost segment shows up as what the
//!   application would see, a retransmission stall of [`TCP_LOSS_STALL`].
//!
//! A TCP connection ([`FaultStream`]) is the plain socket while no rule applies to its link
//! (no copy, no extra task: a clear link costs what an unwrapped socket costs). From the moment a
//! rule applies, a reject or crash resets it, and any other rule puts it for good behind a pump
//! that moves bytes between the real socket and an in-memory pipe the application then uses, so
//! faults apply to byte streams without the application knowing. UDP works per datagram
//! ([`FaultUdpSocket`]).
//!
//! The same place taps the traffic for the scenario report when capture is on ([`capture`]):
//! each message that crosses a link, with a one-line summary.

pub mod capture;
mod glob;
mod rule;
mod set;
pub mod tcp;
mod udp;

pub use capture::{Capture, Dir, MediaCounter, Record};
pub use rule::{FaultMode, FaultRule, PeerFilter, RuleError};
pub use set::{FaultStats, Faults, RuleId, StoredRule, Verdict};
pub use tcp::FaultStream;
pub use udp::FaultUdpSocket;

/// How long a "lost" TCP segment stalls the stream: Linux's minimum retransmission timeout.
pub const TCP_LOSS_STALL: std::time::Duration = std::time::Duration::from_millis(200);
