//! S0.1 — the DC1–DC2 link is cut entirely in the standard set-up: nothing in DC1 notices.
//! Both calls go on with media, both agents stay logged in, the desktops show no message; then
//! each call is released and the agent goes through ACW back to Ready (R7).

use desktop_sim::Connection;
use futures::FutureExt;

use super::setup;
use super::stage::{Options, Stage};
use super::{on_stage, Case, Outcome};
use crate::orchestra::faults::{Fault, Layer, Mode};

pub const IDS: &[&str] = &["R1", "S0.1", "R7"];

pub async fn run(case: Case, opts: &Options) -> Outcome {
    on_stage(case, opts, |_| {}, |stage| steps(stage).boxed()).await
}

async fn steps(stage: &mut Stage) -> anyhow::Result<()> {
    let r = stage.roles.clone();
    let mut set = setup::standard(stage, [false, false]).await?;
    let dns = set.note_media_at_fault(stage).await;
    let fault = Fault::CutDcs {
        a: r.dc1.clone(),
        b: r.dc2.clone(),
        layer: Layer::All,
    };
    stage.inject(&fault, Mode::Drop).await?;
    let mark = stage.fault_mark();
    // Long enough for every DC1 node to notice the lost DC2 peers (ADDP) and act on it.
    let window = stage.timers.addp_timeout * 3;
    let noticed = stage
        .history
        .wait_for(&mark, "desktops", window, |e| {
            matches!(
                e.kind,
                "desktop.message_shown" | "desktop.connection_lost" | "desktop.voice"
            )
        })
        .await;
    let logouts: Vec<String> = [&r.ss1, &r.ss2]
        .iter()
        .flat_map(|n| {
            stage
                .history
                .find_all(&mark, n, |e| e.kind == "agent.logout")
        })
        .map(|e| e.describe())
        .collect();
    let calls = setup::calls_continue(stage, &mark, &[&dns[0], &dns[1]], &set.media_at_fault).await;
    let desktops_fine = [&set.agent1, &set.agent2].iter().all(|s| {
        let screen = s.desktop.screen();
        screen.connection == Connection::Connected
            && screen.agent_logged_in()
            && screen.banner.is_none()
    });
    let s01 = match (&noticed, logouts.is_empty(), &calls, desktops_fine) {
        (None, true, Ok((ms, e)), true) => Ok((*ms, format!("{e}; agents logged in, desktops without message"))),
        _ => Err(format!(
            "desktop change {:?}; logouts {logouts:?}; calls {:?}; desktops connected and logged in: {desktops_fine}",
            noticed.map(|e| e.describe()),
            calls.as_ref().err()
        )),
    };
    stage.record("S0.1", s01);

    // R7: Agent1 releases Call1: ACW (NotReady AfterCallWork), then Ready after wrap-up.
    let a1 = &set.agent1;
    let release_mark = stage.history.mark();
    a1.desktop
        .hang_up(&a1.call_id)
        .await
        .map_err(|f| anyhow::anyhow!("release refused: {f}"))?;
    let started = setup::wait_dn(
        stage,
        &release_mark,
        &r.ss1,
        "agent.acw_started",
        &a1.agent.dn,
        stage.patience,
    )
    .await;
    let ended = setup::wait_dn(
        stage,
        &release_mark,
        &r.ss1,
        "agent.acw_ended",
        &a1.agent.dn,
        stage.timers.wrap_up_time + stage.patience,
    )
    .await;
    let ready = a1
        .desktop
        .wait_for(stage.patience, |s| s.voice == desktop_sim::Voice::Ready)
        .await;
    let r7 = match (started, ended, ready) {
        (Ok((_, a)), Ok((ms, b)), Ok(_)) => Ok((ms, format!("{a}; {b}; desktop Ready"))),
        (s, e, r) => Err(format!(
            "ACW start {:?}, end {:?}, desktop {:?}",
            s.err(),
            e.err(),
            r.err().map(|s| s.voice)
        )),
    };
    stage.record("R7", r7);
    Ok(())
}
