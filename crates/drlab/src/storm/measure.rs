//! What a storm measured, per kind of agent: when each affected agent noticed the fault and when
//! it recovered (both in ms from the fault), summed up as HDR percentiles, a recovery curve and
//! the agents that never recovered. Pure data, no I/O.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Width of one bar of the recovery curve.
pub const CURVE_STEP_MS: u64 = 100;
/// Agents named in `never_recovered` at most (the count is always complete).
pub const NEVER_RECOVERED_LISTED: usize = 50;

/// One affected agent (a phone whose registrar went away, a desktop that lost its session or
/// its voice channel).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentOutcome {
    /// The DN of a phone, the user of a desktop.
    pub agent: String,
    /// When its client first saw the fault (ms from the fault).
    pub noticed_ms: Option<u64>,
    /// When it was back (ms from the fault).
    pub recovered_ms: Option<u64>,
    /// Where it recovered (a phone's registrar) or, unrecovered, the last thing it saw.
    pub detail: String,
}

/// Percentiles of a set of durations, in ms.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    pub p50_ms: u64,
    pub p90_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
}

impl Percentiles {
    fn of(values: impl Iterator<Item = u64>) -> Option<Percentiles> {
        // Three significant digits up to an hour: far finer than a storm's timers.
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000, 3).ok()?;
        for v in values {
            h.saturating_record(v.max(1));
        }
        (!h.is_empty()).then(|| Percentiles {
            p50_ms: h.value_at_quantile(0.50),
            p90_ms: h.value_at_quantile(0.90),
            p99_ms: h.value_at_quantile(0.99),
            max_ms: h.max(),
        })
    }
}

/// An agent that never recovered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unrecovered {
    pub agent: String,
    pub last_error: String,
}

/// The recovery of one kind of agent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Recovery {
    /// Agents of this kind in the storm.
    pub total: usize,
    /// Agents the fault reached.
    pub affected: usize,
    pub recovered: usize,
    pub lost: usize,
    /// From the fault to recovery.
    #[serde(flatten)]
    pub from_fault: Percentiles,
    /// From the moment each client noticed to its recovery.
    pub from_noticed: Percentiles,
    /// Agents recovered in each [`CURVE_STEP_MS`] from the fault.
    pub curve: Vec<u32>,
    pub never_recovered: Vec<Unrecovered>,
}

impl Recovery {
    pub fn measure(total: usize, outcomes: &[AgentOutcome]) -> Recovery {
        let recovered: Vec<&AgentOutcome> = outcomes
            .iter()
            .filter(|o| o.recovered_ms.is_some())
            .collect();
        let from_fault = Percentiles::of(recovered.iter().filter_map(|o| o.recovered_ms));
        let from_noticed = Percentiles::of(recovered.iter().filter_map(|o| {
            let noticed = o.noticed_ms.unwrap_or(0);
            o.recovered_ms.map(|r| r.saturating_sub(noticed))
        }));
        let mut curve = Vec::new();
        for ms in recovered.iter().filter_map(|o| o.recovered_ms) {
            let bar = (ms / CURVE_STEP_MS) as usize;
            if curve.len() <= bar {
                curve.resize(bar + 1, 0);
            }
            curve[bar] += 1;
        }
        let never: Vec<Unrecovered> = outcomes
            .iter()
            .filter(|o| o.recovered_ms.is_none())
            .map(|o| Unrecovered {
                agent: o.agent.clone(),
                last_error: o.detail.clone(),
            })
            .collect();
        Recovery {
            total,
            affected: outcomes.len(),
            recovered: recovered.len(),
            lost: never.len(),
            from_fault: from_fault.unwrap_or_default(),
            from_noticed: from_noticed.unwrap_or_default(),
            curve,
            never_recovered: never.into_iter().take(NEVER_RECOVERED_LISTED).collect(),
        }
    }

    /// `phones: 500/1000 affected, 498 recovered, 2 lost; p50 812 ms …` and the curve.
    pub fn lines(&self, kind: &str) -> String {
        let p = &self.from_fault;
        let n = &self.from_noticed;
        let mut out = format!(
            "{kind}: {} of {} affected, {} recovered, {} lost; from the fault p50 {} ms, p90 {} ms, p99 {} ms, max {} ms; from noticing p50 {} ms, p99 {} ms\n",
            self.affected, self.total, self.recovered, self.lost, p.p50_ms, p.p90_ms, p.p99_ms,
            p.max_ms, n.p50_ms, n.p99_ms
        );
        if !self.curve.is_empty() {
            out.push_str(&format!(
                "  recovered per {CURVE_STEP_MS} ms: {}\n",
                sparkline(&self.curve)
            ));
        }
        for u in &self.never_recovered {
            out.push_str(&format!(
                "  never recovered: {} ({})\n",
                u.agent, u.last_error
            ));
        }
        out
    }
}

/// The curve as block characters, one per bar, scaled to the highest.
pub fn sparkline(curve: &[u32]) -> String {
    const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let top = curve.iter().copied().max().unwrap_or(0).max(1);
    curve
        .iter()
        .map(|&v| {
            if v == 0 {
                ' '
            } else {
                BLOCKS[((v as usize * (BLOCKS.len() - 1)) / top as usize).min(BLOCKS.len() - 1)]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(agent: &str, noticed: Option<u64>, recovered: Option<u64>) -> AgentOutcome {
        AgentOutcome {
            agent: agent.into(),
            noticed_ms: noticed,
            recovered_ms: recovered,
            detail: "registration_failed".into(),
        }
    }

    #[test]
    fn percentiles_curve_and_the_lost_agents() {
        let outcomes: Vec<AgentOutcome> = (1..=100)
            .map(|i| outcome(&format!("7{i:03}"), Some(i * 10), Some(i * 20)))
            .chain([outcome("7999", Some(5), None)])
            .collect();
        let r = Recovery::measure(1000, &outcomes);
        assert_eq!(
            (r.total, r.affected, r.recovered, r.lost),
            (1000, 101, 100, 1)
        );
        assert_eq!(r.from_fault.max_ms, 2000);
        assert!((990..=1010).contains(&r.from_fault.p50_ms), "{r:?}");
        assert!((980..=1000).contains(&r.from_fault.p99_ms) || r.from_fault.p99_ms >= 1980);
        assert_eq!(r.from_noticed.max_ms, 1000);
        // 100 recoveries 20 ms apart: five per 100 ms bar.
        assert_eq!(r.curve.len(), 21);
        assert_eq!(r.curve.iter().sum::<u32>(), 100);
        assert_eq!(r.never_recovered[0].agent, "7999");
        assert!(r.lines("phones").contains("never recovered: 7999"));
    }

    #[test]
    fn nothing_affected_measures_zeroes() {
        let r = Recovery::measure(10, &[]);
        assert_eq!((r.affected, r.recovered, r.lost), (0, 0, 0));
        assert_eq!(r.from_fault, Percentiles::default());
        assert!(r.curve.is_empty());
    }

    #[test]
    fn sparkline_scales_to_the_highest_bar() {
        assert_eq!(sparkline(&[0, 1, 8]), " ▁█");
    }
}
