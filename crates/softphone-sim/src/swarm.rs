//! A running simulator: one SIP socket (UDP + TCP) shared by all its phones, one task that owns
//! the [`Engine`] and sends its outbox, and the handle the tests, the CLI and the control plane
//! use. One phone is a swarm of one; the PSTN gateway and the caller are swarms without phones.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use netfault::Faults;
use nodekit::control::BoxFuture;
use nodekit::{serve_control, ControlServer, ControlTarget, Journal};
use serde_json::{json, Value};
use sipcore::transport::{Incoming, SipTransport, TransportOptions};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::config::PhoneConfig;
use crate::engine::{Command, Engine};
use crate::media::MediaSilent;
use crate::metrics::SimMetrics;
use crate::placing::{CallPlan, CallReport};

/// Commands queued towards the engine.
const COMMANDS: usize = 1024;
/// Media tasks reporting silence at once before they wait.
const SILENT_REPORTS: usize = 1024;

/// Counters for a status line or a summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub phones: usize,
    pub registered: i64,
    pub registrations: u64,
    pub failovers: u64,
    pub registration_failures: u64,
    pub calls_answered: u64,
    pub calls_established: u64,
    pub calls_ended: u64,
    pub media_lost: u64,
    pub media_silent_drops: u64,
}

/// Handle of a running simulator. Cheap to clone; it stops when the last clone is dropped or
/// on [`Swarm::shutdown`].
#[derive(Clone)]
pub struct Swarm {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<PhoneConfig>,
    local: SocketAddr,
    journal: Journal,
    faults: Faults,
    metrics: Arc<SimMetrics>,
    commands: mpsc::Sender<Command>,
    transport: SipTransport,
    stop: CancellationToken,
    _guard: DropGuard,
    control: Mutex<Option<ControlServer>>,
}

impl Swarm {
    /// Binds the SIP socket, starts the engine and every phone's registration.
    pub async fn start(config: PhoneConfig) -> anyhow::Result<Swarm> {
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("{}: {e}", config.name))?;
        let config = Arc::new(config);
        let faults = Faults::new();
        let link = config.sip_link();
        let options = TransportOptions {
            // Responses for a whole swarm arrive on this socket: size it like a registrar's.
            incoming_capacity: 64 * 1024,
            ..TransportOptions::default()
        };
        let (transport, sip_rx) = SipTransport::bind(&faults, &link, config.bind, options)
            .await
            .with_context(|| format!("{}: cannot bind SIP on {}", config.name, config.bind))?;
        let local = transport.local_addr();
        let journal = Journal::new(&config.name, config.journal_capacity);
        let metrics = Arc::new(SimMetrics::new(&config.name));
        let (silent_tx, silent_rx) = mpsc::channel(SILENT_REPORTS);
        let (commands, command_rx) = mpsc::channel(COMMANDS);
        let mut engine = Engine::new(
            config.clone(),
            local,
            faults.clone(),
            journal.clone(),
            metrics.clone(),
            silent_tx,
        );
        engine.start(Instant::now());
        let stop = CancellationToken::new();
        tokio::spawn(run(
            engine,
            Channels {
                sip: sip_rx,
                commands: command_rx,
                silent: silent_rx,
            },
            transport.clone(),
            stop.clone(),
        ));
        journal.record(
            "sim.started",
            json!({ "name": config.name, "sip": local.to_string(), "link": link, "phones": config.dns.len() }),
        );
        tracing::info!(name = %config.name, sip = %local, phones = config.dns.len(), "softphone-sim up");
        Ok(Swarm {
            inner: Arc::new(Inner {
                config,
                local,
                journal,
                faults,
                metrics,
                commands,
                transport,
                _guard: stop.clone().drop_guard(),
                stop,
                control: Mutex::new(None),
            }),
        })
    }

    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    pub fn config(&self) -> &PhoneConfig {
        &self.inner.config
    }

    /// The SIP address (UDP and TCP) the phones use.
    pub fn sip_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// Everything that happened: `phone.registered`, `phone.registration_failed`,
    /// `call.offered`, `call.answered`, `media.started`, `media.silent`, `call.ended` …
    pub fn journal(&self) -> &Journal {
        &self.inner.journal
    }

    /// The fault layer of every socket of this simulator (`sip:<dn>`, `media:<dn>`).
    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    pub fn metrics_text(&self) -> String {
        self.inner.metrics.registry.render()
    }

    pub fn stats(&self) -> Stats {
        let m = &self.inner.metrics;
        Stats {
            phones: self.inner.config.dns.len(),
            registered: m.registered.get(),
            registrations: m.registrations.get(),
            failovers: m.failovers.get(),
            registration_failures: m.registration_failures.get(),
            calls_answered: m.calls_answered.get(),
            calls_established: m.calls_established.get(),
            calls_ended: m.calls_ended.get(),
            media_lost: m.media.lost.get(),
            media_silent_drops: m.media_silent_drops.get(),
        }
    }

    /// Places a call and waits until it is over.
    pub async fn place_call(&self, plan: CallPlan) -> anyhow::Result<CallReport> {
        let (report, rx) = oneshot::channel();
        self.command(Command::Place { plan, report }).await?;
        rx.await
            .map_err(|_| anyhow::anyhow!("the call was not placed (see the log)"))
    }

    /// Hangs up every call of `dn` (BYE, or 603 while ringing); returns how many.
    pub async fn hang_up(&self, dn: &str) -> anyhow::Result<usize> {
        let (done, rx) = oneshot::channel();
        self.command(Command::HangUp {
            dn: dn.to_owned(),
            done,
        })
        .await?;
        Ok(rx.await?)
    }

    /// Phones, registrations and calls as JSON (what `GET /state` returns).
    pub async fn state(&self) -> Value {
        let (tx, rx) = oneshot::channel();
        if self.command(Command::Snapshot(tx)).await.is_err() {
            return json!({ "name": self.name(), "running": false });
        }
        rx.await
            .unwrap_or_else(|_| json!({ "name": self.name(), "running": false }))
    }

    /// Serves the control plane (state, events, metrics, faults) on `addr`.
    pub async fn serve_control(&self, addr: SocketAddr) -> anyhow::Result<SocketAddr> {
        let server = serve_control(addr, Arc::new(self.clone()), None).await?;
        let local = server.local_addr();
        *self.inner.control.lock().unwrap_or_else(|e| e.into_inner()) = Some(server);
        Ok(local)
    }

    /// Stops the engine and closes every socket.
    pub fn shutdown(&self) {
        self.inner.stop.cancel();
        self.inner.transport.close_all();
        self.inner
            .control
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }

    async fn command(&self, cmd: Command) -> anyhow::Result<()> {
        self.inner
            .commands
            .send(cmd)
            .await
            .map_err(|_| anyhow::anyhow!("{} is stopped", self.name()))
    }
}

struct Channels {
    sip: mpsc::Receiver<Incoming>,
    commands: mpsc::Receiver<Command>,
    silent: mpsc::Receiver<MediaSilent>,
}

/// The engine's task: one input at a time, then the outbox.
async fn run(mut engine: Engine, mut ch: Channels, sip: SipTransport, stop: CancellationToken) {
    loop {
        let deadline = engine.next_deadline();
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            Some(incoming) = ch.sip.recv() => engine.on_sip(incoming, Instant::now()),
            Some(cmd) = ch.commands.recv() => engine.on_command(cmd, Instant::now()),
            Some(s) = ch.silent.recv() => engine.on_media_silent(&s.call_id, Instant::now()),
            _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                engine.on_timer(Instant::now());
            }
            else => break,
        }
        for out in engine.take_outbox() {
            if let Err(e) = sip.send(&out.dest, out.bytes).await {
                tracing::debug!(to = %out.dest.remote, error = %e, "SIP send failed");
                if let Some(branch) = out.tx {
                    engine.on_send_failed(&branch, Instant::now());
                }
            }
        }
    }
    tracing::debug!("softphone-sim engine stopped");
}

impl ControlTarget for Swarm {
    fn node_name(&self) -> &str {
        self.name()
    }
    fn state(&self) -> BoxFuture<'_, Value> {
        Box::pin(Swarm::state(self))
    }
    fn journal(&self) -> &Journal {
        self.journal()
    }
    fn faults(&self) -> &Faults {
        self.faults()
    }
    fn metrics_text(&self) -> String {
        Swarm::metrics_text(self)
    }
    /// Every socket closes at once (a phone that loses power); the control plane stays.
    fn crash(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.inner.faults.crash();
            self.inner.stop.cancel();
            self.inner.transport.close_all();
            self.inner
                .journal
                .record("sim.crashed", json!({ "name": self.name() }));
        })
    }
    fn restart(&self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async { anyhow::bail!("a simulator does not restart in place: start a new one") })
    }
}
