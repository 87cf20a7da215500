//! One desktop's configuration: where GWS (or the proxy in front of it) is, who logs in, and
//! the timers and policies of R13. Defaults are WWE's and the CometD JS client's; the fast
//! profile matches the lab's (docs/scenarios.md §0: `giveup_after` 3 s).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backoff::Backoff;
use crate::http::Origin;
use crate::transport::Transport;

/// Everything one desktop needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesktopConfig {
    /// `http://host:port` of the proxy or GWS node (no path).
    pub url: String,
    /// Where the desktop goes, in order, when `url` stays unreachable: what a global load
    /// balancer or DNS name (WWE's FQDN) resolves to once the first DC is gone.
    #[serde(default)]
    pub fallback_urls: Vec<String>,
    /// `agent<DN>`.
    pub user: String,
    pub password: String,
    /// Post `Ready` once logged in (the contact-center session may already log the agent in
    /// Ready, `AutoIn`; WWE posts `NotReady` then `Ready`).
    pub ready: bool,
    /// Auto-relogin policy for storms: when the session is gone (403 / statusCode 20, or CometD
    /// `403::Unknown session`), log in again at once instead of waiting for the agent.
    pub relogin: bool,
    pub backoff: Backoff,
    /// R13: without recovery for this long, "Unable to establish connection…" (60 s).
    #[serde(with = "nodekit::duration")]
    pub giveup_after: Duration,
    /// A REST call or a CometD handshake slower than this has failed.
    #[serde(with = "nodekit::duration")]
    pub request_timeout: Duration,
    /// How CometD is carried.
    #[serde(default)]
    pub transport: Transport,
    /// CometD JS `maxNetworkDelay` (10 s): a held connect gets the server's advised hold time
    /// plus this before it counts as failed.
    #[serde(with = "nodekit::duration")]
    pub max_network_delay: Duration,
}

impl DesktopConfig {
    /// A desktop for `user` (password `password`, the lab's) with the default timers.
    pub fn new(url: impl Into<String>, user: impl Into<String>) -> Self {
        DesktopConfig {
            url: url.into().trim_end_matches('/').to_owned(),
            fallback_urls: Vec::new(),
            user: user.into(),
            password: "password".into(),
            ready: false,
            relogin: false,
            backoff: Backoff::default(),
            giveup_after: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
            transport: Transport::default(),
            max_network_delay: Duration::from_secs(10),
        }
    }

    /// The fast test profile: give up after 3 s, reconnect steps of 100 ms, short timeouts.
    pub fn with_fast_timers(mut self) -> Self {
        self.giveup_after = Duration::from_secs(3);
        self.backoff = self.backoff.with_step(Duration::from_millis(100));
        self.request_timeout = Duration::from_secs(2);
        self.max_network_delay = Duration::from_secs(1);
        self
    }

    /// `url` then `fallback_urls`, parsed; an error names the bad one.
    pub(crate) fn origins(&self) -> Result<Vec<Origin>, String> {
        std::iter::once(&self.url)
            .chain(&self.fallback_urls)
            .map(|u| Origin::parse(u))
            .collect()
    }

    /// The same desktop for another user (swarms).
    pub fn for_user(&self, user: impl Into<String>) -> Self {
        DesktopConfig {
            user: user.into(),
            ..self.clone()
        }
    }
}

/// Expands `agent8000-agent8999` (or `8000-8999`, or one name) into user names: the digits at
/// the end of both ends bound the range, the prefix is kept, at most `limit` names.
pub fn user_range(spec: &str, limit: usize) -> Result<Vec<String>, String> {
    let Some((from, to)) = spec.split_once('-') else {
        return Ok(vec![spec.to_owned()]);
    };
    let split = |s: &str| {
        let digits = s.len() - s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let (prefix, number) = s.split_at(s.len() - digits);
        number
            .parse::<u64>()
            .map(|n| (prefix.to_owned(), n, digits))
            .map_err(|_| format!("`{s}` does not end in a number"))
    };
    let (prefix, first, width) = split(from.trim())?;
    let (prefix_to, last, _) = split(to.trim())?;
    let prefix = if prefix_to.is_empty() || prefix_to == prefix {
        prefix
    } else {
        return Err(format!("`{spec}`: both ends need the same prefix"));
    };
    if last < first {
        return Err(format!("`{spec}`: the range is backwards"));
    }
    let count = last - first + 1;
    if count > limit as u64 {
        return Err(format!("`{spec}`: {count} users, at most {limit}"));
    }
    Ok((first..=last)
        .map(|n| format!("{prefix}{n:0width$}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_profile_shortens_every_timer() {
        let c = DesktopConfig::new("http://127.0.1.10:8080/", "agent8001").with_fast_timers();
        assert_eq!(c.url, "http://127.0.1.10:8080");
        assert_eq!(c.giveup_after, Duration::from_secs(3));
        assert_eq!(c.backoff.delay(1, 0.0), Duration::from_millis(100));
        assert_eq!(c.for_user("agent8002").user, "agent8002");
    }

    #[test]
    fn user_ranges_expand_and_are_bounded() {
        assert_eq!(
            user_range("agent8000-agent8002", 10).unwrap(),
            ["agent8000", "agent8001", "agent8002"]
        );
        assert_eq!(user_range("agent0098-0100", 10).unwrap()[2], "agent0100");
        assert_eq!(user_range("agent7001", 10).unwrap(), ["agent7001"]);
        assert!(user_range("agent8000-agent9999", 100).is_err());
        assert!(user_range("agent9-agent1", 100).is_err());
        assert!(user_range("a1-b2", 100).is_err());
        assert!(user_range("agent-x", 100).is_err());
    }
}
