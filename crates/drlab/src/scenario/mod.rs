//! `drlab scenario`: the seed's DR scenarios end to end, checked id by id. A scenario is data
//! plus steps: a set-up built from the topology's roles with real actors, a named fault, and one
//! check per assertion id that reads the merged history and the actors' views. Each case (a
//! scenario in one variant) runs on a lab of its own.
//!
//! * [`stage`] — one run's lab, roles, actors, history and rows;
//! * [`setup`] — the seed's set-ups and the checks shared by several scenarios;
//! * [`s0`], [`s1`], [`s2`], [`s3`], [`s4`] — the scenarios;
//! * [`report`] — the table and the JSON; [`statements`] — every id's statement.

pub mod report;
pub mod s0;
pub mod s1;
pub mod s2;
pub mod s3;
pub mod s4;
pub mod setup;
pub mod stage;
pub mod statements;

use std::time::Instant;

pub use report::{Report, Row};
pub use stage::{Options, Stage};

use crate::orchestra::BadInput;

/// A scenario of the seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScenarioId {
    S0,
    S1,
    S2,
    S3,
    S4,
}

impl ScenarioId {
    pub const ALL: [ScenarioId; 5] = [
        ScenarioId::S0,
        ScenarioId::S1,
        ScenarioId::S2,
        ScenarioId::S3,
        ScenarioId::S4,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ScenarioId::S0 => "S0",
            ScenarioId::S1 => "S1",
            ScenarioId::S2 => "S2",
            ScenarioId::S3 => "S3",
            ScenarioId::S4 => "S4",
        }
    }

    /// The variants, in run order.
    pub fn variants(self) -> &'static [&'static str] {
        match self {
            ScenarioId::S0 => &["-"],
            ScenarioId::S1 => &["a", "b", "c"],
            ScenarioId::S2 => &["a", "b"],
            ScenarioId::S3 => &["-"],
            ScenarioId::S4 => &["a", "b"],
        }
    }

    /// The ids a case checks (each becomes a row, FAIL when not reached).
    pub fn ids(self, variant: &str) -> &'static [&'static str] {
        match (self, variant) {
            (ScenarioId::S0, _) => s0::IDS,
            (ScenarioId::S1, "c") => s1::IDS_C,
            (ScenarioId::S1, _) => s1::IDS,
            (ScenarioId::S2, _) => s2::IDS,
            (ScenarioId::S3, _) => s3::IDS,
            (ScenarioId::S4, "b") => s4::IDS_B,
            (ScenarioId::S4, _) => s4::IDS_A,
        }
    }

    fn parse(id: &str) -> Option<ScenarioId> {
        ScenarioId::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(id))
    }
}

/// One scenario in one variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Case {
    pub scenario: ScenarioId,
    pub variant: &'static str,
}

/// The cases of `ids` (`S0` … `all`), in every variant or only `variant`.
pub fn cases(ids: &[String], variant: Option<&str>) -> Result<Vec<Case>, BadInput> {
    let valid_ids = || {
        let mut v: Vec<String> = ScenarioId::ALL
            .iter()
            .map(|s| s.name().to_owned())
            .collect();
        v.push("all".into());
        v
    };
    if ids.is_empty() {
        return Err(BadInput::new("no scenario id given", valid_ids()));
    }
    let mut scenarios = Vec::new();
    for id in ids {
        if id.eq_ignore_ascii_case("all") {
            scenarios.extend(ScenarioId::ALL);
        } else {
            let s = ScenarioId::parse(id)
                .ok_or_else(|| BadInput::new(format!("unknown scenario `{id}`"), valid_ids()))?;
            scenarios.push(s);
        }
    }
    scenarios.dedup();
    let mut out = Vec::new();
    for s in scenarios {
        match variant {
            None => out.extend(s.variants().iter().map(|v| Case {
                scenario: s,
                variant: v,
            })),
            Some(v) => {
                let Some(found) = s.variants().iter().find(|x| **x == v) else {
                    return Err(BadInput::new(
                        format!("scenario {} has no variant `{v}`", s.name()),
                        s.variants().iter().map(|v| v.to_string()).collect(),
                    ));
                };
                out.push(Case {
                    scenario: s,
                    variant: found,
                });
            }
        }
    }
    Ok(out)
}

/// Runs one case on a lab of its own; every id of the case gets a row.
pub async fn run_case(case: Case, opts: &Options) -> Result<Vec<Row>, BadInput> {
    let outcome = match case.scenario {
        ScenarioId::S0 => s0::run(case, opts).await,
        ScenarioId::S1 => s1::run(case, opts).await,
        ScenarioId::S2 => s2::run(case, opts).await,
        ScenarioId::S3 => s3::run(case, opts).await,
        ScenarioId::S4 => s4::run(case, opts).await,
    };
    let (mut rows, error) = match outcome {
        Ok(rows) => (rows, None),
        Err((rows, e)) => {
            if let Some(bad) = e.downcast_ref::<BadInput>() {
                return Err(bad.clone());
            }
            (rows, Some(format!("{e:#}")))
        }
    };
    // Ids the run did not reach fail with the reason it stopped.
    for id in case.scenario.ids(case.variant) {
        if !rows.iter().any(|r| r.id == *id) {
            rows.push(Row {
                id: id.to_string(),
                scenario: case.scenario.name().into(),
                variant: case.variant.into(),
                pass: false,
                ms: None,
                evidence: format!(
                    "not reached: {}",
                    error
                        .as_deref()
                        .unwrap_or("the scenario ended before this check")
                ),
                at_ms: crate::orchestra::history::now_ms(),
            });
        }
    }
    Ok(rows)
}

/// What [`run`] tells its caller while it goes.
pub enum Progress<'a> {
    /// A case starts: the `n`th (from 1) of `of`.
    Started { case: &'a Case, n: usize, of: usize },
    /// A case ended with these rows after `ms`.
    Finished {
        case: &'a Case,
        rows: &'a [Row],
        ms: u64,
    },
}

/// Runs `cases` one after the other; `progress` hears each case start and end (long runs, such
/// as the default timers' minutes, show their rows as they come).
pub async fn run(
    cases: &[Case],
    opts: &Options,
    mut progress: impl FnMut(Progress<'_>),
) -> Result<Report, BadInput> {
    let started = Instant::now();
    let mut report = Report::default();
    for (i, case) in cases.iter().enumerate() {
        progress(Progress::Started {
            case,
            n: i + 1,
            of: cases.len(),
        });
        let case_started = Instant::now();
        let rows = run_case(*case, opts).await?;
        progress(Progress::Finished {
            case,
            rows: &rows,
            ms: case_started.elapsed().as_millis() as u64,
        });
        report.rows.extend(rows);
    }
    report.wall_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// What a scenario's `run` returns: its rows, or the rows so far and why it stopped.
pub type Outcome = Result<Vec<Row>, (Vec<Row>, anyhow::Error)>;

/// Runs `steps` on a fresh stage and always stops it; the rows either way.
pub async fn on_stage<F>(
    case: Case,
    opts: &Options,
    adjust: impl FnOnce(&mut crate::Topology),
    steps: F,
) -> Outcome
where
    F: for<'a> FnOnce(&'a mut Stage) -> futures::future::BoxFuture<'a, anyhow::Result<()>>,
{
    let mut stage = Stage::start(case, opts, adjust)
        .await
        .map_err(|e| (Vec::new(), e))?;
    let start = stage.history.mark_start();
    let result = steps(&mut stage).await;
    if std::env::var_os("DRLAB_HISTORY").is_some() {
        // The whole merged history on stderr, for a run that needs explaining.
        for e in stage.history.since(&start) {
            eprintln!("{} {}", e.at_ms, e.describe());
        }
    }
    let rows = std::mem::take(&mut stage.rows);
    if let Some(recorder) = &opts.recorder {
        recorder.collect(&stage).await;
    }
    stage.stop().await;
    match result {
        Ok(()) => Ok(rows),
        Err(e) => Err((rows, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_variants_parse_or_name_the_valid_ones() {
        let all = cases(&["all".into()], None).unwrap();
        assert_eq!(all.len(), 9);
        let one = cases(&["s1".into()], Some("b")).unwrap();
        assert_eq!(
            one,
            [Case {
                scenario: ScenarioId::S1,
                variant: "b"
            }]
        );
        let e = cases(&["S9".into()], None).unwrap_err();
        assert!(
            e.to_string().contains("S9") && e.to_string().contains("all"),
            "{e}"
        );
        let e = cases(&["S2".into()], Some("z")).unwrap_err();
        assert!(e.to_string().contains("valid: a, b"), "{e}");
    }
}
