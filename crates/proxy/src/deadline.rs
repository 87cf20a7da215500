//! A connection's timeout that moves with every request without re-arming a timer each time
//! (nginx's lazy timers, without their early firing): the timer is only ever moved earlier;
//! when it fires before the current deadline it is re-armed to it. On a busy keep-alive
//! connection that is one timer operation per timeout period instead of two per request.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::{Context, Poll};

use tokio::time::{sleep_until, Instant, Sleep};

pub struct Deadline {
    timer: Pin<Box<Sleep>>,
    at: Instant,
}

impl Deadline {
    pub fn new(at: Instant) -> Self {
        Deadline {
            timer: Box::pin(sleep_until(at)),
            at,
        }
    }

    /// Moves the deadline to `at`.
    pub fn set(&mut self, at: Instant) {
        self.at = at;
        if at < self.timer.deadline() {
            self.timer.as_mut().reset(at);
        }
    }

    /// Runs `fut` until the deadline: `None` if it passed first.
    pub async fn run<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        let mut fut = pin!(fut);
        poll_fn(|cx| {
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(v));
            }
            self.poll_passed(cx).map(|()| None)
        })
        .await
    }

    fn poll_passed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if self.timer.deadline() >= self.at {
                return Poll::Ready(());
            }
            // It fired for an older, earlier deadline.
            self.timer.as_mut().reset(self.at);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn fires_at_the_latest_deadline_only() {
        let start = Instant::now();
        let mut d = Deadline::new(start + Duration::from_secs(1));
        d.set(start + Duration::from_secs(3));
        let never = std::future::pending::<()>();
        assert_eq!(d.run(never).await, None);
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        d.set(Instant::now() + Duration::from_secs(1));
        assert_eq!(d.run(async { 7 }).await, Some(7));
        assert_eq!(d.run(std::future::pending::<()>()).await, None);
        assert_eq!(start.elapsed(), Duration::from_secs(4));
    }
}
