//! Who the fault reached and when each agent was back, read from the merged history of the
//! swarms' journals. Pure functions of the events, so unit tests drive them without a lab.
//!
//! * A phone is affected when its last registrar before the fault is one the fault took away;
//!   it noticed at its first failed REGISTER and recovered at its first registration elsewhere.
//! * A desktop is affected when anything after the fault took it off Ready: a lost connection,
//!   a banner, the voice channel in another state; it recovered when its voice channel showed
//!   Ready again after that (a relogin included).

use std::collections::{BTreeMap, HashSet};

use crate::orchestra::history::Event;

use super::measure::AgentOutcome;

/// The voice channel state a recovered agent shows.
const READY: &str = "Ready";

fn ms_after(e: &Event, fault_at: u64) -> u64 {
    e.at_ms.saturating_sub(fault_at)
}

/// Phones: `failed` are the registrars (`ip:port`) the fault took away.
pub fn phones(events: &[Event], fault_at: u64, failed: &HashSet<String>) -> Vec<AgentOutcome> {
    let mut last_registrar: BTreeMap<&str, &str> = BTreeMap::new();
    let mut out: BTreeMap<&str, AgentOutcome> = BTreeMap::new();
    for e in events {
        let (Some(dn), registrar) = (e.detail["dn"].as_str(), e.detail["registrar"].as_str())
        else {
            continue;
        };
        if e.at_ms < fault_at {
            if let ("phone.registered" | "phone.refreshed", Some(r)) = (e.kind, registrar) {
                last_registrar.insert(dn, r);
            }
            continue;
        }
        let Some(before) = last_registrar.get(dn) else {
            continue;
        };
        if !failed.contains(*before) {
            continue;
        }
        let o = out.entry(dn).or_insert_with(|| AgentOutcome {
            agent: dn.to_owned(),
            noticed_ms: None,
            recovered_ms: None,
            detail: "no REGISTER failed nor succeeded since the fault".into(),
        });
        if o.recovered_ms.is_some() {
            continue;
        }
        match (e.kind, registrar) {
            ("phone.registration_failed", _) => {
                o.noticed_ms.get_or_insert(ms_after(e, fault_at));
                o.detail = format!(
                    "REGISTER to {} failed: {}",
                    registrar.unwrap_or("?"),
                    e.detail["reason"].as_str().unwrap_or("?")
                );
            }
            ("phone.registered" | "phone.refreshed", Some(r)) if !failed.contains(r) => {
                o.recovered_ms = Some(ms_after(e, fault_at));
                o.detail = format!("registered at {r}");
            }
            _ => {}
        }
    }
    // Affected phones that said nothing since the fault have not noticed yet.
    for (dn, r) in last_registrar {
        if failed.contains(r) && !out.contains_key(dn) {
            out.insert(
                dn,
                AgentOutcome {
                    agent: dn.to_owned(),
                    noticed_ms: None,
                    recovered_ms: None,
                    detail: format!("still registered at {r} (no refresh since the fault)"),
                },
            );
        }
    }
    out.into_values().collect()
}

/// Desktops (one shared journal; each entry names its `user`).
pub fn desktops(events: &[Event], fault_at: u64) -> Vec<AgentOutcome> {
    let mut out: BTreeMap<&str, AgentOutcome> = BTreeMap::new();
    for e in events.iter().filter(|e| e.at_ms >= fault_at) {
        let Some(user) = e.detail["user"].as_str() else {
            continue;
        };
        let voice = e.detail["voice"]["state"].as_str();
        let ready = match e.kind {
            "desktop.voice" => voice == Some(READY),
            "desktop.logged_in" => voice == Some(READY) && e.detail["agent_logged_in"] == true,
            _ => false,
        };
        let disruption = match e.kind {
            "desktop.connection_lost" => e.detail["cause"].as_str().map(str::to_owned),
            "desktop.message_shown" => e.detail["message"].as_str().map(str::to_owned),
            "desktop.logged_out" => Some("logged out".into()),
            "desktop.voice" if !ready => Some(format!("voice {}", voice.unwrap_or("?"))),
            _ => None,
        };
        match out.get_mut(user) {
            None => {
                if let Some(why) = disruption {
                    out.insert(
                        user,
                        AgentOutcome {
                            agent: user.to_owned(),
                            noticed_ms: Some(ms_after(e, fault_at)),
                            recovered_ms: None,
                            detail: why,
                        },
                    );
                }
            }
            Some(o) if ready => {
                o.recovered_ms = Some(ms_after(e, fault_at));
                o.detail = "voice Ready".into();
            }
            Some(o) => {
                if let Some(why) = disruption {
                    // Off Ready again after a recovery: it counts from this new loss.
                    o.recovered_ms = None;
                    o.detail = why;
                }
            }
        }
    }
    out.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(at_ms: u64, kind: &'static str, detail: serde_json::Value) -> Event {
        Event {
            source: "x".into(),
            at_ms,
            kind,
            detail,
        }
    }

    #[test]
    fn a_phone_of_the_lost_registrar_recovers_at_the_next_one() {
        let failed: HashSet<String> = ["127.0.1.1:5060".to_owned()].into();
        let events = [
            ev(
                1,
                "phone.registered",
                json!({"dn":"7001","registrar":"127.0.1.1:5060"}),
            ),
            ev(
                2,
                "phone.registered",
                json!({"dn":"7002","registrar":"127.0.1.2:5060"}),
            ),
            ev(
                3,
                "phone.registered",
                json!({"dn":"7003","registrar":"127.0.1.1:5060"}),
            ),
            ev(
                1500,
                "phone.registration_failed",
                json!({"dn":"7001","registrar":"127.0.1.1:5060","reason":"timeout"}),
            ),
            ev(
                1600,
                "phone.registered",
                json!({"dn":"7001","registrar":"127.0.2.1:5060"}),
            ),
            ev(
                1700,
                "phone.refreshed",
                json!({"dn":"7002","registrar":"127.0.1.2:5060"}),
            ),
        ];
        let o = phones(&events, 1000, &failed);
        assert_eq!(o.len(), 2, "{o:?}");
        assert_eq!(o[0].agent, "7001");
        assert_eq!((o[0].noticed_ms, o[0].recovered_ms), (Some(500), Some(600)));
        assert_eq!(o[0].detail, "registered at 127.0.2.1:5060");
        assert_eq!((o[1].agent.as_str(), o[1].recovered_ms), ("7003", None));
        assert!(o[1].detail.contains("still registered"));
    }

    #[test]
    fn a_desktop_off_ready_recovers_when_ready_again() {
        let events = [
            ev(
                900,
                "desktop.voice",
                json!({"user":"a1","voice":{"state":"Ready"}}),
            ),
            ev(
                1200,
                "desktop.connection_lost",
                json!({"user":"a1","cause":"connection lost: reset"}),
            ),
            ev(
                1300,
                "desktop.voice",
                json!({"user":"a2","voice":{"state":"Ready"}}),
            ),
            ev(
                1400,
                "desktop.message_shown",
                json!({"user":"a3","message":"Unable to establish connection"}),
            ),
            ev(
                2500,
                "desktop.logged_in",
                json!({"user":"a1","agent_logged_in":true,"voice":{"state":"Ready"}}),
            ),
        ];
        let o = desktops(&events, 1000);
        assert_eq!(o.len(), 2, "{o:?}");
        assert_eq!(
            (o[0].noticed_ms, o[0].recovered_ms),
            (Some(200), Some(1500))
        );
        assert_eq!(o[1].agent, "a3");
        assert_eq!(o[1].recovered_ms, None);
        assert!(o[1].detail.contains("Unable"));
    }
}
