//! The node's whole state — sessions, CometD clients, the T-Lib link — and its transitions:
//! T-Events become notifications for the sessions of the event's DN, link loss makes every device
//! inactive and the Voice service unavailable (R13), idle sessions end. No I/O: what must be sent
//! to the SIP node comes back as [`EndedSession`]s for the caller to act on.

use serde_json::{json, Value};
use tlib::Message;
use tokio::time::{Duration, Instant};

use crate::cometd::clients::Clients;
use crate::config::GwsConfig;
use crate::device::{AgentState, Call, Change, DeviceState, OutOfService};
use crate::notification::{self, channel};
use crate::session::{Session, Sessions};
use crate::users::User;

/// A session that ended, and what the SIP node must be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedSession {
    pub id: String,
    pub user: User,
    /// Send `RequestUnregisterAddress` for the DN: it was in a contact-center session and no
    /// other session of this node still uses it.
    pub unregister: bool,
    /// `expired`, `dn_out_of_service`, `crowded_out` …
    pub cause: &'static str,
}

/// Why a CometD handshake is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum HandshakeRefused {
    UnknownSession,
}

pub struct GwsState {
    pub sessions: Sessions,
    pub clients: Clients,
    /// The SIP node the T-Lib link is up to, if any.
    pub link: Option<String>,
    /// `http://host:port` for the `uri` fields.
    pub base: String,
    /// Every SIP node of the list, for `GET /api/v2/services`.
    sip_nodes: Vec<String>,
    end_session_on_dn_out_of_service: bool,
}

impl GwsState {
    pub fn new(cfg: &GwsConfig, base: String) -> Self {
        GwsState {
            sessions: Sessions::default(),
            clients: Clients::new(cfg.cometd.clone()),
            link: None,
            base,
            sip_nodes: cfg.sip_nodes.iter().map(|n| n.name.clone()).collect(),
            end_session_on_dn_out_of_service: cfg.end_session_on_dn_out_of_service,
        }
    }

    /// Queues a notification for the CometD clients of one session; returns how many got it.
    pub fn notify_session(&mut self, sid: &str, topic: &str, data: &Value) -> usize {
        let Some(s) = self.sessions.get(sid) else {
            return 0;
        };
        let ids = s.clients.clone();
        self.clients.publish(&ids, topic, data)
    }

    /// The device and channel notifications for a session's current device state.
    fn notify_device(&mut self, sid: &str) -> usize {
        let Some((_, d)) = self.sessions.with_device(sid) else {
            return 0;
        };
        let device = notification::device_state_change(d, &self.base);
        let channels = notification::channel_state_change(d);
        self.notify_session(sid, channel::DEVICES, &device)
            + self.notify_session(sid, channel::CHANNELS, &channels)
    }

    /// The device and channel notifications for every session of `dn`.
    pub fn notify_dn(&mut self, dn: &str) -> usize {
        self.sessions
            .with_dn(dn)
            .iter()
            .map(|sid| self.notify_device(sid))
            .sum()
    }

    /// An `ErrorMessage` for a request of this session the SIP node refused.
    pub fn report_error(&mut self, sid: &str, code: u32, text: &str) -> usize {
        let Some((_, d)) = self.sessions.with_device(sid) else {
            return 0;
        };
        let msg = notification::error(d, code, text, &self.base);
        self.notify_session(sid, channel::DEVICES, &msg)
    }

    /// One T-Event from the SIP node, applied to its DN's device and sent to every session of
    /// the DN. Returns the notifications queued and the sessions ended (R13
    /// `end_session_on_dn_out_of_service`).
    pub fn on_tevent(&mut self, msg: &Message) -> (usize, Vec<EndedSession>) {
        let Some(dn) = msg.this_dn() else {
            return (0, Vec::new());
        };
        let Some(device) = self.sessions.device_mut(dn) else {
            return (0, Vec::new());
        };
        let was_logged_in = device.agent != AgentState::LoggedOut;
        let in_contact_center = device.contact_center;
        let change = device.apply(msg);
        let sids = self.sessions.with_dn(dn);
        let sent = match change {
            None => return (0, Vec::new()),
            Some(Change::Device) => self.notify_dn(dn),
            Some(Change::Call(call)) => self.notify_call(dn, &call, "StatusChange"),
            Some(Change::CallData(call)) => self.notify_call(dn, &call, "AttachedDataChanged"),
        };
        // R13: only the owner's out of service ends the sessions; a node that merely lost the
        // owner (R10) leaves them, the device shows the voice channel unavailable.
        let at_owner = OutOfService::of(msg) == Some(OutOfService::AtOwner);
        let ended = if at_owner
            && in_contact_center
            && was_logged_in
            && self.end_session_on_dn_out_of_service
        {
            sids.iter()
                .filter_map(|sid| self.end_session(sid, "dn_out_of_service"))
                .collect()
        } else {
            Vec::new()
        };
        (sent, ended)
    }

    /// A `CallStateChangeMessage` for every session of `dn`.
    fn notify_call(&mut self, dn: &str, call: &Call, notification_type: &str) -> usize {
        let Some(d) = self.sessions.device(dn) else {
            return 0;
        };
        let data =
            notification::call_state_change(call, d, &self.base, Instant::now(), notification_type);
        self.sessions
            .with_dn(dn)
            .iter()
            .map(|sid| self.notify_session(sid, channel::CALLS, &data))
            .sum()
    }

    /// The T-Lib link is up to `node`: the Voice service is back. Returns the DNs to register
    /// again (those in a contact-center session).
    pub fn link_up(&mut self, node: &str) -> (usize, Vec<String>) {
        self.link = Some(node.to_owned());
        let sent = self.notify_services();
        let mut dns: Vec<String> = self
            .sessions
            .devices_mut()
            .filter(|d| d.contact_center)
            .map(|d| d.dn.clone())
            .collect();
        dns.sort();
        (sent, dns)
    }

    /// R13: the T-Lib link is lost. Every device goes inactive (its voice channel out of
    /// service) and the Voice service unavailable; sessions stay, to be re-registered.
    pub fn link_down(&mut self) -> usize {
        self.link = None;
        let dns: Vec<String> = self
            .sessions
            .devices_mut()
            .filter_map(|d| d.link_lost().then(|| d.dn.clone()))
            .collect();
        let sent: usize = dns.iter().map(|dn| self.notify_dn(dn)).sum();
        sent + self.notify_services()
    }

    fn notify_services(&mut self) -> usize {
        let messages: Vec<Value> = self
            .sip_nodes
            .iter()
            .map(|n| {
                let active = self.link.as_deref() == Some(n);
                notification::service_state_change(n, active, &self.base)
            })
            .collect();
        let all: Vec<String> = self.sessions.iter().map(|s| s.id.clone()).collect();
        let mut sent = 0;
        for sid in all {
            for m in &messages {
                sent += self.notify_session(&sid, channel::SERVICES, m);
            }
        }
        sent
    }

    /// `services[]`: each SIP node as a Voice service, active when the link is up to it.
    pub fn services(&self) -> Vec<Value> {
        self.sip_nodes
            .iter()
            .map(|n| notification::service(n, self.link.as_deref() == Some(n), &self.base))
            .collect()
    }

    /// A new CometD client for session `sid`; beyond the per-session limit the oldest client
    /// of the session is dropped (its next connect gets `402`).
    pub fn handshake(
        &mut self,
        sid: &str,
        client_id: String,
        now: Instant,
    ) -> Result<(), HandshakeRefused> {
        let max = self.clients.settings().max_clients_per_session;
        let Some(s) = self.sessions.get_mut(sid) else {
            return Err(HandshakeRefused::UnknownSession);
        };
        s.last_seen = now;
        s.clients.push(client_id.clone());
        let evicted: Vec<String> = if s.clients.len() > max {
            let n = s.clients.len() - max;
            s.clients.drain(..n).collect()
        } else {
            Vec::new()
        };
        for id in evicted {
            self.clients.remove(&id);
        }
        self.clients.add(client_id, sid, now);
        Ok(())
    }

    /// Forgets a CometD client (`/meta/disconnect`, expiry).
    pub fn remove_client(&mut self, id: &str) {
        if let Some(c) = self.clients.remove(id) {
            if let Some(s) = self.sessions.get_mut(&c.session) {
                s.clients.retain(|x| x != id);
            }
        }
    }

    /// Marks a session's connect parked (`true`) or done; a parked connect keeps it alive.
    pub fn set_parked(&mut self, client_id: &str, parked: bool, now: Instant) {
        let Some(c) = self.clients.get_mut(client_id) else {
            return;
        };
        if c.parked == parked {
            return;
        }
        c.parked = parked;
        c.last_active = now;
        let sid = c.session.clone();
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.last_seen = now;
            s.parked = if parked {
                s.parked + 1
            } else {
                s.parked.saturating_sub(1)
            };
        }
    }

    /// Ends a session: its CometD clients stay until their next connect, which delivers what is
    /// queued and then answers `402` (the session is gone, so re-handshaking fails too).
    pub fn end_session(&mut self, sid: &str, cause: &'static str) -> Option<EndedSession> {
        let (s, device_gone): (Session, _) = self.sessions.remove(sid)?;
        for id in &s.clients {
            if let Some(c) = self.clients.get(id) {
                c.notify.notify_waiters();
            }
        }
        let unregister = device_gone.is_some_and(|d| d.contact_center);
        Some(EndedSession {
            id: s.id,
            user: s.user,
            unregister,
            cause,
        })
    }

    /// Ends idle sessions and forgets CometD clients past `maxInterval` (clients of ended
    /// sessions go that way too, unless a connect of theirs comes first and gets `402`).
    pub fn expire(&mut self, now: Instant, session_timeout: Duration) -> Vec<EndedSession> {
        for id in self.clients.expired(now) {
            self.remove_client(&id);
        }
        let idle = self.sessions.idle(now, session_timeout);
        let ended: Vec<EndedSession> = idle
            .iter()
            .filter_map(|sid| self.end_session(sid, "expired"))
            .collect();
        ended
    }

    /// `GET /state`.
    pub fn snapshot(&self) -> Value {
        let sessions: Vec<Value> = self
            .sessions
            .iter()
            .filter_map(|s| self.sessions.with_device(&s.id))
            .map(|(s, d)| {
                json!({
                    "user": s.user.name,
                    "dn": s.user.dn,
                    "contact_center": d.contact_center,
                    "device_state": match d.state { DeviceState::Active => "Active", DeviceState::Inactive => "Inactive" },
                    "user_state": notification::user_state(&d.agent)["state"],
                    "calls": d.calls.iter().map(|c| json!({"id": c.id, "state": c.state.as_str()})).collect::<Vec<_>>(),
                    "cometd_clients": s.clients.len(),
                    "cometd_dropped": s.clients.iter().filter_map(|id| self.clients.get(id)).map(|c| c.dropped).sum::<u64>(),
                })
            })
            .collect();
        json!({
            "tlib_link": self.link,
            "sessions": sessions,
            "cometd_clients": self.clients.len(),
            "services": self.services(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SipNodeRef;
    use tlib::event;

    fn state() -> (GwsState, Instant) {
        let mut cfg = GwsConfig::new("gws1", "dc1", [127, 0, 0, 1].into());
        cfg.sip_nodes = vec![SipNodeRef {
            name: "ss1".into(),
            tlib: "127.0.0.1:3000".parse().unwrap(),
        }];
        let mut st = GwsState::new(&cfg, "http://gws".into());
        let now = Instant::now();
        for (sid, dn) in [("S1", "7001"), ("S2", "7002")] {
            let user = User {
                name: format!("agent{dn}"),
                dn: dn.into(),
            };
            st.sessions.create(sid.into(), "T".into(), user, now);
            st.handshake(sid, format!("c-{sid}"), now).unwrap();
            st.clients
                .subscribe(&format!("c-{sid}"), "/v2/me/*")
                .unwrap();
            st.clients
                .subscribe(&format!("c-{sid}"), "/notifications/services")
                .unwrap();
        }
        (st, now)
    }

    fn channels(st: &mut GwsState, client: &str) -> Vec<String> {
        st.clients
            .drain(client)
            .iter()
            .map(|m| m["channel"].as_str().unwrap_or("").to_owned())
            .collect()
    }

    #[test]
    fn tevents_reach_only_the_sessions_of_their_dn() {
        let (mut st, _) = state();
        let (sent, ended) = st.on_tevent(&event::agent_ready(None, "7001", None, None));
        assert_eq!((sent, ended.len()), (2, 0), "device + channel message");
        assert_eq!(
            channels(&mut st, "c-S1"),
            ["/v2/me/devices", "/v2/me/channels"]
        );
        assert!(channels(&mut st, "c-S2").is_empty());
        assert_eq!(st.on_tevent(&event::link_connected()).0, 0, "no DN, nobody");
    }

    #[test]
    fn link_loss_deactivates_devices_and_the_voice_service() {
        let (mut st, _) = state();
        st.on_tevent(&event::dn_back_in_service("7001"));
        st.sessions.device_mut("7001").unwrap().contact_center = true;
        channels(&mut st, "c-S1");
        let (_, dns) = st.link_up("ss1");
        assert_eq!(
            dns,
            ["7001"],
            "only contact-center sessions are registered again"
        );
        assert_eq!(st.services()[0]["state"], "Active");
        channels(&mut st, "c-S1");
        channels(&mut st, "c-S2");
        st.link_down();
        let got = st.clients.drain("c-S1");
        assert!(got
            .iter()
            .any(|m| m["data"]["devices"][0]["deviceState"] == "Inactive"));
        assert!(got.iter().any(|m| m["channel"] == "/notifications/services"
            && m["data"]["service"]["state"] == "Inactive"));
        // S2's device was never active: only the service message.
        assert_eq!(channels(&mut st, "c-S2"), ["/notifications/services"]);
    }

    #[test]
    fn dn_out_of_service_ends_a_logged_in_contact_center_session() {
        let (mut st, _) = state();
        st.sessions.device_mut("7001").unwrap().contact_center = true;
        st.on_tevent(&event::agent_login(None, "7001", None, None));
        let (_, ended) = st.on_tevent(&event::dn_out_of_service("7001"));
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].cause, "dn_out_of_service");
        assert!(ended[0].unregister);
        assert!(st.sessions.get("S1").is_none());
        // Not logged in, or option off: the session stays.
        let (_, ended) = st.on_tevent(&event::dn_out_of_service("7002"));
        assert!(ended.is_empty());
    }

    /// `EventDNOutOfService` for `dn` with `Extensions.OutOfServiceReason = reason`.
    fn out_of_service(dn: &str, reason: &str) -> Message {
        let mut msg = event::dn_out_of_service(dn);
        let mut ext = tlib::KvList::new();
        ext.insert("OutOfServiceReason".into(), json!(reason));
        msg.attrs.extensions = Some(ext);
        msg
    }

    #[test]
    fn r13_owner_unreachable_keeps_the_session_and_shows_the_voice_channel_unavailable() {
        let (mut st, _) = state();
        st.sessions.device_mut("7001").unwrap().contact_center = true;
        st.on_tevent(&event::dn_back_in_service("7001"));
        st.on_tevent(&event::agent_login(None, "7001", None, None));
        st.clients.drain("c-S1");
        // R10 at a non-owner node: out of service, then the agent logged out.
        let (sent, ended) = st.on_tevent(&out_of_service("7001", "OwnerUnreachable"));
        assert!(
            ended.is_empty(),
            "R13: the session stays when only the owner is lost"
        );
        assert_eq!(sent, 2, "device + channel message");
        let (_, ended) = st.on_tevent(&event::agent_logout(None, "7001", None));
        assert!(ended.is_empty());
        let d = st.sessions.device("7001").expect("session kept");
        assert_eq!(d.state, DeviceState::Inactive);
        let got = st.clients.drain("c-S1");
        assert!(got
            .iter()
            .any(|m| m["data"]["devices"][0]["deviceState"] == "Inactive"));
        assert!(got
            .iter()
            .any(|m| m["data"]["channels"][0]["userState"]["state"] == "OutOfService"));
        // The link to the owner heals: the device is back in the same session.
        st.on_tevent(&event::dn_back_in_service("7001"));
        assert_eq!(
            st.sessions.device("7001").unwrap().state,
            DeviceState::Active
        );
    }

    #[test]
    fn r13_owner_side_out_of_service_ends_the_session() {
        for reason in [Some("OwnerOutOfService"), None, Some("SomethingNew")] {
            let (mut st, _) = state();
            st.sessions.device_mut("7001").unwrap().contact_center = true;
            st.on_tevent(&event::agent_login(None, "7001", None, None));
            let msg = match reason {
                Some(r) => out_of_service("7001", r),
                None => event::dn_out_of_service("7001"),
            };
            let (_, ended) = st.on_tevent(&msg);
            assert_eq!(ended.len(), 1, "reason {reason:?}");
            assert_eq!(ended[0].cause, "dn_out_of_service");
            assert!(st.sessions.get("S1").is_none());
        }
    }

    #[test]
    fn idle_sessions_expire_and_unregister_their_dn() {
        let (mut st, t0) = state();
        st.sessions.device_mut("7001").unwrap().contact_center = true;
        st.set_parked("c-S2", true, t0);
        let timeout = Duration::from_secs(2);
        assert!(st.expire(t0 + Duration::from_secs(1), timeout).is_empty());
        let ended = st.expire(t0 + timeout, timeout);
        assert_eq!(ended.len(), 1);
        assert_eq!(
            (ended[0].id.as_str(), ended[0].cause, ended[0].unregister),
            ("S1", "expired", true)
        );
        assert!(
            st.sessions.get("S2").is_some(),
            "a parked connect keeps it alive"
        );
        // Its client stays for a last connect (402), until `maxInterval`.
        assert!(st.clients.get("c-S1").is_some());
        st.expire(t0 + st.clients.settings().max_interval, timeout);
        assert!(st.clients.get("c-S1").is_none());
    }

    #[test]
    fn handshakes_beyond_the_per_session_limit_evict_the_oldest_client() {
        let (mut st, now) = state();
        let max = st.clients.settings().max_clients_per_session;
        for n in 0..max {
            st.handshake("S1", format!("x{n}"), now).unwrap();
        }
        assert!(st.clients.get("c-S1").is_none());
        assert_eq!(st.sessions.get("S1").unwrap().clients.len(), max);
        assert_eq!(
            st.handshake("nope", "y".into(), now),
            Err(HandshakeRefused::UnknownSession)
        );
    }
}
