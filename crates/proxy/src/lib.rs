//! `proxy`: the NGINX in front of the GWS nodes. An HTTP/1.1 reverse proxy on hyper 1 +
//! tokio whose routing reproduces nginx exactly, so DR scenarios see what a real nginx does to a
//! sticky desktop when a GWS node fails.
//!
//! - [`config`]: the TOML file, read like the nginx directives (`proxy --config FILE`).
//! - [`balancer`]: peer selection and passive health (`max_fails`/`fail_timeout`) with an explicit
//!   clock: round robin, `hash $cookie_JSESSIONID consistent` ([`ring`]: ketama, CRC32),
//!   `ip_hash`, NGINX Plus `sticky learn` / `sticky cookie`. Checked against real nginx in
//!   `tests/nginx_parity.rs`.
//! - [`server`]: forwarding over pooled keep-alive connections through the fault layer
//!   (`http:{proxy}-{server}` links), `proxy_next_upstream` rules, streaming responses with
//!   `proxy_read_timeout` between reads, WebSocket tunnel, access log (`proxy::access` target),
//!   journal events (`upstream.failed`, `sticky.rebind`), control plane via [`nodekit`].
//! - [`pool`]: idle keep-alive upstream connections (`keepalive N`), each back in the pool as
//!   soon as its response body has been read.
//! - `fast`: the fast path a client connection starts on, for requests without a body or with a
//!   `Content-Length` one (read whole before it goes upstream): heads parsed and re-encoded as
//!   bytes (`h1`, `framing`), upstream sockets read and written by the client connection's own
//!   task (`link`). Anything else (chunked bodies, `Expect`, bodies over
//!   `client_max_body_size`, upgrades, HTTP/1.0, bad or oversized heads) moves the connection to
//!   hyper's server (`rewind`) for good. Both paths share the peer walk (`attempts`).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let cfg = proxy::Config::load(std::path::Path::new("proxy.toml"))?;
//! let handle = proxy::start(cfg).await?;
//! println!("{} {}", handle.local_addr(), handle.status());
//! # Ok(()) }
//! ```
//!
//! Deliberate differences from nginx: request bodies are buffered up to `client_max_body_size`
//! (nginx's default `proxy_request_buffering on`), the client `Host` header is passed on (as with
//! `proxy_set_header Host $host`), the route cookie of `sticky cookie` is the CRC32 (not MD5) of
//! the server address, `backup` servers are allowed with `hash`/`ip_hash` (used once the
//! primaries are exhausted), which nginx refuses, and `client_header_timeout` also bounds how
//! long an idle keep-alive client is kept (nginx: `keepalive_timeout`).

mod attempts;
pub mod balancer;
pub mod body;
pub mod config;
pub mod crc32;
mod deadline;
mod fast;
mod framing;
mod h1;
mod link;
pub mod pool;
mod rewind;
pub mod ring;
pub mod server;

pub use config::{Config, ServerConfig, Sticky, UpstreamConfig};
pub use server::{start, start_with_faults, ProxyHandle, ProxyNode};
