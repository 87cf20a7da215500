//! What every node handle does the same way: a slot for the services a crash kills and a restart
//! brings back, and the control server that outlives them (docs/architecture.md §4.5). Each node
//! type says only how its services start and stop.

use std::future::Future;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use netfault::Faults;
use serde_json::json;
use tokio::net::TcpListener;

use crate::control::{serve_control_on, ControlServer, ControlTarget};
use crate::journal::Journal;

/// A node's sockets and tasks: what a crash kills.
pub trait Services: Send + 'static {
    /// Stops every task and closes every socket abruptly (TCP peers get an RST).
    fn stop(self);
}

/// The crash / restart / shutdown life of one node.
pub struct Lifecycle<S> {
    name: String,
    dc: String,
    journal: Journal,
    faults: Faults,
    services: tokio::sync::Mutex<Option<S>>,
    control: Mutex<Option<ControlServer>>,
}

impl<S: Services> Lifecycle<S> {
    /// Node `name` of data center `dc`, whose services run already.
    pub fn new(name: &str, dc: &str, journal: Journal, faults: Faults, services: S) -> Self {
        Lifecycle {
            name: name.to_owned(),
            dc: dc.to_owned(),
            journal,
            faults,
            services: tokio::sync::Mutex::new(Some(services)),
            control: Mutex::new(None),
        }
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The running services (`None` after a crash); hold the guard briefly.
    pub async fn services(&self) -> tokio::sync::MutexGuard<'_, Option<S>> {
        self.services.lock().await
    }

    /// The running services unless somebody holds them right now (for scrapes that must not
    /// wait).
    pub fn try_services(&self) -> Option<tokio::sync::MutexGuard<'_, Option<S>>> {
        self.services.try_lock().ok()
    }

    /// Serves `target`'s control plane on `listener` until [`Lifecycle::shutdown`], then
    /// journals `node.started`.
    pub fn serve_control(
        &self,
        listener: TcpListener,
        target: Arc<dyn ControlTarget>,
        token: Option<String>,
    ) -> anyhow::Result<()> {
        let control = serve_control_on(listener, target, token)
            .with_context(|| format!("node {}", self.name))?;
        *self.control.lock().unwrap_or_else(|e| e.into_inner()) = Some(control);
        self.journal
            .record("node.started", json!({ "node": self.name, "dc": self.dc }));
        Ok(())
    }

    /// Closes every socket abruptly and forgets all state; the control plane stays up. A node
    /// that is down already stays as it is.
    pub async fn crash(&self) {
        if let Some(services) = self.services.lock().await.take() {
            self.faults.crash();
            services.stop();
            self.journal
                .record("node.crashed", json!({ "node": self.name }));
            tracing::warn!(node = %self.name, "crashed");
        }
    }

    /// Crashes the node if it runs, then starts its services afresh with `start`.
    pub async fn restart<F, Fut>(&self, start: F) -> anyhow::Result<()>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = anyhow::Result<S>>,
    {
        self.crash().await;
        let mut slot = self.services.lock().await;
        if slot.is_none() {
            *slot = Some(start().await?);
        }
        self.journal
            .record("node.restarted", json!({ "node": self.name }));
        Ok(())
    }

    /// Stops everything, control plane included.
    pub async fn shutdown(&self) {
        if let Some(services) = self.services.lock().await.take() {
            services.stop();
        }
        self.control
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
}
