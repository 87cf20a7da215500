//! How long a desktop waits before its next reconnect attempt.
//!
//! Two policies. The CometD JavaScript client's, which WWE uses: the wait grows by
//! `backoffIncrement` (1 s) per failure up to `maxBackoff` (60 s), with no jitter — so every
//! desktop cut at the same moment retries in lockstep, the storm a DR test must reproduce. And a
//! jittered exponential one (50–100 % of `min(max, base · 2^(failures−1))`), what a client
//! should do to spread the herd. The random part is an argument so the policy stays pure.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A reconnect policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "lowercase")]
pub enum Backoff {
    /// CometD JS: `min(max, failures · increment)`, no jitter.
    Cometd {
        #[serde(with = "nodekit::duration")]
        increment: Duration,
        #[serde(with = "nodekit::duration")]
        max: Duration,
    },
    /// 50–100 % of `min(max, base · 2^(failures−1))`.
    Jittered {
        #[serde(with = "nodekit::duration")]
        base: Duration,
        #[serde(with = "nodekit::duration")]
        max: Duration,
    },
}

/// CometD JS `backoffIncrement`.
const COMETD_INCREMENT: Duration = Duration::from_secs(1);
/// CometD JS `maxBackoff`.
const COMETD_MAX: Duration = Duration::from_secs(60);

impl Default for Backoff {
    fn default() -> Self {
        Backoff::Cometd {
            increment: COMETD_INCREMENT,
            max: COMETD_MAX,
        }
    }
}

impl Backoff {
    /// The jittered policy with the CometD JS client's step and cap, for comparison runs.
    pub fn jittered() -> Self {
        Backoff::Jittered {
            base: COMETD_INCREMENT,
            max: COMETD_MAX,
        }
    }

    /// The same policy with every duration scaled so that its first step is `step` (the fast
    /// test profile uses 100 ms steps).
    pub fn with_step(self, step: Duration) -> Self {
        match self {
            Backoff::Cometd { increment, max } => Backoff::Cometd {
                increment: step,
                max: scale(max, step, increment),
            },
            Backoff::Jittered { base, max } => Backoff::Jittered {
                base: step,
                max: scale(max, step, base),
            },
        }
    }

    /// The wait after `failures` consecutive failures (≥ 1). `unit` is a random number in
    /// `[0, 1]` (clamped), drawn by the caller; the CometD policy ignores it.
    pub fn delay(&self, failures: u32, unit: f64) -> Duration {
        let n = failures.max(1);
        match *self {
            Backoff::Cometd { increment, max } => increment.saturating_mul(n).min(max),
            Backoff::Jittered { base, max } => {
                // 2^n overflows quickly; past 2^20 the cap has long been reached.
                let ceiling = base.saturating_mul(1 << (n - 1).min(20)).min(max);
                ceiling.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
            }
        }
    }
}

/// `value · new / old`, for rescaling a cap along with its step.
fn scale(value: Duration, new: Duration, old: Duration) -> Duration {
    if old.is_zero() {
        return value;
    }
    value.mul_f64(new.as_secs_f64() / old.as_secs_f64())
}

impl fmt::Display for Backoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backoff::Cometd { .. } => f.write_str("cometd"),
            Backoff::Jittered { .. } => f.write_str("jittered"),
        }
    }
}

/// `cometd` or `jittered` (the CLI's `--backoff`), with the CometD JS client's step and cap.
impl FromStr for Backoff {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cometd" => Ok(Backoff::default()),
            "jittered" => Ok(Backoff::jittered()),
            other => Err(format!(
                "unknown backoff `{other}` (use cometd or jittered)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cometd_steps_linearly_to_a_minute_without_jitter() {
        let b = Backoff::default();
        let waits: Vec<u64> = [1, 2, 3, 59, 60, 61, 1000]
            .iter()
            .map(|&n| b.delay(n, 0.3).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 3, 59, 60, 60, 60]);
        assert_eq!(b.delay(5, 0.0), b.delay(5, 1.0), "no jitter");
    }

    #[test]
    fn jittered_doubles_within_half_to_full_and_is_capped() {
        let b = Backoff::jittered();
        assert_eq!(b.delay(1, 0.0), Duration::from_millis(500));
        assert_eq!(b.delay(1, 1.0), Duration::from_secs(1));
        assert_eq!(b.delay(3, 1.0), Duration::from_secs(4));
        assert_eq!(b.delay(3, 0.0), Duration::from_secs(2));
        assert_eq!(b.delay(40, 1.0), Duration::from_secs(60));
        assert_eq!(b.delay(40, 7.0), Duration::from_secs(60), "unit clamped");
    }

    #[test]
    fn step_rescales_the_cap_and_names_parse() {
        let fast = Backoff::default().with_step(Duration::from_millis(100));
        assert_eq!(
            fast,
            Backoff::Cometd {
                increment: Duration::from_millis(100),
                max: Duration::from_secs(6)
            }
        );
        assert_eq!("cometd".parse::<Backoff>(), Ok(Backoff::default()));
        assert_eq!("jittered".parse::<Backoff>(), Ok(Backoff::jittered()));
        assert!("linear".parse::<Backoff>().is_err());
        assert_eq!(Backoff::jittered().to_string(), "jittered");
    }
}
