//! How long a phone waits before it retries a failed registration.
//!
//! Two policies: RFC 5626 §4.5 flow recovery — wait a uniformly random 50–100 % of
//! `W = min(max, base · 2^failures)`, so phones cut at the same moment spread out instead of
//! re-forming the herd at every step — and a fixed interval, what Genesys Softphone does with
//! `reg_interval` (10 s by default). The random part is an argument so the policy stays pure.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "lowercase")]
pub enum Backoff {
    /// RFC 5626 §4.5: 50–100 % of `min(max, base · 2^failures)`.
    Rfc5626 {
        #[serde(with = "nodekit::duration")]
        base: Duration,
        #[serde(with = "nodekit::duration")]
        max: Duration,
    },
    /// The same wait after every failure.
    Fixed {
        #[serde(with = "nodekit::duration")]
        every: Duration,
    },
}

/// RFC 5626's base-time when every flow has failed.
const RFC5626_BASE: Duration = Duration::from_secs(30);
/// RFC 5626's max-time.
const RFC5626_MAX: Duration = Duration::from_secs(1800);

impl Default for Backoff {
    fn default() -> Self {
        Backoff::Rfc5626 {
            base: RFC5626_BASE,
            max: RFC5626_MAX,
        }
    }
}

impl Backoff {
    /// The wait after `failures` consecutive failures (≥ 1). `unit` is a random number in
    /// `[0, 1]` (clamped), drawn by the caller.
    pub fn delay(&self, failures: u32, unit: f64) -> Duration {
        match *self {
            Backoff::Fixed { every } => every,
            Backoff::Rfc5626 { base, max } => {
                // 2^failures overflows quickly; past 2^20 the cap has long been reached.
                let ceiling = base.saturating_mul(1 << failures.min(20)).min(max);
                ceiling.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
            }
        }
    }
}

impl fmt::Display for Backoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Backoff::Fixed { every } => write!(f, "fixed={}", every.as_millis()),
            Backoff::Rfc5626 { base, max } => write!(
                f,
                "rfc5626:base={},max={}",
                base.as_millis(),
                max.as_millis()
            ),
        }
    }
}

/// `rfc5626` (defaults), `rfc5626:base=MS,max=MS`, or `fixed=MS` (milliseconds).
impl FromStr for Backoff {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ms = |v: &str| {
            v.trim()
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| format!("backoff `{s}`: `{v}` is not a number of milliseconds"))
        };
        let s = s.trim();
        if let Some(v) = s.strip_prefix("fixed=") {
            return Ok(Backoff::Fixed { every: ms(v)? });
        }
        let Some(rest) = s.strip_prefix("rfc5626") else {
            return Err(format!(
                "backoff `{s}`: use rfc5626, rfc5626:base=MS,max=MS or fixed=MS"
            ));
        };
        let (mut base, mut max) = (RFC5626_BASE, RFC5626_MAX);
        for part in rest
            .trim_start_matches(':')
            .split(',')
            .filter(|p| !p.is_empty())
        {
            match part.split_once('=') {
                Some(("base", v)) => base = ms(v)?,
                Some(("max", v)) => max = ms(v)?,
                _ => return Err(format!("backoff `{s}`: unknown part `{part}`")),
            }
        }
        if base.is_zero() || max < base {
            return Err(format!("backoff `{s}`: needs 0 < base <= max"));
        }
        Ok(Backoff::Rfc5626 { base, max })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn rfc5626_doubles_up_to_the_cap_and_waits_half_to_all_of_it() {
        let b = Backoff::default();
        assert_eq!(b.delay(1, 0.0), S(30)); // W = 60 s, 50 %
        assert_eq!(b.delay(1, 1.0), S(60));
        assert_eq!(b.delay(2, 1.0), S(120));
        assert_eq!(b.delay(6, 1.0), S(1800), "capped at max");
        assert_eq!(b.delay(u32::MAX, 0.0), S(900), "no overflow");
        assert_eq!(b.delay(1, 7.0), S(60), "unit clamped");
    }

    #[test]
    fn fixed_ignores_failures() {
        let b = Backoff::Fixed { every: S(10) };
        assert_eq!(b.delay(1, 0.3), S(10));
        assert_eq!(b.delay(9, 0.9), S(10));
    }

    #[test]
    fn parses_cli_forms() {
        assert_eq!("rfc5626".parse::<Backoff>(), Ok(Backoff::default()));
        assert_eq!(
            "rfc5626:base=100,max=2000".parse::<Backoff>(),
            Ok(Backoff::Rfc5626 {
                base: Duration::from_millis(100),
                max: Duration::from_millis(2000)
            })
        );
        assert_eq!(
            "fixed=1500".parse::<Backoff>(),
            Ok(Backoff::Fixed {
                every: Duration::from_millis(1500)
            })
        );
        assert!("fixed=soon".parse::<Backoff>().is_err());
        assert!("rfc5626:base=0".parse::<Backoff>().is_err());
        assert!("linear".parse::<Backoff>().is_err());
        let b: Backoff = "rfc5626:base=50,max=400".parse().unwrap();
        assert_eq!(b.to_string().parse::<Backoff>(), Ok(b));
    }
}
