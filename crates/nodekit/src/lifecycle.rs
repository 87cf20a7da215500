//! What every node handle does the same way: a slot for the services a crash kills and a restart
//! brings back, and the control server that outlives them (docs/architecture.md §4.5). Each node
//! type says only how its services start and stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use netfault::Faults;
use serde_json::json;
use tokio::net::TcpListener;

use crate::control::{serve_control_on, ControlServer, ControlTarget};
use crate::journal::Journal;

/// A node's sockets and tasks: what a crash kills.
pub trait Services: Send + Sized + 'static {
    /// Stops every task and closes every socket abruptly (TCP peers get an RST).
    fn stop(self);

    /// Like [`Services::stop`], done once the listening sockets are closed (a crash that has
    /// returned refuses new connections). By default the same as `stop`.
    fn close(self) -> impl Future<Output = ()> + Send {
        async move { self.stop() }
    }
}

/// The crash / restart / shutdown life of one node.
pub struct Lifecycle<S> {
    name: String,
    dc: String,
    journal: Journal,
    faults: Faults,
    services: tokio::sync::Mutex<Option<S>>,
    /// Whether `services` holds running services (readable while somebody holds the slot).
    running: AtomicBool,
    control: Mutex<Option<ControlServer>>,
}

impl<S: Services> Lifecycle<S> {
    /// Node `name` of data center `dc` (empty for a node outside any), whose services run
    /// already.
    pub fn new(name: &str, dc: &str, journal: Journal, faults: Faults, services: S) -> Self {
        Lifecycle {
            name: name.to_owned(),
            dc: dc.to_owned(),
            journal,
            faults,
            services: tokio::sync::Mutex::new(Some(services)),
            running: AtomicBool::new(true),
            control: Mutex::new(None),
        }
    }

    /// Whether the services run (false after a crash or shutdown, and while a restart starts
    /// them).
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// The control server's address, once [`Lifecycle::serve_control`] started it.
    pub fn control_addr(&self) -> Option<SocketAddr> {
        self.control_slot().as_ref().map(ControlServer::local_addr)
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
        *self.control_slot() = Some(control);
        let started = if self.dc.is_empty() {
            json!({ "node": self.name })
        } else {
            json!({ "node": self.name, "dc": self.dc })
        };
        self.journal.record("node.started", started);
        Ok(())
    }

    /// Closes every socket abruptly and forgets all state; the control plane stays up. A node
    /// that is down already stays as it is.
    pub async fn crash(&self) {
        let mut slot = self.services.lock().await;
        if let Some(services) = slot.take() {
            self.running.store(false, Ordering::Release);
            self.faults.crash();
            services.close().await;
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
            self.running.store(true, Ordering::Release);
        }
        self.journal
            .record("node.restarted", json!({ "node": self.name }));
        Ok(())
    }

    /// Stops everything, control plane included.
    pub async fn shutdown(&self) {
        if let Some(services) = self.services.lock().await.take() {
            self.running.store(false, Ordering::Release);
            services.close().await;
        }
        self.control_slot().take();
    }

    /// What [`Lifecycle::shutdown`] does, without waiting (for a handle's `Drop`): services
    /// somebody holds right now are left to them.
    pub fn shutdown_now(&self) {
        if let Ok(mut slot) = self.services.try_lock() {
            if let Some(services) = slot.take() {
                self.running.store(false, Ordering::Release);
                services.stop();
            }
        }
        self.control_slot().take();
    }

    fn control_slot(&self) -> std::sync::MutexGuard<'_, Option<ControlServer>> {
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }
}
