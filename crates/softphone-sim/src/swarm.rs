//! A running simulator: one SIP socket (UDP + TCP) shared by all its phones, one task that owns
//! the [`Engine`], reads the UDP socket and sends the engine's outbox, and the handle the tests,
//! the CLI and the control plane use. One phone is a swarm of one; the PSTN gateway and the
//! caller are swarms without phones.
//!
//! The task reads UDP itself rather than through the transport's receive task and channel: it
//! takes up to [`BATCH`] datagrams per system call, hands them to the engine unparsed (most are
//! registrars' responses, read in place) and sends what they caused in batches too. While a
//! fault rule exists it goes one datagram at a time through the fault layer instead.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use netfault::FaultUdpSocket;

use anyhow::Context;
use netfault::Faults;
use nodekit::control::BoxFuture;
use nodekit::{serve_control, ControlServer, ControlTarget, Journal};
use serde_json::{json, Value};
use sipcore::transport::{Incoming, SipTransport, TransportKind, TransportOptions};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::config::PhoneConfig;
use crate::engine::{Command, Engine, Out, TxRef};
use crate::media::MediaSilent;
use crate::metrics::SimMetrics;
use crate::placing::{CallPlan, CallReport};
use crate::udp_batch::{self, RecvBatch, BATCH};

/// Commands queued towards the engine.
const COMMANDS: usize = 1024;
/// Media tasks reporting silence at once before they wait.
const SILENT_REPORTS: usize = 1024;
/// With at least this many requests in flight and [`PhoneConfig::pace_reads`], the UDP socket
/// is read in batches a little apart ([`Coalesce`]). A phone or a few calls never wait.
const COALESCE_IN_FLIGHT: usize = 2 * BATCH;
/// Pause between reads under load: the first, and the longest a response waits in the socket
/// buffer for it (T1 is 500 ms).
const COALESCE_MIN: Duration = Duration::from_micros(250);
const COALESCE_MAX: Duration = Duration::from_millis(4);

/// Counters for a status line or a summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub phones: usize,
    pub registered: i64,
    pub registrations: u64,
    pub failovers: u64,
    pub registration_failures: u64,
    /// Bindings removed at shutdown ([`Swarm::unregister`]).
    pub unregistrations: u64,
    pub calls_answered: u64,
    pub calls_established: u64,
    pub calls_ended: u64,
    pub media_lost: u64,
    pub media_silent_drops: u64,
}

/// What [`Swarm::unregister`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Unregistered {
    /// Registered phones that sent REGISTER `Expires: 0`.
    pub phones: usize,
    /// Of those, how many the registrar confirmed (2xx).
    pub confirmed: u64,
    /// Whether every one got a final response or timed out within the wait.
    pub complete: bool,
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
            // UDP is read by the engine's task (see the top of this file); the channel carries
            // TCP only.
            udp_receive_task: false,
            ..TransportOptions::default()
        };
        let (transport, sip_rx) = SipTransport::bind(&faults, &link, config.bind, options)
            .await
            .with_context(|| format!("{}: cannot bind SIP on {}", config.name, config.bind))?;
        let local = transport.local_addr();
        let journal = Journal::new(&config.name, config.journal_capacity);
        let metrics = Arc::new(SimMetrics::new(&config.name));
        metrics.registry.register_faults(&faults);
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
            unregistrations: m.unregistrations.get(),
            calls_answered: m.calls_answered.get(),
            calls_established: m.calls_established.get(),
            calls_ended: m.calls_ended.get(),
            media_lost: m.media.lost.get(),
            media_silent_drops: m.media_silent_drops.get(),
        }
    }

    /// Waits until every phone is registered at once, or `deadline`; returns whether they are.
    pub async fn until_registered(&self, deadline: Instant) -> bool {
        let all = self.inner.config.dns.len() as i64;
        let m = &self.inner.metrics;
        loop {
            // Armed before the check, so a registration in between is not missed.
            let woken = m.all_registered.notified();
            if m.registered.get() >= all {
                return true;
            }
            tokio::select! {
                _ = woken => {}
                _ = sleep_until(deadline) => return m.registered.get() >= all,
            }
        }
    }

    /// Stops every phone and removes each registered one's binding (REGISTER `Expires: 0` to
    /// its registrar), waiting at most `wait` for the registrars to answer; further phones
    /// start no more and nothing is refreshed. For a clean shutdown (Ctrl-C, SIGTERM).
    pub async fn unregister(&self, wait: Duration) -> anyhow::Result<Unregistered> {
        let (started, sent) = oneshot::channel();
        let (done, finished) = oneshot::channel();
        self.command(Command::Unregister { started, done }).await?;
        let phones = sent.await?;
        let complete = tokio::time::timeout(wait, finished).await.is_ok();
        Ok(Unregistered {
            phones,
            confirmed: self.inner.metrics.unregistrations.get(),
            complete,
        })
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

/// The engine's task: one input (or one batch of datagrams) at a time, then the outbox.
async fn run(mut engine: Engine, mut ch: Channels, sip: SipTransport, stop: CancellationToken) {
    let udp = sip.udp_socket();
    let mut received = RecvBatch::default();
    let mut truncated = 0;
    let mut out = Outgoing::default();
    let mut coalesce = Coalesce {
        enabled: engine.config.pace_reads,
        ..Coalesce::default()
    };
    loop {
        if let Some(at) = coalesce.hold.take() {
            // Blocking on purpose (see `PhoneConfig::pace_reads`): parked in the reactor, the
            // thread would be woken by every datagram that arrives meanwhile.
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
        }
        let deadline = engine.next_deadline();
        let batched = !engine.faults_active();
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            Some(incoming) = ch.sip.recv() => engine.on_sip(incoming, Instant::now()),
            r = recv_udp(&mut received, udp.as_deref(), batched), if udp.is_some() => match r {
                Ok(n) => {
                    let now = Instant::now();
                    for (datagram, from) in received.datagrams() {
                        if !datagram.is_empty() {
                            engine.on_datagram(datagram, from, now);
                        }
                    }
                    coalesce.after(n, engine.requests_in_flight(), now);
                    if received.truncated != truncated {
                        truncated = received.truncated;
                        tracing::debug!(truncated, "UDP datagrams larger than a receive slot dropped");
                    }
                }
                // ICMP errors from earlier sends surface here on Linux; not fatal.
                Err(e) => tracing::trace!(error = %e, "UDP receive error"),
            },
            Some(cmd) = ch.commands.recv() => engine.on_command(cmd, Instant::now()),
            Some(s) = ch.silent.recv() => engine.on_media_silent(&s.call_id, Instant::now()),
            _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                engine.on_timer(Instant::now());
            }
            else => break,
        }
        // A failed send may make the engine send something else (bounded: a few rounds).
        for _ in 0..4 {
            engine.take_outbox(&mut out.queue);
            if out.queue.is_empty() {
                break;
            }
            out.send(&mut engine, &sip, udp.as_deref(), batched).await;
        }
    }
    tracing::debug!("softphone-sim engine stopped");
}

/// Interrupt moderation for the UDP socket: under load, pause between reads so each read takes
/// a batch. The pause doubles while reads find few datagrams and halves when they find a full
/// batch, between [`COALESCE_MIN`] and [`COALESCE_MAX`].
#[derive(Default)]
struct Coalesce {
    enabled: bool,
    pause: Duration,
    /// No read before this instant.
    hold: Option<Instant>,
}

impl Coalesce {
    /// A read found `n` datagrams with `in_flight` requests waiting for responses.
    fn after(&mut self, n: usize, in_flight: usize, now: Instant) {
        if !self.enabled || in_flight < COALESCE_IN_FLIGHT {
            self.pause = Duration::ZERO;
        } else if n >= BATCH {
            self.pause /= 2;
        } else if n < BATCH / 4 {
            self.pause = (self.pause * 2).clamp(COALESCE_MIN, COALESCE_MAX);
        }
        if self.pause < COALESCE_MIN {
            self.pause = Duration::ZERO;
        }
        self.hold = (!self.pause.is_zero()).then(|| now + self.pause);
    }
}

async fn recv_udp(
    received: &mut RecvBatch,
    udp: Option<&FaultUdpSocket>,
    batched: bool,
) -> std::io::Result<usize> {
    match udp {
        Some(udp) if batched => received.recv(udp.socket()).await,
        Some(udp) => received.recv_one(udp).await,
        None => std::future::pending().await,
    }
}

/// The outbox on its way out, with buffers reused from one round to the next.
#[derive(Default)]
struct Outgoing {
    queue: Vec<Out>,
    datagrams: Vec<(SocketAddr, Bytes)>,
    txs: Vec<Option<TxRef>>,
}

impl Outgoing {
    /// Sends the queue: UDP datagrams in batches when `batched`, the rest one by one through
    /// the transport; a send that fails at once fails its transaction.
    async fn send(
        &mut self,
        engine: &mut Engine,
        sip: &SipTransport,
        udp: Option<&FaultUdpSocket>,
        batched: bool,
    ) {
        for out in self.queue.drain(..) {
            match udp {
                Some(udp) if batched && out.dest.transport == TransportKind::Udp => {
                    self.datagrams.push((out.dest.remote, out.bytes));
                    self.txs.push(out.tx);
                    if self.datagrams.len() == BATCH {
                        send_datagrams(engine, udp, &mut self.datagrams, &mut self.txs).await;
                    }
                }
                _ => {
                    if let Some(udp) = udp {
                        send_datagrams(engine, udp, &mut self.datagrams, &mut self.txs).await;
                    }
                    if let Err(e) = sip.send(&out.dest, out.bytes).await {
                        tracing::debug!(to = %out.dest.remote, error = %e, "SIP send failed");
                        if let Some(tx) = out.tx {
                            engine.on_send_failed(&tx, Instant::now());
                        }
                    }
                }
            }
        }
        if let Some(udp) = udp {
            send_datagrams(engine, udp, &mut self.datagrams, &mut self.txs).await;
        }
    }
}

/// Sends and empties `datagrams` (with `txs`, the transaction of each), [`BATCH`] at a time.
async fn send_datagrams(
    engine: &mut Engine,
    udp: &FaultUdpSocket,
    datagrams: &mut Vec<(SocketAddr, Bytes)>,
    txs: &mut Vec<Option<TxRef>>,
) {
    let mut next = 0;
    while next < datagrams.len() {
        let end = (next + BATCH).min(datagrams.len());
        match udp_batch::send_batch(udp.socket(), &datagrams[next..end]).await {
            Ok(sent) => next += sent.max(1),
            Err(e) => {
                tracing::debug!(to = %datagrams[next].0, error = %e, "SIP send failed");
                if let Some(tx) = &txs[next] {
                    engine.on_send_failed(tx, Instant::now());
                }
                next += 1;
            }
        }
    }
    datagrams.clear();
    txs.clear();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn reads_are_paced_only_under_load_and_only_when_asked() {
        let now = Instant::now();
        let busy = COALESCE_IN_FLIGHT;
        let mut c = Coalesce {
            enabled: true,
            ..Coalesce::default()
        };
        let pauses: Vec<Duration> = (0..8)
            .map(|_| {
                c.after(1, busy, now);
                c.hold.map_or(Duration::ZERO, |at| at - now)
            })
            .collect();
        assert_eq!(pauses[0], COALESCE_MIN, "few datagrams: start pausing");
        assert_eq!(pauses[1], 2 * COALESCE_MIN, "still few: pause longer");
        assert_eq!(pauses[7], COALESCE_MAX, "capped");
        c.after(BATCH / 2, busy, now);
        assert_eq!(
            c.hold,
            Some(now + COALESCE_MAX),
            "half a batch: keep the pace"
        );
        for _ in 0..8 {
            c.after(BATCH, busy, now);
        }
        assert_eq!(c.hold, None, "full batches: read at once");
        c.after(1, busy - 1, now);
        assert_eq!(c.hold, None, "a few requests in flight never wait");
        let mut off = Coalesce::default();
        off.after(1, busy, now);
        assert_eq!(off.hold, None, "not for a shared runtime");
    }
}
