//! `desktop-sim`: WWE-like agent desktops, one or thousands (docs/scenarios.md R13, R14,
//! S1–S4).
//!
//! A desktop logs in to GWS API v2 — directly or through the sticky proxy — with Basic
//! credentials, keeps its own cookies (`JSESSIONID`, `BAYEUX_BROWSER`, the proxy's route
//! cookie) and the CSRF token GWS hands out (sent on every POST), follows `/v2/me/devices`,
//! `/v2/me/calls`, `/v2/me/channels` and `/notifications/services` over CometD long-polling or a
//! WebSocket ([`Transport`]), starts the contact-center session, and runs the agent's clicks
//! (Ready, Not Ready, Answer, Hang up). It shows what the agent would see ([`Screen`]): the voice
//! channel, the calls, and the R13 banners — "Connection to the server has been lost.
//! Reconnecting…" at once on a loss, and "Unable to establish connection. Please refresh your
//! browser and log in again" after `giveup_after` without recovery — retrying on the CometD JS
//! client's linear backoff or a jittered one, and, with the relogin policy, logging in again
//! when the session is gone (the proxy moved the desktop to a node that never knew it, R14,
//! S1.3).
//!
//! Layout: plain data and pure rules — [`backoff`], [`connection`] (R13), [`screen`],
//! [`failure`], [`bayeux`], [`json`] (what is read from GWS), [`cookies`], [`config`],
//! [`transport`] — unit-tested without sockets; [`http`], a lean HTTP/1.1 client with each
//! desktop's own keep-alive connections, and [`websocket`], the CometD socket; [`gws`], the GWS
//! API side of one desktop; [`desktop`], its handle, and `driver`, its task; [`swarm`],
//! thousands of them with [`tally`] counts. Everything that happens goes to a [`Journal`]
//! (`desktop.*` entries).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use desktop_sim::{Desktop, DesktopConfig};
//! let cfg = DesktopConfig::new("http://127.0.1.10:8080", "agent8001");
//! let desktop = Desktop::start(cfg)?;
//! let screen = desktop
//!     .wait_for(std::time::Duration::from_secs(10), |s| s.connection.name() == "connected")
//!     .await;
//! println!("{screen:?}");
//! # Ok(()) }
//! ```

pub mod backoff;
pub mod bayeux;
pub mod config;
pub mod connection;
pub mod cookies;
pub mod desktop;
mod driver;
pub mod failure;
pub mod gws;
pub mod http;
pub mod json;
pub mod screen;
pub mod swarm;
pub mod tally;
pub mod transport;
pub mod websocket;

pub use backoff::Backoff;
pub use config::{user_range, DesktopConfig};
pub use connection::{Connection, RECONNECTING, UNABLE_TO_CONNECT};
pub use desktop::{Desktop, Hands, Shared};
pub use failure::Failure;
/// The journal every desktop writes to (what `--json` prints and tests wait on).
pub use nodekit::{Entry, Journal};
pub use screen::{CallView, Screen, Voice};
pub use swarm::{Swarm, SwarmConfig};
pub use tally::{Summary, Tally};
pub use transport::Transport;
