//! The task behind one desktop: logs in, follows CometD (long-polling or a WebSocket), runs the
//! agent's commands while a connect is parked, and recovers from losses by the R13 rules of
//! [`crate::connection`]. What the agent sees is published as a [`Screen`]; what happened goes
//! to the journal (`desktop.*` entries, each with its `user`).

use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::connection::{Connection, Next, Policy};

/// Network failures in a row (the loss included) after which a desktop with fallback URLs
/// tries the next one.
const URL_FAILOVER_AFTER: u32 = 2;
use crate::desktop::{Command, Order, Reply};
use crate::failure::Failure;
use crate::gws::Gws;
use crate::json::Notification;
use crate::screen::{Screen, Seen};
use crate::tally::Tally;
use nodekit::Journal;

/// Longest wait between connects a server may advise (a bad `interval` cannot stall a desktop).
const MAX_ADVISED_INTERVAL: Duration = Duration::from_secs(60);

/// Whether the task goes on.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

pub(crate) struct Driver {
    pub policy: Policy,
    pub ready: bool,
    pub user: String,
    pub gws: Gws,
    pub screen: watch::Sender<Screen>,
    pub journal: Journal,
    pub tally: Tally,
    pub commands: mpsc::Receiver<Order>,
}

impl Driver {
    pub async fn run(mut self) {
        self.set_connection(Connection::LoggingIn);
        // The login here, and the commands and recoveries in `poll`, are boxed while they run:
        // inline, their state would size the task of every desktop for as long as it is parked
        // on a long-poll (a swarm holds thousands, and fresh memory costs CPU).
        if let Err(f) = Box::pin(self.log_in(false)).await {
            self.record("desktop.login_failed", json!({ "error": f.to_string() }));
            self.set_connection(Connection::LoginFailed);
        }
        loop {
            let connected = self.screen.borrow().connection == Connection::Connected;
            let flow = if connected {
                self.poll().await
            } else {
                self.idle().await
            };
            if flow == Flow::Stop {
                return;
            }
        }
    }

    fn record(&self, kind: &'static str, mut detail: Value) {
        detail["user"] = json!(self.user);
        self.journal.record(kind, detail);
    }

    /// Changes the screen and journals what the agent could notice. Whoever waits on the screen
    /// is woken only after the journal has the change: a scenario that saw the screen change and
    /// then injects a fault must find the change before its fault in the history.
    fn show(&mut self, change: impl FnOnce(&mut Screen) -> Vec<Seen>) {
        let mut seen = Vec::new();
        self.screen.send_if_modified(|s| {
            seen = change(s);
            false
        });
        self.journal_seen(seen);
        self.screen.send_modify(|_| {});
    }

    fn journal_seen(&self, seen: Vec<Seen>) {
        for s in seen {
            match s {
                Seen::Voice(v) => self.record("desktop.voice", json!({ "voice": v })),
                Seen::VoiceService(available) => {
                    self.record("desktop.voice_service", json!({ "available": available }))
                }
                Seen::Call { id, state } => {
                    self.record("desktop.call", json!({ "id": id, "state": state }))
                }
                Seen::Notice(text) => self.record("desktop.notice", json!({ "text": text })),
            }
        }
    }

    fn deliver(&mut self, delivered: Vec<(String, Notification)>) {
        for (channel, data) in delivered {
            self.show(|s| s.notify(&channel, &data));
        }
    }

    fn set_connection(&mut self, to: Connection) {
        let mut from = to;
        self.screen.send_modify(|s| {
            from = s.connection;
            s.set_connection(to);
        });
        self.tally.update(|s| s.moved(&from, &to));
        if from.banner() != to.banner() {
            if let Some(message) = to.banner() {
                self.record("desktop.message_shown", json!({ "message": message }));
            }
        }
    }

    /// The whole login: probe with Basic credentials, CometD handshake and subscriptions, the
    /// contact-center session, the state load, and Ready if configured. A refused session (R5:
    /// a call in progress) is shown as a notice: the desktop is up and sees its calls, and the
    /// journal says `desktop.session_opened` (agent not logged in) instead of
    /// `desktop.logged_in`.
    async fn log_in(&mut self, relogin: bool) -> Result<(), Failure> {
        let user = self.gws.log_in().await?.user.unwrap_or_default();
        self.show(|s| s.logged_in(&user));
        let delivered = self.gws.handshake().await?;
        self.deliver(delivered);
        match self.gws.start_contact_center_session().await {
            Ok(mut body) => {
                if let Some(text) = body
                    .failed
                    .first_mut()
                    .and_then(|f| f.status_message.take())
                {
                    self.show(|s| s.set_notice(text));
                }
            }
            Err(f) if f.is_loss() => return Err(f),
            Err(refused) => self.show(|s| s.set_notice(refused.to_string())),
        }
        // Take what the session start queued (LoggedIn, Ready) before the state load, so older
        // states are not replayed over the fresh one.
        self.connect_now().await?;
        self.reload().await?;
        if self.ready && self.screen.borrow().agent_logged_in() {
            self.run_voice("Ready", None).await?;
        }
        let (dn, agent_logged_in, voice) = {
            let screen = self.screen.borrow();
            (
                screen.dn.clone(),
                screen.agent_logged_in(),
                screen.voice.clone(),
            )
        };
        let detail = json!({ "dn": dn, "relogin": relogin, "agent_logged_in": agent_logged_in, "voice": voice });
        if agent_logged_in {
            self.record("desktop.logged_in", detail);
            self.tally.update(|s| {
                s.logins += 1;
                s.relogins += u64::from(relogin);
            });
            self.recovered("login");
        } else {
            // The session is open and the desktop shows the calls, but the agent is not logged
            // in (the login was refused, or the voice channel is out of service).
            self.record("desktop.session_opened", detail);
            self.recovered("session");
        }
        Ok(())
    }

    /// A `/meta/connect` the server answers at once, its messages shown.
    async fn connect_now(&mut self) -> Result<(), Failure> {
        let answer = self.gws.connect(true).await;
        let polled = self.gws.connected(answer);
        self.deliver(polled.delivered);
        polled.outcome
    }

    async fn reload(&mut self) -> Result<(), Failure> {
        let user = self.gws.load_state().await?.user.unwrap_or_default();
        self.show(|s| s.load(&user));
        Ok(())
    }

    fn recovered(&mut self, how: &str) {
        let mut connection = self.screen.borrow().connection;
        let outage = connection.recovered(Instant::now());
        if let Some(outage) = outage {
            self.record(
                "desktop.recovered",
                json!({ "how": how, "outage_ms": outage.as_millis() as u64 }),
            );
        }
        self.set_connection(connection);
    }

    /// A voice operation; a refusal is a notice, a loss is returned.
    async fn run_voice(&mut self, operation: &str, reason: Option<&str>) -> Result<(), Failure> {
        match self.gws.voice(operation, reason).await {
            Ok(_) => Ok(()),
            Err(f) if f.is_loss() => Err(f),
            Err(refused) => {
                self.show(|s| s.set_notice(refused.to_string()));
                Ok(())
            }
        }
    }

    /// Runs one command while connected; returns a loss if it revealed one.
    async fn execute(&mut self, command: Command, reply: Reply) -> Option<Failure> {
        let result = match command {
            Command::Voice { operation, reason } => {
                self.gws.voice(operation, reason.as_deref()).await.map(drop)
            }
            Command::Call { id, operation } => self.gws.call(&id, operation).await.map(drop),
            Command::LogInAgent => {
                let result = self
                    .gws
                    .start_contact_center_session()
                    .await
                    .and_then(Failure::of_voice_partial)
                    .map(drop);
                self.record(
                    "desktop.agent_login",
                    json!({ "ok": result.is_ok(), "error": result.as_ref().err().map(|f| f.to_string()) }),
                );
                result
            }
            Command::LogOut => {
                let result = self.gws.end_contact_center_session().await.map(drop);
                self.gws.disconnect().await;
                self.record("desktop.logged_out", json!({}));
                self.set_connection(Connection::LoggedOut);
                result
            }
        };
        let loss = result.as_ref().err().filter(|f| f.is_loss()).cloned();
        if let Err(refused) = &result {
            if !refused.is_loss() {
                let text = refused.to_string();
                self.show(|s| s.set_notice(text));
            }
        }
        let _ = reply.send(result);
        loss
    }

    /// One `/meta/connect` until the server answers it, running commands meanwhile.
    async fn poll(&mut self) -> Flow {
        let mut pending = self.gws.connect(false);
        loop {
            tokio::select! {
                answer = &mut pending => {
                    let polled = self.gws.connected(answer);
                    self.deliver(polled.delivered);
                    match polled.outcome {
                        Ok(()) if polled.held => pending = self.gws.connect(false),
                        Ok(()) => return self.pause(self.gws.advice().interval.min(MAX_ADVISED_INTERVAL)).await,
                        Err(f) => return Box::pin(self.recover(f)).await,
                    }
                }
                command = self.commands.recv() => {
                    let Some(order) = command else { return Flow::Stop };
                    let (command, reply) = *order;
                    if let Some(loss) = Box::pin(self.execute(command, reply)).await {
                        return Box::pin(self.recover(loss)).await;
                    }
                    if self.screen.borrow().connection != Connection::Connected {
                        return Flow::Continue;
                    }
                }
            }
        }
    }

    /// The advised interval between connects (usually 0).
    async fn pause(&mut self, interval: Duration) -> Flow {
        if interval.is_zero() {
            return Flow::Continue;
        }
        self.wait_until(Instant::now() + interval).await
    }

    /// Not connected: waits until `at`, refusing commands (a log-out stops the desktop).
    async fn wait_until(&mut self, at: Instant) -> Flow {
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(at) => return Flow::Continue,
                command = self.commands.recv() => match command.map(|order| *order) {
                    None => return Flow::Stop,
                    Some((Command::LogOut, reply)) => {
                        self.record("desktop.logged_out", json!({}));
                        self.set_connection(Connection::LoggedOut);
                        let _ = reply.send(Ok(()));
                        return Flow::Stop;
                    }
                    Some((_, reply)) => {
                        let _ = reply.send(Err(Failure::Network("not connected".into())));
                    }
                },
            }
        }
    }

    /// Logged out, given up or never logged in: only commands (refused) until the end.
    async fn idle(&mut self) -> Flow {
        loop {
            if self
                .wait_until(Instant::now() + Duration::from_secs(3600))
                .await
                == Flow::Stop
            {
                return Flow::Stop;
            }
        }
    }

    /// Applies a failure to the connection: the banner, the counts and what comes next.
    fn fail(&mut self, failure: &Failure) -> Next {
        let mut connection = self.screen.borrow().connection;
        let next = connection.failed(failure, &self.policy, Instant::now(), rand::random::<f64>());
        self.set_connection(connection);
        next
    }

    /// R13: from a loss until recovered or given up; after [`URL_FAILOVER_AFTER`] network
    /// failures in a row the next URL of the list is tried.
    async fn recover(&mut self, loss: Failure) -> Flow {
        self.record(
            "desktop.connection_lost",
            json!({ "cause": loss.to_string() }),
        );
        let mut next = self.fail(&loss);
        let mut attempt = 0u32;
        let mut unreachable = u32::from(matches!(loss, Failure::Network(_)));
        loop {
            let (at, relogin) = match next {
                Next::GaveUp => return Flow::Continue,
                Next::GiveUpAt(at) => {
                    if self.wait_until(at).await == Flow::Stop {
                        return Flow::Stop;
                    }
                    self.give_up();
                    return Flow::Continue;
                }
                Next::Retry(at) => (at, false),
                Next::Relogin(at) => (at, true),
            };
            let give_up_at = match self.screen.borrow().connection {
                Connection::Reconnecting(r) => r.since + self.policy.giveup_after,
                _ => return Flow::Continue,
            };
            if self.wait_until(at).await == Flow::Stop {
                return Flow::Stop;
            }
            attempt += 1;
            self.record(
                "desktop.reconnect_attempt",
                json!({ "attempt": attempt, "relogin": relogin }),
            );
            self.tally.update(|s| s.reconnect_attempts += 1);
            let outcome = tokio::select! {
                r = self.attempt(relogin) => Some(r),
                _ = tokio::time::sleep_until(give_up_at) => None,
            };
            match outcome {
                None => {
                    self.give_up();
                    return Flow::Continue;
                }
                Some(Ok(())) => return Flow::Continue,
                Some(Err(f)) => {
                    unreachable = if matches!(f, Failure::Network(_)) {
                        unreachable + 1
                    } else {
                        0
                    };
                    if unreachable >= URL_FAILOVER_AFTER {
                        if let Some(to) = self.gws.next_url() {
                            self.record("desktop.url_changed", json!({ "to": to }));
                            unreachable = 0;
                        }
                    }
                    next = self.fail(&f);
                }
            }
        }
    }

    fn give_up(&mut self) {
        let mut connection = self.screen.borrow().connection;
        if connection.give_up() {
            self.set_connection(connection);
        }
    }

    /// One reconnect attempt: a new login, or CometD again — an immediate connect with the old
    /// client, a new handshake if the node does not know it — then the state reload.
    async fn attempt(&mut self, relogin: bool) -> Result<(), Failure> {
        if relogin {
            return self.log_in(true).await;
        }
        match self.connect_now().await {
            Ok(()) => {}
            Err(Failure::UnknownClient) => {
                let delivered = self.gws.handshake().await?;
                self.deliver(delivered);
            }
            Err(f) => return Err(f),
        }
        self.reload().await?;
        self.recovered("reconnect");
        Ok(())
    }
}
