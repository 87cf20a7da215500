//! Desktop sessions (Jetty's HTTP sessions in a real GWS): created by Basic auth, named by the
//! `JSESSIONID` cookie, kept in this node's memory only — another node does not know them, which
//! is why a desktop moved by the proxy must log in again (R14, S1.3).

use std::collections::HashMap;

use tokio::time::{Duration, Instant};

use crate::device::Device;
use crate::users::User;

/// One logged-in desktop.
#[derive(Debug)]
pub struct Session {
    /// The `JSESSIONID` value.
    pub id: String,
    pub user: User,
    /// `X-CSRF-TOKEN` when CSRF protection is on.
    pub csrf_token: String,
    pub device: Device,
    /// StartContactCenterSession registered the DN at the SIP node (and it is to be unregistered
    /// when the session ends).
    pub contact_center: bool,
    /// The last request of this desktop (REST or CometD) ended at this time …
    pub last_seen: Instant,
    /// … unless a CometD connect of it is parked right now.
    pub parked: u32,
    /// Its CometD clients, oldest first.
    pub clients: Vec<String>,
}

impl Session {
    /// No request for `timeout` and none in progress.
    pub fn is_idle(&self, now: Instant, timeout: Duration) -> bool {
        self.parked == 0 && now.saturating_duration_since(self.last_seen) >= timeout
    }
}

/// Every session of the node, with an index by DN for T-Event routing.
#[derive(Debug, Default)]
pub struct Sessions {
    by_id: HashMap<String, Session>,
    by_dn: HashMap<String, Vec<String>>,
}

impl Sessions {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Creates a session for `user` with the given (random) ids.
    pub fn create(&mut self, id: String, csrf_token: String, user: User, now: Instant) {
        self.by_dn
            .entry(user.dn.clone())
            .or_default()
            .push(id.clone());
        let device = Device::new(&user.dn);
        self.by_id.insert(
            id.clone(),
            Session {
                id,
                user,
                csrf_token,
                device,
                contact_center: false,
                last_seen: now,
                parked: 0,
                clients: Vec::new(),
            },
        );
    }

    pub fn get(&self, id: &str) -> Option<&Session> {
        self.by_id.get(id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Session> {
        self.by_id.get_mut(id)
    }

    pub fn remove(&mut self, id: &str) -> Option<Session> {
        let s = self.by_id.remove(id)?;
        if let Some(ids) = self.by_dn.get_mut(&s.user.dn) {
            ids.retain(|x| x != id);
            if ids.is_empty() {
                self.by_dn.remove(&s.user.dn);
            }
        }
        Some(s)
    }

    /// The sessions whose device is `dn`.
    pub fn with_dn(&self, dn: &str) -> Vec<String> {
        self.by_dn.get(dn).cloned().unwrap_or_default()
    }

    /// Whether another session than `except` has started a contact-center session on `dn`
    /// (then the DN stays registered when `except` ends).
    pub fn dn_in_contact_center(&self, dn: &str, except: &str) -> bool {
        self.by_dn.get(dn).is_some_and(|ids| {
            ids.iter()
                .filter(|id| *id != except)
                .any(|id| self.by_id.get(id).is_some_and(|s| s.contact_center))
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Session> {
        self.by_id.values()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Session> {
        self.by_id.values_mut()
    }

    /// The sessions idle for `timeout`.
    pub fn idle(&self, now: Instant, timeout: Duration) -> Vec<String> {
        self.by_id
            .values()
            .filter(|s| s.is_idle(now, timeout))
            .map(|s| s.id.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(dn: &str) -> User {
        User {
            name: format!("agent{dn}"),
            dn: dn.into(),
        }
    }

    #[test]
    fn index_by_dn_follows_create_and_remove() {
        let now = Instant::now();
        let mut s = Sessions::default();
        s.create("a".into(), "t".into(), user("7001"), now);
        s.create("b".into(), "t".into(), user("7001"), now);
        assert_eq!(s.with_dn("7001"), ["a", "b"]);
        s.get_mut("b").unwrap().contact_center = true;
        assert!(s.dn_in_contact_center("7001", "a"));
        assert!(!s.dn_in_contact_center("7001", "b"));
        assert!(s.remove("b").is_some());
        assert_eq!(s.with_dn("7001"), ["a"]);
        s.remove("a");
        assert!(s.with_dn("7001").is_empty() && s.is_empty());
    }

    #[test]
    fn idle_means_no_request_and_no_parked_connect() {
        let t0 = Instant::now();
        let mut s = Sessions::default();
        s.create("a".into(), "t".into(), user("7001"), t0);
        s.create("b".into(), "t".into(), user("7002"), t0);
        s.get_mut("b").unwrap().parked = 1;
        let timeout = Duration::from_secs(2);
        assert!(s.idle(t0 + Duration::from_secs(1), timeout).is_empty());
        assert_eq!(s.idle(t0 + timeout, timeout), ["a"]);
    }
}
