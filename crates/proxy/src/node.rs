//! The proxy as a drlab node: its handle, its control plane (through [`nodekit`]) and its life
//! (crash, restart, shutdown) on the same [`Lifecycle`] as the other nodes. A run of the proxy
//! is the accept loop over one [`Shared`]; a restart starts a fresh one on the same address.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netfault::Faults;
use nodekit::control::BoxFuture;
use nodekit::{ControlTarget, Journal, Lifecycle, Metrics};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::accept::accept_loop;
use crate::config::Config;
use crate::metrics::{CurrentRun, ProxyCollector};
use crate::shared::Shared;

/// The accept loop of a run: what a crash stops.
struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    fn start(listener: TcpListener, shared: Arc<Shared>) -> Self {
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, shared, stop_rx));
        Running { stop, task }
    }
}

impl nodekit::Services for Running {
    /// The loop closes the listener and every client connection as soon as it runs again.
    fn stop(self) {
        let _ = self.stop.send(true);
    }

    /// Returns once the listener is closed (new clients are refused).
    async fn close(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// The proxy node: configuration, current run, metrics and life. It is the [`ControlTarget`] of
/// the control plane and backs [`ProxyHandle`].
pub struct ProxyNode {
    cfg: Config,
    local_addr: SocketAddr,
    run: CurrentRun,
    metrics: Metrics,
    life: Lifecycle<Running>,
}

/// A running proxy; dropping it stops the proxy.
pub struct ProxyHandle {
    node: Arc<ProxyNode>,
}

impl ProxyHandle {
    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.node.local_addr
    }

    /// The control port, when the configuration asks for one.
    pub fn control_addr(&self) -> Option<SocketAddr> {
        self.node.life.control_addr()
    }

    /// The fault layer of the proxy's upstream links (`http:{name}-{server}`).
    pub fn faults(&self) -> &Faults {
        self.node.life.faults()
    }

    pub fn journal(&self) -> &Journal {
        self.node.life.journal()
    }

    pub fn node(&self) -> Arc<ProxyNode> {
        self.node.clone()
    }

    /// Routing state as `GET /state` shows it: each peer's state and counters.
    pub fn status(&self) -> Value {
        self.node.status()
    }

    /// Closes every socket abruptly (clients and upstreams); `restart` brings it back.
    pub async fn crash(&self) {
        self.node.crash().await;
    }

    /// Starts again on the same address with fresh routing state.
    pub async fn restart(&self) -> anyhow::Result<()> {
        self.node.restart().await
    }

    /// Stops accepting and closes every client connection.
    pub async fn shutdown(self) {
        self.node.life.shutdown().await;
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        self.node.life.shutdown_now();
    }
}

/// Starts the proxy with its own fault layer.
pub async fn start(config: Config) -> anyhow::Result<ProxyHandle> {
    start_with_faults(config, Faults::new()).await
}

/// Starts the proxy with the given fault layer (shared with the node's control plane).
pub async fn start_with_faults(mut config: Config, faults: Faults) -> anyhow::Result<ProxyHandle> {
    config.validate()?;
    let journal = Journal::new(&config.name, nodekit::journal::DEFAULT_CAPACITY);
    let listener = TcpListener::bind(config.listen).await?;
    let local_addr = listener.local_addr()?;
    config.listen = local_addr;
    let control = match config.control {
        Some(addr) => Some(nodekit::config::bind_control(&config.name, addr).await?),
        None => None,
    };
    let shared = Shared::build(&config, &faults, &journal).await?;
    let run: CurrentRun = Arc::new(Mutex::new(shared.clone()));
    let metrics = Metrics::new(&config.name);
    metrics.register_collector(ProxyCollector(run.clone()));
    metrics.register_faults(&faults);
    // A proxy belongs to no data center of its own.
    let life = Lifecycle::new(
        &config.name,
        "",
        journal,
        faults,
        Running::start(listener, shared),
    );
    let node = Arc::new(ProxyNode {
        cfg: config,
        local_addr,
        run,
        metrics,
        life,
    });
    if let Some(listener) = control {
        let token = node.cfg.control_token.clone();
        node.life.serve_control(listener, node.clone(), token)?;
    }
    tracing::info!(name = %node.cfg.name, %local_addr, "proxy listening");
    Ok(ProxyHandle { node })
}

impl ProxyNode {
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    pub fn status(&self) -> Value {
        let mut v = self.current().status();
        v["listen"] = json!(self.local_addr.to_string());
        v["running"] = json!(self.life.is_running());
        v
    }

    /// Closes the listener, every client connection and (through the fault layer) every
    /// upstream connection.
    pub async fn crash(&self) {
        self.life.crash().await;
    }

    /// Listens again on the same address with fresh routing state (a real restart).
    pub async fn restart(&self) -> anyhow::Result<()> {
        self.life
            .restart(|| async {
                let listener = rebind(self.local_addr).await?;
                let shared =
                    Shared::build(&self.cfg, self.life.faults(), self.life.journal()).await?;
                *self.run.lock().unwrap_or_else(|e| e.into_inner()) = shared.clone();
                Ok(Running::start(listener, shared))
            })
            .await
    }

    /// The OpenMetrics text of the proxy's counters and its fault layer's.
    pub fn metrics_text(&self) -> String {
        self.metrics.render()
    }

    fn current(&self) -> Arc<Shared> {
        self.run.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Binds `addr` again, waiting a little while the crashed listener's port is still taken.
async fn rebind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let mut tries = 0;
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) if tries < 50 => {
                tries += 1;
                tracing::debug!("rebind {addr}: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

impl ControlTarget for ProxyNode {
    fn node_name(&self) -> &str {
        &self.cfg.name
    }
    fn state(&self) -> BoxFuture<'_, Value> {
        Box::pin(async { self.status() })
    }
    fn journal(&self) -> &Journal {
        self.life.journal()
    }
    fn faults(&self) -> &Faults {
        self.life.faults()
    }
    fn metrics_text(&self) -> String {
        ProxyNode::metrics_text(self)
    }
    fn crash(&self) -> BoxFuture<'_, ()> {
        Box::pin(ProxyNode::crash(self))
    }
    fn restart(&self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(ProxyNode::restart(self))
    }
}
