//! The agent states a desktop may set (`GET /api/v2/settings/agent-states`): the system states
//! with the ids a real WWE shows, and the configured NotReady reasons. A state operation
//! (`POST /api/v2/me` or `/api/v2/me/channels/voice`) names a system state in `operationName`
//! and, for NotReady, optionally a configured reason in `reason` (its name or id); the reason's
//! work mode and code are what the T-Lib request carries.

use serde_json::{json, Value};
use tlib::AgentWorkMode;

/// The system agent states (ids observed in a real WWE's log).
pub mod system {
    pub struct System {
        pub id: &'static str,
        /// The `operationName` that sets it.
        pub name: &'static str,
        pub display_name: &'static str,
    }

    pub const READY: System = System {
        id: "9430250E-0A1B-421F-B372-F29E69366DED",
        name: "Ready",
        display_name: "Ready",
    };
    pub const NOT_READY: System = System {
        id: "900D55CC-2BB0-431F-8BF9-D3525B383BE6",
        name: "NotReady",
        display_name: "Not Ready",
    };
    pub const AFTER_CALL_WORK: System = System {
        id: "D3663509-3D82-4DD3-A82E-2EA8EFA02AEF",
        name: "AfterCallWork",
        display_name: "After Call Work",
    };
    pub const AUX_WORK: System = System {
        id: "2B36138D-C564-4562-A8CB-3C32D564F296",
        name: "AuxWork",
        display_name: "Aux Work",
    };
    pub const OFFLINE: System = System {
        id: "0F7F5003-EF26-4D13-A6EF-D0C7EC819BEB",
        name: "Offline",
        display_name: "Offline",
    };
}

/// The configured NotReady reasons: name (also the T-Lib `ReasonCode`), id.
const REASONS: &[(&str, &str)] = &[
    ("Lunch", "6A1F3C52-7B0E-4D2A-9C61-0E5D6B7A8C01"),
    ("Break", "6A1F3C52-7B0E-4D2A-9C61-0E5D6B7A8C02"),
    ("Training", "6A1F3C52-7B0E-4D2A-9C61-0E5D6B7A8C03"),
];

/// What a state operation asks of the voice channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Ready,
    NotReady {
        work_mode: Option<AgentWorkMode>,
        /// `Reasons.ReasonCode`.
        reason: Option<String>,
    },
    /// `Offline`: the agent logs out.
    Offline,
}

/// The operation names a state operation accepts.
pub const OPERATIONS: &[&str] = &["Ready", "NotReady", "AfterCallWork", "AuxWork", "Offline"];

/// The target of `operationName` (one of [`OPERATIONS`]) with an optional `reason` naming a
/// configured reason by name or id; an unknown reason, or one on a state that takes none, is
/// the message of a validation error.
pub fn target(operation: &str, reason: Option<&str>) -> Result<Target, String> {
    let work_mode = match operation {
        "Ready" | "Offline" => {
            if let Some(r) = reason {
                return Err(format!("'{operation}' takes no reason (got '{r}')"));
            }
            return Ok(if operation == "Ready" {
                Target::Ready
            } else {
                Target::Offline
            });
        }
        "AfterCallWork" => Some(AgentWorkMode::AfterCallWork),
        "AuxWork" => Some(AgentWorkMode::AuxWork),
        _ => None,
    };
    let reason = match reason {
        None => None,
        Some(r) => {
            let found = REASONS
                .iter()
                .find(|(name, id)| *name == r || id.eq_ignore_ascii_case(r));
            match found {
                Some((name, _)) => Some((*name).to_owned()),
                None => {
                    return Err(format!(
                        "Unknown reason '{r}': not in /api/v2/settings/agent-states"
                    ))
                }
            }
        }
    };
    Ok(Target::NotReady { work_mode, reason })
}

/// `GET /api/v2/settings/agent-states`: the system states, then the configured reasons.
pub fn settings() -> Value {
    use system::*;
    let system = |s: &System, state: &str, work_mode: Option<&str>| {
        let mut v = json!({"id": s.id, "name": s.name, "displayName": s.display_name,
                           "state": state, "operationName": s.name});
        if let Some(m) = work_mode {
            v["workMode"] = json!(m);
        }
        v
    };
    let mut all = vec![
        system(&READY, "Ready", None),
        system(&NOT_READY, "NotReady", None),
        system(&AFTER_CALL_WORK, "NotReady", Some("AfterCallWork")),
        system(&AUX_WORK, "NotReady", Some("AuxWork")),
        system(&OFFLINE, "Logout", None),
    ];
    all.extend(REASONS.iter().map(|(name, id)| {
        json!({"id": id, "name": name, "displayName": name, "state": "NotReady",
               "workMode": "AuxWork", "reason": name, "operationName": "NotReady"})
    }));
    json!({"statusCode": 0, "settings": all})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_and_reasons_resolve_from_the_settings() {
        assert_eq!(target("Ready", None), Ok(Target::Ready));
        assert_eq!(target("Offline", None), Ok(Target::Offline));
        assert!(target("Ready", Some("Lunch")).is_err());
        assert_eq!(
            target("NotReady", Some("Lunch")),
            Ok(Target::NotReady {
                work_mode: None,
                reason: Some("Lunch".into())
            })
        );
        // By id too, as listed in the settings.
        let id = settings()["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "Break")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            target("AuxWork", Some(&id)),
            Ok(Target::NotReady {
                work_mode: Some(AgentWorkMode::AuxWork),
                reason: Some("Break".into())
            })
        );
        assert!(target("NotReady", Some("Nap")).unwrap_err().contains("Nap"));
        let names: Vec<Value> = settings()["settings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["operationName"].clone())
            .collect();
        assert!(names
            .iter()
            .all(|n| OPERATIONS.contains(&n.as_str().unwrap())));
    }
}
