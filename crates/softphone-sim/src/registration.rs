//! One phone's registration as plain data and pure transitions (docs/scenarios.md R12, S4.3).
//!
//! The phone has an ordered registrar list, like an SRV record with DC1 first. It registers at
//! the first, refreshes at `refresh_ratio` of the granted expiry, and treats a refresh that
//! times out, gets a 5xx/4xx or hits a transport error as the loss of that registrar. What
//! follows is the [`Failover`] policy: by default the phone registers at the next registrar of
//! the list at once, as RFC 3263 §4.3 has a client try the next target, and waits the
//! [`Backoff`] delay only when every registrar of the list has failed in a row (RFC 5626 §4.5's
//! "all flows failed"); the list wraps around. [`Failover::AfterBackoff`] waits the backoff
//! before every next registrar instead.
//!
//! Return to the preferred registrar: none while registered. Like real phones, a phone stays
//! where it is registered until that registrar fails; only then does it move on down the list,
//! which brings it back to DC1 after DC2 fails.
//!
//! Time is explicit (`now`) and so is randomness (`unit` in `[0, 1]`), so every rule is
//! unit-tested without sockets; the caller arms a timer for [`Step::wake_at`] and calls
//! [`Registration::on_timer`] then (stale wake-ups do nothing).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::backoff::Backoff;

/// What every phone of a swarm shares, so a phone's own state stays small.
#[derive(Debug, Clone)]
pub struct RegistrationPolicy {
    /// How many registrars the list has (at least 1).
    pub registrars: usize,
    /// Expiry asked for in REGISTER, seconds.
    pub expires: u32,
    /// Refresh when this share of the granted expiry has passed (clamped to 0.1–0.95).
    pub refresh_ratio: f64,
    pub backoff: Backoff,
    pub failover: Failover,
}

/// When a phone tries the next registrar of its list after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Failover {
    /// At once; the backoff only after every registrar of the list failed in a row (what phones
    /// with an SRV-like list do: the agent is without a phone for one transaction timeout).
    #[default]
    Immediate,
    /// Wait the backoff before every next registrar.
    AfterBackoff,
}

impl std::str::FromStr for Failover {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "immediate" => Ok(Failover::Immediate),
            "backoff" | "after-backoff" => Ok(Failover::AfterBackoff),
            other => Err(format!(
                "unknown failover policy `{other}` (expected immediate or backoff)"
            )),
        }
    }
}

/// Largest expiry a 423 can raise us to: a registrar asking for more than a day is broken.
const MAX_EXPIRES: u32 = 86_400;

/// Where the phone stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RegState {
    /// Not started (or stopped).
    Idle,
    /// A REGISTER is in flight at `registrar` and the phone is not registered anywhere.
    Registering { registrar: usize },
    /// Registered at `registrar` until `expires_at`; the refresh goes out at `refresh_at`.
    Registered {
        registrar: usize,
        granted: Duration,
        refresh_at: Instant,
        expires_at: Instant,
    },
    /// A refresh is in flight at `registrar`; the binding lasts until `expires_at`.
    Refreshing {
        registrar: usize,
        expires_at: Instant,
    },
    /// After a failure: the next REGISTER goes to `registrar` at `until`.
    WaitingRetry { registrar: usize, until: Instant },
}

/// Why a REGISTER failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No final response in time (Timer F), e.g. a blackholed registrar.
    Timeout,
    /// A final response that is not a success (503, 404, 500 …).
    Status(u16),
    /// The transport refused to send (TCP reset or refused, ICMP unreachable).
    Transport,
}

impl Failure {
    pub fn describe(&self) -> String {
        match self {
            Failure::Timeout => "timeout".into(),
            Failure::Status(code) => format!("status {code}"),
            Failure::Transport => "transport error".into(),
        }
    }
}

/// What a transition reports.
#[derive(Debug, Clone, PartialEq)]
pub enum RegEvent {
    /// Registered at `registrar` after not being registered; `previous` is where the phone was
    /// registered last, if anywhere (a different one means a failover).
    Registered {
        registrar: usize,
        granted: Duration,
        previous: Option<usize>,
    },
    /// A refresh at the same registrar succeeded.
    Refreshed { registrar: usize, granted: Duration },
    /// A REGISTER failed; the next goes to `next` after `retry_in`.
    Failed {
        registrar: usize,
        failure: Failure,
        was_registered: bool,
        next: usize,
        retry_in: Duration,
    },
}

/// What the caller must do after a transition.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Step {
    /// Send a REGISTER to this registrar asking for this many seconds.
    pub send: Option<(usize, u32)>,
    /// Call [`Registration::on_timer`] at this time.
    pub wake_at: Option<Instant>,
    pub event: Option<RegEvent>,
}

/// One phone's registration.
#[derive(Debug, Clone)]
pub struct Registration {
    state: RegState,
    /// Consecutive failures, for the backoff; 0 once registered.
    failures: u32,
    /// Expiry asked for; raised by a 423's Min-Expires.
    asking: u32,
    /// The registrar of the last successful registration.
    last_registered: Option<usize>,
}

impl Registration {
    pub fn new(policy: &RegistrationPolicy) -> Self {
        Registration {
            state: RegState::Idle,
            failures: 0,
            asking: policy.expires,
            last_registered: None,
        }
    }

    pub fn state(&self) -> RegState {
        self.state
    }

    /// Whether a binding is believed to exist right now.
    pub fn is_registered(&self, now: Instant) -> bool {
        match self.state {
            RegState::Registered { expires_at, .. } | RegState::Refreshing { expires_at, .. } => {
                now < expires_at
            }
            _ => false,
        }
    }

    /// The registrar the phone is registered at (or refreshing at).
    pub fn registrar(&self) -> Option<usize> {
        match self.state {
            RegState::Registered { registrar, .. } | RegState::Refreshing { registrar, .. } => {
                Some(registrar)
            }
            _ => None,
        }
    }

    /// Starts at the preferred (first) registrar.
    pub fn start(&mut self) -> Step {
        self.state = RegState::Registering { registrar: 0 };
        Step {
            send: Some((0, self.asking)),
            ..Step::default()
        }
    }

    /// Stops: nothing more is sent and timers do nothing.
    pub fn stop(&mut self) {
        self.state = RegState::Idle;
    }

    /// A final response to the REGISTER in flight. `granted` is the expiry the 200 gave (the
    /// Contact's `expires` or the Expires header); `min_expires` a 423's Min-Expires.
    pub fn on_response(
        &mut self,
        policy: &RegistrationPolicy,
        code: u16,
        granted: Option<u32>,
        min_expires: Option<u32>,
        now: Instant,
        unit: f64,
    ) -> Step {
        let Some((registrar, _)) = self.in_flight() else {
            return Step::default(); // a late response after a timeout: already handled
        };
        match code {
            200..=299 => match granted.unwrap_or(self.asking) {
                0 => self.on_failure(policy, Failure::Status(code), now, unit),
                secs => self.registered(policy, registrar, secs, now),
            },
            423 => match min_expires {
                Some(min) if min > self.asking && min <= MAX_EXPIRES => {
                    self.asking = min;
                    Step {
                        send: Some((registrar, min)),
                        ..Step::default()
                    }
                }
                _ => self.on_failure(policy, Failure::Status(code), now, unit),
            },
            _ => self.on_failure(policy, Failure::Status(code), now, unit),
        }
    }

    /// The REGISTER in flight timed out or could not be sent.
    pub fn on_failure(
        &mut self,
        policy: &RegistrationPolicy,
        failure: Failure,
        now: Instant,
        unit: f64,
    ) -> Step {
        let Some((registrar, was_registered)) = self.in_flight() else {
            return Step::default();
        };
        self.failures = self.failures.saturating_add(1);
        let registrars = policy.registrars.max(1) as u32;
        let next = (registrar + 1) % registrars as usize;
        let event = |retry_in| {
            Some(RegEvent::Failed {
                registrar,
                failure,
                was_registered,
                next,
                retry_in,
            })
        };
        let backoff_failures = match policy.failover {
            Failover::AfterBackoff => self.failures,
            // A round of the list is over when every registrar failed since the last success.
            Failover::Immediate if self.failures % registrars == 0 => self.failures / registrars,
            Failover::Immediate => {
                self.state = RegState::Registering { registrar: next };
                return Step {
                    send: Some((next, self.asking)),
                    wake_at: None,
                    event: event(Duration::ZERO),
                };
            }
        };
        let retry_in = policy.backoff.delay(backoff_failures, unit);
        let until = now + retry_in;
        self.state = RegState::WaitingRetry {
            registrar: next,
            until,
        };
        Step {
            send: None,
            wake_at: Some(until),
            event: event(retry_in),
        }
    }

    /// A timer armed from a [`Step::wake_at`] fired.
    pub fn on_timer(&mut self, now: Instant) -> Step {
        match self.state {
            RegState::Registered {
                registrar,
                refresh_at,
                expires_at,
                ..
            } if now >= refresh_at => {
                self.state = RegState::Refreshing {
                    registrar,
                    expires_at,
                };
                Step {
                    send: Some((registrar, self.asking)),
                    ..Step::default()
                }
            }
            RegState::WaitingRetry { registrar, until } if now >= until => {
                self.state = RegState::Registering { registrar };
                Step {
                    send: Some((registrar, self.asking)),
                    ..Step::default()
                }
            }
            _ => Step::default(),
        }
    }

    /// The registrar of the REGISTER in flight and whether the phone is registered meanwhile.
    fn in_flight(&self) -> Option<(usize, bool)> {
        match self.state {
            RegState::Registering { registrar } => Some((registrar, false)),
            RegState::Refreshing { registrar, .. } => Some((registrar, true)),
            _ => None,
        }
    }

    fn registered(
        &mut self,
        policy: &RegistrationPolicy,
        registrar: usize,
        secs: u32,
        now: Instant,
    ) -> Step {
        let was_refresh = matches!(self.state, RegState::Refreshing { .. });
        let granted = Duration::from_secs(u64::from(secs));
        let refresh_at = now + granted.mul_f64(policy.refresh_ratio.clamp(0.1, 0.95));
        self.state = RegState::Registered {
            registrar,
            granted,
            refresh_at,
            expires_at: now + granted,
        };
        self.failures = 0;
        let event = if was_refresh {
            RegEvent::Refreshed { registrar, granted }
        } else {
            RegEvent::Registered {
                registrar,
                granted,
                previous: self.last_registered,
            }
        };
        self.last_registered = Some(registrar);
        Step {
            send: None,
            wake_at: Some(refresh_at),
            event: Some(event),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RegistrationPolicy {
        RegistrationPolicy {
            registrars: 2,
            expires: 60,
            refresh_ratio: 0.5,
            backoff: Backoff::Fixed {
                every: Duration::from_secs(10),
            },
            failover: Failover::AfterBackoff,
        }
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn retry_in(step: &Step) -> Duration {
        match step.event {
            Some(RegEvent::Failed { retry_in, .. }) => retry_in,
            ref other => panic!("not a failure: {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn s4_3_a_failed_refresh_registers_at_the_next_registrar_at_once() {
        let p = RegistrationPolicy {
            failover: Failover::Immediate,
            ..policy()
        };
        let mut r = Registration::new(&p);
        r.start();
        let t0 = Instant::now();
        r.on_response(&p, 200, Some(60), None, t0, 0.5);
        assert_eq!(r.on_timer(t0 + S(30)).send, Some((0, 60)));
        // The refresh at the DC1 registrar times out: the REGISTER goes to DC2 in the same step.
        let step = r.on_failure(&p, Failure::Timeout, t0 + S(32), 0.5);
        assert_eq!(step.send, Some((1, 60)));
        assert_eq!(step.wake_at, None);
        assert_eq!(retry_in(&step), Duration::ZERO);
        assert_eq!(r.state(), RegState::Registering { registrar: 1 });
        let step = r.on_response(&p, 200, Some(60), None, t0 + S(33), 0.5);
        assert_eq!(
            step.event,
            Some(RegEvent::Registered {
                registrar: 1,
                granted: S(60),
                previous: Some(0)
            })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_backoff_starts_when_every_registrar_of_the_list_has_failed() {
        let p = RegistrationPolicy {
            failover: Failover::Immediate,
            backoff: Backoff::Rfc5626 {
                base: S(1),
                max: S(100),
            },
            ..policy()
        };
        let mut r = Registration::new(&p);
        r.start();
        let mut now = Instant::now();
        let mut waits = Vec::new();
        for _ in 0..4 {
            let step = r.on_failure(&p, Failure::Transport, now, 1.0);
            waits.push(retry_in(&step));
            if let Some(at) = step.wake_at {
                now = at;
                assert!(r.on_timer(now).send.is_some());
            }
        }
        // ss1 fails → ss3 at once; ss3 fails → wait one round's backoff; and so on, growing.
        assert_eq!(waits, vec![S(0), S(2), S(0), S(4)]);
        // One registrar: every failure is a whole list failing.
        let single = RegistrationPolicy {
            registrars: 1,
            ..p.clone()
        };
        let mut r = Registration::new(&single);
        r.start();
        let step = r.on_failure(&single, Failure::Timeout, now, 1.0);
        assert_eq!((step.send, retry_in(&step)), (None, S(2)));
    }

    #[test]
    fn failover_policies_parse_by_name() {
        assert_eq!("immediate".parse(), Ok(Failover::Immediate));
        assert_eq!("backoff".parse(), Ok(Failover::AfterBackoff));
        assert!("later"
            .parse::<Failover>()
            .unwrap_err()
            .contains("immediate or backoff"));
    }

    #[tokio::test(start_paused = true)]
    async fn registers_at_the_preferred_registrar_and_refreshes_at_half_the_granted_expiry() {
        let p = policy();
        let mut r = Registration::new(&p);
        assert_eq!(r.start().send, Some((0, 60)));
        let t0 = Instant::now();
        // The registrar grants less than asked: the 200's value wins.
        let step = r.on_response(&p, 200, Some(30), None, t0, 0.5);
        assert_eq!(step.wake_at, Some(t0 + S(15)));
        assert_eq!(
            step.event,
            Some(RegEvent::Registered {
                registrar: 0,
                granted: S(30),
                previous: None
            })
        );
        assert!(r.is_registered(t0));
        assert_eq!(r.on_timer(t0 + S(14)), Step::default(), "early wake-up");
        assert_eq!(r.on_timer(t0 + S(15)).send, Some((0, 60)));
        assert!(r.is_registered(t0 + S(15)), "still bound while refreshing");
        let step = r.on_response(&p, 200, Some(30), None, t0 + S(16), 0.5);
        assert!(matches!(
            step.event,
            Some(RegEvent::Refreshed { registrar: 0, .. })
        ));
        assert_eq!(r.registrar(), Some(0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_refresh_fails_over_to_the_next_registrar_after_the_backoff() {
        let p = policy();
        let mut r = Registration::new(&p);
        r.start();
        let t0 = Instant::now();
        r.on_response(&p, 200, Some(60), None, t0, 0.0);
        r.on_timer(t0 + S(30));
        let step = r.on_failure(&p, Failure::Timeout, t0 + S(32), 0.0);
        assert_eq!(
            step.event,
            Some(RegEvent::Failed {
                registrar: 0,
                failure: Failure::Timeout,
                was_registered: true,
                next: 1,
                retry_in: S(10)
            })
        );
        assert_eq!(step.wake_at, Some(t0 + S(42)));
        assert_eq!(r.on_timer(t0 + S(42)).send, Some((1, 60)));
        let step = r.on_response(&p, 200, None, None, t0 + S(43), 0.0);
        assert_eq!(
            step.event,
            Some(RegEvent::Registered {
                registrar: 1,
                granted: S(60),
                previous: Some(0)
            }),
            "no expiry in the 200: the asked one is granted"
        );
        // It stays on the second registrar (no return to the preferred one while it works)…
        assert_eq!(r.on_timer(t0 + S(73)).send, Some((1, 60)));
        // …and goes back to the first when the second fails (the list wraps).
        let step = r.on_response(&p, 503, None, None, t0 + S(74), 0.0);
        assert!(matches!(
            step.event,
            Some(RegEvent::Failed {
                registrar: 1,
                failure: Failure::Status(503),
                next: 0,
                ..
            })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn interval_too_brief_retries_at_once_with_min_expires() {
        let p = policy();
        let mut r = Registration::new(&p);
        r.start();
        let now = Instant::now();
        assert_eq!(
            r.on_response(&p, 423, None, Some(120), now, 0.0).send,
            Some((0, 120))
        );
        // A registrar that keeps asking for less than we already ask is a failure, not a loop.
        let step = r.on_response(&p, 423, None, Some(90), now, 0.0);
        assert!(matches!(
            step.event,
            Some(RegEvent::Failed {
                failure: Failure::Status(423),
                ..
            })
        ));
        assert_eq!(r.on_timer(now + S(10)).send, Some((1, 120)));
    }

    #[tokio::test(start_paused = true)]
    async fn rfc5626_backoff_grows_with_consecutive_failures_and_resets_on_success() {
        let p = RegistrationPolicy {
            backoff: Backoff::Rfc5626 {
                base: S(1),
                max: S(100),
            },
            ..policy()
        };
        let mut r = Registration::new(&p);
        r.start();
        let mut now = Instant::now();
        let mut waits = Vec::new();
        for _ in 0..3 {
            let step = r.on_failure(&p, Failure::Transport, now, 1.0);
            now = step.wake_at.unwrap();
            waits.push(match step.event {
                Some(RegEvent::Failed { retry_in, .. }) => retry_in,
                other => panic!("{other:?}"),
            });
            r.on_timer(now);
        }
        assert_eq!(waits, vec![S(2), S(4), S(8)]);
        r.on_response(&p, 200, Some(60), None, now, 1.0);
        r.on_timer(now + S(30));
        let step = r.on_failure(&p, Failure::Transport, now + S(31), 1.0);
        assert!(matches!(
            step.event,
            Some(RegEvent::Failed { retry_in, .. }) if retry_in == S(2)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn late_responses_and_stale_timers_change_nothing() {
        let p = policy();
        let mut r = Registration::new(&p);
        let now = Instant::now();
        assert_eq!(
            r.on_response(&p, 200, None, None, now, 0.0),
            Step::default()
        );
        assert_eq!(r.on_timer(now), Step::default());
        r.start();
        r.on_failure(&p, Failure::Timeout, now, 0.0);
        assert_eq!(
            r.on_response(&p, 200, None, None, now, 0.0),
            Step::default(),
            "the response to a REGISTER already given up on"
        );
        r.stop();
        assert_eq!(r.on_timer(now + S(60)), Step::default());
        assert_eq!(r.state(), RegState::Idle);
    }
}
