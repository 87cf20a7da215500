//! The orchestration layer every front end shares (`drlab fault`, `drlab status`, `drlab
//! scenario`; storms and a nemesis later): a [`handle::LabHandle`] on the lab's nodes, the
//! actors of a scenario ([`actors`]), named faults on the built-in layer or iptables
//! ([`faults`], [`iptables`]), the topology's roles ([`roles`]) and one merged history of every
//! node's and actor's journal ([`history`]). Nothing here knows addresses or DN numbers except
//! through the topology.

pub mod actors;
pub mod control;
pub mod faults;
pub mod handle;
pub mod history;
pub mod iptables;
pub mod roles;
pub mod status;

/// Input the user can fix: an unknown name, a missing role, a busy address. The CLI prints it
/// on one line with the valid choices and exits with status 2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem}{}", valid_list(.valid))]
pub struct BadInput {
    pub problem: String,
    pub valid: Vec<String>,
}

fn valid_list(valid: &[String]) -> String {
    if valid.is_empty() {
        String::new()
    } else {
        format!(" (valid: {})", valid.join(", "))
    }
}

impl BadInput {
    pub fn new(problem: impl Into<String>, valid: Vec<String>) -> Self {
        BadInput {
            problem: problem.into(),
            valid,
        }
    }
}
