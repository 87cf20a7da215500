//! `gws-mock`: one GWS API node double (docs/architecture.md §1, §4.2).
//!
//! A desktop written for GWS 8.5 (WWE) talks to it over HTTP: the GWS API v2 subset at its real
//! paths with Basic auth, `JSESSIONID` sessions and GWS `statusCode`s ([`rest`]), and CometD
//! notifications at `/api/v2/notifications` over long-polling and WebSocket ([`cometd`]). Behind
//! it, one T-Library connection to the first reachable SIP node of an ordered list ([`tlink`])
//! turns desktop operations into T-Lib requests and T-Events into notifications ([`device`],
//! [`notification`]), and tells desktops when the voice channel is lost (R13). Sessions live in
//! this node's memory only ([`session`], [`state`]). Every socket is under the fault layer
//! (`http:<node>`, `tlib:<node>-<sip node>`), and the node serves the common control plane.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let mut cfg = gws_mock::GwsConfig::new("gws1", "dc1", "127.0.1.11".parse()?);
//! cfg.sip_nodes.push(gws_mock::SipNodeRef { name: "ss1".into(), tlib: "127.0.1.1:3000".parse()? });
//! let node = gws_mock::start(cfg).await?;
//! println!("REST + CometD on http://{}", node.http_addr());
//! # Ok(()) }
//! ```

pub mod agent_states;
pub mod cometd;
pub mod config;
pub mod cors;
mod ctx;
pub mod device;
mod http;
mod metrics;
pub mod node;
pub mod notification;
pub mod rest;
pub mod session;
pub mod state;
mod tlink;
pub mod users;

pub use config::{
    AddpSettings, CometdSettings, CorsSettings, GwsConfig, ReconnectSettings, SipNodeRef,
};
pub use node::{start, GwsNode};
pub use users::{User, UserEntry, UserRange};
