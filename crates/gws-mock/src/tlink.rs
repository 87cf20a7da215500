//! The T-Lib link: one connection per GWS node to the first reachable SIP node of its ordered
//! list (local DC first), kept alive by ADDP, re-established from the top of the list after a
//! loss, with a doubling wait between rounds in which no node answered. While it is up, T-Events
//! become notifications; when it goes, every desktop is told the voice channel is out of service
//! (R13); when it comes back, the DNs of contact-center sessions are registered again.

use std::net::IpAddr;
use std::sync::Arc;

use netfault::Faults;
use serde_json::json;
use tlib::{ClientConfig, ClientEvent, Events, Request, TlibClient};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use crate::config::SipNodeRef;
use crate::ctx::Ctx;

/// Runs the link until `stop`.
pub async fn run(ctx: Arc<Ctx>, faults: Faults, stop: CancellationToken) {
    let settings = ctx.cfg.reconnect;
    let mut backoff = settings.initial_backoff;
    loop {
        match connect_first(&ctx, &faults, &stop).await {
            Some((node, client, events)) => {
                backoff = settings.initial_backoff;
                serve(&ctx, &node, client, events, &stop).await;
            }
            None => {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(settings.max_backoff);
            }
        }
        if stop.is_cancelled() {
            return;
        }
    }
}

/// One round over the ordered list; the first node that completes the handshake wins.
async fn connect_first(
    ctx: &Ctx,
    faults: &Faults,
    stop: &CancellationToken,
) -> Option<(String, TlibClient, Events)> {
    for node in &ctx.cfg.sip_nodes {
        let attempt = connect(ctx, faults, node);
        let result = tokio::select! {
            _ = stop.cancelled() => return None,
            r = timeout(ctx.cfg.reconnect.connect_timeout, attempt) => r,
        };
        match result {
            Ok(Ok((client, events))) => return Some((node.name.clone(), client, events)),
            Ok(Err(e)) => tracing::debug!(node = %node.name, error = %e, "T-Lib connect failed"),
            Err(_) => tracing::debug!(node = %node.name, "T-Lib connect timed out"),
        }
    }
    None
}

async fn connect(
    ctx: &Ctx,
    faults: &Faults,
    node: &SipNodeRef,
) -> anyhow::Result<(TlibClient, Events)> {
    let local: Option<IpAddr> = Some(ctx.cfg.address).filter(|a| !a.is_unspecified());
    let link = ctx.cfg.tlib_link(&node.name);
    let stream = netfault::tcp::connect(faults, &link, local, node.tlib).await?;
    let mut config = ClientConfig::new(ctx.cfg.name.clone());
    config.addp = ctx.cfg.addp.to_tlib();
    config.request_timeout = ctx.cfg.request_timeout;
    Ok(TlibClient::handshake_with(stream, config).await?)
}

/// The link is up: until it goes down (or `stop`), T-Events drive the state.
async fn serve(
    ctx: &Ctx,
    node: &str,
    client: TlibClient,
    mut events: Events,
    stop: &CancellationToken,
) {
    ctx.set_tlib(Some(client.clone()));
    ctx.metrics.tlib_connects.inc();
    ctx.metrics.tlib_link_up.set(1);
    let (sent, dns) = ctx.state().link_up(node);
    ctx.metrics.notifications_sent.inc_by(sent as u64);
    ctx.journal.record(
        "tlib.link_up",
        json!({ "sip_node": node, "reregister": dns }),
    );
    tracing::info!(sip_node = %node, "T-Lib link up");
    for dn in dns {
        let msg = Request::register_address(dn).to_message(client.next_reference_id());
        if client.send(msg).await.is_err() {
            break;
        }
    }
    let reason = loop {
        let event = tokio::select! {
            _ = stop.cancelled() => break "stopped".to_owned(),
            e = events.recv() => e,
        };
        match event {
            Some(ClientEvent::Message(msg)) => on_event(ctx, &msg).await,
            Some(ClientEvent::Lagged { missed }) => {
                tracing::warn!(missed, "T-Lib events lost: desktops may show stale state")
            }
            Some(ClientEvent::Invalid(e)) => tracing::debug!(error = %e, "invalid T-Lib message"),
            Some(ClientEvent::Disconnected { reason }) => break reason.to_string(),
            None => break "closed".to_owned(),
        }
    };
    ctx.set_tlib(None);
    ctx.metrics.tlib_link_up.set(0);
    let sent = ctx.state().link_down();
    ctx.metrics.notifications_sent.inc_by(sent as u64);
    ctx.journal.record(
        "tlib.link_down",
        json!({ "sip_node": node, "reason": reason }),
    );
    tracing::warn!(sip_node = %node, %reason, "T-Lib link down");
}

async fn on_event(ctx: &Ctx, msg: &tlib::Message) {
    let (sent, ended) = ctx.state().on_tevent(msg);
    if sent > 0 {
        ctx.metrics.notifications_sent.inc_by(sent as u64);
        ctx.journal.record(
            "notification.sent",
            json!({ "event": msg.name.as_str(), "dn": msg.this_dn(), "clients": sent }),
        );
    }
    ctx.sessions_ended(ended).await;
}
