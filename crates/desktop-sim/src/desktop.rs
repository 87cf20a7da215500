//! One desktop: the handle a test, the CLI or a swarm holds — what the agent sees ([`Screen`]),
//! the journal, and the agent's clicks — over the task in [`crate::driver`].

use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::DesktopConfig;
use crate::connection::Policy;
use crate::driver::Driver;
use crate::failure::Failure;
use crate::gws::Gws;
use crate::http::Origin;
use crate::screen::Screen;
use crate::tally::Tally;
use nodekit::Journal;

/// Commands queued per desktop; a caller beyond that waits.
const COMMAND_QUEUE: usize = 16;

/// What the desktop is told to do by its agent.
pub(crate) enum Command {
    Voice {
        operation: &'static str,
        reason: Option<String>,
    },
    Call {
        id: String,
        operation: &'static str,
    },
    /// Start the contact-center session again (the agent logs in on the voice channel).
    LogInAgent,
    LogOut,
}

pub(crate) type Reply = oneshot::Sender<Result<(), Failure>>;

/// A command and where its result goes, boxed: the channel allocates a block of slots per
/// desktop up front, and small slots keep that block small (commands are rare).
pub(crate) type Order = Box<(Command, Reply)>;

/// What the desktops of one process share: the journal and the counts. Connections are per
/// desktop, as each browser has its own.
#[derive(Clone)]
pub struct Shared {
    pub journal: Journal,
    pub tally: Tally,
}

impl Shared {
    pub fn new(journal: Journal) -> Self {
        Shared {
            journal,
            tally: Tally::default(),
        }
    }
}

/// A running desktop. Dropping it stops the task (without logging out, like closing the tab).
pub struct Desktop {
    user: String,
    hands: Hands,
    screen: watch::Receiver<Screen>,
    journal: Journal,
    task: JoinHandle<()>,
}

impl Drop for Desktop {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Desktop {
    /// Starts a desktop with its own journal (node name `desktop-sim`).
    pub fn start(cfg: DesktopConfig) -> anyhow::Result<Desktop> {
        let journal = Journal::new("desktop-sim", nodekit::journal::DEFAULT_CAPACITY);
        Self::start_with(cfg, &Shared::new(journal))
    }

    /// Starts a desktop on shared resources.
    pub fn start_with(cfg: DesktopConfig, shared: &Shared) -> anyhow::Result<Desktop> {
        let origins = cfg.origins().map_err(anyhow::Error::msg)?;
        Ok(Self::launch(cfg, origins, shared))
    }

    /// Starts a desktop whose URL was already parsed into `origin` (a swarm parses it once).
    pub(crate) fn launch(cfg: DesktopConfig, origins: Vec<Origin>, shared: &Shared) -> Desktop {
        let screen = Screen::new(&cfg.user);
        let (screen_tx, screen_rx) = watch::channel(screen);
        let (commands, commands_rx) = mpsc::channel(COMMAND_QUEUE);
        shared.tally.update(|s| {
            s.desktops += 1;
            s.logged_out += 1;
        });
        let driver = Driver {
            policy: Policy {
                backoff: cfg.backoff,
                giveup_after: cfg.giveup_after,
                relogin: cfg.relogin,
            },
            ready: cfg.ready,
            user: cfg.user.clone(),
            gws: Gws::new(cfg.clone(), origins),
            screen: screen_tx,
            journal: shared.journal.clone(),
            tally: shared.tally.clone(),
            commands: commands_rx,
        };
        Desktop {
            user: cfg.user,
            hands: Hands { commands },
            screen: screen_rx,
            journal: shared.journal.clone(),
            task: tokio::spawn(driver.run()),
        }
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// What the agent sees now.
    pub fn screen(&self) -> Screen {
        self.screen.borrow().clone()
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Waits until the screen satisfies `pred`, at most `timeout`; Err carries the last screen.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl FnMut(&Screen) -> bool,
    ) -> Result<Screen, Box<Screen>> {
        let mut rx = self.screen.clone();
        let waited = tokio::time::timeout(timeout, rx.wait_for(pred)).await;
        let held = waited.ok().and_then(|r| r.ok().map(|s| s.clone()));
        held.ok_or_else(|| Box::new(self.screen()))
    }

    async fn command(&self, command: Command) -> Result<(), Failure> {
        self.hands.command(command).await
    }

    /// The agent's hands on this desktop, for another task (a storm's agents clicking).
    pub fn hands(&self) -> Hands {
        self.hands.clone()
    }

    /// The agent clicks Ready.
    pub async fn ready(&self) -> Result<(), Failure> {
        self.hands.ready().await
    }

    /// The agent clicks Not Ready (with a reason code).
    pub async fn not_ready(&self, reason: Option<&str>) -> Result<(), Failure> {
        let reason = reason.map(str::to_owned);
        self.command(Command::Voice {
            operation: "NotReady",
            reason,
        })
        .await
    }

    /// Answer the call `id` (GWS sends the phone NOTIFY `Event: talk`).
    pub async fn answer(&self, id: &str) -> Result<(), Failure> {
        self.command(Command::Call {
            id: id.to_owned(),
            operation: "Answer",
        })
        .await
    }

    /// Hang up the call `id`.
    pub async fn hang_up(&self, id: &str) -> Result<(), Failure> {
        self.command(Command::Call {
            id: id.to_owned(),
            operation: "Hangup",
        })
        .await
    }

    /// Put the call `id` on hold (GWS sends the phone NOTIFY `Event: hold`).
    pub async fn hold(&self, id: &str) -> Result<(), Failure> {
        self.command(Command::Call {
            id: id.to_owned(),
            operation: "Hold",
        })
        .await
    }

    /// Retrieve the held call `id` (GWS sends the phone NOTIFY `Event: talk`).
    pub async fn retrieve(&self, id: &str) -> Result<(), Failure> {
        self.command(Command::Call {
            id: id.to_owned(),
            operation: "Retrieve",
        })
        .await
    }

    /// The agent logs in on the voice channel of the open session (StartContactCenterSession
    /// again), e.g. after a refused login once the call and ACW are over (R5, S1.5). Err with
    /// the refusal when GWS refuses it.
    pub async fn log_in_agent(&self) -> Result<(), Failure> {
        self.hands.log_in_agent().await
    }

    /// End the contact-center session and the CometD client.
    pub async fn log_out(&self) -> Result<(), Failure> {
        self.command(Command::LogOut).await
    }
}

/// What an agent can click on a desktop it does not own; cheap to clone. The desktop stops
/// when its [`Desktop`] is dropped, and then every click answers "desktop stopped".
#[derive(Clone)]
pub struct Hands {
    commands: mpsc::Sender<Order>,
}

impl Hands {
    async fn command(&self, command: Command) -> Result<(), Failure> {
        let (reply, answer) = oneshot::channel();
        let gone = || Failure::Network("desktop stopped".into());
        self.commands
            .send(Box::new((command, reply)))
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// The agent clicks Ready.
    pub async fn ready(&self) -> Result<(), Failure> {
        self.command(Command::Voice {
            operation: "Ready",
            reason: None,
        })
        .await
    }

    /// The agent logs in on the voice channel (StartContactCenterSession).
    pub async fn log_in_agent(&self) -> Result<(), Failure> {
        self.command(Command::LogInAgent).await
    }
}
