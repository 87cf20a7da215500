//! S3 — the TC layer between the DCs fails (best practices not followed). Agent1 (PSTN) is owned
//! by ss1 (desktop through DC1's proxy on GWS1 → ss1) while Call1 arrived at ss3 in DC2. Agent2
//! (softphone) has its phone registered at ss4 (owner ss4) and its desktop through GWS1 → ss1 (a
//! remote registration, R2); Call2 arrived at ss2 in DC1. Fault: every TC link between a DC1 and
//! a DC2 SIP node is cut (silently); SIP, media, T-Lib and HTTP stay.
//!
//! Order: Agent2's side first (S3.5–S3.8), then both calls (S3.1), then Agent1: the DC1 desktop's
//! control has no effect on Call1 (S3.2); a second desktop through DC2 (GWS3 → ss3, Call1's node)
//! gets control of Call1 back (S3.9); the caller hangs up Call1, which the DC1 desktop still
//! shows until the agent releases it there (S3.3). Then the TC layer heals and a new call to
//! Agent1 at ss3 reaches the DC1 desktop, which controls it again (S3.4).

use std::time::Duration;

use desktop_sim::{Connection, Desktop, Voice};
use futures::FutureExt;

use super::setup::{self, Seat, Standard};
use super::stage::{Found, Options, Stage};
use super::{on_stage, Case, Outcome};
use crate::orchestra::faults::{Fault, Layer, Mode};
use crate::orchestra::history::{now_ms, Mark};

pub const IDS: &[&str] = &[
    "R1", "R2", "S3.5", "R13", "S3.6", "R4", "S3.7", "S3.8", "S3.1", "S3.2", "S3.9", "R10", "S3.3",
    "R11", "S3.4",
];

pub async fn run(case: Case, opts: &Options) -> Outcome {
    on_stage(case, opts, |_| {}, |stage| steps(stage).boxed()).await
}

async fn steps(stage: &mut Stage) -> anyhow::Result<()> {
    let r = stage.roles.clone();
    let mut set = set_up(stage).await?;
    let dns = set.note_media_at_fault(stage).await;
    let fault = Fault::CutDcs {
        a: r.dc1.clone(),
        b: r.dc2.clone(),
        layer: Layer::Tc,
    };
    let cut = stage.inject(&fault, Mode::Drop).await?;
    let mark = stage.fault_mark();

    agent2_cut_off(stage, &set).await?;
    let s31 = setup::calls_continue(stage, &mark, &[&dns[0], &dns[1]], &set.media_at_fault).await;
    stage.record("S3.1", s31);
    agent1_while_cut(stage, &set).await?;

    // S3.4: the TC layer heals; a new call to Agent1 at ss3 reaches the DC1 desktop (events) and
    // the desktop holds it (control).
    stage.heal(&cut).await?;
    let heal_mark = stage.history.mark();
    let s34 = control_back(stage, &heal_mark, &set.agent1).await;
    stage.record("S3.4", s34);
    Ok(())
}

/// Agent1 on ss1 with Call1 at ss3; Agent2's phone at ss4, its desktop on GWS1 → ss1, Call2 at
/// ss2. Records R1 (ss1 took Agent1's DN, ss4 Agent2's) and R2 (Agent2 logged in through ss1).
async fn set_up(stage: &mut Stage) -> anyhow::Result<Standard> {
    let r = stage.roles.clone();
    let mark = stage.history.mark();
    let (a1, a2) = (r.pstn[0].clone(), r.softphone[1].clone());
    let d1 = setup::seat_desktop(stage, &r.proxy_dc1, &r.gws1, &a1, false).await?;
    let ss4_sip = stage.sip(&r.ss4)?.sip_addr();
    let (phone, control) = stage
        .actors
        .phone(&mut stage.history, &a2.dn, vec![ss4_sip], None)
        .await?;
    stage.handle.add_phone(&a2.dn, phone.sip_addr(), control);
    let taken1 = setup::wait_dn(
        stage,
        &mark,
        &r.ss1,
        "ownership.taken",
        &a1.dn,
        stage.patience,
    );
    let taken2 = setup::wait_dn(
        stage,
        &mark,
        &r.ss4,
        "ownership.taken",
        &a2.dn,
        stage.patience,
    );
    let r1 = match (taken1.await, taken2.await) {
        (Ok((_, a)), Ok((_, b))) => Ok((None, format!("{a}; {b}"))),
        (a, b) => Err(format!("{}: {a:?}; {}: {b:?}", r.ss1, r.ss4)),
    };
    stage.record("R1", r1);
    let d2 = setup::seat_desktop(stage, &r.proxy_dc1, &r.gws1, &a2, false).await;
    let r2 = match (&d2, setup::owner_at(stage, &r.ss1, &a2.dn).await) {
        (Ok(_), Some(owner)) if owner == r.ss4 => Ok((
            None,
            format!(
                "{} logged in through {} → {} while {owner} owns {}",
                a2.user, r.gws1, r.ss1, a2.dn
            ),
        )),
        (d, owner) => Err(format!(
            "login {:?}; owner of {} at {}: {owner:?}",
            d.as_ref().err(),
            a2.dn,
            r.ss1
        )),
    };
    stage.record("R2", r2);
    let d2 = d2?;
    let (call1, id1) = setup::answered_call(stage, &d1, &a1, &r.ss3, "5550001").await?;
    let (call2, id2) = setup::answered_call(stage, &d2, &a2, &r.ss2, "5550002").await?;
    Ok(Standard {
        agent1: Seat {
            agent: a1,
            desktop: d1,
            call: call1,
            call_id: id1,
        },
        agent2: Seat {
            agent: a2,
            desktop: d2,
            call: call2,
            call_id: id2,
        },
        media_at_fault: [0, 0],
    })
}

/// S3.5–S3.8, R4, R13 (Agent2, whose owner ss4 is beyond the cut).
async fn agent2_cut_off(stage: &mut Stage, set: &Standard) -> anyhow::Result<()> {
    let r = stage.roles.clone();
    let mark = stage.fault_mark();
    let a2 = &set.agent2;
    let dn = a2.agent.dn.as_str();
    let user = a2.agent.user.as_str();
    let bound = stage.timers.addp_timeout + stage.patience;

    // S3.5 / R13: ss1 reports the DN out of service and the agent logged out to GWS1; the
    // desktop shows the voice channel unavailable and keeps its session.
    let unreachable = setup::wait_dn(stage, &mark, &r.ss1, "dn.owner_unreachable", dn, bound).await;
    let mut told = Vec::new();
    for event in ["EventDNOutOfService", "EventAgentLogout"] {
        told.push(
            stage
                .history
                .wait_for(&mark, &r.gws1, stage.patience, |e| {
                    e.kind == "notification.sent"
                        && e.detail["event"] == event
                        && e.detail["dn"] == dn
                })
                .await
                .map(|e| e.describe())
                .ok_or_else(|| format!("{} sent no {event} for {dn}", r.gws1)),
        );
    }
    let shown = a2
        .desktop
        .wait_for(stage.patience, |s| s.voice == Voice::OutOfService)
        .await;
    let ended = stage.history.find(&mark, &r.gws1, |e| {
        e.kind == "session.ended" && e.detail["user"] == user
    });
    let screen = a2.desktop.screen();
    let kept =
        ended.is_none() && screen.connection == Connection::Connected && screen.banner.is_none();
    let s35 = match (&unreachable, &told[..], &shown, kept) {
        (Ok((ms, u)), [Ok(oos), Ok(logout)], Ok(_), true) => Ok((
            *ms,
            format!("{u}; {oos}; {logout}; desktop voice OutOfService, session kept, no banner"),
        )),
        _ => Err(format!(
            "{}: {unreachable:?}; {told:?}; desktop voice {:?}, connection {:?}, banner {:?}; session end {:?}",
            r.ss1,
            screen.voice,
            screen.connection,
            screen.banner,
            ended.map(|e| e.describe())
        )),
    };
    stage.record("S3.5", s35.clone());
    stage.record("R13", s35);

    // S3.6 / R4: ss4 logs the agent out (the remote client went with the link); Call2 goes on.
    let logout = stage
        .history
        .wait_for(&mark, &r.ss4, bound, |e| {
            e.kind == "agent.logout" && e.detail["dn"] == dn && e.detail["cause"] == "tc_link_lost"
        })
        .await
        .map(|e| (Some(stage.after_fault(e.at_ms)), e.describe()))
        .ok_or_else(|| format!("no agent.logout of {dn} for the lost TC link within {bound:?}"));
    let call2 = setup::calls_continue(stage, &mark, &[dn], &set.media_at_fault[1..]).await;
    let s36 = match (&logout, &call2) {
        (Ok((ms, l)), Ok((_, c))) => Ok((*ms, format!("{l}; {c}"))),
        _ => Err(format!("{}: {logout:?}; Call2: {call2:?}", r.ss4)),
    };
    stage.record("S3.6", s36.clone());
    stage.record("R4", s36);

    // S3.7: no agent login through GWS1 (the open session) nor GWS2 (a new desktop).
    let mut refusals = vec![out_of_service_login(stage, &a2.desktop, &r.gws1).await];
    let on_gws2 = setup::seat_desktop_any(stage, &r.proxy_dc1, &r.gws2, &a2.agent).await;
    refusals.push(match &on_gws2 {
        Ok(d) => out_of_service_login(stage, d, &r.gws2).await,
        Err(e) => Err(format!("no desktop through {}: {e:#}", r.gws2)),
    });
    let s37 = match refusals.iter().find_map(|f| f.as_ref().err()) {
        Some(e) => Err(e.clone()),
        None => Ok((
            Some(stage.after_fault(now_ms())),
            refusals
                .iter()
                .filter_map(|f| f.as_ref().ok().map(|(_, e)| e.clone()))
                .collect::<Vec<_>>()
                .join("; "),
        )),
    };
    stage.record("S3.7", s37);
    drop(on_gws2);

    // S3.8: the agent logs in through DC2 (GWS3 → ss3 → the owner ss4); no call on the desktop.
    let on_dc2 = setup::seat_desktop(stage, &r.proxy_dc2, &r.gws3, &a2.agent, false).await;
    let s38 = match &on_dc2 {
        Ok(d) if d.screen().calls.is_empty() => Ok((
            Some(stage.after_fault(now_ms())),
            format!(
                "{user} logged in through {} → {}; no call shown",
                r.gws3, r.ss3
            ),
        )),
        Ok(d) => Err(format!(
            "the DC2 desktop shows calls: {:?}",
            d.screen().calls
        )),
        Err(e) => Err(format!("{e:#}")),
    };
    stage.record("S3.8", s38);
    Ok(())
}

/// The agent login through `desktop` (on `gws`, connected to a DC1 node) is refused with
/// `EventError` 58 (R10: the DN's owner is unreachable).
async fn out_of_service_login(stage: &Stage, desktop: &Desktop, gws: &str) -> Found {
    let r = &stage.roles;
    let mark = stage.history.mark();
    let (_, refusal) = setup::login_refused(stage, desktop, &r.ss1).await?;
    [&r.ss1, &r.ss2]
        .into_iter()
        .find_map(|node| {
            stage.history.find(&mark, node, |e| {
                e.kind == "tlib.error" && e.detail["code"] == 58 && e.detail["rule"] == "R10"
            })
        })
        .map(|e| (None, format!("via {gws}: {refusal}; {}", e.describe())))
        .ok_or_else(|| format!("via {gws}: {refusal}; but no EventError 58 (R10) in DC1"))
}

/// S3.2, S3.9, R10, S3.3, R11 (Agent1, whose Call1 lives beyond the cut).
async fn agent1_while_cut(stage: &mut Stage, set: &Standard) -> anyhow::Result<()> {
    let r = stage.roles.clone();
    let mark = stage.fault_mark();
    let a1 = &set.agent1;
    let dn = a1.agent.dn.as_str();
    let user = a1.agent.user.as_str();

    // S3.2: no event for Call1 since the fault; a hold from the DC1 desktop reaches neither ss3
    // nor the gateway.
    let hold_mark = stage.history.mark();
    let hold = a1.desktop.hold(&a1.call_id).await;
    let window = stage.timers.addp_timeout * 3;
    let held = held_at(stage, &hold_mark, dn, "hold", window).await;
    let held_at_ss3 = stage.history.find(&hold_mark, &r.ss3, |e| {
        e.kind == "call.held" && e.detail["dn"] == dn
    });
    let events = stage.history.find_all(&mark, "desktops", |e| {
        e.kind == "desktop.call" && e.detail["user"] == user
    });
    let state = a1
        .desktop
        .screen()
        .calls
        .get(&a1.call_id)
        .map(|c| c.state.clone());
    let s32 = match (&held, &held_at_ss3, events.is_empty(), state.as_deref()) {
        (Err(_), None, true, Some("Established")) => Ok((
            Some(stage.after_fault(now_ms())),
            format!(
                "hold from the DC1 desktop: {}; neither {} nor the gateway held Call1 within {window:?}; no call event on the desktop since the fault",
                hold.as_ref().map(|()| "accepted".to_string()).unwrap_or_else(|f| f.to_string()),
                r.ss3
            ),
        )),
        _ => Err(format!(
            "hold {hold:?} → gateway {held:?}, {} {:?}; desktop call events since the fault {:?}; Call1 on the desktop {state:?}",
            r.ss3,
            held_at_ss3.map(|e| e.describe()),
            events.iter().map(|e| e.describe()).collect::<Vec<_>>()
        )),
    };
    stage.record("S3.2", s32);

    // S3.9 / R10: a desktop through DC2 (GWS3 → ss3) registers the DN at Call1's node, sees
    // Call1 and holds and retrieves it.
    let dc2_mark = stage.history.mark();
    let on_dc2 = setup::seat_desktop_any(stage, &r.proxy_dc2, &r.gws3, &a1.agent).await?;
    let s39 = third_party_control(stage, &on_dc2).await;
    let registered = stage.history.find(&dc2_mark, &r.ss3, |e| {
        e.kind == "tlib.registered" && e.detail["dn"] == dn && e.detail["rule"] == "R10"
    });
    stage.record("S3.9", s39.clone());
    let login = on_dc2.screen().agent_logged_in();
    let r10 = match (&s39, &registered, login) {
        (Ok((ms, e)), Some(reg), false) => Ok((*ms, format!("{}; {e}; agent not logged in", reg.describe()))),
        _ => Err(format!(
            "{}: registration for local calls {:?}; S3.9 {:?}; agent logged in through DC2: {login}",
            r.ss3,
            registered.map(|e| e.describe()),
            s39.as_ref().err()
        )),
    };
    stage.record("R10", r10);

    // S3.3 / R11: the caller hangs up Call1: the DC2 desktop sees it go, the DC1 desktop still
    // shows it; the agent's release there clears it (locally at ss1).
    let hangup_mark = stage.history.mark();
    stage.actors.caller.hang_up(dn).await?;
    let gone_dc2 = on_dc2
        .wait_for(stage.patience, |s| s.calls.is_empty())
        .await
        .is_ok();
    let still = a1.desktop.screen().calls.contains_key(&a1.call_id);
    let release = a1.desktop.hang_up(&a1.call_id).await;
    let cleared = setup::wait_dn(
        stage,
        &hangup_mark,
        &r.ss1,
        "call.cleared_locally",
        dn,
        stage.patience,
    )
    .await;
    let gone_dc1 = a1
        .desktop
        .wait_for(stage.patience, |s| !s.calls.contains_key(&a1.call_id))
        .await
        .is_ok();
    let s33 = match (gone_dc2, still, &release, &cleared, gone_dc1) {
        (true, true, Ok(()), Ok((_, c)), true) => Ok((
            Some(stage.after_fault(now_ms())),
            format!("caller hung up (DC2 desktop saw it); DC1 desktop still showed Call1; release: {c}; cleared from the desktop"),
        )),
        _ => Err(format!(
            "DC2 desktop saw the hang-up: {gone_dc2}; DC1 desktop still showed Call1: {still}; release {release:?}; {}: {cleared:?}; cleared from the DC1 desktop: {gone_dc1}",
            r.ss1
        )),
    };
    stage.record("S3.3", s33.clone());
    let s32_ok = stage.rows.iter().any(|row| row.id == "S3.2" && row.pass);
    let r11 = match (s32_ok, s33) {
        (true, Ok((ms, e))) => Ok((
            ms,
            format!("no event or control across the cut (S3.2); {e}"),
        )),
        (ok, s33) => Err(format!("S3.2 passed: {ok}; S3.3: {:?}", s33.err())),
    };
    stage.record("R11", r11);
    // The agent closes the DC2 desktop before the heal.
    let _ = on_dc2.log_out().await;
    Ok(())
}

/// The first `call.notify` of `event` (`hold`, `talk`) about `dn` at the PSTN gateway since
/// `mark`, within `timeout`.
async fn held_at(stage: &Stage, mark: &Mark, dn: &str, event: &str, timeout: Duration) -> Found {
    stage
        .history
        .wait_for(mark, "pstn-gateway", timeout, |e| {
            // The gateway names the number it was called at (the DN with the PSTN prefix).
            e.kind == "call.notify"
                && e.detail["dn"].as_str().is_some_and(|d| d.ends_with(dn))
                && e.detail["event"] == event
        })
        .await
        .map(|e| (Some(stage.after_fault(e.at_ms)), e.describe()))
        .ok_or_else(|| format!("the gateway heard no {event} for {dn} within {timeout:?}"))
}

/// The desktop shows an established call, holds it (the gateway hears `hold`, the desktop shows
/// Held) and retrieves it (`talk`, Established again).
async fn third_party_control(stage: &Stage, desktop: &Desktop) -> Found {
    let shown = desktop
        .wait_for(stage.patience, |s| {
            s.calls.values().any(|c| c.state == "Established")
        })
        .await
        .map_err(|s| {
            format!(
                "{}'s desktop shows no established call: {:?}",
                desktop.user(),
                s.calls
            )
        })?;
    let dn = shown.dn.clone().unwrap_or_default();
    let id = shown
        .calls
        .values()
        .find(|c| c.state == "Established")
        .map(|c| c.id.clone())
        .unwrap_or_default();
    let mark = stage.history.mark();
    let hold = desktop.hold(&id).await;
    let (_, held) = controlled(stage, desktop, &mark, (&dn, &id), hold, ("hold", "Held")).await?;
    let mark = stage.history.mark();
    let retrieve = desktop.retrieve(&id).await;
    let (ms, talk) = controlled(
        stage,
        desktop,
        &mark,
        (&dn, &id),
        retrieve,
        ("talk", "Established"),
    )
    .await?;
    Ok((ms, format!("call {id}: {held}; {talk}")))
}

/// A call control the desktop asked for (`asked`) took effect: the gateway heard `event` for
/// the call of `dn` since `mark` and the desktop shows call `id` in `state`.
async fn controlled(
    stage: &Stage,
    desktop: &Desktop,
    mark: &Mark,
    (dn, id): (&str, &str),
    asked: Result<(), desktop_sim::Failure>,
    (event, state): (&str, &str),
) -> Found {
    asked.map_err(|f| format!("{event} of {id} refused: {f}"))?;
    let (ms, heard) = held_at(stage, mark, dn, event, stage.patience).await?;
    desktop
        .wait_for(stage.patience, |s| {
            s.calls.get(id).is_some_and(|c| c.state == state)
        })
        .await
        .map_err(|s| format!("after {event} the desktop shows {:?}", s.calls.get(id)))?;
    Ok((ms, format!("{heard}, desktop {state}")))
}

/// S3.4: after the heal, a new call to the agent at ss3 shows on the DC1 desktop and the desktop
/// holds and retrieves it.
async fn control_back(stage: &Stage, heal_mark: &Mark, seat: &Seat) -> Found {
    let r = &stage.roles;
    let linked = stage
        .history
        .wait_for(heal_mark, &r.ss1, stage.patience, |e| {
            e.kind == "link.up" && e.detail["peer"] == r.ss3.as_str()
        })
        .await
        .ok_or_else(|| format!("{}'s TC link to {} did not come back", r.ss1, r.ss3))?;
    let (_call, _) = setup::answered_call(stage, &seat.desktop, &seat.agent, &r.ss3, "5550003")
        .await
        .map_err(|e| format!("after the heal: {e:#}"))?;
    let (ms, e) = third_party_control(stage, &seat.desktop).await?;
    Ok((
        ms,
        format!(
            "{}; new call at {} on the DC1 desktop, {e}",
            linked.describe(),
            r.ss3
        ),
    ))
}
