//! Emulated agent state on a DN (as T-Server emulates agents): plain data and pure transitions.
//! The caller turns the results into T-Events.
//!
//! This is where R5 lives: no login or logout while the DN has a call in progress or its agent
//! is in after-call work ([`busy_for_login`]), unless `agent_emu_login_on_call` or the request's
//! `AgentEmuLoginOnCall` extension allows it ([`emu_login_on_call`]). The after-call work states
//! themselves are here too ([`Agent::start_acw`], [`Agent::end_acw`]); when ACW starts and ends
//! is decided in `calls/acw.rs`.

use serde::Serialize;
use serde_json::json;
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

impl Agent {
    /// In after-call work: NotReady with the work mode AfterCallWork.
    pub fn in_acw(&self) -> bool {
        matches!(
            self.status,
            AgentStatus::NotReady {
                work_mode: AgentWorkMode::AfterCallWork,
                ..
            }
        )
    }

    /// A released business call puts the agent in NotReady / AfterCallWork.
    pub fn start_acw(&mut self) {
        self.status = AgentStatus::NotReady {
            work_mode: AgentWorkMode::AfterCallWork,
            reasons: None,
        };
    }

    /// The wrap-up time is over: Ready again, unless the agent left ACW meanwhile (it asked for
    /// Ready or NotReady itself). True when the agent became Ready.
    pub fn end_acw(&mut self) -> bool {
        let in_acw = self.in_acw();
        if in_acw {
            self.status = AgentStatus::Ready;
        }
        in_acw
    }
}

/// R5: why a login or logout on a DN must wait, if it must: a call in progress on the DN (one
/// this node can reach), or its agent in after-call work.
pub fn busy_for_login(call_in_progress: bool, agent: Option<&Agent>) -> Option<Refusal> {
    if call_in_progress {
        return Some(Refusal::new(
            error_code::CTL_INV_CALL_STATE,
            "Login and logout are not allowed while a call is in progress",
        ));
    }
    agent.is_some_and(Agent::in_acw).then(|| {
        Refusal::new(
            error_code::CTL_INV_CALL_STATE,
            "Login and logout are not allowed during after-call work",
        )
    })
}

/// R5's exception: the request's `AgentEmuLoginOnCall` extension (1, true or "true") or, without
/// it, the node's `agent_emu_login_on_call` option allows login and logout during a call.
pub fn emu_login_on_call(extensions: Option<&KvList>, option: bool) -> bool {
    extensions
        .and_then(|e| e.get("AgentEmuLoginOnCall"))
        .map(|v| v == &json!(1) || v == &json!(true) || v == &json!("true"))
        .unwrap_or(option)
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

    #[test]
    fn r7_acw_ends_in_ready_only_from_acw() {
        let mut a = login(None, 1, None, AgentWorkMode::AutoIn).unwrap();
        a.start_acw();
        assert!(a.in_acw());
        assert!(a.end_acw());
        assert_eq!(a.status, AgentStatus::Ready);
        a.start_acw();
        a = set_status(Some(&a), status_after_login(AgentWorkMode::AuxWork)).unwrap();
        assert!(!a.end_acw(), "the agent left ACW itself: no Ready");
        assert!(!a.in_acw());
    }

    #[test]
    fn r5_busy_for_a_call_or_acw_unless_allowed() {
        let mut a = login(None, 1, None, AgentWorkMode::AutoIn).unwrap();
        assert_eq!(busy_for_login(false, Some(&a)), None);
        assert_eq!(busy_for_login(false, None), None);
        let on_call = busy_for_login(true, None).unwrap();
        assert_eq!(on_call.code, error_code::CTL_INV_CALL_STATE);
        a.start_acw();
        let in_acw = busy_for_login(false, Some(&a)).unwrap();
        assert_eq!(in_acw.code, error_code::CTL_INV_CALL_STATE);
        assert!(in_acw.text.contains("after-call work"));

        assert!(!emu_login_on_call(None, false));
        assert!(emu_login_on_call(None, true));
        let mut ext = KvList::new();
        ext.insert("AgentEmuLoginOnCall".into(), json!(0));
        assert!(!emu_login_on_call(Some(&ext), true), "the request decides");
        ext.insert("AgentEmuLoginOnCall".into(), json!("true"));
        assert!(emu_login_on_call(Some(&ext), false));
    }
}
