//! What every client connection of one run of the proxy shares: the configuration, the upstream
//! group with its balancers and idle connections, the counters and the journal. A restart
//! builds a fresh one (fresh routing state, as a real restart).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use netfault::tcp::FaultStream;
use netfault::Faults;
use nodekit::Journal;
use serde_json::{json, Value};
use tokio::time::{timeout, Instant};

use crate::attempts::{AttemptError, Failure};
use crate::balancer::Balancer;
use crate::config::{Config, UpstreamConfig};
use crate::link::Link;
use crate::pool::{Pool, Upstream};

/// One upstream group at run time.
pub struct Group {
    pub cfg: UpstreamConfig,
    /// One balancer per worker (nginx without `zone`), or one shared by all (`zone`).
    pub balancers: Vec<Mutex<Balancer>>,
    pub addrs: Vec<SocketAddr>,
    /// The fault-layer link of each peer (`http:{proxy}-{server}`).
    pub links: Vec<String>,
    /// Idle connections of the general path (hyper's).
    pub pool: Arc<Pool<Upstream>>,
    /// Idle connections of the fast path (plain sockets).
    pub idle_links: Arc<Pool<Link>>,
}

impl Group {
    /// The balancer the worker serving a client connection uses.
    pub fn balancer(&self, worker: usize) -> &Mutex<Balancer> {
        &self.balancers[worker % self.balancers.len()]
    }

    /// The name of a peer in logs, journal and `/status`.
    pub fn peer_name(&self, peer: usize) -> &str {
        self.cfg.servers[peer].display_name()
    }
}

pub struct Shared {
    pub cfg: Config,
    faults: Faults,
    pub journal: Journal,
    pub group: Group,
    /// Client requests received.
    pub requests: AtomicU64,
    /// Upstream connections opened.
    pub connections: AtomicU64,
}

impl Shared {
    /// Resolves the servers of the group `config` passes to.
    pub async fn build(
        config: &Config,
        faults: &Faults,
        journal: &Journal,
    ) -> anyhow::Result<Arc<Shared>> {
        let gcfg = config
            .pass_group()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no upstream group to proxy to"))?;
        let mut addrs = Vec::new();
        for s in &gcfg.servers {
            let addr = tokio::net::lookup_host(s.address.as_str())
                .await
                .map_err(|e| anyhow::anyhow!("server {}: {e}", s.address))?
                .next()
                .ok_or_else(|| anyhow::anyhow!("server {}: no address", s.address))?;
            addrs.push(addr);
        }
        let links = gcfg
            .servers
            .iter()
            .map(|s| format!("http:{}-{}", config.name, s.display_name()))
            .collect();
        let balancers = if gcfg.zone {
            1
        } else {
            config.worker_processes.max(1)
        };
        let group = Group {
            balancers: (0..balancers)
                .map(|_| Mutex::new(Balancer::from_config(&gcfg)))
                .collect(),
            pool: Pool::new(addrs.len(), gcfg.keepalive),
            idle_links: Pool::new(addrs.len(), gcfg.keepalive),
            addrs,
            links,
            cfg: gcfg,
        };
        Ok(Arc::new(Shared {
            cfg: config.clone(),
            faults: faults.clone(),
            journal: journal.clone(),
            group,
            requests: AtomicU64::new(0),
            connections: AtomicU64::new(0),
        }))
    }

    /// Routing state as `GET /state` shows it: each peer's state and counters.
    pub fn status(&self) -> Value {
        let g = &self.group;
        let now = Instant::now();
        let b = g.balancers[0].lock().unwrap();
        let peers = b.status(now);
        let workers: Vec<Value> = g
            .balancers
            .iter()
            .skip(1)
            .map(|w| json!(w.lock().unwrap().status(now)))
            .collect();
        json!({
            "name": self.cfg.name,
            "requests": self.requests.load(Ordering::Relaxed),
            "upstream_connections": self.connections.load(Ordering::Relaxed),
            "upstreams": [{
                "name": g.cfg.name,
                "sticky": g.cfg.sticky,
                "sticky_cookie": g.cfg.cookie_name(),
                "learned": b.learned_len(),
                "zone": g.balancers.len() == 1,
                // Worker 0's view; `other_workers` holds the rest when state is per worker.
                "peers": peers,
                "other_workers": workers,
            }],
        })
    }

    /// A new connection to `peer` through the fault layer, within `proxy_connect_timeout`.
    pub async fn connect_stream(&self, peer: usize) -> Result<FaultStream, AttemptError> {
        let g = &self.group;
        let stream = match timeout(
            self.cfg.proxy_connect_timeout,
            netfault::tcp::connect(
                &self.faults,
                &g.links[peer],
                self.cfg.proxy_bind,
                g.addrs[peer],
            ),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(peer = %g.links[peer], "connect: {e}");
                return Err(AttemptError::unsent(Failure::Error));
            }
            Err(_) => return Err(AttemptError::unsent(Failure::Timeout)),
        };
        self.connections.fetch_add(1, Ordering::Relaxed);
        Ok(stream)
    }
}
