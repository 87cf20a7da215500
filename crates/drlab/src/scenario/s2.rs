//! S2 — GWS1's T-Lib link to ss1 is cut while GWS1 keeps running (variant a: reject, an RST;
//! b: silent drop, found by ADDP). ss1 logs both agents out (R4), GWS1 shows the voice channel
//! out of service (R13) and reconnects by its list to ss2, registering the DNs there (R2, a
//! remote registration); the desktops see and control their calls but cannot log in (R5, R6);
//! after Call1, Agent1 logs in; Agent2 moves to DC2 and ownership follows after the delay (R8).

use desktop_sim::Voice;
use futures::FutureExt;

use super::setup;
use super::stage::{Options, Stage};
use super::{on_stage, Case, Outcome};
use crate::orchestra::faults::{Fault, Mode};
use crate::orchestra::history::now_ms;

pub const IDS: &[&str] = &[
    "R1", "S2.2", "R4", "S2.3", "R13", "S2.4", "R2", "S2.1", "S2.5", "S2.6",
];

pub async fn run(case: Case, opts: &Options) -> Outcome {
    on_stage(case, opts, |_| {}, |stage| steps(stage).boxed()).await
}

async fn steps(stage: &mut Stage) -> anyhow::Result<()> {
    let r = stage.roles.clone();
    let mut set = setup::standard(stage, [false, false]).await?;
    let dns = set.note_media_at_fault(stage).await;
    let mode = if stage.case.variant == "a" {
        Mode::Reject
    } else {
        Mode::Drop
    };
    let fault = Fault::CutGwsSip {
        gws: r.gws1.clone(),
        sip: r.ss1.clone(),
    };
    stage.inject(&fault, mode).await?;
    let mark = stage.fault_mark();

    // S2.2 / R4: ss1 logs both agents out, at once (a) or within addp.timeout (b).
    let bound_ms = match mode {
        Mode::Reject => stage.timers.addp_timeout.as_millis() as u64,
        Mode::Drop => {
            (stage.timers.addp_timeout + stage.timers.addp_interval).as_millis() as u64 + 500
        }
    };
    let mut logouts = Vec::new();
    for dn in &dns {
        logouts
            .push(setup::wait_dn(stage, &mark, &r.ss1, "agent.logout", dn, stage.patience).await);
    }
    let s22 = match (&logouts[0], &logouts[1]) {
        (Ok((Some(a), _)), Ok((Some(b), e))) if (*a).max(*b) <= bound_ms => Ok((
            Some((*a).max(*b)),
            format!("both logged out within {bound_ms} ms: {e}"),
        )),
        (Ok((a, _)), Ok((b, _))) => Err(format!(
            "logged out after {a:?} / {b:?} ms, bound {bound_ms} ms"
        )),
        (Err(e), _) | (_, Err(e)) => Err(e.clone()),
    };
    stage.record("S2.2", s22.clone());
    stage.record("R4", s22);

    // S2.3 / R13: the desktops show the voice channel out of service.
    let mut oos = Vec::new();
    for seat in [&set.agent1, &set.agent2] {
        let user = seat.agent.user.as_str();
        let seen = stage
            .history
            .wait_for(&mark, "desktops", stage.patience, |e| {
                e.detail["user"] == user
                    && ((e.kind == "desktop.voice" && e.detail["voice"]["state"] == "OutOfService")
                        || (e.kind == "desktop.voice_service" && e.detail["available"] == false))
            })
            .await;
        oos.push(seen.map(|e| (stage.after_fault(e.at_ms), e.describe())));
    }
    let s23 = match (&oos[0], &oos[1]) {
        (Some((a, e)), Some((b, _))) => Ok((Some((*a).max(*b)), e.clone())),
        _ => Err(format!(
            "desktops showing the voice channel unavailable: {oos:?}"
        )),
    };
    stage.record("S2.3", s23.clone());
    stage.record("R13", s23);

    // S2.4 / R2: GWS1 reconnects to ss2 and registers the DNs there (remote); the desktops
    // see their calls again (R6) and cannot log in (R5).
    let relinked = stage
        .history
        .wait_for(&mark, &r.gws1, stage.patience, |e| {
            e.kind == "tlib.link_up" && e.detail.to_string().contains(&format!("\"{}\"", r.ss2))
        })
        .await;
    // R2: ss2 relays the registration to the owner, which registers it (a relayed client).
    let forwarded = setup::wait_dn(
        stage,
        &mark,
        &r.ss2,
        "tlib.register_forwarded",
        &dns[0],
        stage.patience,
    )
    .await;
    let at_owner = setup::wait_dn(
        stage,
        &mark,
        &r.ss1,
        "tlib.registered",
        &dns[0],
        stage.patience,
    )
    .await;
    let owner = setup::owner_at(stage, &r.ss2, &dns[0]).await;
    let r2 = match (&forwarded, &at_owner, &owner) {
        (Ok((ms, e)), Ok(_), Some(o)) if *o == r.ss1 => Ok((
            *ms,
            format!("{e}; registered at the owner {o}, which keeps the DN"),
        )),
        _ => Err(format!(
            "relayed by {}: {forwarded:?}; registered at {}: {at_owner:?}; owner {owner:?}",
            r.ss2, r.ss1
        )),
    };
    stage.record("R2", r2);
    let a1 = &set.agent1;
    let back = a1
        .desktop
        .wait_for(stage.patience, |s| {
            s.voice != Voice::OutOfService && s.calls.values().any(|c| c.state == "Established")
        })
        .await;
    let refused = setup::login_refused(stage, &a1.desktop, &r.ss1).await;
    let calls = setup::calls_continue(stage, &mark, &[&dns[0], &dns[1]], &set.media_at_fault).await;
    stage.record("S2.1", calls);
    let call_id = a1
        .desktop
        .screen()
        .calls
        .keys()
        .next()
        .cloned()
        .unwrap_or_default();
    let release_mark = stage.history.mark();
    let released = a1.desktop.hang_up(&call_id).await;
    let ended = stage
        .history
        .wait_for(&release_mark, "caller", stage.patience, |e| {
            e.kind == "call.ended" && e.detail["dn"] == dns[0].as_str()
        })
        .await;
    let s24 = match (&relinked, &back, &refused, &released, &ended) {
        (Some(link), Ok(_), Ok((_, why)), Ok(()), Some(_)) => Ok((
            Some(stage.after_fault(link.at_ms)),
            format!(
                "{} relinked to {}; desktop shows Call1, login refused ({why}), released it",
                r.gws1, r.ss2
            ),
        )),
        _ => Err(format!(
            "relink {:?}; desktop {:?}; login {:?}; release {released:?}; caller {:?}",
            relinked.map(|e| e.describe()),
            back.as_ref().err().map(|s| (&s.voice, &s.calls)),
            refused.as_ref().err(),
            ended.map(|e| e.describe())
        )),
    };
    stage.record("S2.4", s24);

    // S2.5: after the release (and ACW, if any) Agent1 logs in.
    if stage
        .history
        .find(&release_mark, &r.ss1, |e| {
            e.kind == "agent.acw_started" && e.detail["dn"] == dns[0].as_str()
        })
        .is_some()
    {
        let _ = setup::wait_dn(
            stage,
            &release_mark,
            &r.ss1,
            "agent.acw_ended",
            &dns[0],
            stage.timers.wrap_up_time + stage.patience,
        )
        .await;
    }
    let s25 = setup::agent_logs_in(stage, &a1.desktop).await.map(|ms| {
        (
            Some(stage.after_fault(now_ms())),
            format!("{} logged in through {} in {ms} ms", a1.agent.user, r.gws1),
        )
    });
    stage.record("S2.5", s25);

    // S2.6: Agent2 closes the DC1 desktop (logs out there) and opens one through DC2; after
    // Call2 ss1 waits the delay and moves the DN to ss3; the agent logs in.
    let a2 = &set.agent2;
    let _ = a2.desktop.log_out().await;
    let d2 = setup::seat_desktop_any(stage, &r.proxy_dc2, &r.gws3, &a2.agent).await?;
    let release_mark = stage.history.mark();
    let released_at = now_ms();
    stage.actors.caller.hang_up(&dns[1]).await?;
    let bound = stage.timers.wrap_up_time + stage.timers.ownership_move_delay + stage.patience;
    let moved = stage
        .history
        .wait_for(&release_mark, &r.ss1, bound, |e| {
            e.kind == "ownership.moved" && e.detail["dn"] == dns[1].as_str()
        })
        .await;
    let login = setup::agent_logs_in(stage, &d2).await;
    let s26 = match (&moved, &login) {
        (Some(m), Ok(_)) if m.detail["to"] == r.ss3.as_str() => {
            let after = m.at_ms.saturating_sub(released_at);
            let delay = stage.timers.ownership_move_delay.as_millis() as u64;
            if after + 50 < delay {
                Err(format!(
                    "moved {after} ms after the release, before the {delay} ms delay"
                ))
            } else {
                Ok((
                    Some(stage.after_fault(m.at_ms)),
                    format!(
                        "moved to {} {after} ms after Call2's release; logged in through {}",
                        r.ss3, r.gws3
                    ),
                ))
            }
        }
        _ => Err(format!(
            "move {:?}; login {login:?}",
            moved.as_ref().map(|e| e.describe())
        )),
    };
    stage.record("S2.6", s26);
    drop(d2);
    Ok(())
}
