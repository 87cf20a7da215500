//! Emulated agent state on a DN (as T-Server emulates agents; R4, R5): plain data and pure
//! transitions. The caller turns the results into T-Events.

use serde::Serialize;
use tlib::{error_code, AgentWorkMode, KvList};

/// A T-Lib client connection, numbered per node.
pub type ClientId = u64;

/// A logged-in agent.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Agent {
    pub agent_id: Option<String>,
    pub status: AgentStatus,
    /// The client whose `RequestAgentLogin` logged the agent in: R4 logs the agent out when that
    /// client unregisters the DN or disconnects.
    pub login_client: ClientId,
}

/// Ready or not, and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "state")]
pub enum AgentStatus {
    Ready,
    NotReady {
        work_mode: AgentWorkMode,
        #[serde(skip_serializing_if = "Option::is_none")]
        reasons: Option<KvList>,
    },
}

/// A refused agent request: the `EventError` code and text.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    pub code: u32,
    pub text: String,
}

impl Refusal {
    pub fn new(code: u32, text: impl Into<String>) -> Self {
        Refusal {
            code,
            text: text.into(),
        }
    }
}

/// The state a login puts the agent in: `AutoIn` means Ready, anything else NotReady.
pub fn status_after_login(work_mode: AgentWorkMode) -> AgentStatus {
    match work_mode {
        AgentWorkMode::AutoIn => AgentStatus::Ready,
        other => AgentStatus::NotReady {
            work_mode: other,
            reasons: None,
        },
    }
}

/// `RequestAgentLogin` on a DN whose agent is `current`. The same AgentID logging in again (a
/// desktop reconnecting through another GWS node) takes the login over; another AgentID is refused.
pub fn login(
    current: Option<&Agent>,
    client: ClientId,
    agent_id: Option<String>,
    work_mode: AgentWorkMode,
) -> Result<Agent, Refusal> {
    if let Some(agent) = current {
        if agent.agent_id != agent_id {
            return Err(Refusal::new(
                error_code::SOFT_AGENT_ALREADY_LOGGED_IN,
                format!(
                    "Agent {} is already logged in on this DN",
                    agent.agent_id.as_deref().unwrap_or("(no id)")
                ),
            ));
        }
    }
    Ok(Agent {
        agent_id,
        status: status_after_login(work_mode),
        login_client: client,
    })
}

/// `RequestAgentReady` / `RequestAgentNotReady`: the new status of a logged-in agent.
pub fn set_status(current: Option<&Agent>, status: AgentStatus) -> Result<Agent, Refusal> {
    match current {
        None => Err(Refusal::new(
            error_code::SOFT_AGENT_NOT_LOGGED_IN,
            "Agent is not logged in",
        )),
        Some(agent) => Ok(Agent {
            status,
            ..agent.clone()
        }),
    }
}

/// `RequestAgentLogout`: allowed when logged in.
pub fn logout(current: Option<&Agent>) -> Result<(), Refusal> {
    match current {
        None => Err(Refusal::new(
            error_code::SOFT_AGENT_NOT_LOGGED_IN,
            "Agent is not logged in",
        )),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_states() {
        let a = login(None, 1, Some("a1".into()), AgentWorkMode::ManualIn).unwrap();
        assert!(matches!(
            a.status,
            AgentStatus::NotReady {
                work_mode: AgentWorkMode::ManualIn,
                ..
            }
        ));
        let b = login(None, 1, Some("a1".into()), AgentWorkMode::AutoIn).unwrap();
        assert_eq!(b.status, AgentStatus::Ready);
        // Same agent through another client: takes over.
        let again = login(Some(&a), 2, Some("a1".into()), AgentWorkMode::AutoIn).unwrap();
        assert_eq!(again.login_client, 2);
        // Another agent on the DN: refused.
        let err = login(Some(&a), 2, Some("a2".into()), AgentWorkMode::AutoIn).unwrap_err();
        assert_eq!(err.code, error_code::SOFT_AGENT_ALREADY_LOGGED_IN);
    }

    #[test]
    fn ready_and_logout_need_a_login() {
        assert_eq!(
            set_status(None, AgentStatus::Ready).unwrap_err().code,
            error_code::SOFT_AGENT_NOT_LOGGED_IN
        );
        assert!(logout(None).is_err());
        let a = login(None, 7, None, AgentWorkMode::ManualIn).unwrap();
        let r = set_status(Some(&a), AgentStatus::Ready).unwrap();
        assert_eq!((r.status, r.login_client), (AgentStatus::Ready, 7));
        assert!(logout(Some(&a)).is_ok());
    }
}
