//! Starting, crashing, restarting and stopping a node: the tasks around [`NodeCore`].
//!
//! Tasks: one core task owns the state and reads SIP messages, T-Lib inputs and timers; the SIP
//! transport has its own receive tasks; one task accepts T-Lib connections and one task serves
//! each of them. The control plane outlives crashes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use netfault::Faults;
use nodekit::control::BoxFuture;
use nodekit::{ControlTarget, Journal, Lifecycle};
use serde_json::{json, Value};
use sipcore::transport::{Incoming, SipTransport, TransportOptions};
use tlib::{Message, MessageError};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::agent::ClientId;
use crate::config::NodeConfig;
use crate::core::NodeCore;
use crate::metrics::NodeMetrics;
use crate::tc::{self, LinkContext, PeerNode};
use crate::tlib_conn;

/// What the core task receives besides SIP messages.
pub enum Input {
    ClientUp {
        id: ClientId,
        peer: SocketAddr,
        tx: mpsc::Sender<Message>,
    },
    ClientMessage {
        id: ClientId,
        /// Boxed: a decoded message is large and most inputs are small.
        msg: Box<Result<Message, MessageError>>,
    },
    ClientGone {
        id: ClientId,
        reason: String,
    },
    Snapshot(oneshot::Sender<Value>),
    /// A TC link to `peer` is up; `tx` sends to it.
    TcLinkUp {
        peer: String,
        link_id: u64,
        tx: mpsc::Sender<crate::tc::TcMessage>,
    },
    /// The TC link `link_id` to `peer` ended.
    TcLinkDown {
        peer: String,
        link_id: u64,
        reason: String,
    },
    /// A frame from a peer (keepalives excluded). Boxed: most inputs are small.
    TcFrame {
        peer: String,
        link_id: u64,
        msg: Box<crate::tc::TcMessage>,
    },
}

/// Inputs queued towards the core before senders wait.
const CORE_QUEUE: usize = 16 * 1024;

/// A running node. Dropping it does not stop it; call [`SipNode::shutdown`].
#[derive(Clone)]
pub struct SipNode {
    inner: Arc<NodeInner>,
}

struct NodeInner {
    /// The configuration with the ports actually bound (port 0 resolved).
    config: Arc<NodeConfig>,
    metrics: Arc<NodeMetrics>,
    next_client: Arc<AtomicU64>,
    /// The other nodes of the cluster (the TC layer dials them).
    peers: Arc<Mutex<Vec<PeerNode>>>,
    life: Lifecycle<Services>,
}

/// The sockets and tasks that a crash kills and a restart brings back.
struct Services {
    core: mpsc::Sender<Input>,
    stop: CancellationToken,
    sip: SipTransport,
    links: LinkContext,
    /// Cancels the current set of TC dialers (replaced when the peer list changes).
    dialers: Mutex<CancellationToken>,
}

/// The ports a node's services bound.
struct Bound {
    sip: SocketAddr,
    tlib: SocketAddr,
    tc: SocketAddr,
}

/// Starts a node: SIP (UDP+TCP), T-Lib, control plane. Port 0 anywhere means "any free port";
/// [`SipNode::config`] tells the ports bound.
pub async fn start(mut config: NodeConfig) -> anyhow::Result<SipNode> {
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("node {}: {e}", config.name))?;
    let control_listener =
        nodekit::config::bind_control(&config.name, config.control_addr()).await?;
    let faults = Faults::new();
    let journal = Journal::new(&config.name, config.journal_capacity);
    let metrics = Arc::new(NodeMetrics::new(&config.name));
    metrics.registry.register_faults(&faults);
    let next_client = Arc::new(AtomicU64::new(1));
    let peers = Arc::new(Mutex::new(config.peers.clone()));
    let (services, bound) = Services::start(
        &config,
        &faults,
        &journal,
        &metrics,
        next_client.clone(),
        peers.clone(),
    )
    .await?;
    // Later restarts bind the same ports.
    config.sip_port = bound.sip.port();
    config.tlib_port = bound.tlib.port();
    config.tc_port = bound.tc.port();
    config.control_port = control_listener.local_addr()?.port();
    let life = Lifecycle::new(&config.name, &config.dc, journal, faults, services);
    let node = SipNode {
        inner: Arc::new(NodeInner {
            config: Arc::new(config),
            metrics,
            next_client,
            peers,
            life,
        }),
    };
    let token = node.inner.config.control_token.clone();
    node.inner
        .life
        .serve_control(control_listener, Arc::new(node.clone()), token)?;
    let c = &node.inner.config;
    tracing::info!(node = %c.name, sip = %c.sip_addr(), tlib = %c.tlib_addr(), control = %c.control_addr(), "SIP node up");
    Ok(node)
}

impl nodekit::Services for Services {
    fn stop(self) {
        self.stop.cancel();
        self.sip.close_all();
    }
}

impl Services {
    async fn start(
        config: &NodeConfig,
        faults: &Faults,
        journal: &Journal,
        metrics: &Arc<NodeMetrics>,
        next_client: Arc<AtomicU64>,
        peers: Arc<Mutex<Vec<PeerNode>>>,
    ) -> anyhow::Result<(Services, Bound)> {
        let name = &config.name;
        let (sip, sip_rx) = SipTransport::bind(
            faults,
            &format!("sip:{name}"),
            config.sip_addr(),
            TransportOptions::default(),
        )
        .await
        .with_context(|| format!("node {name}: cannot bind SIP on {}", config.sip_addr()))?;
        let tlib_listener = TcpListener::bind(config.tlib_addr())
            .await
            .with_context(|| format!("node {name}: cannot bind T-Lib on {}", config.tlib_addr()))?;
        let tc_listener = TcpListener::bind(config.tc_addr())
            .await
            .with_context(|| format!("node {name}: cannot bind TC on {}", config.tc_addr()))?;
        let bound = Bound {
            sip: sip.local_addr(),
            tlib: tlib_listener.local_addr()?,
            tc: tc_listener.local_addr()?,
        };
        let mut resolved = config.clone();
        resolved.sip_port = bound.sip.port();
        resolved.tlib_port = bound.tlib.port();
        resolved.tc_port = bound.tc.port();
        let core = NodeCore::new(Arc::new(resolved), journal.clone(), metrics.clone())
            .map_err(anyhow::Error::msg)?;
        let (core_tx, core_rx) = mpsc::channel(CORE_QUEUE);
        let stop = CancellationToken::new();
        let span = tracing::info_span!("node", name = %name);
        tokio::spawn(
            run_core(core, core_rx, sip_rx, sip.clone(), stop.clone()).instrument(span.clone()),
        );
        tokio::spawn(
            accept_tlib(
                tlib_listener,
                faults.clone(),
                format!("tlib:{name}"),
                config.addp.to_tlib(),
                core_tx.clone(),
                next_client,
                stop.clone(),
            )
            .instrument(span.clone()),
        );
        let links = LinkContext {
            node: name.clone(),
            dc: config.dc.clone(),
            address: config.address,
            faults: faults.clone(),
            addp: config.addp.to_tlib(),
            core: core_tx.clone(),
        };
        tokio::spawn(
            accept_tc(tc_listener, links.clone(), peers.clone(), stop.clone()).instrument(span),
        );
        let services = Services {
            core: core_tx,
            dialers: Mutex::new(stop.child_token()),
            stop,
            sip,
            links,
        };
        let current = peers.lock().unwrap_or_else(|e| e.into_inner()).clone();
        services.dial_peers(&current);
        Ok((services, bound))
    }

    /// (Re)starts the dialers: this node dials every peer whose name sorts after its own, so each
    /// pair of nodes has exactly one link.
    fn dial_peers(&self, peers: &[PeerNode]) {
        let mut dialers = self.dialers.lock().unwrap_or_else(|e| e.into_inner());
        dialers.cancel();
        *dialers = self.stop.child_token();
        for peer in peers.iter().filter(|p| p.name > self.links.node) {
            tokio::spawn(tc::dial(self.links.clone(), peer.clone(), dialers.clone()));
        }
    }
}

/// Accepts TC connections from peers (those whose names sort before this node's).
async fn accept_tc(
    listener: TcpListener,
    ctx: LinkContext,
    peers: Arc<Mutex<Vec<PeerNode>>>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let Ok((stream, from)) = accepted else {
            continue;
        };
        // Name the link before the hello, from the peer's address, so faults apply from the start.
        let expected = peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|p| p.tc.ip() == from.ip())
            .map(|p| p.name.clone());
        let link = match &expected {
            Some(peer) => tc::link_name(&ctx.node, peer),
            None => format!("tc:{}-{}", ctx.node, from.ip()),
        };
        let Ok(stream) = netfault::tcp::accept_stream(&ctx.faults, &link, stream) else {
            continue;
        };
        let (ctx, stop) = (ctx.clone(), stop.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tc::serve(ctx, stream, expected) => {}
            }
        });
    }
}

async fn run_core(
    mut core: NodeCore,
    mut inputs: mpsc::Receiver<Input>,
    mut sip_rx: mpsc::Receiver<Incoming>,
    sip: SipTransport,
    stop: CancellationToken,
) {
    loop {
        let deadline = core.next_deadline();
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            Some(incoming) = sip_rx.recv() => core.on_sip(incoming, Instant::now()),
            Some(input) = inputs.recv() => match input {
                Input::ClientUp { id, peer, tx } => core.client_up(id, peer, tx),
                Input::ClientMessage { id, msg } => core.client_message(id, *msg),
                Input::ClientGone { id, reason } => core.client_gone(id, &reason),
                Input::Snapshot(reply) => { let _ = reply.send(core.snapshot()); }
                Input::TcLinkUp { peer, link_id, tx } => core.tc_link_up(&peer, link_id, tx),
                Input::TcLinkDown { peer, link_id, reason } => core.tc_link_down(&peer, link_id, &reason),
                Input::TcFrame { peer, link_id, msg } => core.on_tc_frame_of(&peer, link_id, *msg, Instant::now()),
            },
            _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                core.on_timer(Instant::now());
            }
        }
        for (dest, bytes) in core.take_outbox() {
            if let Err(e) = sip.send(&dest, bytes).await {
                tracing::debug!(to = %dest.remote, error = %e, "SIP send failed");
            }
        }
    }
    core.reset();
}

#[allow(clippy::too_many_arguments)]
async fn accept_tlib(
    listener: TcpListener,
    faults: Faults,
    link: String,
    addp: tlib::AddpConfig,
    core: mpsc::Sender<Input>,
    next_client: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "T-Lib accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(stream) = netfault::tcp::accept_stream(&faults, &link, stream) else {
            continue;
        };
        let id = next_client.fetch_add(1, Ordering::Relaxed);
        let (core, stop) = (core.clone(), stop.clone());
        let span = tracing::info_span!("tlib_client", id, %peer);
        tokio::spawn(
            async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tlib_conn::serve(id, stream, addp, core) => {}
                }
            }
            .instrument(span),
        );
    }
}

impl SipNode {
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }
    pub fn config(&self) -> &NodeConfig {
        &self.inner.config
    }
    pub fn sip_addr(&self) -> SocketAddr {
        self.inner.config.sip_addr()
    }
    pub fn tlib_addr(&self) -> SocketAddr {
        self.inner.config.tlib_addr()
    }
    pub fn control_addr(&self) -> SocketAddr {
        self.inner.config.control_addr()
    }
    pub fn tc_addr(&self) -> SocketAddr {
        self.inner.config.tc_addr()
    }

    /// This node as a TC-layer peer of the others.
    pub fn as_peer(&self) -> PeerNode {
        let c = &self.inner.config;
        PeerNode {
            name: c.name.clone(),
            dc: c.dc.clone(),
            tc: c.tc_addr(),
        }
    }

    /// Sets the other nodes of the cluster (in-process labs learn free ports only after start)
    /// and (re)starts the TC dialers.
    pub async fn set_peers(&self, peers: Vec<PeerNode>) {
        let peers: Vec<PeerNode> = peers
            .into_iter()
            .filter(|p| p.name != self.name())
            .collect();
        *self.inner.peers.lock().unwrap_or_else(|e| e.into_inner()) = peers.clone();
        if let Some(services) = self.inner.life.services().await.as_ref() {
            services.dial_peers(&peers);
        }
    }
    pub fn journal(&self) -> &Journal {
        self.inner.life.journal()
    }
    pub fn faults(&self) -> &Faults {
        self.inner.life.faults()
    }

    /// The node's whole state (what `GET /state` returns).
    pub async fn state(&self) -> Value {
        let core = self
            .inner
            .life
            .services()
            .await
            .as_ref()
            .map(|s| s.core.clone());
        let running = json!({ "node": self.name(), "running": false });
        let Some(core) = core else { return running };
        let (tx, rx) = oneshot::channel();
        if core.send(Input::Snapshot(tx)).await.is_err() {
            return running;
        }
        let mut state = rx.await.unwrap_or(running);
        state["running"] = json!(true);
        state
    }

    /// Closes every socket abruptly (TCP peers get an RST) and forgets all state; the control
    /// plane stays up.
    pub async fn crash(&self) {
        self.inner.life.crash().await;
    }

    /// Crash if running, then start fresh on the same addresses.
    pub async fn restart(&self) -> anyhow::Result<()> {
        let inner = &self.inner;
        inner
            .life
            .restart(|| async {
                let (services, _) = Services::start(
                    &inner.config,
                    inner.life.faults(),
                    inner.life.journal(),
                    &inner.metrics,
                    inner.next_client.clone(),
                    inner.peers.clone(),
                )
                .await?;
                Ok(services)
            })
            .await
    }

    /// Stops everything, control plane included.
    pub async fn shutdown(&self) {
        self.inner.life.shutdown().await;
    }
}

impl ControlTarget for SipNode {
    fn node_name(&self) -> &str {
        self.name()
    }
    fn state(&self) -> BoxFuture<'_, Value> {
        Box::pin(SipNode::state(self))
    }
    fn journal(&self) -> &Journal {
        SipNode::journal(self)
    }
    fn faults(&self) -> &Faults {
        SipNode::faults(self)
    }
    fn metrics_text(&self) -> String {
        self.inner.metrics.registry.render()
    }
    fn crash(&self) -> BoxFuture<'_, ()> {
        Box::pin(SipNode::crash(self))
    }
    fn restart(&self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(SipNode::restart(self))
    }
}
