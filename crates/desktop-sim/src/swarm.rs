//! Thousands of desktops in one process: each with its own cookie jar, connections, CometD
//! client and task, sharing one journal. Logins start at a given rate with at most
//! `max_logging_in` in progress (so a storm test controls the load it makes), and the swarm is
//! summarised by counts per state ([`Summary`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::DesktopConfig;
use crate::desktop::{Desktop, Shared};
use crate::http::Origin;
use crate::tally::{Summary, Tally};
use nodekit::Journal;

/// How often the starter looks at the clock; logins due meanwhile start together.
const START_TICK: Duration = Duration::from_millis(10);

/// A swarm: the desktops' common settings, who logs in, and how fast.
#[derive(Debug, Clone)]
pub struct SwarmConfig {
    /// Settings of every desktop; `user` is replaced by each of `users`.
    pub desktop: DesktopConfig,
    pub users: Vec<String>,
    /// Logins started per second (0: all at once, still bounded by `max_logging_in`).
    pub rate: f64,
    /// Logins in progress at most.
    pub max_logging_in: usize,
    /// Journal entries kept.
    pub journal_capacity: usize,
}

impl SwarmConfig {
    pub fn new(desktop: DesktopConfig, users: Vec<String>) -> Self {
        SwarmConfig {
            desktop,
            users,
            rate: 0.0,
            max_logging_in: 500,
            journal_capacity: nodekit::journal::DEFAULT_CAPACITY,
        }
    }
}

/// A running swarm. Dropping it stops every desktop.
pub struct Swarm {
    shared: Shared,
    desktops: Arc<Mutex<Vec<Desktop>>>,
    starter: JoinHandle<()>,
    started_at: Instant,
}

impl Drop for Swarm {
    fn drop(&mut self) {
        self.starter.abort();
    }
}

impl Swarm {
    pub fn start(cfg: SwarmConfig) -> anyhow::Result<Swarm> {
        let journal = Journal::new("desktop-sim", cfg.journal_capacity);
        let origins = cfg.desktop.origins().map_err(anyhow::Error::msg)?;
        let shared = Shared::new(journal);
        let desktops = Arc::new(Mutex::new(Vec::with_capacity(cfg.users.len())));
        let started_at = Instant::now();
        let starter = tokio::spawn(start_desktops(
            cfg,
            origins,
            shared.clone(),
            desktops.clone(),
            started_at,
        ));
        Ok(Swarm {
            shared,
            desktops,
            starter,
            started_at,
        })
    }

    pub fn journal(&self) -> &Journal {
        &self.shared.journal
    }

    pub fn tally(&self) -> &Tally {
        &self.shared.tally
    }

    pub fn summary(&self) -> Summary {
        self.shared.tally.summary()
    }

    /// When the first login was started.
    pub fn started_at(&self) -> Instant {
        self.started_at
    }

    /// Runs `f` on the desktops started so far.
    pub fn with_desktops<T>(&self, f: impl FnOnce(&[Desktop]) -> T) -> T {
        f(&self.desktops.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Starts `cfg.users` at `cfg.rate`, never more than `cfg.max_logging_in` logging in at once.
async fn start_desktops(
    cfg: SwarmConfig,
    origins: Vec<Origin>,
    shared: Shared,
    desktops: Arc<Mutex<Vec<Desktop>>>,
    t0: Instant,
) {
    let max_logging_in = cfg.max_logging_in.max(1);
    let mut tick = tokio::time::interval(START_TICK);
    let mut users = cfg.users.into_iter().peekable();
    let mut started = 0usize;
    while users.peek().is_some() {
        tick.tick().await;
        let due = if cfg.rate > 0.0 {
            (t0.elapsed().as_secs_f64() * cfg.rate).floor() as usize
        } else {
            usize::MAX
        };
        let busy = {
            let s = shared.tally.summary();
            s.logging_in + s.logged_out
        };
        let room = max_logging_in.saturating_sub(busy);
        let now = due.saturating_sub(started).min(room);
        let batch: Vec<Desktop> = users
            .by_ref()
            .take(now)
            .map(|user| Desktop::launch(cfg.desktop.for_user(user), origins.clone(), &shared))
            .collect();
        started += batch.len();
        desktops
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(batch);
    }
}
