//! One fault rule, as posted to `/faults`, and its validation.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a rule does to the traffic of the links it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultMode {
    Drop,
    Reject,
    Delay,
    Loss,
}

/// A fault rule: `{"link": "tc:*dc2*", "mode": "drop"}`, `{"link": "media:7001", "mode": "loss",
/// "rate": 0.1}`, `{"link": "sip:7002", "peer": "127.0.1.0/24", "mode": "drop"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// Link-name pattern; `*` matches any run of characters.
    pub link: String,
    /// Optional remote-address filter (`127.0.1.0/24`, `127.0.1.1`, `127.0.1.1:5060`), so that one
    /// phone can lose DC1 and keep DC2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<PeerFilter>,
    pub mode: FaultMode,
    /// Delay in milliseconds (`delay` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ms: Option<u64>,
    /// Share of traffic lost, 0.0–1.0 (`loss` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
}

/// Why a rule was refused; names the bad field.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RuleError {
    #[error("field `link`: must not be empty")]
    EmptyLink,
    #[error("field `ms`: required for mode `delay` (1..=600000)")]
    MissingDelay,
    #[error("field `ms`: {0} is out of range 1..=600000")]
    DelayRange(u64),
    #[error("field `rate`: required for mode `loss` (0.0..=1.0)")]
    MissingRate,
    #[error("field `rate`: {0} is out of range 0.0..=1.0")]
    RateRange(f64),
    #[error("field `{0}`: not used by mode `{1}`")]
    Unused(&'static str, &'static str),
    #[error("field `peer`: {0}")]
    Peer(String),
}

impl FaultRule {
    /// A rule for `link` with `mode` and no parameters (`drop`, `reject`).
    pub fn new(link: impl Into<String>, mode: FaultMode) -> Self {
        FaultRule {
            link: link.into(),
            peer: None,
            mode,
            ms: None,
            rate: None,
        }
    }

    pub fn delay(link: impl Into<String>, ms: u64) -> Self {
        FaultRule {
            ms: Some(ms),
            ..Self::new(link, FaultMode::Delay)
        }
    }

    pub fn loss(link: impl Into<String>, rate: f64) -> Self {
        FaultRule {
            rate: Some(rate),
            ..Self::new(link, FaultMode::Loss)
        }
    }

    pub fn with_peer(mut self, peer: PeerFilter) -> Self {
        self.peer = Some(peer);
        self
    }

    /// Checks that the rule's fields fit its mode.
    pub fn validate(&self) -> Result<(), RuleError> {
        if self.link.trim().is_empty() {
            return Err(RuleError::EmptyLink);
        }
        let mode_name = match self.mode {
            FaultMode::Drop => "drop",
            FaultMode::Reject => "reject",
            FaultMode::Delay => "delay",
            FaultMode::Loss => "loss",
        };
        match self.mode {
            FaultMode::Delay => match self.ms {
                None => return Err(RuleError::MissingDelay),
                Some(ms) if ms == 0 || ms > 600_000 => return Err(RuleError::DelayRange(ms)),
                Some(_) => {}
            },
            _ if self.ms.is_some() => return Err(RuleError::Unused("ms", mode_name)),
            _ => {}
        }
        match self.mode {
            FaultMode::Loss => match self.rate {
                None => return Err(RuleError::MissingRate),
                Some(r) if !(0.0..=1.0).contains(&r) || r.is_nan() => {
                    return Err(RuleError::RateRange(r))
                }
                Some(_) => {}
            },
            _ if self.rate.is_some() => return Err(RuleError::Unused("rate", mode_name)),
            _ => {}
        }
        Ok(())
    }
}

/// A remote-address filter: an address prefix, optionally with a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerFilter {
    pub addr: IpAddr,
    pub prefix: u8,
    pub port: Option<u16>,
}

impl PeerFilter {
    pub fn matches(&self, peer: SocketAddr) -> bool {
        if self.port.is_some_and(|p| p != peer.port()) {
            return false;
        }
        match (self.addr, peer.ip()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for PeerFilter {
    type Err = RuleError;

    fn from_str(s: &str) -> Result<Self, RuleError> {
        if let Ok(sa) = s.parse::<SocketAddr>() {
            let prefix = if sa.is_ipv4() { 32 } else { 128 };
            return Ok(PeerFilter {
                addr: sa.ip(),
                prefix,
                port: Some(sa.port()),
            });
        }
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = ip
            .parse()
            .map_err(|_| RuleError::Peer(format!("`{s}` is not an address or CIDR")))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => {
                    return Err(RuleError::Peer(format!(
                        "prefix length in `{s}` must be 0..={max}"
                    )))
                }
            },
        };
        Ok(PeerFilter {
            addr,
            prefix,
            port: None,
        })
    }
}

impl std::fmt::Display for PeerFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}", SocketAddr::new(self.addr, port)),
            None if self.prefix == if self.addr.is_ipv4() { 32 } else { 128 } => {
                write!(f, "{}", self.addr)
            }
            None => write!(f, "{}/{}", self.addr, self.prefix),
        }
    }
}

impl Serialize for PeerFilter {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PeerFilter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_filters() {
        let net: PeerFilter = "127.0.1.0/24".parse().unwrap();
        assert!(net.matches("127.0.1.7:5060".parse().unwrap()));
        assert!(!net.matches("127.0.2.7:5060".parse().unwrap()));
        let one: PeerFilter = "127.0.1.1:5060".parse().unwrap();
        assert!(one.matches("127.0.1.1:5060".parse().unwrap()));
        assert!(!one.matches("127.0.1.1:5061".parse().unwrap()));
        let all: PeerFilter = "0.0.0.0/0".parse().unwrap();
        assert!(all.matches("10.1.2.3:1".parse().unwrap()));
        assert!("127.0.1.0/33".parse::<PeerFilter>().is_err());
        assert!("nonsense".parse::<PeerFilter>().is_err());
        assert_eq!(net.to_string(), "127.0.1.0/24");
    }

    #[test]
    fn validation_names_the_field() {
        let json = r#"{"link":"tc:*","mode":"delay"}"#;
        let rule: FaultRule = serde_json::from_str(json).unwrap();
        assert_eq!(rule.validate(), Err(RuleError::MissingDelay));
        assert!(rule.validate().unwrap_err().to_string().contains("`ms`"));
        let rule = FaultRule::loss("x", 1.5);
        assert_eq!(rule.validate(), Err(RuleError::RateRange(1.5)));
        let rule = FaultRule {
            ms: Some(5),
            ..FaultRule::new("x", FaultMode::Drop)
        };
        assert_eq!(rule.validate(), Err(RuleError::Unused("ms", "drop")));
        assert!(serde_json::from_str::<FaultRule>(r#"{"link":"x","mode":"explode"}"#).is_err());
        assert!(FaultRule::delay("x", 20).validate().is_ok());
    }
}
