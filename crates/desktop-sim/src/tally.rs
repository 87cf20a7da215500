//! Counts of desktops by connection state, kept up to date by every desktop as it moves, so a
//! swarm of thousands can be summarised (status line, `--json`, the benchmark) and waited on
//! without looking at each desktop.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use crate::connection::Connection;

/// How many desktops are in each state, and what happened so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub desktops: usize,
    pub logged_out: usize,
    pub logging_in: usize,
    pub login_failed: usize,
    pub connected: usize,
    pub reconnecting: usize,
    pub gave_up: usize,
    /// Successful logins, first ones and relogins.
    pub logins: u64,
    pub relogins: u64,
    pub reconnect_attempts: u64,
}

impl Summary {
    fn count(&mut self, c: &Connection) -> &mut usize {
        match c {
            Connection::LoggedOut => &mut self.logged_out,
            Connection::LoggingIn => &mut self.logging_in,
            Connection::LoginFailed => &mut self.login_failed,
            Connection::Connected => &mut self.connected,
            Connection::Reconnecting(_) => &mut self.reconnecting,
            Connection::GaveUp => &mut self.gave_up,
        }
    }

    /// One desktop went from `from` to `to`.
    pub fn moved(&mut self, from: &Connection, to: &Connection) {
        if std::mem::discriminant(from) != std::mem::discriminant(to) {
            let old = self.count(from);
            *old = old.saturating_sub(1);
            *self.count(to) += 1;
        }
    }

    /// Desktops no longer logging in (connected, failed, or in any later state).
    pub fn settled(&self) -> usize {
        self.desktops - self.logged_out - self.logging_in
    }

    /// One status line: `5000 desktops: 4990 connected, 0 reconnecting …`.
    pub fn line(&self) -> String {
        format!(
            "{} desktops: {} connected, {} logging in, {} reconnecting, {} gave up, {} login failed ({} logins, {} relogins, {} reconnect attempts)",
            self.desktops, self.connected, self.logging_in + self.logged_out, self.reconnecting,
            self.gave_up, self.login_failed, self.logins, self.relogins, self.reconnect_attempts
        )
    }
}

/// The shared counts. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Tally(Arc<watch::Sender<Summary>>);

impl Default for Tally {
    fn default() -> Self {
        Tally(Arc::new(watch::Sender::new(Summary::default())))
    }
}

impl Tally {
    pub fn update(&self, f: impl FnOnce(&mut Summary)) {
        self.0.send_modify(f);
    }

    pub fn summary(&self) -> Summary {
        self.0.borrow().clone()
    }

    /// Waits until `pred` holds for the counts, at most `timeout`; returns the last counts and
    /// whether it held.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl FnMut(&Summary) -> bool,
    ) -> (Summary, bool) {
        let mut rx = self.0.subscribe();
        let waited = tokio::time::timeout(timeout, rx.wait_for(pred)).await;
        let held = waited.ok().and_then(|r| r.ok().map(|s| s.clone()));
        match held {
            Some(s) => (s, true),
            None => (self.summary(), false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn moves_keep_the_counts_and_wake_waiters() {
        let t = Tally::default();
        t.update(|s| {
            s.desktops = 2;
            s.logged_out = 2;
        });
        let waiter = {
            let t = t.clone();
            tokio::spawn(async move {
                t.wait_for(Duration::from_secs(5), |s| s.connected == 2)
                    .await
            })
        };
        for _ in 0..2 {
            t.update(|s| s.moved(&Connection::LoggedOut, &Connection::LoggingIn));
            t.update(|s| s.moved(&Connection::LoggingIn, &Connection::Connected));
        }
        t.update(|s| s.moved(&Connection::Connected, &Connection::Connected));
        let (summary, held) = waiter.await.unwrap();
        assert!(held);
        assert_eq!(
            (summary.connected, summary.logged_out, summary.settled()),
            (2, 0, 2)
        );
        assert!(summary.line().starts_with("2 desktops: 2 connected"));
        let (_, held) = t.wait_for(Duration::from_secs(1), |s| s.gave_up == 1).await;
        assert!(!held);
    }
}
