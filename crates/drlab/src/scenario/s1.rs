//! S1 — the desktops lose GWS1 and reconnect to another GWS node. Variant a: GWS1 crashes;
//! b: the proxy's link to GWS1 is cut (reject) while GWS1 stays connected to ss1; c: b with
//! GWS1's session expiry disabled (S1.9: no unregister, no disconnect, no move).
//!
//! Agent1's desktop has the relogin policy (the proxy re-binds it to GWS2, S1.3–S1.5); Agent2's
//! has not: it gives up (S1.2) and the agent logs in again through DC2 (S1.7, S1.8).

use std::time::Duration;

use desktop_sim::{RECONNECTING, UNABLE_TO_CONNECT};
use futures::FutureExt;

use super::setup::{self, Standard};
use super::stage::{Found, Options, Stage};
use super::{on_stage, Case, Outcome};
use crate::orchestra::faults::{Fault, Mode};
use crate::orchestra::history::now_ms;

/// The ids of variants a and b.
pub const IDS: &[&str] = &[
    "R1", "S1.2", "S1.3", "R14", "S1.4", "R5", "R6", "S1.5", "S1.6", "R3", "S1.7", "R4", "S1.1",
    "S1.8", "R8",
];
/// The ids of variant c.
pub const IDS_C: &[&str] = &["R1", "S1.2", "S1.9", "R9"];

pub async fn run(case: Case, opts: &Options) -> Outcome {
    let no_expiry = case.variant == "c";
    on_stage(
        case,
        opts,
        |t| {
            if no_expiry {
                // Session expiry disabled: a day is longer than any run.
                for timers in std::iter::once(&mut t.timers).chain(t.profiles.values_mut()) {
                    timers.gws_session_timeout = Duration::from_secs(86_400);
                }
            }
        },
        |stage| steps(stage).boxed(),
    )
    .await
}

async fn steps(stage: &mut Stage) -> anyhow::Result<()> {
    let r = stage.roles.clone();
    let mut set = setup::standard(stage, [true, false]).await?;
    let fault = match stage.case.variant {
        "a" => Fault::Crash(r.gws1.clone()),
        _ => Fault::CutProxyGws {
            proxy: r.proxy_dc1.clone(),
            gws: r.gws1.clone(),
        },
    };
    set.note_media_at_fault(stage).await;
    stage.inject(&fault, Mode::Reject).await?;
    let mark = stage.fault_mark();

    // S1.2: both desktops show the first message at once; Agent2's (no relogin) gives up.
    let wait = stage.patience;
    let mut shown = Vec::new();
    for seat in [&set.agent1, &set.agent2] {
        shown.push(setup::message_shown(stage, &mark, &seat.agent.user, RECONNECTING, wait).await);
    }
    let give_up_wait = stage.giveup_after + stage.patience;
    shown.push(
        setup::message_shown(
            stage,
            &mark,
            &set.agent2.agent.user,
            UNABLE_TO_CONNECT,
            give_up_wait,
        )
        .await,
    );
    let s12 = match shown.iter().find(|s| s.is_err()) {
        Some(Err(e)) => Err(e.clone()),
        _ => Ok((
            shown
                .last()
                .and_then(|s| s.as_ref().ok())
                .and_then(|(ms, _)| *ms),
            shown
                .iter()
                .filter_map(|s| s.as_ref().ok().map(|(_, e)| e.clone()))
                .collect::<Vec<_>>()
                .join("; "),
        )),
    };
    stage.record("S1.2", s12);

    if stage.case.variant == "c" {
        return no_move_without_unregister(stage, &set).await;
    }
    let s11_first = agent1_moves_to_gws2(stage, &set).await?;
    agent2_moves_to_dc2(stage, &set, s11_first).await
}

/// S1.3–S1.6, R3, R5, R6, R14 (Agent1 through GWS2); returns the first half of S1.1.
async fn agent1_moves_to_gws2(stage: &mut Stage, set: &Standard) -> anyhow::Result<Found> {
    let r = stage.roles.clone();
    let mark = stage.fault_mark();
    let a1 = &set.agent1;
    let user = a1.agent.user.as_str();
    // S1.3 / R14: the relogin lands on GWS2 (the proxy re-bound the desktop).
    let relogin = stage
        .history
        .wait_for(
            &mark,
            "desktops",
            stage.giveup_after + stage.patience,
            |e| {
                matches!(e.kind, "desktop.logged_in" | "desktop.session_opened")
                    && e.detail["user"] == user
                    && e.detail["relogin"] == true
            },
        )
        .await;
    let on_gws2 = stage.history.find(&mark, &r.gws2, |e| {
        e.kind == "session.created" && e.detail["user"] == user
    });
    let s13 = match (&relogin, &on_gws2) {
        (Some(login), Some(session)) => Ok((
            Some(stage.after_fault(login.at_ms)),
            format!(
                "new session on {} ({}), desktop {}",
                r.gws2, session.kind, login.kind
            ),
        )),
        _ => Err(format!(
            "relogin {:?}; session on {}: {:?}",
            relogin.map(|e| e.describe()),
            r.gws2,
            on_gws2.map(|e| e.describe())
        )),
    };
    stage.record("S1.3", s13.clone());
    stage.record("R14", s13);

    // S1.4: the registration through GWS2 reports Call1 (R6); the login is refused (R5); the
    // desktop releases Call1.
    let r6 = a1
        .desktop
        .wait_for(stage.patience, |s| {
            s.calls.values().any(|c| c.state == "Established")
        })
        .await
        .map(|s| {
            let call = s
                .calls
                .values()
                .next()
                .map(|c| format!("{} {}", c.id, c.state));
            (
                Some(stage.after_fault(now_ms())),
                format!("desktop via {} shows {}", r.gws2, call.unwrap_or_default()),
            )
        })
        .map_err(|s| format!("the desktop shows no call after the relogin: {:?}", s.calls));
    stage.record("R6", r6.clone());
    let r5 = setup::login_refused(stage, &a1.desktop, &r.ss1).await;
    stage.record("R5", r5.clone());
    // S1.1, first half: both calls are up with media until Call1 is released.
    let s11_first = setup::calls_continue(
        stage,
        &mark,
        &[&set.agent1.agent.dn, &set.agent2.agent.dn],
        &set.media_at_fault,
    )
    .await;
    let call_id = a1
        .desktop
        .screen()
        .calls
        .keys()
        .next()
        .cloned()
        .unwrap_or_else(|| a1.call_id.clone());
    let release_mark = stage.history.mark();
    let released = a1.desktop.hang_up(&call_id).await;
    let ended = stage
        .history
        .wait_for(&release_mark, "caller", stage.patience, |e| {
            e.kind == "call.ended" && e.detail["dn"] == a1.agent.dn.as_str()
        })
        .await;
    let s14 = match (&r6, &r5, &released, &ended) {
        (Ok(_), Ok(_), Ok(()), Some(end)) => Ok((
            Some(stage.after_fault(end.at_ms)),
            format!(
                "Call1 reported, login refused, released from the desktop ({})",
                end.detail["reason"]
            ),
        )),
        _ => Err(format!(
            "R6 {:?}; R5 {:?}; release {released:?}; caller {:?}",
            r6.as_ref().err(),
            r5.as_ref().err(),
            ended.map(|e| e.describe())
        )),
    };
    stage.record("S1.4", s14);

    // S1.5: after ACW (if the agent was in it), the agent logs in.
    let acw = stage.history.find(&release_mark, &r.ss1, |e| {
        e.kind == "agent.acw_started" && e.detail["dn"] == a1.agent.dn.as_str()
    });
    if acw.is_some() {
        let _ = setup::wait_dn(
            stage,
            &release_mark,
            &r.ss1,
            "agent.acw_ended",
            &a1.agent.dn,
            stage.timers.wrap_up_time + stage.patience,
        )
        .await;
    }
    let s15 = setup::agent_logs_in(stage, &a1.desktop).await.map(|ms| {
        (
            Some(stage.after_fault(now_ms())),
            format!("{user} logged in through {} in {ms} ms", r.gws2),
        )
    });
    stage.record("S1.5", s15);

    // S1.6 / R3: ownership stayed on ss1.
    let moved = setup::ownership_change(stage, &mark, &a1.agent.dn, &r.ss1);
    let owner = setup::owner_at(stage, &r.ss1, &a1.agent.dn).await;
    let registered = stage.history.find(&mark, &r.ss1, |e| {
        e.kind == "tlib.registered" && e.detail["dn"] == a1.agent.dn.as_str()
    });
    let s16 = match (&moved, &owner) {
        (None, Some(o)) if *o == r.ss1 => Ok((
            None,
            format!(
                "{} owner {o} throughout; re-registration {}",
                a1.agent.dn,
                registered
                    .map(|e| e.describe())
                    .unwrap_or_else(|| "not journaled".into())
            ),
        )),
        _ => Err(format!("ownership changed: {moved:?}, owner now {owner:?}")),
    };
    stage.record("S1.6", s16.clone());
    stage.record("R3", s16);
    Ok(s11_first)
}

/// S1.7, S1.8, R4, R8 and the second half of S1.1 (Agent2 through DC2).
async fn agent2_moves_to_dc2(
    stage: &mut Stage,
    set: &Standard,
    s11_first: Found,
) -> anyhow::Result<()> {
    let r = stage.roles.clone();
    let mark = stage.fault_mark();
    let a2 = &set.agent2;
    let dn = a2.agent.dn.as_str();
    // The agent opens the DC2 desktop (GWS3 → ss3).
    let d2 = setup::seat_desktop_any(stage, &r.proxy_dc2, &r.gws3, &a2.agent).await?;
    // R4: logged out when GWS1 disconnected (a) or unregistered on session expiry (b).
    let r4 = setup::wait_dn(
        stage,
        &mark,
        &r.ss1,
        "agent.logout",
        dn,
        stage.timers.gws_session_timeout + stage.patience,
    )
    .await;
    let call2_up = stage
        .history
        .find(&mark, "caller", |e| {
            e.kind == "call.ended" && e.detail["dn"] == dn
        })
        .is_none();
    stage.record("R4", r4.clone());
    let s17 = match (&r4, call2_up) {
        (Ok((ms, e)), true) => Ok((*ms, format!("desktop on {}; {e}; Call2 still up", r.gws3))),
        (Ok(_), false) => Err("Call2 ended".into()),
        (Err(e), _) => Err(e.clone()),
    };
    stage.record("S1.7", s17);

    // S1.1, second half: Call2 still up with media until it is released.
    let s11 = setup::calls_continue(stage, &mark, &[dn], &set.media_at_fault[1..]).await;
    let s11 = match (s11_first, s11) {
        (Ok((_, a)), Ok((ms, b))) => Ok((ms, format!("{a}; then {b}"))),
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    stage.record("S1.1", s11);

    // S1.8 / R8: no move while Call2 is up; after its release (and ACW) the move after the delay.
    let early = setup::ownership_change(stage, &mark, dn, &r.ss1);
    let release_mark = stage.history.mark();
    let released_at = now_ms();
    stage.actors.caller.hang_up(dn).await?;
    // The agent tries to log in through DC2 before the move (it may log on twice).
    let early_login = d2.log_in_agent().await.is_ok();
    let bound = stage.timers.wrap_up_time + stage.timers.ownership_move_delay + stage.patience;
    let moved = stage
        .history
        .wait_for(&release_mark, &r.ss1, bound, |e| {
            e.kind == "ownership.moved" && e.detail["dn"] == dn
        })
        .await;
    let logout_before_move = moved.as_ref().and_then(|m| {
        stage.history.find(&release_mark, &r.ss1, |e| {
            e.kind == "agent.logout" && e.detail["dn"] == dn && e.at_ms <= m.at_ms
        })
    });
    // Logged on twice when the early login got in before the move.
    let relogin = setup::agent_logs_in(stage, &d2).await;
    let s18 = match (&early, &moved, &relogin) {
        (None, Some(m), Ok(_)) if m.detail["to"] == r.ss3.as_str() => {
            let after = m.at_ms.saturating_sub(released_at);
            let delay = stage.timers.ownership_move_delay.as_millis() as u64;
            if after + 50 < delay {
                Err(format!(
                    "moved {after} ms after the release, before the {delay} ms delay"
                ))
            } else {
                let twice = match (early_login, &logout_before_move) {
                    (true, Some(_)) => {
                        "logged in through DC2 before the move, logged out by it, logged in again"
                    }
                    (true, None) => "logged in through DC2 before the move and not logged out",
                    (false, _) => "logged in through DC2 after the move",
                };
                if early_login && logout_before_move.is_none() {
                    Err(twice.into())
                } else {
                    Ok((
                        Some(stage.after_fault(m.at_ms)),
                        format!(
                            "moved to {} {after} ms after Call2's release; {twice}",
                            r.ss3
                        ),
                    ))
                }
            }
        }
        _ => Err(format!(
            "ownership changed during Call2: {early:?}; move after it {:?}; login {relogin:?}",
            moved.as_ref().map(|e| e.describe())
        )),
    };
    stage.record("S1.8", s18.clone());
    stage.record("R8", s18);
    drop(d2);
    Ok(())
}

/// Variant c: S1.9 / R9 — GWS1 keeps Agent2's DN registered, so ownership never moves, even
/// after Call2 and ACW end and the agent registered through DC2.
async fn no_move_without_unregister(stage: &mut Stage, set: &Standard) -> anyhow::Result<()> {
    let r = stage.roles.clone();
    let mark = stage.fault_mark();
    let dn = set.agent2.agent.dn.as_str();
    let d2 = setup::seat_desktop_any(stage, &r.proxy_dc2, &r.gws3, &set.agent2.agent).await?;
    stage.actors.caller.hang_up(dn).await?;
    let window = stage.timers.wrap_up_time + stage.timers.ownership_move_delay * 3;
    let moved = stage
        .history
        .wait_for(&mark, &r.ss1, window, |e| {
            e.kind == "ownership.moved" && e.detail["dn"] == dn
        })
        .await;
    let owner = setup::owner_at(stage, &r.ss1, dn).await;
    let gws1_registered = stage.sip(&r.ss1)?.state().await["dns"]
        .as_array()
        .and_then(|d| {
            d.iter()
                .find(|d| d["dn"] == dn)
                .map(|d| d["registered_by"].clone())
        })
        .unwrap_or_default();
    let s19 = match (&moved, &owner) {
        (None, Some(o)) if *o == r.ss1 => Ok((
            None,
            format!("{dn} still owned by {o} {} ms after Call2's release; registered by clients {gws1_registered}", window.as_millis()),
        )),
        _ => Err(format!("moved {:?}; owner {owner:?}", moved.map(|e| e.describe()))),
    };
    stage.record("S1.9", s19.clone());
    stage.record("R9", s19);
    drop(d2);
    Ok(())
}
