//! After-call work. This is where R7 lives: when a business call (one that was answered) is
//! released, the DN's logged-in agent goes NotReady / AfterCallWork, announced before
//! `EventReleased`; when `wrap_up_time` is over it is Ready again (`EventAgentReady`), unless it
//! changed state meanwhile; an untimed wrap-up lasts until the agent asks. ACW happens at the
//! DN's owner, which is where the agent's state is, whichever node the call lives on. The agent
//! states are `Agent::start_acw` / `Agent::end_acw` (`agent.rs`).

use serde_json::json;
use tlib::{event, AgentWorkMode, KvList};
use tokio::time::Instant;

use crate::core::{NodeCore, TimerJob};

impl NodeCore {
    /// After a business call a logged-in agent goes NotReady/AfterCallWork; the timer
    /// brings it back to Ready.
    pub(crate) fn start_acw(&mut self, dn: &str, now: Instant) {
        let options = &self.config.options;
        if options.wrap_up_time.is_zero() && !options.wrap_up_untimed {
            return;
        }
        let (untimed, wrap_up) = (options.wrap_up_untimed, options.wrap_up_time);
        let Some(state) = self.dns.get_mut(dn) else {
            return;
        };
        let Some(agent) = state.agent.as_mut() else {
            return;
        };
        agent.start_acw();
        state.acw_serial += 1;
        let serial = state.acw_serial;
        let agent_id = agent.agent_id.clone();
        self.journal.record(
            "agent.acw_started",
            json!({ "dn": dn, "untimed": untimed, "wrap_up_ms": wrap_up.as_millis() as u64 }),
        );
        let mut acw = event::agent_not_ready(
            None,
            dn,
            agent_id.as_deref(),
            Some(AgentWorkMode::AfterCallWork),
            None,
        );
        acw.attrs.extensions = Some(self.wrap_up_extensions());
        self.broadcast_dn(dn, acw);
        if !untimed {
            self.schedule(
                now + wrap_up,
                TimerJob::AcwEnd {
                    dn: dn.into(),
                    serial,
                },
            );
        }
    }

    /// The wrap-up timer ended: back to Ready unless the agent changed state meanwhile.
    pub(crate) fn end_acw(&mut self, dn: &str, serial: u64, now: Instant) {
        let Some(state) = self.dns.get_mut(dn) else {
            return;
        };
        if state.acw_serial != serial {
            return;
        }
        let Some(agent) = state.agent.as_mut() else {
            return;
        };
        if !agent.end_acw() {
            return;
        }
        let agent_id = agent.agent_id.clone();
        self.journal.record("agent.acw_ended", json!({ "dn": dn }));
        self.broadcast_dn(dn, event::agent_ready(None, dn, agent_id.as_deref(), None));
        self.consider_move(dn, now);
    }

    /// `WrapUpTime` (seconds or `untimed`) and `BusinessCall` as real Established events carry them.
    pub(super) fn wrap_up_extensions(&self) -> KvList {
        let mut ext = KvList::new();
        let o = &self.config.options;
        ext.insert(
            "WrapUpTime".into(),
            if o.wrap_up_untimed {
                json!("untimed")
            } else {
                json!(o.wrap_up_time.as_secs_f64())
            },
        );
        ext.insert("BusinessCall".into(), json!(1));
        ext
    }
}
