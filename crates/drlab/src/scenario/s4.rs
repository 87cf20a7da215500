//! S4 — the softphone loses DC1. Agent2 is a softphone agent: the phone registered at ss1
//! (registrar list ss1 then ss3, like an SRV record with DC1 first), the desktop on GWS1, Call2
//! arrived at ss2. Variant a: the phone loses every path to DC1 — SIP to DC1's nodes and its
//! media — for good. Variant b (S4.2): the paths come back while the phone's refresh is in
//! flight, before the registration expires (no call: the media of a call would be lost after
//! the media timeout whatever the registration does).

use std::time::Duration;

use desktop_sim::UNABLE_TO_CONNECT;
use futures::FutureExt;

use super::setup;
use super::stage::{Options, Stage};
use super::{on_stage, Case, Outcome};
use crate::orchestra::faults::{Fault, Mode};

pub const IDS_A: &[&str] = &["R1", "S4.1", "S4.3", "R12", "S4.4", "R8", "S4.5", "S4.6"];
pub const IDS_B: &[&str] = &["R1", "S4.2"];

pub async fn run(case: Case, opts: &Options) -> Outcome {
    on_stage(case, opts, |_| {}, |stage| steps(stage).boxed()).await
}

async fn steps(stage: &mut Stage) -> anyhow::Result<()> {
    let r = stage.roles.clone();
    let agent = r.softphone[1].clone();
    let dn = agent.dn.clone();
    let source = format!("phone-{dn}");
    let registrars = vec![stage.sip(&r.ss1)?.sip_addr(), stage.sip(&r.ss3)?.sip_addr()];
    let ss3_sip = registrars[1].to_string();
    let ss1_sip = registrars[0].to_string();
    let mark = stage.history.mark();
    let (phone, control) = stage
        .actors
        .phone(&mut stage.history, &dn, registrars, None)
        .await?;
    stage.handle.add_phone(&dn, phone.sip_addr(), control);
    let registered = stage
        .history
        .wait_for(&mark, &source, stage.patience, |e| {
            e.kind == "phone.registered"
        })
        .await
        .ok_or_else(|| anyhow::anyhow!("the phone of {dn} did not register"))?;
    let r1 = setup::wait_dn(stage, &mark, &r.ss1, "ownership.taken", &dn, stage.patience)
        .await
        .map(|(_, e)| (None, format!("{}; {e}", registered.describe())));
    stage.record("R1", r1);
    let desktop = setup::seat_desktop(stage, &r.proxy_dc1, &r.gws1, &agent, false).await?;
    let fault = Fault::CutPhone {
        dn: dn.clone(),
        dc: r.dc1.clone(),
    };
    if stage.case.variant == "b" {
        return paths_back_in_time(stage, &fault, &desktop, &dn, &ss1_sip).await;
    }
    setup::answered_call(stage, &desktop, &agent, &r.ss2, "5550002").await?;
    stage.inject(&fault, Mode::Drop).await?;
    let mark = stage.fault_mark();
    let expires = Duration::from_secs(u64::from(phone.config().expires));
    let bound = expires + stage.timers.call_audit_interval + stage.patience;

    // S4.1: the phone drops Call2 when media stops; ss2 releases it; the desktop sees it go.
    let dropped = stage
        .history
        .wait_for(&mark, &source, bound, |e| {
            matches!(e.kind, "media.silent" | "call.ended")
        })
        .await;
    let released = setup::wait_dn(stage, &mark, &r.ss2, "call.released", &dn, bound).await;
    let seen = stage
        .history
        .wait_for(&mark, "desktops", bound, |e| {
            e.kind == "desktop.call"
                && e.detail["user"] == agent.user.as_str()
                && e.detail["state"] == "Released"
        })
        .await;
    let s41 = match (&dropped, &released, &seen) {
        (Some(d), Ok((_, rel)), Some(s)) => Ok((
            Some(stage.after_fault(s.at_ms)),
            format!("{}; {rel}; desktop shows it released", d.describe()),
        )),
        _ => Err(format!(
            "phone {:?}; {} {released:?}; desktop {:?}",
            dropped.map(|e| e.describe()),
            r.ss2,
            seen.map(|e| e.describe())
        )),
    };
    stage.record("S4.1", s41);

    // S4.3: the failed refresh sends the phone to ss3.
    let s43 = stage
        .history
        .wait_for(&mark, &source, bound, |e| {
            e.kind == "phone.registered" && e.detail["registrar"] == ss3_sip.as_str()
        })
        .await
        .map(|e| (Some(stage.after_fault(e.at_ms)), e.describe()))
        .ok_or_else(|| format!("the phone never registered at {} ({ss3_sip})", r.ss3));
    stage.record("S4.3", s43);

    // R12: ss1's binding expires.
    let r12 = setup::wait_dn(stage, &mark, &r.ss1, "sip.registration_expired", &dn, bound).await;
    stage.record("R12", r12);

    // S4.4 / R8: ss1 logs the agent out; ownership goes to ss3 at once.
    let logout = setup::wait_dn(stage, &mark, &r.ss1, "agent.logout", &dn, bound).await;
    let moved = stage
        .history
        .eventually(bound, || async {
            // The change that gave ss3 the DN: a move from ss1, or (when ss1 released it as
            // its binding expired, as under long timers) ss3 taking it.
            let change = stage
                .history
                .since(&mark)
                .into_iter()
                .find(|e| {
                    e.detail["dn"] == dn.as_str()
                        && match e.kind {
                            "ownership.moved" => e.detail["to"] == r.ss3.as_str(),
                            "ownership.taken" => e.detail["owner"] == r.ss3.as_str(),
                            _ => false,
                        }
                })
                .map(|e| e.describe());
            let owner = setup::owner_at(stage, &r.ss3, &dn).await;
            match (change, owner) {
                (Some(c), Some(o)) if o == r.ss3 => Ok(c),
                (c, o) => Err(format!("change {c:?}, owner at {} {o:?}", r.ss3)),
            }
        })
        .await;
    let s44 = match (&logout, &moved) {
        (Ok((ms, l)), Ok(m)) => Ok((*ms, format!("{l}; {m}"))),
        _ => Err(format!("logout {logout:?}; move {moved:?}")),
    };
    stage.record("S4.4", s44.clone());
    stage.record("R8", s44);

    // S4.5: GWS1 ends the session (owner-side out of service): the desktop gives up.
    let s45 = setup::message_shown(
        stage,
        &mark,
        &agent.user,
        UNABLE_TO_CONNECT,
        bound + stage.giveup_after,
    )
    .await;
    stage.record("S4.5", s45);

    // S4.6: the agent logs in again (through DC2).
    let again = setup::seat_desktop(stage, &r.proxy_dc2, &r.gws3, &agent, false).await;
    let s46 = again
        .map(|_| {
            (
                None,
                format!("{} logged in through {} → {}", agent.user, r.gws3, r.ss3),
            )
        })
        .map_err(|e| format!("{e:#}"));
    stage.record("S4.6", s46);
    Ok(())
}

/// S4.2: the paths come back while the refresh is in flight: the refresh succeeds at ss1,
/// nothing moves, the agent stays logged in and the desktop shows nothing.
async fn paths_back_in_time(
    stage: &mut Stage,
    fault: &Fault,
    desktop: &desktop_sim::Desktop,
    dn: &str,
    ss1_sip: &str,
) -> anyhow::Result<()> {
    let r = stage.roles.clone();
    let source = format!("phone-{dn}");
    let steps = stage.inject(fault, Mode::Drop).await?;
    let mark = stage.fault_mark();
    let phone = stage
        .actors
        .phones
        .last()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no phone"))?;
    let expires = Duration::from_secs(u64::from(phone.config().expires));
    // Heal once the refresh is on its way (and before its transaction gives up).
    let refreshing = stage
        .history
        .eventually(expires + stage.patience, || async {
            let state = phone.state().await;
            match state["phones"][0]["state"].as_str() {
                Some("Refreshing") => Ok(()),
                other => Err(format!("phone state {other:?}")),
            }
        })
        .await;
    stage.heal(&steps).await?;
    let refreshed = stage
        .history
        .wait_for(&mark, &source, stage.patience, |e| {
            matches!(e.kind, "phone.refreshed" | "phone.registered")
        })
        .await;
    let change = setup::ownership_change(stage, &mark, dn, &r.ss1);
    let logout = stage.history.find(&mark, &r.ss1, |e| {
        e.kind == "agent.logout" && e.detail["dn"] == dn
    });
    let screen = desktop.screen();
    let s42 = match (&refreshing, &refreshed, &change, &logout) {
        (Ok(()), Some(e), None, None)
            if e.detail["registrar"] == ss1_sip && screen.agent_logged_in() && screen.banner.is_none() =>
        {
            Ok((
                Some(stage.after_fault(e.at_ms)),
                format!("{}; owner {} kept, agent still {}", e.describe(), r.ss1, setup::voice_name(&screen.voice)),
            ))
        }
        _ => Err(format!(
            "refresh in flight {refreshing:?}; then {:?}; ownership change {change:?}; logout {:?}; desktop {:?} {:?}",
            refreshed.map(|e| e.describe()),
            logout.map(|e| e.describe()),
            screen.voice,
            screen.banner
        )),
    };
    stage.record("S4.2", s42);
    Ok(())
}
