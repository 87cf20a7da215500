//! R13, the desktop's connection as the agent experiences it: connected; lost and
//! "Reconnecting…" with retries on a backoff; recovered; or given up after `giveup_after` with
//! "Unable to establish connection…". Plain data and pure transitions (time is an argument), so
//! the timing rules are tested on a paused clock without sockets.

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::failure::Failure;

/// The banner WWE shows while it retries (R13, S1.2).
pub const RECONNECTING: &str = "Connection to the server has been lost. Reconnecting…";
/// The banner WWE shows when it stops retrying (R13, S1.2, S4.5).
pub const UNABLE_TO_CONNECT: &str =
    "Unable to establish connection. Please refresh your browser and log in again";

/// The connection, as the agent sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Connection {
    /// Not logged in (yet, or any more).
    LoggedOut,
    LoggingIn,
    /// The first login was refused or could not reach the server; the desktop stays on the
    /// login page.
    LoginFailed,
    Connected,
    Reconnecting(#[serde(skip)] Recovery),
    /// "Unable to establish connection…": only the agent can go on (refresh, log in).
    GaveUp,
}

/// An outage being recovered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    pub since: Instant,
    pub failures: u32,
    /// The server no longer knows the session: only a new login can recover.
    pub session_gone: bool,
}

/// The reconnect rules of one desktop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub backoff: Backoff,
    pub giveup_after: Duration,
    pub relogin: bool,
}

/// What the desktop does next while reconnecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Reconnect CometD (connect, or handshake again) at this time.
    Retry(Instant),
    /// Log in again (new session) at this time.
    Relogin(Instant),
    /// Nothing can recover it: show the give-up banner at this time.
    GiveUpAt(Instant),
    /// The banner is shown now.
    GaveUp,
}

impl Connection {
    /// The banner the agent sees in this state.
    pub fn banner(&self) -> Option<&'static str> {
        match self {
            Connection::Reconnecting(_) => Some(RECONNECTING),
            Connection::GaveUp => Some(UNABLE_TO_CONNECT),
            _ => None,
        }
    }

    /// A short name for counts and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Connection::LoggedOut => "logged_out",
            Connection::LoggingIn => "logging_in",
            Connection::LoginFailed => "login_failed",
            Connection::Connected => "connected",
            Connection::Reconnecting(_) => "reconnecting",
            Connection::GaveUp => "gave_up",
        }
    }

    /// The link failed with `failure` at `now` — while connected (the outage starts, "Reconnecting…"
    /// shows at once) or during a recovery attempt (one more failure). Returns what to do next.
    pub fn failed(&mut self, failure: &Failure, policy: &Policy, now: Instant, unit: f64) -> Next {
        let mut recovery = match *self {
            Connection::Reconnecting(r) => r,
            Connection::GaveUp => return Next::GaveUp,
            _ => Recovery {
                since: now,
                failures: 0,
                session_gone: false,
            },
        };
        recovery.failures = recovery.failures.saturating_add(1);
        recovery.session_gone |= *failure == Failure::SessionGone;
        *self = Connection::Reconnecting(recovery);
        let give_up_at = recovery.since + policy.giveup_after;
        if now >= give_up_at {
            *self = Connection::GaveUp;
            return Next::GaveUp;
        }
        if recovery.session_gone && !policy.relogin {
            return Next::GiveUpAt(give_up_at);
        }
        let at = now + policy.backoff.delay(recovery.failures, unit);
        if at >= give_up_at {
            Next::GiveUpAt(give_up_at)
        } else if recovery.session_gone {
            Next::Relogin(at)
        } else {
            Next::Retry(at)
        }
    }

    /// The give-up time has come: returns whether the banner changed to "Unable to …".
    pub fn give_up(&mut self) -> bool {
        let was_reconnecting = matches!(self, Connection::Reconnecting(_));
        if was_reconnecting {
            *self = Connection::GaveUp;
        }
        was_reconnecting
    }

    /// Connected again (same session or a new login); returns how long the outage lasted.
    pub fn recovered(&mut self, now: Instant) -> Option<Duration> {
        let outage = match *self {
            Connection::Reconnecting(r) => Some(now.saturating_duration_since(r.since)),
            _ => None,
        };
        *self = Connection::Connected;
        outage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(relogin: bool) -> Policy {
        Policy {
            backoff: Backoff::default(),
            giveup_after: Duration::from_secs(60),
            relogin,
        }
    }

    fn net() -> Failure {
        Failure::Network("reset".into())
    }

    #[tokio::test(start_paused = true)]
    async fn loss_shows_reconnecting_at_once_and_retries_one_second_further_each_time() {
        let p = policy(false);
        let mut c = Connection::Connected;
        assert_eq!(c.banner(), None);
        let t0 = Instant::now();
        assert_eq!(
            c.failed(&net(), &p, t0, 0.5),
            Next::Retry(t0 + Duration::from_secs(1))
        );
        assert_eq!(c.banner(), Some(RECONNECTING));
        tokio::time::advance(Duration::from_secs(1)).await;
        let t1 = Instant::now();
        assert_eq!(
            c.failed(&net(), &p, t1, 0.5),
            Next::Retry(t1 + Duration::from_secs(2))
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        let t2 = Instant::now();
        assert_eq!(
            c.failed(&net(), &p, t2, 0.5),
            Next::Retry(t2 + Duration::from_secs(3))
        );
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(c.recovered(Instant::now()), Some(Duration::from_secs(6)));
        assert_eq!(c, Connection::Connected);
        assert_eq!(c.banner(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_giveup_after_without_recovery() {
        let p = policy(false);
        let mut c = Connection::Connected;
        let t0 = Instant::now();
        let mut next = c.failed(&net(), &p, t0, 0.0);
        // 1 + 2 + … + 10 = 55 s of retries; the 11th would land past 60 s.
        while let Next::Retry(at) = next {
            tokio::time::advance(at - Instant::now()).await;
            next = c.failed(&net(), &p, Instant::now(), 0.0);
        }
        assert_eq!(next, Next::GiveUpAt(t0 + Duration::from_secs(60)));
        assert_eq!(c.banner(), Some(RECONNECTING), "still retrying until then");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(c.give_up());
        assert_eq!(c.banner(), Some(UNABLE_TO_CONNECT));
        assert!(!c.give_up(), "shown once");
        assert_eq!(c.failed(&net(), &p, Instant::now(), 0.0), Next::GaveUp);
    }

    #[tokio::test(start_paused = true)]
    async fn a_gone_session_waits_for_the_give_up_or_logs_in_again() {
        let t0 = Instant::now();
        let mut c = Connection::Connected;
        c.failed(&net(), &policy(false), t0, 0.0);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            c.failed(&Failure::SessionGone, &policy(false), Instant::now(), 0.0),
            Next::GiveUpAt(t0 + Duration::from_secs(60))
        );

        let mut c = Connection::Connected;
        c.failed(&net(), &policy(true), t0, 0.0);
        let t1 = Instant::now();
        assert_eq!(
            c.failed(&Failure::SessionGone, &policy(true), t1, 0.0),
            Next::Relogin(t1 + Duration::from_secs(2))
        );
        // A failed relogin (the proxy had no node) tries again: the session stays gone.
        assert_eq!(
            c.failed(&net(), &policy(true), t1, 0.0),
            Next::Relogin(t1 + Duration::from_secs(3))
        );
        assert_eq!(c.recovered(t1), Some(Duration::from_secs(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_past_the_deadline_gives_up_at_once() {
        let p = policy(true);
        let mut c = Connection::Connected;
        c.failed(&net(), &p, Instant::now(), 0.0);
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(c.failed(&net(), &p, Instant::now(), 0.0), Next::GaveUp);
        assert_eq!(c, Connection::GaveUp);
        assert_eq!(c.name(), "gave_up");
    }
}
