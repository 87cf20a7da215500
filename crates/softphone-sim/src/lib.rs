//! `softphone-sim`: agent softphones — one or thousands on one socket — the PSTN gateway that
//! answers PSTN agents' numbers, and PSTN callers (docs/architecture.md §1; R12 and S4).
//!
//! A phone registers its DN to an ordered registrar list (SRV-like, DC1 first), refreshes before
//! expiry, detects a dead registrar on refresh (timeout, error status, TCP reset) and fails over
//! to the next one at once (the RFC 5626 or fixed backoff comes only when the whole list failed;
//! [`Failover`]). It answers INVITEs (auto, after a delay, or on
//! the desktop's NOTIFY `Event: talk`), exchanges an RTP-like heartbeat with the address in the
//! remote SDP, and drops a call whose media stays silent for `media.timeout`.
//!
//! Layout: plain-data state machines with pure transitions — [`registration`], [`call`],
//! [`backoff`], [`heartbeat`] (client transactions are `sipcore::client_transaction`) —
//! unit-tested without sockets; the [`engine`] that
//! applies them to every phone and call of one simulator (with `registering.rs`, `answering.rs`
//! and `placing.rs`);
//! [`swarm`], the task and the handle; [`media`], one heartbeat task per call.
//!
//! A swarm's cost per registration is kept well under a registrar's (bench/softphone): UDP goes
//! in and out in batches ([`udp_batch`]), a registrar's response is read in place without the
//! full parser, the REGISTER is written into one buffer, phones are found by the index in their
//! Call-ID and Via branch rather than looked up, and timers live in one heap
//! ([`deadlines`]). [`Swarm::unregister`] removes every binding at shutdown.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use softphone_sim::{CallPlan, PhoneConfig, Swarm};
//! let ss1 = "127.0.1.1:5060".parse()?;
//! let ss3 = "127.0.2.1:5060".parse()?;
//! let phone = Swarm::start(PhoneConfig::phones(["7001"], [ss1, ss3])).await?;
//! let caller = Swarm::start(PhoneConfig::caller("127.0.0.1".parse()?)).await?;
//! let report = caller.place_call(CallPlan::new("7001", ss1)).await?;
//! println!("{report:?} {:?}", phone.stats());
//! # Ok(()) }
//! ```

mod answering;
pub mod backoff;
pub mod call;
pub mod config;
pub mod deadlines;
mod dialog;
pub mod engine;
pub mod heartbeat;
pub mod media;
pub mod metrics;
mod placing;
mod register_reply;
mod register_request;
mod registering;
pub mod registration;
pub mod sdp;
pub mod status;
pub mod swarm;
pub mod udp_batch;
pub mod usage;

pub use backoff::Backoff;
pub use call::AnswerMode;
pub use config::{dn_range, PhoneConfig, Transport};
pub use media::MediaTimers;
/// The journal every simulator keeps (what `--json` prints and tests wait on).
pub use nodekit::{Entry, Journal};
pub use placing::{CallPlan, CallReport};
pub use registration::Failover;
pub use swarm::{Stats, Swarm, Unregistered};
