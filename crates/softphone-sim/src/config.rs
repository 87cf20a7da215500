//! What a set of simulated user agents is: which DNs register where, how they answer, and every
//! timer. One configuration covers the three roles — agent phones, the PSTN gateway, a PSTN
//! caller — since they are the same UA with different jobs.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backoff::Backoff;
use crate::call::AnswerMode;
use crate::media::MediaTimers;
use crate::registration::Failover;

/// SIP transport towards registrars and callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
}

/// Everything one simulator instance (one shared SIP socket) needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneConfig {
    /// Name in the journal, metrics and control plane.
    pub name: String,
    /// DNs whose phones register (empty for a gateway or a caller).
    pub dns: Vec<String>,
    /// Ordered registrar list, preferred first (like an SRV record with DC1 first).
    pub registrars: Vec<SocketAddr>,
    pub transport: Transport,
    /// Local SIP address (port 0: any free port); its IP goes in Contact and SDP.
    pub bind: SocketAddr,
    /// Expiry asked for in REGISTER, seconds (Genesys Softphone: 1800).
    pub expires: u32,
    /// Refresh when this share of the granted expiry has passed.
    pub refresh_ratio: f64,
    /// Wait before retrying after a failed REGISTER (the retry goes to the next registrar).
    pub backoff: Backoff,
    /// Try the next registrar at once (backoff only when the whole list failed), or after the
    /// backoff each time.
    #[serde(default)]
    pub failover: Failover,
    /// First REGISTERs per second when a swarm starts (0: all at once, a registration storm).
    pub start_rate: u32,
    pub answer: AnswerMode,
    /// Answer calls for any number, registered or not: the PSTN gateway.
    pub answer_any: bool,
    pub media: MediaTimers,
    /// RFC 3261 T1/T2/T4: retransmissions and the 64·T1 transaction timeout that detects a
    /// silent registrar.
    pub sip_timers: sipcore::TimerConfig,
    /// Fault link of the SIP socket; default `sip:<dn>` for one phone, `sip:<name>` otherwise.
    pub link: Option<String>,
    /// Calls in progress at most (further INVITEs get 486).
    pub max_calls: usize,
    /// Journal entries kept.
    pub journal_capacity: usize,
    /// While many requests are in flight, pause the simulator's thread between UDP reads so
    /// that each read takes a batch of responses: waiting in the reactor instead wakes it once
    /// per datagram, a context switch each, the largest cost of a storm. The pause (≤ 4 ms)
    /// blocks the thread, so this is for a simulator that has its runtime to itself, like the
    /// CLI's; off by default.
    #[serde(default)]
    pub pace_reads: bool,
}

impl PhoneConfig {
    /// Phones for `dns` registering to `registrars` (preferred first), Genesys defaults:
    /// Expires 1800, refresh at half of it, RFC 5626 backoff, auto answer.
    pub fn phones<D: Into<String>>(
        dns: impl IntoIterator<Item = D>,
        registrars: impl IntoIterator<Item = SocketAddr>,
    ) -> Self {
        let dns: Vec<String> = dns.into_iter().map(Into::into).collect();
        let name = match (dns.first(), dns.last()) {
            (Some(a), Some(b)) if a != b => format!("phones-{a}-{b}"),
            (Some(a), _) => format!("phone-{a}"),
            _ => "phones".into(),
        };
        PhoneConfig {
            name,
            dns,
            registrars: registrars.into_iter().collect(),
            transport: Transport::Udp,
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            expires: 1800,
            refresh_ratio: 0.5,
            backoff: Backoff::default(),
            failover: Failover::default(),
            start_rate: 0,
            answer: AnswerMode::Auto,
            answer_any: false,
            media: MediaTimers::default(),
            sip_timers: sipcore::TimerConfig::default(),
            link: None,
            max_calls: 10_000,
            journal_capacity: nodekit::journal::DEFAULT_CAPACITY,
            pace_reads: false,
        }
    }

    /// The PSTN gateway on `bind`: answers calls for any number, registers nothing.
    pub fn gateway(bind: SocketAddr) -> Self {
        PhoneConfig {
            name: "pstn-gateway".into(),
            answer_any: true,
            bind,
            ..PhoneConfig::phones(Vec::<String>::new(), [])
        }
    }

    /// A PSTN caller on `ip` (calls are placed with [`crate::Swarm::place_call`]).
    pub fn caller(ip: IpAddr) -> Self {
        PhoneConfig {
            name: "caller".into(),
            bind: SocketAddr::new(ip, 0),
            ..PhoneConfig::phones(Vec::<String>::new(), [])
        }
    }

    /// The fast test profile (docs/scenarios.md §0): Expires 3 s, T1 20 ms (a silent registrar is
    /// noticed after 64·T1 = 1.28 s), backoff 50–100 % of 100 ms·2ⁿ capped at 1 s, media
    /// heartbeat every 20 ms, silence after 600 ms.
    pub fn with_fast_timers(mut self) -> Self {
        self.expires = 3;
        self.sip_timers.t1 = Duration::from_millis(20);
        self.sip_timers.t2 = Duration::from_millis(160);
        self.backoff = Backoff::Rfc5626 {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        self.media = MediaTimers {
            interval: Duration::from_millis(20),
            timeout: Duration::from_millis(600),
        };
        self
    }

    /// The fault link of the shared SIP socket.
    pub fn sip_link(&self) -> String {
        match (&self.link, self.dns.as_slice()) {
            (Some(link), _) => link.clone(),
            (None, [dn]) => format!("sip:{dn}"),
            (None, _) => format!("sip:{}", self.name),
        }
    }

    /// Checks what the types cannot; errors name the field.
    pub fn validate(&self) -> Result<(), String> {
        if !self.dns.is_empty() && self.registrars.is_empty() {
            return Err("`registrars`: phones need at least one registrar".into());
        }
        if self.bind.ip().is_unspecified() {
            return Err("`bind`: needs a concrete IP (it goes in Contact and SDP)".into());
        }
        if self.expires == 0 {
            return Err("`expires`: must be at least 1 s".into());
        }
        if !(0.1..=0.95).contains(&self.refresh_ratio) {
            return Err("`refresh_ratio`: must be within 0.1..=0.95".into());
        }
        if self.media.interval.is_zero() || self.media.timeout <= self.media.interval {
            return Err("`media.timeout`: must be longer than a non-zero `media.interval`".into());
        }
        if self.sip_timers.t1.is_zero() {
            return Err("`sip_timers.t1`: must not be zero".into());
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dn) = self.dns.iter().find(|dn| !seen.insert(dn.as_str())) {
            return Err(format!("`dns`: {dn} appears twice"));
        }
        Ok(())
    }
}

/// Expands `7001` or `7001-7100` into DNs (same digit count at both ends, at most 1,000,000).
pub fn dn_range(text: &str) -> Result<Vec<String>, String> {
    let (lo, hi) = text.split_once('-').unwrap_or((text, text));
    let (lo, hi) = (lo.trim(), hi.trim());
    let bad = || format!("`{text}` is not a DN or a range like 7001-7100");
    if lo.len() != hi.len() || lo.is_empty() || lo.len() > 18 {
        return Err(bad());
    }
    let (a, b) = (
        lo.parse::<u64>().map_err(|_| bad())?,
        hi.parse::<u64>().map_err(|_| bad())?,
    );
    if b < a || b - a >= 1_000_000 {
        return Err(format!(
            "`{text}`: the range must ascend and hold at most 1,000,000 DNs"
        ));
    }
    let width = lo.len();
    Ok((a..=b).map(|n| format!("{n:0width$}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_expand_keeping_leading_zeros() {
        assert_eq!(dn_range("7001").unwrap(), vec!["7001"]);
        assert_eq!(dn_range("0998-1000").unwrap(), vec!["0998", "0999", "1000"]);
        assert_eq!(dn_range("7001-7100").unwrap().len(), 100);
        assert!(dn_range("7100-7001").is_err());
        assert!(dn_range("700-7001").is_err());
        assert!(dn_range("70a1").is_err());
    }

    #[test]
    fn defaults_validate_and_links_follow_the_number_of_phones() {
        let ss1: SocketAddr = "127.0.1.1:5060".parse().unwrap();
        let one = PhoneConfig::phones(["7001"], [ss1]);
        assert_eq!(one.validate(), Ok(()));
        assert_eq!(one.sip_link(), "sip:7001");
        let many = PhoneConfig::phones(["7001", "7002"], [ss1]);
        assert_eq!(many.sip_link(), "sip:phones-7001-7002");
        assert!(PhoneConfig::phones(["7001"], []).validate().is_err());
        assert!(PhoneConfig::phones(["7001", "7001"], [ss1])
            .validate()
            .is_err());
        assert_eq!(PhoneConfig::gateway(ss1).validate(), Ok(()));
        assert_eq!(PhoneConfig::gateway(ss1).sip_link(), "sip:pstn-gateway");
        assert_eq!(one.with_fast_timers().validate(), Ok(()));
    }
}
