//! The registrar of softphone DNs (docs/protocols.md §4.1): plain data and pure transitions over
//! an explicit clock, so that expiry is unit-tested with tokio's paused time.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::config::RegistrarConfig;

/// How a phone reached us; later requests to it (INVITE) go the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SipTransport {
    Udp,
    Tcp,
}

/// One DN's binding: where its phone is and until when.
#[derive(Clone, Debug)]
pub struct Binding {
    pub contact: Box<str>,
    pub source: SocketAddr,
    pub transport: SipTransport,
    pub expires_at: Instant,
}

/// What a REGISTER asks of the registrar for one DN.
#[derive(Clone, Debug)]
pub enum RegisterAsk {
    /// Bind (or refresh) `contact` for `expires` (None: the configured default).
    Bind {
        contact: String,
        expires: Option<Duration>,
        source: SocketAddr,
        transport: SipTransport,
    },
    /// `Expires: 0` on the contact, or `Contact: *` with `Expires: 0`.
    Remove,
    /// No Contact: report the current binding.
    Query,
}

/// What the registrar did.
#[derive(Clone, Debug, PartialEq)]
pub enum RegisterOutcome {
    /// Bound for `granted`; `was_unbound` means the DN just came into service.
    Bound {
        granted: Duration,
        was_unbound: bool,
    },
    /// The binding was removed; `was_bound` means the DN just went out of service.
    Removed { was_bound: bool },
    /// A query: the current binding's contact and remaining time.
    Current(Option<(Box<str>, Duration)>),
}

/// Why a REGISTER is refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RegisterRefusal {
    /// 423 with `Min-Expires`.
    #[error("interval too brief, minimum {}s", .min.as_secs())]
    IntervalTooBrief { min: Duration },
}

/// Bindings by DN plus a time-ordered index for expiry.
#[derive(Debug)]
pub struct Registrar {
    config: RegistrarConfig,
    bindings: HashMap<Box<str>, Binding>,
    by_expiry: BTreeSet<(Instant, Box<str>)>,
}

impl Registrar {
    pub fn new(config: RegistrarConfig) -> Self {
        Registrar {
            config,
            bindings: HashMap::new(),
            by_expiry: BTreeSet::new(),
        }
    }

    pub fn register(
        &mut self,
        dn: &str,
        ask: RegisterAsk,
        now: Instant,
    ) -> Result<RegisterOutcome, RegisterRefusal> {
        match ask {
            RegisterAsk::Query => Ok(RegisterOutcome::Current(self.bindings.get(dn).map(|b| {
                (
                    b.contact.clone(),
                    b.expires_at.saturating_duration_since(now),
                )
            }))),
            RegisterAsk::Remove => Ok(RegisterOutcome::Removed {
                was_bound: self.remove(dn),
            }),
            RegisterAsk::Bind {
                contact,
                expires,
                source,
                transport,
            } => {
                let asked = expires.unwrap_or(self.config.default_expires);
                if asked.is_zero() {
                    return Ok(RegisterOutcome::Removed {
                        was_bound: self.remove(dn),
                    });
                }
                if asked < self.config.min_expires {
                    return Err(RegisterRefusal::IntervalTooBrief {
                        min: self.config.min_expires,
                    });
                }
                let granted = asked.min(self.config.max_expires);
                let expires_at = now + granted;
                let binding = Binding {
                    contact: contact.into_boxed_str(),
                    source,
                    transport,
                    expires_at,
                };
                let previous = self.bindings.insert(dn.into(), binding);
                if let Some(old) = &previous {
                    self.by_expiry.remove(&(old.expires_at, Box::from(dn)));
                }
                self.by_expiry.insert((expires_at, dn.into()));
                Ok(RegisterOutcome::Bound {
                    granted,
                    was_unbound: previous.is_none(),
                })
            }
        }
    }

    /// Removes every binding whose time has come; returns their DNs (now out of service).
    pub fn expire(&mut self, now: Instant) -> Vec<Box<str>> {
        let mut expired = Vec::new();
        while let Some(first) = self.by_expiry.first() {
            if first.0 > now {
                break;
            }
            if let Some((_, dn)) = self.by_expiry.pop_first() {
                self.bindings.remove(&dn);
                expired.push(dn);
            }
        }
        expired
    }

    /// When the next binding expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.by_expiry.first().map(|(at, _)| *at)
    }

    pub fn binding(&self, dn: &str) -> Option<&Binding> {
        self.bindings.get(dn)
    }

    pub fn len(&self) -> usize {
        self.bindings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Binding)> {
        self.bindings.iter().map(|(dn, b)| (&**dn, b))
    }

    /// Drops every binding (a restart).
    pub fn clear(&mut self) {
        self.bindings.clear();
        self.by_expiry.clear();
    }

    fn remove(&mut self, dn: &str) -> bool {
        match self.bindings.remove(dn) {
            Some(old) => {
                self.by_expiry.remove(&(old.expires_at, Box::from(dn)));
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(expires: Option<u64>) -> RegisterAsk {
        RegisterAsk::Bind {
            contact: "<sip:7001@127.0.0.1:5062>".into(),
            expires: expires.map(Duration::from_secs),
            source: "127.0.0.1:5062".parse().unwrap(),
            transport: SipTransport::Udp,
        }
    }

    fn registrar() -> Registrar {
        Registrar::new(RegistrarConfig {
            default_expires: Duration::from_secs(1800),
            min_expires: Duration::from_secs(2),
            max_expires: Duration::from_secs(3600),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn bind_refresh_expire() {
        let mut r = registrar();
        let t0 = Instant::now();
        assert_eq!(
            r.register("7001", bind(Some(3)), t0),
            Ok(RegisterOutcome::Bound {
                granted: Duration::from_secs(3),
                was_unbound: true
            })
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        // A refresh before expiry keeps the DN as it was (R12).
        let refreshed = r.register("7001", bind(Some(3)), Instant::now()).unwrap();
        assert_eq!(
            refreshed,
            RegisterOutcome::Bound {
                granted: Duration::from_secs(3),
                was_unbound: false
            }
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(r.expire(Instant::now()).is_empty());
        assert_eq!(r.next_expiry(), Some(t0 + Duration::from_secs(5)));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(r.expire(Instant::now()), vec![Box::from("7001")]);
        assert!(r.is_empty());
        assert_eq!(r.next_expiry(), None);
    }

    #[test]
    fn expiry_policy() {
        let mut r = registrar();
        let now = Instant::now();
        assert_eq!(
            r.register("7001", bind(Some(1)), now),
            Err(RegisterRefusal::IntervalTooBrief {
                min: Duration::from_secs(2)
            })
        );
        assert!(r.is_empty(), "a refused REGISTER binds nothing");
        let max = r.register("7001", bind(Some(99_999)), now).unwrap();
        assert_eq!(
            max,
            RegisterOutcome::Bound {
                granted: Duration::from_secs(3600),
                was_unbound: true
            }
        );
        let default = r.register("7002", bind(None), now).unwrap();
        assert_eq!(
            default,
            RegisterOutcome::Bound {
                granted: Duration::from_secs(1800),
                was_unbound: true
            }
        );
        assert_eq!(
            r.register("7001", bind(Some(0)), now),
            Ok(RegisterOutcome::Removed { was_bound: true })
        );
        assert_eq!(
            r.register("7001", RegisterAsk::Remove, now),
            Ok(RegisterOutcome::Removed { was_bound: false })
        );
        assert!(matches!(
            r.register("7002", RegisterAsk::Query, now),
            Ok(RegisterOutcome::Current(Some(_)))
        ));
        assert_eq!(r.len(), 1);
        assert_eq!(r.by_expiry.len(), 1);
    }
}
