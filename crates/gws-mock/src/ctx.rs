//! What every task and handler of a running node shares.

use std::sync::{Arc, Mutex, MutexGuard};

use nodekit::Journal;
use serde_json::json;
use tlib::{Request, TlibClient};

use crate::config::GwsConfig;
use crate::metrics::GwsMetrics;
use crate::state::{EndedSession, GwsState};
use crate::users::UserTable;

pub struct Ctx {
    pub cfg: Arc<GwsConfig>,
    pub users: UserTable,
    pub journal: Journal,
    pub metrics: Arc<GwsMetrics>,
    state: Mutex<GwsState>,
    /// The T-Lib link, while it is up.
    tlib: Mutex<Option<TlibClient>>,
}

impl Ctx {
    pub fn new(
        cfg: Arc<GwsConfig>,
        base: String,
        journal: Journal,
        metrics: Arc<GwsMetrics>,
    ) -> Self {
        let users = UserTable::new(cfg.users.clone(), cfg.user_ranges.clone());
        let state = Mutex::new(GwsState::new(&cfg, base));
        Ctx {
            cfg,
            users,
            journal,
            metrics,
            state,
            tlib: Mutex::new(None),
        }
    }

    /// The state; hold the guard briefly and never across an `.await`.
    pub fn state(&self) -> MutexGuard<'_, GwsState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn tlib(&self) -> Option<TlibClient> {
        self.tlib.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_tlib(&self, client: Option<TlibClient>) {
        *self.tlib.lock().unwrap_or_else(|e| e.into_inner()) = client;
    }

    /// Journals ended sessions and unregisters their DNs at the SIP node (fire and forget: the
    /// desktop is gone, nobody waits for the answer).
    pub async fn sessions_ended(&self, ended: Vec<EndedSession>) {
        for e in ended {
            self.metrics.session_ended(e.cause);
            self.journal.record(
                "session.ended",
                json!({ "user": e.user.name, "dn": e.user.dn, "cause": e.cause, "unregister": e.unregister }),
            );
            if !e.unregister {
                continue;
            }
            let Some(client) = self.tlib() else { continue };
            let request = Request::UnregisterAddress {
                dn: e.user.dn.clone(),
            };
            let msg = request.to_message(client.next_reference_id());
            match client.send(msg).await {
                Ok(()) => {
                    self.journal
                        .record("tlib.unregister_sent", json!({ "dn": e.user.dn }));
                }
                Err(err) => {
                    tracing::debug!(dn = %e.user.dn, error = %err, "UnregisterAddress not sent")
                }
            }
        }
    }
}

/// A random opaque id (session ids, CSRF tokens, CometD client ids, browser ids).
pub fn random_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}
