//! Starting, crashing, restarting and stopping a GWS node. Tasks: the HTTP accept loop (one task
//! per connection), the T-Lib link, and the expiry sweep; they share a [`Ctx`]. The control
//! plane outlives crashes; a crash loses every session, as a real GWS node's memory would.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use netfault::Faults;
use nodekit::control::BoxFuture;
use nodekit::{ControlTarget, Journal, Lifecycle};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::GwsConfig;
use crate::ctx::Ctx;
use crate::metrics::GwsMetrics;
use crate::{http, tlink};

/// The expiry sweep runs this often relative to the shortest timer it enforces.
const SWEEPS_PER_TIMEOUT: u32 = 4;
const MIN_SWEEP: Duration = Duration::from_millis(50);

/// A running node. Cheap to clone; dropping it does not stop it: call [`GwsNode::shutdown`].
#[derive(Clone)]
pub struct GwsNode {
    inner: Arc<Inner>,
}

struct Inner {
    /// The configuration with the ports actually bound (port 0 resolved).
    config: Arc<GwsConfig>,
    metrics: Arc<GwsMetrics>,
    life: Lifecycle<Services>,
}

/// What a crash kills and a restart brings back.
struct Services {
    ctx: Arc<Ctx>,
    stop: CancellationToken,
}

/// Starts a node: HTTP (REST + CometD), the T-Lib link, control plane. Port 0 means "any free
/// port"; [`GwsNode::http_addr`] tells the port bound.
pub async fn start(mut config: GwsConfig) -> anyhow::Result<GwsNode> {
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("node {}: {e}", config.name))?;
    let control_listener =
        nodekit::config::bind_control(&config.name, config.control_addr()).await?;
    let http_listener = bind_http(&config).await?;
    config.http_port = http_listener.local_addr()?.port();
    config.control_port = control_listener.local_addr()?.port();
    let config = Arc::new(config);
    let faults = Faults::new();
    let journal = Journal::new(&config.name, config.journal_capacity);
    let metrics = Arc::new(GwsMetrics::new(&config.name));
    metrics.registry.register_faults(&faults);
    let services = Services::start(&config, http_listener, &faults, &journal, &metrics);
    let life = Lifecycle::new(&config.name, &config.dc, journal, faults, services);
    let node = GwsNode {
        inner: Arc::new(Inner {
            config,
            metrics,
            life,
        }),
    };
    let token = node.inner.config.control_token.clone();
    node.inner
        .life
        .serve_control(control_listener, Arc::new(node.clone()), token)?;
    let c = &node.inner.config;
    tracing::info!(node = %c.name, http = %c.http_addr(), control = %c.control_addr(), "GWS node up");
    Ok(node)
}

async fn bind_http(config: &GwsConfig) -> anyhow::Result<TcpListener> {
    TcpListener::bind(config.http_addr())
        .await
        .with_context(|| {
            format!(
                "node {}: cannot bind HTTP on {}",
                config.name,
                config.http_addr()
            )
        })
}

/// The crashed listener closes when its task sees the stop, a moment after the crash: retry
/// while the port is still taken.
async fn rebind_http(config: &GwsConfig) -> anyhow::Result<TcpListener> {
    const ATTEMPTS: u32 = 40;
    for _ in 1..ATTEMPTS {
        match TcpListener::bind(config.http_addr()).await {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err(_) => break,
        }
    }
    bind_http(config).await
}

impl Services {
    fn start(
        config: &Arc<GwsConfig>,
        http_listener: TcpListener,
        faults: &Faults,
        journal: &Journal,
        metrics: &Arc<GwsMetrics>,
    ) -> Services {
        let base = format!("http://{}", config.http_addr());
        let ctx = Arc::new(Ctx::new(
            config.clone(),
            base,
            journal.clone(),
            metrics.clone(),
        ));
        let stop = CancellationToken::new();
        let span = tracing::info_span!("gws", name = %config.name);
        tokio::spawn(
            http::serve(
                http_listener,
                http::router(ctx.clone()),
                faults.clone(),
                config.http_link(),
                config.header_read_timeout,
                stop.clone(),
            )
            .instrument(span.clone()),
        );
        tokio::spawn(
            tlink::run(ctx.clone(), faults.clone(), stop.clone()).instrument(span.clone()),
        );
        tokio::spawn(sweep(ctx.clone(), stop.clone()).instrument(span));
        Services { ctx, stop }
    }
}

impl nodekit::Services for Services {
    fn stop(self) {
        self.stop.cancel();
        self.ctx.metrics.tlib_link_up.set(0);
    }
}

/// Ends idle sessions (UnregisterAddress for their DNs) and forgets silent CometD clients.
async fn sweep(ctx: Arc<Ctx>, stop: CancellationToken) {
    let shortest = ctx.cfg.session_timeout.min(ctx.cfg.cometd.max_interval);
    let period = (shortest / SWEEPS_PER_TIMEOUT).max(MIN_SWEEP);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let ended = ctx.state().expire(Instant::now(), ctx.cfg.session_timeout);
        ctx.sessions_ended(ended).await;
    }
}

impl GwsNode {
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }
    pub fn config(&self) -> &GwsConfig {
        &self.inner.config
    }
    pub fn http_addr(&self) -> SocketAddr {
        self.inner.config.http_addr()
    }
    pub fn control_addr(&self) -> SocketAddr {
        self.inner.config.control_addr()
    }
    pub fn journal(&self) -> &Journal {
        self.inner.life.journal()
    }
    pub fn faults(&self) -> &Faults {
        self.inner.life.faults()
    }

    /// The node's whole state (what `GET /state` returns).
    pub async fn state(&self) -> Value {
        let ctx = self
            .inner
            .life
            .services()
            .await
            .as_ref()
            .map(|s| s.ctx.clone());
        let mut state = match &ctx {
            Some(ctx) => ctx.state().snapshot(),
            None => json!({}),
        };
        state["node"] = json!(self.name());
        state["running"] = json!(ctx.is_some());
        state
    }

    /// Closes every socket abruptly (peers get an RST) and forgets all sessions; the control
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
                let listener = rebind_http(&inner.config).await?;
                Ok(Services::start(
                    &inner.config,
                    listener,
                    inner.life.faults(),
                    inner.life.journal(),
                    &inner.metrics,
                ))
            })
            .await
    }

    /// Stops everything, control plane included.
    pub async fn shutdown(&self) {
        self.inner.life.shutdown().await;
    }

    fn metrics_text(&self) -> String {
        let m = &self.inner.metrics;
        if let Some(services) = self.inner.life.try_services() {
            if let Some(s) = services.as_ref() {
                let st = s.ctx.state();
                m.sessions.set(st.sessions.len() as i64);
                m.cometd_clients.set(st.clients.len() as i64);
            }
        }
        m.registry.render()
    }
}

impl ControlTarget for GwsNode {
    fn node_name(&self) -> &str {
        self.name()
    }
    fn state(&self) -> BoxFuture<'_, Value> {
        Box::pin(GwsNode::state(self))
    }
    fn journal(&self) -> &Journal {
        GwsNode::journal(self)
    }
    fn faults(&self) -> &Faults {
        GwsNode::faults(self)
    }
    fn metrics_text(&self) -> String {
        GwsNode::metrics_text(self)
    }
    fn crash(&self) -> BoxFuture<'_, ()> {
        Box::pin(GwsNode::crash(self))
    }
    fn restart(&self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(GwsNode::restart(self))
    }
}
