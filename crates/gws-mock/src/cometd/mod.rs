//! CometD/Bayeux at `/api/v2/notifications` (docs/protocols.md §5.3): [`bayeux`] is the
//! protocol, [`clients`] the client registry, and the two transports carry it —
//! [`long_polling`] (the GWS 8.5 baseline: POSTed batches, `/meta/connect` held up to
//! `timeout`) and [`websocket`] (frames both ways, messages pushed as they come).

pub mod bayeux;
pub mod clients;
pub mod long_polling;
pub mod websocket;

use std::sync::Arc;

use tokio::time::Instant;

use crate::ctx::Ctx;

/// The `BAYEUX_BROWSER` cookie.
pub const BROWSER_COOKIE: &str = "BAYEUX_BROWSER";

/// Releases a held connect's claim on its session when the transport stops waiting, also when
/// the request is cancelled (the desktop went away mid-poll): otherwise the session would look
/// busy for ever and never expire.
struct Parked {
    ctx: Arc<Ctx>,
    client_id: String,
}

impl Parked {
    fn new(ctx: &Arc<Ctx>, client_id: &str) -> Parked {
        ctx.state().set_parked(client_id, true, Instant::now());
        Parked {
            ctx: ctx.clone(),
            client_id: client_id.to_owned(),
        }
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        self.ctx
            .state()
            .set_parked(&self.client_id, false, Instant::now());
    }
}

/// Whether a held connect should return now: something is queued, or the client or its
/// session is gone.
fn ready(ctx: &Ctx, client_id: &str) -> bool {
    let st = ctx.state();
    match st.clients.get(client_id) {
        None => true,
        Some(c) => c.has_queued() || st.sessions.get(&c.session).is_none(),
    }
}
