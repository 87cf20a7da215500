//! desktop-sim against the in-process lab through the sticky proxy (docs/scenarios.md R13,
//! R14, S1, S2.3): a desktop logs in and handles a call; its GWS node dies and it shows both R13
//! messages at the right times, or logs in again on the other node; the voice channel goes out
//! of service when GWS loses its SIP node; a swarm logs in with a session per desktop; CometD
//! over a WebSocket; CSRF protection. Timing is read from the desktop's journal, never from
//! sleeps.

use std::sync::Arc;
use std::time::Duration;

use desktop_sim::{Connection, Desktop, DesktopConfig, Swarm, SwarmConfig, Transport, Voice};
use desktop_sim::{Entry, RECONNECTING, UNABLE_TO_CONNECT};
use drlab_tests::cluster::node;
use drlab_tests::desktop::*;
use drlab_tests::gws::start_gws;
use drlab_tests::ua::{AnswerMode, PhoneEvent, TestCaller, TestPhone};
use drlab_tests::{start_node, PATIENCE};

/// Fast-profile desktop for `user` through `proxy`.
fn desktop_config(proxy: std::net::SocketAddr, user: &str) -> DesktopConfig {
    let mut cfg = DesktopConfig::new(format!("http://{proxy}"), user).with_fast_timers();
    cfg.ready = true;
    cfg
}

async fn connected_and_ready(desktop: &Desktop) {
    let screen = desktop
        .wait_for(PATIENCE, |s| {
            s.connection == Connection::Connected && s.voice == Voice::Ready
        })
        .await;
    assert!(screen.is_ok(), "not connected and Ready: {screen:?}");
}

/// Basic-auth login through the proxy, Ready, a call to the agent's softphone
/// followed Ringing → Established → Released, answered and hung up from the desktop.
#[tokio::test]
async fn desktop_logs_in_through_the_proxy_gets_ready_answers_and_hangs_up_a_call() {
    let (lab, proxy) = lab_behind_proxy().await;
    let ss1 = node(&lab, "ss1");
    let mut phone = TestPhone::bind().await.unwrap();
    phone.set_answer(AnswerMode::OnNotifyTalk);
    assert_eq!(
        phone.register(ss1.sip_addr(), "7001", 300).await.unwrap(),
        200
    );

    let desktop = Desktop::start(desktop_config(proxy, "agent7001")).unwrap();
    connected_and_ready(&desktop).await;
    let screen = desktop.screen();
    assert_eq!(screen.dn.as_deref(), Some("7001"));
    assert_eq!(screen.banner, None);
    assert!(
        session_node(&lab, "agent7001", &[0, 0]).is_some(),
        "a DC1 node holds the session"
    );

    let caller = TestCaller::bind().await.unwrap();
    let mut call = caller
        .invite(ss1.sip_addr(), "7001", "5551234")
        .await
        .unwrap();
    let ringing = desktop
        .wait_for(PATIENCE, |s| s.calls.values().any(|c| c.state == "Ringing"))
        .await
        .expect("the desktop shows the call ringing");
    let shown = ringing.calls.values().next().unwrap().clone();
    assert_eq!(shown.party, "5551234");
    assert!(
        shown.capabilities.iter().any(|c| c == "Answer"),
        "{shown:?}"
    );

    desktop.answer(&shown.id).await.expect("Answer accepted");
    let talk = phone
        .wait_for(|e| matches!(e, PhoneEvent::Notify { .. }), PATIENCE)
        .await
        .unwrap();
    assert!(matches!(talk, PhoneEvent::Notify { ref event, .. } if event == "talk"));
    call.wait_for_status(200, PATIENCE).await.unwrap();
    desktop
        .wait_for(PATIENCE, |s| {
            s.calls
                .get(&shown.id)
                .is_some_and(|c| c.state == "Established")
        })
        .await
        .expect("the desktop shows the call established");

    desktop.hang_up(&shown.id).await.expect("Hangup accepted");
    phone
        .wait_for(|e| matches!(e, PhoneEvent::Bye { .. }), PATIENCE)
        .await
        .unwrap();
    desktop
        .wait_for(PATIENCE, |s| s.calls.is_empty())
        .await
        .expect("the released call leaves the screen");
    let entries = desktop.journal().since(0, usize::MAX);
    let states: Vec<String> = desktop_entries(&entries, "agent7001")
        .into_iter()
        .filter(|(_, kind, d)| *kind == "desktop.call" && d["id"] == shown.id.as_str())
        .map(|(_, _, d)| d["state"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(states, ["Ringing", "Established", "Released"]);
    assert!(messages_shown(&desktop_entries(&entries, "agent7001")).is_empty());
}

/// Kills the node holding `user`'s session; returns the crash time (its journal's clock).
async fn crash_home_node(lab: &drlab::Lab, user: &str) -> (&'static str, u64) {
    let home = session_node(lab, user, &[0, 0]).expect("a DC1 node holds the session");
    let node = gws(lab, home);
    node.crash().await;
    let crashed = node
        .journal()
        .wait_for(0, PATIENCE, |e| e.kind == "node.crashed")
        .await
        .expect("crash journaled");
    let other = DC1_GWS.into_iter().find(|n| *n != home).unwrap();
    (other, crashed.at_ms)
}

/// S1.3: crashes the GWS node holding `user`'s session and waits until the desktop (with
/// relogin) has logged in again and is ready, on the other DC1 node. Returns the crash time and
/// the desktop's relogin entry.
async fn relogin_after_home_crash(
    lab: &drlab::Lab,
    desktop: &Desktop,
    user: &str,
) -> (u64, Arc<Entry>) {
    let before = dc1_seqs(lab);
    let since = desktop.journal().last_seq();
    let (other, crashed_at) = crash_home_node(lab, user).await;
    let relogin = desktop
        .journal()
        .wait_for(since, Duration::from_secs(5), |e| {
            e.kind == "desktop.logged_in" && e.detail()["relogin"] == true
        })
        .await
        .expect("the desktop logs in again");
    connected_and_ready(desktop).await;
    assert_eq!(
        session_node(lab, user, &before),
        Some(other),
        "the new session is on the other node"
    );
    (crashed_at, relogin)
}

/// R13, S1.2 (variant a): the desktop's GWS node crashes; without relogin the desktop shows
/// "Reconnecting…" at once and "Unable to establish connection…" `giveup_after` (3 s) later.
#[tokio::test]
async fn r13_desktop_shows_reconnecting_then_gives_up_when_its_gws_node_dies() {
    let (lab, proxy) = lab_behind_proxy().await;
    let desktop = Desktop::start(desktop_config(proxy, "agent8001")).unwrap();
    connected_and_ready(&desktop).await;

    let (_, crashed_at) = crash_home_node(&lab, "agent8001").await;
    let gave_up = desktop
        .wait_for(Duration::from_secs(10), |s| {
            s.connection == Connection::GaveUp
        })
        .await
        .expect("the desktop gives up");
    assert_eq!(gave_up.banner, Some(UNABLE_TO_CONNECT));

    let entries = desktop.journal().since(0, usize::MAX);
    let entries = desktop_entries(&entries, "agent8001");
    let shown = messages_shown(&entries);
    let texts: Vec<&str> = shown.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(
        texts,
        [RECONNECTING, UNABLE_TO_CONNECT],
        "in this order, once each"
    );
    let (reconnecting_at, gave_up_at) = (shown[0].0, shown[1].0);
    assert!(
        reconnecting_at.saturating_sub(crashed_at) < 500,
        "Reconnecting shown {} ms after the crash",
        reconnecting_at.saturating_sub(crashed_at)
    );
    let waited = gave_up_at - reconnecting_at;
    assert!(
        (2_990..3_500).contains(&waited),
        "gave up {waited} ms after the loss, giveup_after is 3 s"
    );
    assert!(
        entries
            .iter()
            .any(|(_, kind, _)| *kind == "desktop.reconnect_attempt"),
        "it retried meanwhile"
    );
    assert_eq!(
        entries
            .iter()
            .filter(|(_, kind, _)| *kind == "desktop.logged_in")
            .count(),
        1,
        "no relogin without the policy"
    );
}

/// R13 + R14, S1.3: with the relogin policy the desktop whose node died is moved by the proxy
/// to the other DC1 node, finds its session unknown there, logs in again and is Ready; the
/// give-up message never shows.
#[tokio::test]
async fn r14_s1_3_desktop_with_relogin_logs_in_again_on_the_other_gws_node() {
    let (lab, proxy) = lab_behind_proxy().await;
    let mut cfg = desktop_config(proxy, "agent8002");
    cfg.relogin = true;
    let desktop = Desktop::start(cfg).unwrap();
    connected_and_ready(&desktop).await;

    let since = desktop.journal().last_seq();
    let (crashed_at, relogin) = relogin_after_home_crash(&lab, &desktop, "agent8002").await;

    let entries = desktop.journal().since(since, usize::MAX);
    let entries = desktop_entries(&entries, "agent8002");
    let shown = messages_shown(&entries);
    let texts: Vec<&str> = shown.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(texts, [RECONNECTING], "never the give-up message");
    assert!(
        shown[0].0.saturating_sub(crashed_at) < 500,
        "Reconnecting shown at once"
    );
    assert!(
        relogin.at_ms >= shown[0].0,
        "the relogin follows the message"
    );
    assert!(
        relogin.at_ms - shown[0].0 < 3_000,
        "recovered within giveup_after"
    );
    assert_eq!(desktop.screen().banner, None);
}

/// R13, S2.3: GWS loses its SIP node; the desktop stays connected and shows the voice channel
/// out of service and the Voice service unavailable, then back when the link heals.
#[tokio::test]
async fn r13_desktop_shows_voice_channel_out_of_service_when_gws_loses_its_sip_node() {
    let (lab, proxy) = lab_behind_proxy().await;
    let desktop = Desktop::start(desktop_config(proxy, "agent8003")).unwrap();
    connected_and_ready(&desktop).await;
    let home = reject_home_tlib(&lab, "agent8003");
    let out = desktop
        .wait_for(PATIENCE, |s| {
            s.voice == Voice::OutOfService && !s.voice_service_available()
        })
        .await
        .expect("voice channel out of service");
    assert_eq!(out.connection, Connection::Connected);
    assert_eq!(out.banner, None, "the connection to GWS is fine");
    gws(&lab, home).faults().clear();
    desktop
        .wait_for(PATIENCE, |s| {
            s.voice_service_available() && s.voice != Voice::OutOfService
        })
        .await
        .expect("voice channel back");
}

/// A swarm logs 40 desktops in through the proxy at once: each has its own cookie jar, so each
/// gets its own GWS session, spread over both nodes.
#[tokio::test]
async fn swarm_logs_in_every_desktop_with_its_own_session() {
    let (lab, proxy) = lab_behind_proxy().await;
    let users = desktop_sim::user_range("agent8100-agent8139", 100).unwrap();
    let swarm = Swarm::start(SwarmConfig::new(desktop_config(proxy, ""), users.clone())).unwrap();
    let (summary, all) = swarm
        .tally()
        .wait_for(Duration::from_secs(20), |s| s.connected == 40)
        .await;
    assert!(all, "{summary:?}");
    assert_eq!((summary.logins, summary.login_failed), (40, 0));
    let mut per_node = Vec::new();
    for name in DC1_GWS {
        per_node.push(
            gws(&lab, name).state().await["sessions"]
                .as_array()
                .map_or(0, Vec::len),
        );
    }
    assert_eq!(
        per_node.iter().sum::<usize>(),
        40,
        "one session per desktop: {per_node:?}"
    );
    assert!(
        per_node.iter().all(|n| *n > 0),
        "round robin over both nodes: {per_node:?}"
    );
    for user in &users {
        assert!(
            session_node(&lab, user, &[0, 0]).is_some(),
            "{user} has a session"
        );
    }
}

/// CometD over a WebSocket through the proxy (which routes the upgrade by `JSESSIONID`): the
/// handshake offers only `websocket`, so a login proves the socket carried it; messages pushed
/// while the server holds the connect reach the screen (voice channel out of service and back);
/// and when the node dies the socket's loss is noticed and the desktop logs in again on the
/// other node.
#[tokio::test]
async fn desktop_over_websocket_follows_pushed_messages_and_logs_in_again_after_a_crash() {
    let (lab, proxy) = lab_behind_proxy().await;
    let mut cfg = desktop_config(proxy, "agent8004");
    cfg.transport = Transport::WebSocket;
    cfg.relogin = true;
    let desktop = Desktop::start(cfg).unwrap();
    connected_and_ready(&desktop).await;

    let home = reject_home_tlib(&lab, "agent8004");
    desktop
        .wait_for(PATIENCE, |s| s.voice == Voice::OutOfService)
        .await
        .expect("pushed: voice channel out of service");
    gws(&lab, home).faults().clear();
    desktop
        .wait_for(PATIENCE, |s| s.voice != Voice::OutOfService)
        .await
        .expect("pushed: voice channel back");

    relogin_after_home_crash(&lab, &desktop, "agent8004").await;
}

/// CSRF protection on (GWS `enableCsrfProtection`): the desktop takes the token GWS hands out
/// on its GETs and sends it on every POST, so the contact-center session and Ready go through
/// (without it both would be refused with 403 and show as notices).
#[tokio::test]
async fn desktop_sends_the_csrf_token_on_its_posts() {
    let sip = start_node("ss1", |_| {}).await;
    let gws = start_gws("gws1", &sip, |c| c.csrf = true).await;
    let cfg = desktop_config(gws.http_addr(), "agent8005");
    let desktop = Desktop::start(cfg).unwrap();
    connected_and_ready(&desktop).await;
    assert_eq!(desktop.screen().notice, None, "nothing was refused");
}
