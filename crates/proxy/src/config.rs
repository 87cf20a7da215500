//! The proxy's configuration file (TOML), read like the matching nginx directives:
//!
//! ```toml
//! name = "proxy-dc1"                  # fault-layer links are `http:{name}-{server name}`
//! worker_processes = 1                # >1: per-worker peer state unless the upstream has `zone`
//! listen = "127.0.1.10:8080"
//! proxy_pass = "gws_dc1"              # the upstream group requests go to
//! proxy_connect_timeout = "5s"        # nginx default 60s
//! proxy_read_timeout = "60s"
//! proxy_next_upstream = ["error", "timeout"]   # also "invalid_header", "non_idempotent", "off"
//! proxy_next_upstream_tries = 0       # 0 = as many as there are servers
//! proxy_next_upstream_timeout = "0s"  # 0 = unlimited
//! non_idempotent = false              # same as listing "non_idempotent" above
//! client_max_body_size = 1048576      # bytes; request bodies are buffered like nginx does
//! client_header_timeout = "60s"       # also how long an idle keep-alive client is kept
//! client_body_timeout = "60s"         # between two reads of a request body
//!
//! [[upstream]]
//! name = "gws_dc1"
//! sticky = "learn"                    # "none" | "hash" | "ip_hash" | "learn" | "cookie"
//! sticky_cookie = "JSESSIONID"        # hash/learn: the session cookie; cookie: the route cookie
//! sticky_timeout = "1h"               # learn: unused sessions are forgotten
//! zone = false                        # share peer state between workers
//! keepalive = 32                      # idle keep-alive connections kept per server
//!
//! [[upstream.server]]
//! name = "gws1"
//! address = "127.0.1.11:8090"
//! max_fails = 1
//! fail_timeout = "10s"
//! weight = 1
//! backup = false
//! ```

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Stickiness of an upstream group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Sticky {
    /// Plain (smooth weighted) round robin.
    #[default]
    None,
    /// `hash $cookie_<sticky_cookie> consistent;`: ketama ring; empty key → round robin.
    Hash,
    /// `ip_hash;`: first three octets of the IPv4 client address.
    IpHash,
    /// NGINX Plus `sticky learn`: bind the session cookie the upstream sets to that upstream.
    Learn,
    /// NGINX Plus `sticky cookie`: the proxy sets its own route cookie.
    Cookie,
}

impl Sticky {
    /// The cookie a mode looks at when `sticky_cookie` is not given.
    pub fn default_cookie(self) -> &'static str {
        match self {
            Sticky::Cookie => "srv_id",
            _ => "JSESSIONID",
        }
    }
}

/// One `server` line of an upstream block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The name used in fault-layer links, logs and `/status`; defaults to the address.
    #[serde(default)]
    pub name: Option<String>,
    /// `host:port` as written in nginx (it also seeds the hash ring, as in nginx).
    pub address: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default = "default_max_fails")]
    pub max_fails: u32,
    #[serde(default = "default_fail_timeout", with = "nodekit::duration")]
    pub fail_timeout: Duration,
    #[serde(default)]
    pub backup: bool,
    /// `down`: never selected.
    #[serde(default)]
    pub down: bool,
}

impl ServerConfig {
    pub fn new(address: impl Into<String>) -> Self {
        ServerConfig {
            name: None,
            address: address.into(),
            weight: 1,
            max_fails: 1,
            fail_timeout: Duration::from_secs(10),
            backup: false,
            down: false,
        }
    }

    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.address)
    }
}

/// One `upstream` block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    pub name: String,
    #[serde(default)]
    pub sticky: Sticky,
    #[serde(default)]
    pub sticky_cookie: Option<String>,
    /// `zone`: peer state shared by all workers; without it each worker keeps its own (and each
    /// hits a dead peer once before it marks it).
    #[serde(default)]
    pub zone: bool,
    /// `sticky learn … timeout=`: unused learned sessions are forgotten after this.
    #[serde(default = "default_sticky_timeout", with = "nodekit::duration")]
    pub sticky_timeout: Duration,
    /// `keepalive N`: idle connections to each server kept for reuse (0: none kept).
    #[serde(default = "default_keepalive")]
    pub keepalive: usize,
    #[serde(rename = "server")]
    pub servers: Vec<ServerConfig>,
}

impl UpstreamConfig {
    pub fn cookie_name(&self) -> &str {
        self.sticky_cookie
            .as_deref()
            .unwrap_or_else(|| self.sticky.default_cookie())
    }

    /// The request cookie that routes a request (the hash key, the learned session or the
    /// route cookie); `None` when the mode does not route by cookie.
    pub fn route_cookie(&self) -> Option<&str> {
        match self.sticky {
            Sticky::None | Sticky::IpHash => None,
            _ => Some(self.cookie_name()),
        }
    }

    /// The response cookie `sticky learn` learns sessions from.
    pub fn learned_cookie(&self) -> Option<&str> {
        (self.sticky == Sticky::Learn).then(|| self.cookie_name())
    }
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_name")]
    pub name: String,
    pub listen: SocketAddr,
    /// Control port (nodekit control plane: `/state`, `/faults`, `/metrics`, …); none when absent.
    #[serde(default)]
    pub control: Option<SocketAddr>,
    /// Bearer token of the control plane (required for a non-loopback control address).
    #[serde(default)]
    pub control_token: Option<String>,
    /// `proxy_bind`: local address of upstream connections.
    #[serde(default)]
    pub proxy_bind: Option<std::net::IpAddr>,
    /// `worker_processes`: with more than one, upstreams without `zone` keep peer state per
    /// worker, as nginx does (client connections are dealt to workers in turn).
    #[serde(default = "default_workers")]
    pub worker_processes: u32,
    /// The upstream group requests go to; may be omitted when there is only one.
    #[serde(default)]
    pub proxy_pass: Option<String>,
    #[serde(default = "default_timeout", with = "nodekit::duration")]
    pub proxy_connect_timeout: Duration,
    #[serde(default = "default_timeout", with = "nodekit::duration")]
    pub proxy_read_timeout: Duration,
    #[serde(default = "default_next_upstream")]
    pub proxy_next_upstream: Vec<NextUpstream>,
    #[serde(default)]
    pub proxy_next_upstream_tries: u32,
    /// `proxy_next_upstream_timeout`: no further peer is tried once this much time has passed
    /// since the first attempt (0 = unlimited).
    #[serde(default, with = "nodekit::duration")]
    pub proxy_next_upstream_timeout: Duration,
    #[serde(default)]
    pub non_idempotent: bool,
    #[serde(default = "default_body_size")]
    pub client_max_body_size: usize,
    /// `client_header_timeout`: a client that has not sent its whole header by then is closed.
    #[serde(default = "default_timeout", with = "nodekit::duration")]
    pub client_header_timeout: Duration,
    /// `client_body_timeout`: a client silent this long while sending its body is closed.
    #[serde(default = "default_timeout", with = "nodekit::duration")]
    pub client_body_timeout: Duration,
    #[serde(rename = "upstream", default)]
    pub upstreams: Vec<UpstreamConfig>,
}

/// Values of `proxy_next_upstream` this proxy understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NextUpstream {
    Error,
    Timeout,
    InvalidHeader,
    NonIdempotent,
    Off,
}

fn default_name() -> String {
    "proxy".into()
}
fn default_workers() -> u32 {
    1
}
fn default_sticky_timeout() -> Duration {
    Duration::from_secs(3600)
}
fn default_keepalive() -> usize {
    32
}
fn default_weight() -> u32 {
    1
}
fn default_max_fails() -> u32 {
    1
}
fn default_fail_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_next_upstream() -> Vec<NextUpstream> {
    vec![NextUpstream::Error, NextUpstream::Timeout]
}
fn default_body_size() -> usize {
    1024 * 1024
}

/// Why a configuration is rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// A configuration with nginx defaults and one round-robin group `backend`.
    pub fn new(listen: SocketAddr, servers: Vec<ServerConfig>) -> Self {
        Config {
            name: default_name(),
            listen,
            control: None,
            control_token: None,
            proxy_bind: None,
            worker_processes: 1,
            proxy_pass: None,
            proxy_connect_timeout: default_timeout(),
            proxy_read_timeout: default_timeout(),
            proxy_next_upstream: default_next_upstream(),
            proxy_next_upstream_tries: 0,
            proxy_next_upstream_timeout: Duration::ZERO,
            non_idempotent: false,
            client_max_body_size: default_body_size(),
            client_header_timeout: default_timeout(),
            client_body_timeout: default_timeout(),
            upstreams: vec![UpstreamConfig {
                name: "backend".into(),
                sticky: Sticky::None,
                sticky_cookie: None,
                sticky_timeout: default_sticky_timeout(),
                keepalive: default_keepalive(),
                zone: false,
                servers,
            }],
        }
    }

    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// The group `proxy_pass` names.
    pub fn pass_group(&self) -> Option<&UpstreamConfig> {
        match &self.proxy_pass {
            Some(name) => self.upstreams.iter().find(|u| &u.name == name),
            None if self.upstreams.len() == 1 => self.upstreams.first(),
            None => None,
        }
    }

    /// Whether a failure of this kind lets the request go to the next upstream.
    pub fn next_upstream(&self, kind: NextUpstream) -> bool {
        !self.proxy_next_upstream.contains(&NextUpstream::Off)
            && (self.proxy_next_upstream.contains(&kind)
                || (kind == NextUpstream::NonIdempotent && self.non_idempotent))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let mut names = HashSet::new();
        for u in &self.upstreams {
            if !names.insert(u.name.as_str()) {
                return bad(format!("duplicate upstream `{}`", u.name));
            }
            if u.sticky == Sticky::Learn && self.worker_processes > 1 && !u.zone {
                return bad(format!(
                    "upstream `{}`: sticky learn with several workers needs `zone = true`",
                    u.name
                ));
            }
            if u.servers.iter().all(|s| s.backup) {
                return bad(format!("upstream `{}` has no primary server", u.name));
            }
            let mut snames = HashSet::new();
            for s in &u.servers {
                if s.weight == 0 {
                    return bad(format!("server `{}`: weight must be >= 1", s.address));
                }
                if !snames.insert(s.display_name()) {
                    return bad(format!(
                        "upstream `{}`: duplicate server `{}`",
                        u.name,
                        s.display_name()
                    ));
                }
            }
        }
        if self.pass_group().is_none() {
            return bad(match &self.proxy_pass {
                Some(n) => format!("proxy_pass names unknown upstream `{n}`"),
                None => "proxy_pass is required unless exactly one upstream is defined".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
name = "proxy-dc1"
listen = "127.0.1.10:8080"
proxy_pass = "gws_dc1"
proxy_connect_timeout = "5s"
proxy_read_timeout = "70s"
proxy_next_upstream_tries = 2
non_idempotent = true

[[upstream]]
name = "gws_dc1"
sticky = "hash"

[[upstream.server]]
name = "gws1"
address = "127.0.1.11:8090"

[[upstream.server]]
name = "gws3"
address = "127.0.2.11:8090"
max_fails = 3
fail_timeout = "30s"
backup = true
"#;

    #[test]
    fn reads_directives_with_nginx_defaults() {
        let c = Config::from_toml(EXAMPLE).unwrap();
        assert_eq!(c.name, "proxy-dc1");
        assert_eq!(c.proxy_connect_timeout, Duration::from_secs(5));
        assert_eq!(c.proxy_read_timeout, Duration::from_secs(70));
        assert_eq!(c.proxy_next_upstream_tries, 2);
        assert!(c.next_upstream(NextUpstream::NonIdempotent));
        assert!(c.next_upstream(NextUpstream::Error));
        assert!(!c.next_upstream(NextUpstream::InvalidHeader));
        let g = c.pass_group().unwrap();
        assert_eq!(g.sticky, Sticky::Hash);
        assert_eq!(g.cookie_name(), "JSESSIONID");
        let s = &g.servers[0];
        assert_eq!(
            (s.max_fails, s.fail_timeout, s.backup, s.weight),
            (1, Duration::from_secs(10), false, 1)
        );
        let b = &g.servers[1];
        assert_eq!(
            (b.max_fails, b.fail_timeout, b.backup),
            (3, Duration::from_secs(30), true)
        );
        assert_eq!(b.display_name(), "gws3");
    }

    #[test]
    fn defaults_and_round_trip() {
        let text = r#"
listen = "127.0.0.1:0"
[[upstream]]
name = "b"
[[upstream.server]]
address = "127.0.0.1:1"
"#;
        let c = Config::from_toml(text).unwrap();
        assert_eq!(c.proxy_connect_timeout, Duration::from_secs(60));
        assert_eq!(c.proxy_read_timeout, Duration::from_secs(60));
        assert_eq!(c.pass_group().unwrap().sticky, Sticky::None);
        assert!(!c.next_upstream(NextUpstream::NonIdempotent));
        let again = Config::from_toml(&c.to_toml()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn rejects_bad_files() {
        assert!(Config::from_toml("listen = \"x\"").is_err());
        let unknown_pass = EXAMPLE.replace("proxy_pass = \"gws_dc1\"", "proxy_pass = \"nope\"");
        assert!(Config::from_toml(&unknown_pass).is_err());
        let bad_mode = EXAMPLE.replace("sticky = \"hash\"", "sticky = \"route\"");
        assert!(Config::from_toml(&bad_mode).is_err());
        let typo = EXAMPLE.replace("max_fails = 3", "max_fail = 3");
        assert!(Config::from_toml(&typo).is_err());
        let learn_workers = EXAMPLE
            .replace("sticky = \"hash\"", "sticky = \"learn\"")
            .replace(
                "name = \"proxy-dc1\"",
                "name = \"proxy-dc1\"\nworker_processes = 2",
            );
        assert!(Config::from_toml(&learn_workers).is_err());
        let with_zone =
            learn_workers.replace("sticky = \"learn\"", "sticky = \"learn\"\nzone = true");
        assert!(Config::from_toml(&with_zone).is_ok());
        let off = EXAMPLE.replace("non_idempotent = true", "proxy_next_upstream = [\"off\"]");
        assert!(!Config::from_toml(&off)
            .unwrap()
            .next_upstream(NextUpstream::Error));
    }
}
