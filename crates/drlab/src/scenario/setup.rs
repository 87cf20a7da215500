//! The seed's standard set-up and the checks several scenarios share: both PSTN agents logged
//! in through DC1's proxy on GWS1 (connected to ss1, which owns both DNs), Call1 and Call2
//! arriving at ss1 from the PSTN caller and answered at the PSTN gateway; calls that go on with
//! media; an agent login through a desktop; an ownership move.

use std::time::Duration;

use desktop_sim::{Desktop, Voice};
use serde_json::Value;

use super::stage::{Found, Stage};
use crate::orchestra::actors::LiveCall;
use crate::orchestra::history::{now_ms, Mark};
use crate::orchestra::roles::Agent;

/// One agent of a set-up: the desktop, the call it handles and the call's id on the desktop.
pub struct Seat {
    pub agent: Agent,
    pub desktop: Desktop,
    pub call: LiveCall,
    pub call_id: String,
}

/// The standard set-up.
pub struct Standard {
    pub agent1: Seat,
    pub agent2: Seat,
    /// Media packets the caller had received on each call when the fault came.
    pub media_at_fault: [u64; 2],
}

impl Standard {
    /// Notes each call's media counter just before the fault (the "calls continue" checks
    /// compare against it); returns the two agents' DNs.
    pub async fn note_media_at_fault(&mut self, stage: &Stage) -> [String; 2] {
        let dns = [self.agent1.agent.dn.clone(), self.agent2.agent.dn.clone()];
        for (i, dn) in dns.iter().enumerate() {
            self.media_at_fault[i] = media_received(stage, dn).await.unwrap_or(0);
        }
        dns
    }
}

/// Logs `agent` in through `proxy` on `gws`; waits until the agent is logged in.
pub async fn seat_desktop(
    stage: &Stage,
    proxy: &str,
    gws: &str,
    agent: &Agent,
    relogin: bool,
) -> anyhow::Result<Desktop> {
    let url = stage.proxy_url(proxy)?;
    let behind = stage.behind(proxy);
    let mut cfg = stage.actors.desktop_config(&url, agent);
    cfg.relogin = relogin;
    let desktop = stage
        .actors
        .desktop_on(&stage.history, cfg, agent, gws, &behind, stage.patience)
        .await
        .map_err(anyhow::Error::msg)?;
    desktop
        .wait_for(stage.patience, |s| s.agent_logged_in())
        .await
        .map_err(|s| {
            anyhow::anyhow!("{} not logged in: {:?} {:?}", agent.user, s.voice, s.notice)
        })?;
    Ok(desktop)
}

/// Opens `agent`'s desktop through `proxy` on `gws` without the relogin policy; the agent may
/// not be logged in (a call in progress, R5).
pub async fn seat_desktop_any(
    stage: &Stage,
    proxy: &str,
    gws: &str,
    agent: &Agent,
) -> anyhow::Result<Desktop> {
    let url = stage.proxy_url(proxy)?;
    let behind = stage.behind(proxy);
    let mut cfg = stage.actors.desktop_config(&url, agent);
    cfg.relogin = false;
    stage
        .actors
        .desktop_on(&stage.history, cfg, agent, gws, &behind, stage.patience)
        .await
        .map_err(anyhow::Error::msg)
}

/// Places a call from the caller to `agent` through SIP node `via` and waits until the
/// desktop shows it established; returns the call and its id on the desktop.
pub async fn answered_call(
    stage: &Stage,
    desktop: &Desktop,
    agent: &Agent,
    via: &str,
    ani: &str,
) -> anyhow::Result<(LiveCall, String)> {
    let node = stage.sip(via)?;
    let call = stage.actors.call(&agent.dn, node.sip_addr(), ani);
    let screen = desktop
        .wait_for(stage.patience, |s| {
            s.calls.values().any(|c| c.state == "Established")
        })
        .await
        .map_err(|s| {
            anyhow::anyhow!(
                "{}'s desktop shows no established call: {:?}",
                agent.user,
                s.calls
            )
        })?;
    let id = screen
        .calls
        .values()
        .find(|c| c.state == "Established")
        .map(|c| c.id.clone())
        .unwrap_or_default();
    Ok((call, id))
}

/// The standard set-up (seed): both PSTN agents on GWS1 through DC1's proxy, Call1 and Call2
/// at ss1. Records R1 (ss1 took both DNs on GWS1's registration). `relogin`: each desktop's
/// relogin policy.
pub async fn standard(stage: &mut Stage, relogin: [bool; 2]) -> anyhow::Result<Standard> {
    let mark = stage.history.mark();
    let r = stage.roles.clone();
    let d1 = seat_desktop(stage, &r.proxy_dc1, &r.gws1, &r.pstn[0], relogin[0]).await?;
    let d2 = seat_desktop(stage, &r.proxy_dc1, &r.gws1, &r.pstn[1], relogin[1]).await?;
    let taken: Vec<String> = r
        .pstn
        .iter()
        .filter_map(|a| {
            stage
                .history
                .find(&mark, &r.ss1, |e| {
                    e.kind == "ownership.taken" && e.detail["dn"] == a.dn.as_str()
                })
                .map(|e| e.describe())
        })
        .collect();
    let r1 = if taken.len() == 2 {
        Ok((None, taken.join("; ")))
    } else {
        Err(format!(
            "{} took {} of the 2 DNs: {taken:?}",
            r.ss1,
            taken.len()
        ))
    };
    stage.record("R1", r1);
    let (call1, id1) = answered_call(stage, &d1, &r.pstn[0], &r.ss1, "5550001").await?;
    let (call2, id2) = answered_call(stage, &d2, &r.pstn[1], &r.ss1, "5550002").await?;
    Ok(Standard {
        agent1: Seat {
            agent: r.pstn[0].clone(),
            desktop: d1,
            call: call1,
            call_id: id1,
        },
        agent2: Seat {
            agent: r.pstn[1].clone(),
            desktop: d2,
            call: call2,
            call_id: id2,
        },
        media_at_fault: [0, 0],
    })
}

/// The caller's media packets received on its call to `dn` (None: no call up).
pub async fn media_received(stage: &Stage, dn: &str) -> Option<u64> {
    let call = stage.actors.caller_call(dn).await?;
    call["media"]["received"].as_u64()
}

/// Whether the caller's calls to `dns` are still up with media flowing since `before` (packets
/// then): no end since `mark`, no gap in the heartbeat, and new packets (waited for, bounded by
/// the stage's patience, as the heartbeat may not have ticked yet).
pub async fn calls_continue(stage: &Stage, mark: &Mark, dns: &[&str], before: &[u64]) -> Found {
    let evidence = stage
        .history
        .eventually(stage.patience, || async {
            let mut evidence = Vec::new();
            for (dn, before) in dns.iter().zip(before) {
                let (received, lost) = call_media(stage, mark, dn).await?;
                if lost > 0 {
                    return Err(format!("call to {dn}: {lost} heartbeat packets lost"));
                }
                if received <= *before {
                    return Err(format!(
                        "call to {dn}: no media since the fault ({received} packets)"
                    ));
                }
                evidence.push(format!(
                    "{dn} up, media +{} packets, 0 lost",
                    received - before
                ));
            }
            Ok(evidence)
        })
        .await?;
    Ok((
        Some(stage.after_fault(now_ms())),
        format!("{} after the fault", evidence.join("; ")),
    ))
}

/// The caller's call to `dn`: media packets received and lost; Err when it ended since `mark`.
async fn call_media(stage: &Stage, mark: &Mark, dn: &str) -> Result<(u64, u64), String> {
    if let Some(ended) = stage.history.find(mark, "caller", |e| {
        e.kind == "call.ended" && e.detail["dn"] == dn
    }) {
        return Err(format!("the call to {dn} ended: {}", ended.describe()));
    }
    let call: Value = stage
        .actors
        .caller_call(dn)
        .await
        .ok_or_else(|| format!("the caller has no call to {dn}"))?;
    if call["phase"] != "confirmed" {
        return Err(format!("call to {dn}: phase {}", call["phase"]));
    }
    Ok((
        call["media"]["received"].as_u64().unwrap_or(0),
        call["media"]["lost"].as_u64().unwrap_or(0),
    ))
}

/// The first entry of `source` since `mark` of `kind` about `dn`, waited for at most `timeout`.
pub async fn wait_dn(
    stage: &Stage,
    mark: &Mark,
    source: &str,
    kind: &str,
    dn: &str,
    timeout: Duration,
) -> Found {
    stage
        .history
        .wait_for(mark, source, timeout, |e| {
            e.kind == kind && e.detail["dn"] == dn
        })
        .await
        .map(|e| (Some(stage.after_fault(e.at_ms)), e.describe()))
        .ok_or_else(|| format!("no {kind} for {dn} on {source} within {timeout:?}"))
}

/// A desktop message (`RECONNECTING`, `UNABLE_TO_CONNECT`) shown to `user` since `mark`.
pub async fn message_shown(
    stage: &Stage,
    mark: &Mark,
    user: &str,
    message: &str,
    timeout: Duration,
) -> Found {
    stage
        .history
        .wait_for(mark, "desktops", timeout, |e| {
            e.kind == "desktop.message_shown"
                && e.detail["user"] == user
                && e.detail["message"] == message
        })
        .await
        .map(|e| {
            let ms = stage.after_fault(e.at_ms);
            (
                Some(ms),
                format!("{user}: \"{message}\" {ms} ms after the fault"),
            )
        })
        .ok_or_else(|| format!("{user} never showed \"{message}\" within {timeout:?}"))
}

/// The agent logs in through the desktop; Ok once the desktop shows the agent logged in.
pub async fn agent_logs_in(stage: &Stage, desktop: &Desktop) -> Result<u64, String> {
    let started = now_ms();
    desktop
        .log_in_agent()
        .await
        .map_err(|f| format!("{}: login refused: {f}", desktop.user()))?;
    desktop
        .wait_for(stage.patience, |s| s.agent_logged_in())
        .await
        .map_err(|s| format!("{}: voice {:?} after the login", desktop.user(), s.voice))?;
    Ok(now_ms() - started)
}

/// The agent login through `desktop` is refused (R5: a call in progress; R10: the DN's owner
/// unreachable). GWS answers a voice channel that cannot start as a partial success (HTTP 200,
/// `statusCode` 7), which the desktop reports as refused; the refusal is the desktop's error or
/// GWS's journal saying the voice channel failed, with no SIP node logging the agent in since.
/// (The screen may still show the agent logged in: under long session timeouts the session the
/// desktop lost keeps the agent logged in until it expires, R4.) `node`'s journal names the
/// node's answer when it has one.
pub async fn login_refused(stage: &Stage, desktop: &Desktop, node: &str) -> Found {
    let mark = stage.history.mark();
    let user = desktop.user();
    let dn = desktop.screen().dn.unwrap_or_default();
    let asked = desktop.log_in_agent().await;
    let failed_at_gws = stage.lab.gws_nodes.iter().find_map(|g| {
        stage.history.find(&mark, g.name(), |e| {
            e.kind == "session.contact_center_started"
                && e.detail["dn"] == dn.as_str()
                && e.detail["ok"] == false
        })
    });
    let screen = desktop.screen();
    let refusal = match (&asked, failed_at_gws) {
        (Err(f), _) => Some(f.to_string()),
        (Ok(()), Some(e)) => Some(e.describe()),
        (Ok(()), None) => None,
    };
    let logged_in = stage.lab.sip_nodes.iter().find_map(|n| {
        stage.history.find(&mark, n.name(), |e| {
            e.kind == "agent.login" && e.detail["dn"] == dn.as_str()
        })
    });
    let Some(refusal) = refusal.filter(|_| logged_in.is_none()) else {
        return Err(format!(
            "{user}: agent login accepted ({asked:?}; {}), voice {:?}",
            logged_in
                .map(|e| e.describe())
                .unwrap_or_else(|| "no refusal".into()),
            screen.voice
        ));
    };
    let answer = stage
        .history
        .find(&mark, node, |e| {
            (e.kind == "tlib.rejected" && e.detail["message"] == "RequestAgentLogin")
                || (e.kind == "tlib.error" && e.detail["dn"] == dn.as_str())
        })
        .map(|e| e.describe())
        .unwrap_or_else(|| format!("{node}: no refusal journaled"));
    Ok((None, format!("{user}: {refusal}; {answer}")))
}

/// Whether the screen shows the agent logged in (for evidence).
pub fn voice_name(v: &Voice) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v["state"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// `dn`'s owner in `node`'s `/state`.
pub async fn owner_at(stage: &Stage, node: &str, dn: &str) -> Option<String> {
    let state = stage.sip(node).ok()?.state().await;
    state["dns"].as_array()?.iter().find(|d| d["dn"] == dn)?["owner"]
        .as_str()
        .map(str::to_owned)
}

/// The first ownership change of `dn` since `mark` on any SIP node (moved, released, or taken
/// by a node other than `owner`).
pub fn ownership_change(stage: &Stage, mark: &Mark, dn: &str, owner: &str) -> Option<String> {
    stage
        .history
        .since(mark)
        .into_iter()
        .find(|e| {
            e.detail["dn"] == dn
                && match e.kind {
                    "ownership.moved" | "ownership.released" => true,
                    "ownership.taken" => e.detail["owner"] != owner,
                    _ => false,
                }
        })
        .map(|e| e.describe())
}
