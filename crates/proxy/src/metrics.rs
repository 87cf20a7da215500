//! The proxy's metrics: its counters and each peer's routing state, read from the current run
//! ([`Shared`]) at each scrape and encoded by the node's registry with everything else.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nodekit::metrics::encode_single;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::TypedMetric;
use tokio::time::Instant;

use crate::balancer::PeerStatus;
use crate::shared::Shared;

/// The run of the proxy the node serves right now (replaced by each restart).
pub type CurrentRun = Arc<Mutex<Arc<Shared>>>;

/// Reads the current run's counters at each scrape.
pub struct ProxyCollector(pub CurrentRun);

impl std::fmt::Debug for ProxyCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProxyCollector")
    }
}

impl Collector for ProxyCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let shared = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let counter = |n: &AtomicU64| ConstCounter::new(n.load(Ordering::Relaxed));
        encode_single(
            &mut encoder,
            "proxy_requests",
            "Client requests received.",
            counter(&shared.requests),
        )?;
        encode_single(
            &mut encoder,
            "proxy_upstream_connections",
            "Upstream connections opened.",
            counter(&shared.connections),
        )?;
        let peers = Peers::of(&shared);
        peers.encode(
            &mut encoder,
            "proxy_peer_selected",
            "Times a peer was selected.",
            |p| ConstCounter::new(p.selected),
        )?;
        peers.encode(
            &mut encoder,
            "proxy_peer_failures",
            "Failed attempts (error, timeout, invalid header) per peer.",
            |p| ConstCounter::new(p.failures),
        )?;
        peers.encode(
            &mut encoder,
            "proxy_peer_up",
            "1 when the peer can be selected, 0 while skipped or down.",
            |p| ConstGauge::<i64>::new(i64::from(p.state == "up")),
        )
    }
}

/// Every worker's view of every peer of the group.
struct Peers<'a> {
    upstream: &'a str,
    /// Whether each worker has its own state (nginx without `zone`): then a `worker` label.
    per_worker: bool,
    peers: Vec<(usize, PeerStatus)>,
}

impl<'a> Peers<'a> {
    fn of(shared: &'a Shared) -> Self {
        let g = &shared.group;
        let now = Instant::now();
        let peers = g
            .balancers
            .iter()
            .enumerate()
            .flat_map(|(w, b)| {
                b.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .status(now)
                    .into_iter()
                    .map(move |p| (w, p))
            })
            .collect();
        Peers {
            upstream: &g.cfg.name,
            per_worker: g.balancers.len() > 1,
            peers,
        }
    }

    /// One family with a sample per peer (and worker), labelled `upstream`, `peer` and `worker`.
    fn encode<M: EncodeMetric + TypedMetric>(
        &self,
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        value: impl Fn(&PeerStatus) -> M,
    ) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(name, help, None, M::TYPE)?;
        for (worker, peer) in &self.peers {
            let mut labels = vec![
                ("upstream", self.upstream.to_owned()),
                ("peer", peer.name.clone()),
            ];
            if self.per_worker {
                labels.push(("worker", worker.to_string()));
            }
            value(peer).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
