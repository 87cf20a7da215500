//! Desktop sessions (Jetty's HTTP sessions in a real GWS): created by Basic auth, named by the
//! `JSESSIONID` cookie, kept in this node's memory only — another node does not know them, which
//! is why a desktop moved by the proxy must log in again (R14, S1.3).
//!
//! The voice device (its agent state and calls) belongs to the user's DN, not to one session:
//! every session of the user on this node — a second browser, a reloaded page that logged in
//! again — sees and controls the same device, and the device goes when its last session ends.

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

/// A DN's device and the sessions on it, oldest first.
#[derive(Debug)]
struct Desk {
    device: Device,
    sessions: Vec<String>,
}

/// Every session of the node, and the devices of their DNs (for T-Event routing).
#[derive(Debug, Default)]
pub struct Sessions {
    by_id: HashMap<String, Session>,
    by_dn: HashMap<String, Desk>,
}

impl Sessions {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Creates a session for `user` with the given (random) ids. Returns whether its device is
    /// new (no other session of the DN had it), so its state is still to be learnt.
    pub fn create(&mut self, id: String, csrf_token: String, user: User, now: Instant) -> bool {
        let mut new_device = false;
        let desk = self.by_dn.entry(user.dn.clone()).or_insert_with(|| {
            new_device = true;
            Desk {
                device: Device::new(&user.dn),
                sessions: Vec::new(),
            }
        });
        desk.sessions.push(id.clone());
        self.by_id.insert(
            id.clone(),
            Session {
                id,
                user,
                csrf_token,
                last_seen: now,
                parked: 0,
                clients: Vec::new(),
            },
        );
        new_device
    }

    pub fn get(&self, id: &str) -> Option<&Session> {
        self.by_id.get(id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Session> {
        self.by_id.get_mut(id)
    }

    /// A session and its device.
    pub fn with_device(&self, id: &str) -> Option<(&Session, &Device)> {
        let s = self.by_id.get(id)?;
        Some((s, &self.by_dn.get(&s.user.dn)?.device))
    }

    /// The device of a session, to change.
    pub fn device_of_mut(&mut self, id: &str) -> Option<&mut Device> {
        let dn = &self.by_id.get(id)?.user.dn;
        self.by_dn.get_mut(dn).map(|d| &mut d.device)
    }

    pub fn device(&self, dn: &str) -> Option<&Device> {
        self.by_dn.get(dn).map(|d| &d.device)
    }

    pub fn device_mut(&mut self, dn: &str) -> Option<&mut Device> {
        self.by_dn.get_mut(dn).map(|d| &mut d.device)
    }

    pub fn devices_mut(&mut self) -> impl Iterator<Item = &mut Device> {
        self.by_dn.values_mut().map(|d| &mut d.device)
    }

    /// Removes a session; with it goes its DN's device when no other session uses it (returned
    /// then, so the caller can tell the SIP node).
    pub fn remove(&mut self, id: &str) -> Option<(Session, Option<Device>)> {
        let s = self.by_id.remove(id)?;
        let mut gone = None;
        if let Some(desk) = self.by_dn.get_mut(&s.user.dn) {
            desk.sessions.retain(|x| x != id);
            if desk.sessions.is_empty() {
                gone = self.by_dn.remove(&s.user.dn).map(|d| d.device);
            }
        }
        Some((s, gone))
    }

    /// The sessions whose device is `dn`, oldest first.
    pub fn with_dn(&self, dn: &str) -> Vec<String> {
        self.by_dn
            .get(dn)
            .map(|d| d.sessions.clone())
            .unwrap_or_default()
    }

    /// The newest session of `user` (a desktop that authenticates again without its cookie
    /// finds it).
    pub fn newest_of(&self, user: &User) -> Option<&Session> {
        self.with_dn(&user.dn)
            .iter()
            .rev()
            .filter_map(|id| self.by_id.get(id))
            .find(|s| s.user.name == user.name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Session> {
        self.by_id.values()
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
    fn sessions_of_a_dn_share_its_device_until_the_last_goes() {
        let now = Instant::now();
        let mut s = Sessions::default();
        assert!(s.create("a".into(), "t".into(), user("7001"), now));
        assert!(!s.create("b".into(), "t".into(), user("7001"), now));
        assert_eq!(s.with_dn("7001"), ["a", "b"]);
        assert_eq!(s.newest_of(&user("7001")).unwrap().id, "b");
        s.device_of_mut("b").unwrap().contact_center = true;
        assert!(s.with_device("a").unwrap().1.contact_center, "one device");
        let (_, gone) = s.remove("b").unwrap();
        assert!(gone.is_none(), "a still uses the device");
        assert_eq!(s.with_dn("7001"), ["a"]);
        let (_, gone) = s.remove("a").unwrap();
        assert!(gone.unwrap().contact_center);
        assert!(s.with_dn("7001").is_empty() && s.is_empty());
        assert!(s.device("7001").is_none());
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
