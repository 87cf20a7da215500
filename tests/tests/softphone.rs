//! softphone-sim end to end: phones registering, refreshing and failing over between SIP
//! Cluster nodes (R12, S4.1, S4.3), answering calls placed by the caller sim through a node with
//! the media heartbeat both ways, dropping a call whose media stops, the PSTN gateway, and
//! interop with Kamailio (registrar and proxy) and SIPp.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use drlab_tests::{expect_event, request, sipp_available, start_node, tlib_client, PATIENCE};
use netfault::{FaultMode, FaultRule};
use serde_json::Value;
use sipserver_mock::SipNode;
use softphone_sim::{AnswerMode, CallPlan, Entry, Journal, PhoneConfig, Swarm, Transport};
use tlib::{MessageName, Request};

/// A phone (or swarm) with the fast timer profile; `tune` adjusts the config.
async fn phones(
    dns: &[&str],
    registrars: &[SocketAddr],
    tune: impl FnOnce(&mut PhoneConfig),
) -> Swarm {
    let mut config =
        PhoneConfig::phones(dns.iter().copied(), registrars.iter().copied()).with_fast_timers();
    tune(&mut config);
    Swarm::start(config).await.expect("softphone-sim starts")
}

/// A caller whose own media timeout is long, so that in a media cut the phone decides.
async fn caller() -> Swarm {
    let mut config = PhoneConfig::caller("127.0.0.1".parse().unwrap()).with_fast_timers();
    config.media.timeout = Duration::from_secs(30);
    Swarm::start(config).await.expect("caller starts")
}

/// The first entry after `since` of `kind` whose detail matches `pred`.
async fn expect_entry(
    journal: &Journal,
    since: u64,
    kind: &str,
    pred: impl Fn(&Value) -> bool,
) -> Arc<Entry> {
    journal
        .wait_for(since, PATIENCE, |e| e.kind == kind && pred(&e.detail()))
        .await
        .unwrap_or_else(|| {
            let seen: Vec<String> = journal
                .since(since, 50)
                .iter()
                .map(|e| format!("{} {}", e.kind, e.detail()))
                .collect();
            panic!(
                "no {kind} within {PATIENCE:?} in {}: {seen:#?}",
                journal.node()
            )
        })
}

fn is_dn(dn: &'static str) -> impl Fn(&Value) -> bool {
    move |d| d["dn"] == dn
}

/// The node's view of a DN (`/state` → `dns[]`).
async fn dn_state(node: &SipNode, dn: &str) -> Value {
    let state = node.state().await;
    state["dns"]
        .as_array()
        .and_then(|dns| dns.iter().find(|d| d["dn"] == dn).cloned())
        .unwrap_or(Value::Null)
}

fn drop_all_sip() -> FaultRule {
    FaultRule::new("sip:*", FaultMode::Drop)
}

/// R12: a refresh before expiry keeps everything as it was.
#[tokio::test]
async fn r12_softphone_refreshes_so_its_binding_outlives_the_first_expires() {
    let node = start_node("ss1", |_| {}).await;
    let phone = phones(&["7001"], &[node.sip_addr()], |c| c.expires = 2).await;
    let registered = expect_entry(phone.journal(), 0, "phone.registered", is_dn("7001")).await;
    assert_eq!(
        registered.detail()["registrar"],
        node.sip_addr().to_string()
    );
    // Wait for a refresh made after the first Expires has run out: the binding lived past it.
    let past_first_expiry = registered.at_ms + 2_000;
    let refreshed = phone
        .journal()
        .wait_for(registered.seq, 2 * PATIENCE, |e| {
            e.kind == "phone.refreshed" && e.at_ms > past_first_expiry
        })
        .await
        .expect("refreshes continue past the first expiry");
    assert_eq!(refreshed.detail()["registrar"], node.sip_addr().to_string());
    let dn = dn_state(&node, "7001").await;
    assert_eq!(dn["in_service"], true, "{dn}");
    assert!(dn["binding"].is_object(), "{dn}");
    let went_out = node.journal().since(0, usize::MAX);
    assert!(
        !went_out
            .iter()
            .any(|e| e.kind == "dn.out_of_service" && e.detail()["dn"] == "7001"),
        "the DN never went out of service"
    );
}

/// S4.3 and S4.4: the registrar (DC1) is cut silently; the phone notices when its refresh times
/// out, registers at the next registrar (DC2) at once, which puts the DN in service and owns it;
/// DC1 lets the binding expire.
#[tokio::test]
async fn s4_3_softphone_fails_over_to_next_registrar_on_refresh_failure() {
    let ss1 = start_node("ss1", |_| {}).await;
    let ss3 = start_node("ss3", |_| {}).await;
    let phone = phones(&["7002"], &[ss1.sip_addr(), ss3.sip_addr()], |_| {}).await;
    let at_ss1 = expect_entry(phone.journal(), 0, "phone.registered", |d| {
        d["dn"] == "7002" && d["failover_from"].is_null()
    })
    .await;
    assert_eq!(at_ss1.detail()["registrar"], ss1.sip_addr().to_string());
    ss1.faults().add(drop_all_sip()).unwrap();
    let failed = expect_entry(
        phone.journal(),
        at_ss1.seq,
        "phone.registration_failed",
        is_dn("7002"),
    )
    .await;
    let d = failed.detail();
    assert_eq!(d["reason"], "timeout", "{d}");
    assert_eq!(d["was_registered"], true, "{d}");
    assert_eq!(d["next"], ss3.sip_addr().to_string(), "{d}");
    // Like a phone with an SRV list: the next registrar at once, no backoff (one registrar of two
    // failed, not the whole list).
    assert_eq!(
        d["retry_in_ms"], 0,
        "S4.3: the REGISTER to DC2 goes out at once: {d}"
    );
    let at_ss3 = expect_entry(
        phone.journal(),
        failed.seq,
        "phone.registered",
        is_dn("7002"),
    )
    .await;
    let d = at_ss3.detail();
    assert_eq!(d["registrar"], ss3.sip_addr().to_string(), "{d}");
    assert_eq!(d["failover_from"], ss1.sip_addr().to_string(), "{d}");
    let dn = dn_state(&ss3, "7002").await;
    assert_eq!(dn["in_service"], true, "{dn}");
    assert_eq!(dn["owner"], "ss3", "{dn}");
    expect_entry(ss1.journal(), 0, "dn.out_of_service", is_dn("7002")).await;
    assert_eq!(phone.stats().failovers, 1);
}

/// The registrar crashes (over TCP: the reset is seen at the next refresh, no timeout), the
/// phone fails over to the second; when that one crashes too and the first is back, the phone
/// returns to the first (the list wraps around).
#[tokio::test]
async fn softphone_over_tcp_fails_over_on_reset_and_comes_back_when_the_second_registrar_fails() {
    let ss1 = start_node("ss1", |_| {}).await;
    let ss3 = start_node("ss3", |_| {}).await;
    let phone = phones(&["7003"], &[ss1.sip_addr(), ss3.sip_addr()], |c| {
        c.transport = Transport::Tcp
    })
    .await;
    let first = expect_entry(phone.journal(), 0, "phone.registered", is_dn("7003")).await;
    assert_eq!(first.detail()["registrar"], ss1.sip_addr().to_string());
    let binding = dn_state(&ss1, "7003").await["binding"].clone();
    assert_eq!(binding["transport"], "TCP", "{binding}");

    ss1.crash().await;
    let failed = expect_entry(
        phone.journal(),
        first.seq,
        "phone.registration_failed",
        is_dn("7003"),
    )
    .await;
    assert_eq!(
        failed.detail()["reason"],
        "transport error",
        "{}",
        failed.detail()
    );
    let second = expect_entry(
        phone.journal(),
        failed.seq,
        "phone.registered",
        is_dn("7003"),
    )
    .await;
    assert_eq!(second.detail()["registrar"], ss3.sip_addr().to_string());

    ss1.restart().await.unwrap();
    ss3.crash().await;
    let back = expect_entry(phone.journal(), second.seq, "phone.registered", |d| {
        d["dn"] == "7003" && d["failover_from"].is_string()
    })
    .await;
    assert_eq!(back.detail()["registrar"], ss1.sip_addr().to_string());
    assert_eq!(dn_state(&ss1, "7003").await["in_service"], true);
}

/// A caller places a call through the node; the phone rings, answers with its media port in
/// the SDP, both ends exchange the heartbeat, the caller hangs up.
#[tokio::test]
async fn softphone_answers_a_call_from_the_caller_sim_with_media_both_ways() {
    let node = start_node("ss1", |_| {}).await;
    let phone = phones(&["7004"], &[node.sip_addr()], |_| {}).await;
    expect_entry(phone.journal(), 0, "phone.registered", is_dn("7004")).await;
    let caller = caller().await;
    let hold = Duration::from_millis(600);
    let report = caller
        .place_call(CallPlan::new("7004", node.sip_addr()).hold(hold))
        .await
        .unwrap();
    assert!(report.established, "{report:?}");
    assert_eq!(report.status, Some(200));
    assert_eq!(report.reason, "local_bye");
    let media = report.media.expect("caller media stats");
    // 20 ms packets for 600 ms: far more than a handful arrive even on a busy machine.
    assert!(media.received >= 5, "caller heard the phone: {media:?}");

    let answered = expect_entry(phone.journal(), 0, "call.answered", is_dn("7004")).await;
    expect_entry(phone.journal(), 0, "media.started", is_dn("7004")).await;
    let ended = expect_entry(phone.journal(), answered.seq, "call.ended", is_dn("7004")).await;
    let d = ended.detail();
    assert_eq!(d["reason"], "remote_bye", "{d}");
    assert!(
        d["media"]["received"].as_u64().unwrap_or(0) >= 5,
        "phone heard the caller: {d}"
    );
    expect_entry(node.journal(), 0, "call.established", |_| true).await;
    expect_entry(node.journal(), 0, "call.released", |_| true).await;
}

/// S4.1: the phone's media is cut; it notices the silence after `media.timeout` and drops the
/// call with BYE, which reaches the caller through the node.
#[tokio::test]
async fn s4_1_softphone_drops_the_call_with_bye_when_its_media_stops() {
    let node = start_node("ss1", |_| {}).await;
    let phone = phones(&["7005"], &[node.sip_addr()], |_| {}).await;
    expect_entry(phone.journal(), 0, "phone.registered", is_dn("7005")).await;
    let caller = caller().await;
    let call = {
        let caller = caller.clone();
        let plan = CallPlan::new("7005", node.sip_addr()).hold(Duration::from_secs(30));
        tokio::spawn(async move { caller.place_call(plan).await })
    };
    let started = expect_entry(phone.journal(), 0, "media.started", is_dn("7005")).await;
    phone
        .faults()
        .add(FaultRule::new("media:*", FaultMode::Drop))
        .unwrap();
    let silent = expect_entry(phone.journal(), started.seq, "media.silent", is_dn("7005")).await;
    assert_eq!(silent.detail()["timeout_ms"], 600);
    let ended = expect_entry(phone.journal(), silent.seq, "call.ended", is_dn("7005")).await;
    assert_eq!(ended.detail()["reason"], "media_silent");
    let report = tokio::time::timeout(PATIENCE, call)
        .await
        .expect("the caller's call ends")
        .unwrap()
        .unwrap();
    assert_eq!(report.reason, "remote_bye", "{report:?}");
    assert_eq!(phone.stats().media_silent_drops, 1);
}

/// The caller gives up before the (desktop-answered) phone is answered: CANCEL, 487.
#[tokio::test]
async fn caller_cancel_before_answer_ends_the_ringing_call_on_the_phone() {
    let node = start_node("ss1", |_| {}).await;
    let phone = phones(&["7006"], &[node.sip_addr()], |c| {
        c.answer = AnswerMode::Notify
    })
    .await;
    expect_entry(phone.journal(), 0, "phone.registered", is_dn("7006")).await;
    let report = caller()
        .await
        .place_call(
            CallPlan::new("7006", node.sip_addr()).give_up_after(Duration::from_millis(300)),
        )
        .await
        .unwrap();
    assert_eq!(report.reason, "cancelled", "{report:?}");
    assert_eq!(report.status, Some(487), "{report:?}");
    let ended = expect_entry(phone.journal(), 0, "call.ended", is_dn("7006")).await;
    assert_eq!(ended.detail()["reason"], "cancelled");
}

/// The phone hangs up first: its BYE reaches the caller.
#[tokio::test]
async fn softphone_hangs_up_with_bye() {
    let node = start_node("ss1", |_| {}).await;
    let phone = phones(&["7007"], &[node.sip_addr()], |_| {}).await;
    expect_entry(phone.journal(), 0, "phone.registered", is_dn("7007")).await;
    let caller = caller().await;
    let call = {
        let caller = caller.clone();
        let plan = CallPlan::new("7007", node.sip_addr()).hold(Duration::from_secs(30));
        tokio::spawn(async move { caller.place_call(plan).await })
    };
    expect_entry(phone.journal(), 0, "media.started", is_dn("7007")).await;
    assert_eq!(phone.hang_up("7007").await.unwrap(), 1);
    let report = tokio::time::timeout(PATIENCE, call)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(report.reason, "remote_bye", "{report:?}");
    let ended = expect_entry(phone.journal(), 0, "call.ended", is_dn("7007")).await;
    assert_eq!(ended.detail()["reason"], "local_bye");
}

/// Desktop answer (docs/protocols.md §4.3): the phone rings until the node, asked by the T-Lib
/// client of the agent (`RequestAnswerCall`), sends the in-dialog NOTIFY `Event: talk`.
#[tokio::test]
async fn softphone_in_notify_mode_answers_when_the_desktop_answers_the_call() {
    let node = start_node("ss1", |_| {}).await;
    let phone = phones(&["7010"], &[node.sip_addr()], |c| {
        c.answer = AnswerMode::Notify
    })
    .await;
    expect_entry(phone.journal(), 0, "phone.registered", is_dn("7010")).await;
    let (client, mut events) = tlib_client(&node, &netfault::Faults::new(), "tlib:gws1-ss1").await;
    request(&client, Request::register_address("7010")).await;
    let caller = caller().await;
    let call = {
        let caller = caller.clone();
        let plan = CallPlan::new("7010", node.sip_addr()).hold(Duration::from_millis(300));
        tokio::spawn(async move { caller.place_call(plan).await })
    };
    let ringing = expect_event(&mut events, MessageName::EventRinging).await;
    let offered = expect_entry(phone.journal(), 0, "call.offered", is_dn("7010")).await;
    assert!(
        phone
            .journal()
            .since(offered.seq, 100)
            .iter()
            .all(|e| e.kind != "call.answered"),
        "not answered before the desktop answers"
    );
    let answer = Request::AnswerCall {
        dn: "7010".into(),
        conn_id: ringing.attrs.conn_id.expect("ConnID"),
    };
    client.send(answer.to_message(None)).await.unwrap();
    let talk = expect_entry(phone.journal(), offered.seq, "call.notify", is_dn("7010")).await;
    assert_eq!(talk.detail()["event"], "talk");
    expect_entry(phone.journal(), talk.seq, "call.answered", is_dn("7010")).await;
    expect_event(&mut events, MessageName::EventEstablished).await;
    let report = tokio::time::timeout(PATIENCE, call)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(report.established, "{report:?}");
}

/// A PSTN agent's call goes to the gateway at the agent's external number; the gateway answers
/// any number.
#[tokio::test]
async fn pstn_gateway_answers_a_call_for_a_pstn_agent_placed_through_the_node() {
    let gateway =
        Swarm::start(PhoneConfig::gateway("127.0.0.1:0".parse().unwrap()).with_fast_timers())
            .await
            .unwrap();
    let gw = gateway.sip_addr();
    let node = start_node("ss1", |c| c.pstn_gateway = Some(gw)).await;
    let report = caller()
        .await
        .place_call(CallPlan::new("8001", node.sip_addr()).hold(Duration::from_millis(300)))
        .await
        .unwrap();
    assert!(report.established, "{report:?}");
    let offered = expect_entry(gateway.journal(), 0, "call.offered", |_| true).await;
    assert_eq!(offered.detail()["dn"], "+15558001");
    assert!(
        offered.detail()["call_uuid"].is_string(),
        "{}",
        offered.detail()
    );
    expect_entry(gateway.journal(), 0, "call.ended", |d| {
        d["reason"] == "remote_bye"
    })
    .await;
}

/// A swarm shares one socket: every phone registers, calls reach the right phone, and a fault
/// on one phone's link `sip:<dn>` moves that phone alone to the second registrar.
#[tokio::test]
async fn swarm_on_one_socket_routes_calls_per_dn_and_cuts_one_phone_by_its_link() {
    let ss1 = start_node("ss1", |_| {}).await;
    let ss3 = start_node("ss3", |_| {}).await;
    let dns: Vec<String> = (7100..7300).map(|n| n.to_string()).collect();
    let dn_refs: Vec<&str> = dns.iter().map(String::as_str).collect();
    let swarm = phones(&dn_refs, &[ss1.sip_addr(), ss3.sip_addr()], |_| {}).await;
    let all = swarm
        .journal()
        .wait_for(0, PATIENCE, |_| swarm.stats().registered == 200)
        .await;
    assert!(all.is_some(), "registered: {:?}", swarm.stats());
    assert_eq!(ss1.state().await["bindings"], 200);

    let report = caller()
        .await
        .place_call(CallPlan::new("7250", ss1.sip_addr()).hold(Duration::from_millis(200)))
        .await
        .unwrap();
    assert!(report.established, "{report:?}");
    let answered = expect_entry(swarm.journal(), 0, "call.answered", |_| true).await;
    assert_eq!(answered.detail()["dn"], "7250");

    let since = swarm.journal().last_seq();
    swarm
        .faults()
        .add(
            FaultRule::new("sip:7123", FaultMode::Drop)
                .with_peer(ss1.sip_addr().to_string().parse().unwrap()),
        )
        .unwrap();
    let moved = expect_entry(swarm.journal(), since, "phone.registered", |d| {
        d["failover_from"].is_string()
    })
    .await;
    assert_eq!(moved.detail()["dn"], "7123");
    assert_eq!(moved.detail()["registrar"], ss3.sip_addr().to_string());
    assert_eq!(ss3.state().await["bindings"], 1, "only the cut phone moved");
}

// ------------------------------------------------------------------------------------ interop

/// Whether Kamailio is installed. CI sets `DRLAB_REQUIRE_KAMAILIO=1` so a missing one fails.
fn kamailio_available() -> bool {
    let found = Command::new("kamailio")
        .arg("-v")
        .stdout(Stdio::null())
        .status()
        .is_ok();
    nodekit::peer::available(
        found,
        "Kamailio",
        "DRLAB_REQUIRE_KAMAILIO",
        "apt-get install kamailio",
    )
}

/// A minimal Kamailio: in-memory registrar, and a stateful proxy to the registered contact.
const KAMAILIO_CFG: &str = r#"#!KAMAILIO
debug=1
log_stderror=yes
children=1
listen=udp:127.0.0.1:@PORT@
disable_tcp=yes
auto_aliases=no
dns=no
rev_dns=no
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
modparam("usrloc", "db_mode", 0)
modparam("registrar", "min_expires", 1)

request_route {
	if (!mf_process_maxfwd_header("10")) {
		sl_send_reply("483", "Too Many Hops");
		exit;
	}
	if (is_method("REGISTER")) {
		if (!save("location")) {
			sl_reply_error();
		}
		exit;
	}
	if (is_method("CANCEL|ACK")) {
		if (t_check_trans()) {
			t_relay();
		}
		exit;
	}
	if (is_method("INVITE") && !lookup("location")) {
		sl_send_reply("404", "Not Found");
		exit;
	}
	if (!t_relay()) {
		sl_reply_error();
	}
}
"#;

/// A Kamailio process on 127.0.0.1, stopped (SIGTERM, which also stops its children) on drop.
struct Kamailio {
    child: Child,
    addr: SocketAddr,
    _dir: TempDir,
}

impl Kamailio {
    fn start() -> Kamailio {
        let port = free_udp_port();
        let dir = TempDir::new("kamailio");
        let cfg = dir.0.join("kamailio.cfg");
        std::fs::write(&cfg, KAMAILIO_CFG.replace("@PORT@", &port.to_string())).unwrap();
        let child = Command::new("kamailio")
            .arg("-f")
            .arg(&cfg)
            .args(["-DD", "-E", "-m", "64", "-M", "8", "-Y"])
            .arg(&dir.0)
            .arg("-P")
            .arg(dir.0.join("kamailio.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("kamailio starts");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        Kamailio {
            child,
            addr,
            _dir: dir,
        }
    }

    /// Waits until Kamailio holds its UDP port (binding it ourselves then fails).
    async fn ready(&mut self) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while std::net::UdpSocket::bind(self.addr).is_ok() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("kamailio exited at start: {status}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "kamailio did not bind {}",
                self.addr
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "drlab-{what}-{}-{}",
            std::process::id(),
            free_udp_port()
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_udp_port() -> u16 {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.local_addr().unwrap().port()
}

/// Interop: Kamailio as registrar and proxy. The phone registers there, refreshes, and takes a
/// call Kamailio relays to its contact, with the heartbeat both ways.
#[tokio::test]
async fn kamailio_registers_the_softphone_and_relays_a_call_it_answers() {
    if !kamailio_available() {
        return;
    }
    let mut kamailio = Kamailio::start();
    kamailio.ready().await;
    let phone = phones(&["7008"], &[kamailio.addr], |c| c.expires = 2).await;
    let registered = expect_entry(phone.journal(), 0, "phone.registered", is_dn("7008")).await;
    assert_eq!(registered.detail()["expires"], 2, "{}", registered.detail());
    expect_entry(
        phone.journal(),
        registered.seq,
        "phone.refreshed",
        is_dn("7008"),
    )
    .await;
    let report = caller()
        .await
        .place_call(CallPlan::new("7008", kamailio.addr).hold(Duration::from_millis(400)))
        .await
        .unwrap();
    assert!(report.established, "{report:?}");
    assert!(report.media.is_some_and(|m| m.received >= 3), "{report:?}");
    let ended = expect_entry(phone.journal(), 0, "call.ended", is_dn("7008")).await;
    assert_eq!(ended.detail()["reason"], "remote_bye");
    assert!(ended.detail()["media"]["received"].as_u64().unwrap_or(0) >= 3);
}

/// Interop: SIPp's `uac` calls the phone directly and through the node; every call succeeds.
#[tokio::test]
async fn sipp_uac_calls_are_answered_by_the_softphone_directly_and_through_the_node() {
    if !sipp_available() {
        return;
    }
    let node = start_node("ss1", |_| {}).await;
    let phone = phones(&["7009"], &[node.sip_addr()], |_| {}).await;
    expect_entry(phone.journal(), 0, "phone.registered", is_dn("7009")).await;
    for (target, what) in [
        (phone.sip_addr(), "direct"),
        (node.sip_addr(), "through the node"),
    ] {
        let since = phone.stats().calls_answered;
        let status = run_sipp_to_end("7009", target, 5).await;
        assert!(status, "SIPp uac {what}: calls failed");
        assert_eq!(phone.stats().calls_answered, since + 5, "{what}");
    }
}

/// SIPp in the foreground with a bounded run; true when it exits 0 (every call successful).
async fn run_sipp_to_end(dn: &str, target: SocketAddr, calls: u32) -> bool {
    let dn = dn.to_owned();
    tokio::task::spawn_blocking(move || {
        let out = Command::new("timeout")
            .args(["30", "sipp", "-sn", "uac", "-s", &dn, "-i", "127.0.0.1"])
            .args(["-p", &free_udp_port().to_string()])
            .args(["-m", &calls.to_string(), "-r", "20", "-d", "200"])
            .args(["-timeout", "20", "-nostdin", "-trace_err"])
            .arg(target.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .output()
            .expect("sipp runs");
        if !out.status.success() {
            eprintln!("sipp: {}", String::from_utf8_lossy(&out.stderr));
        }
        out.status.success()
    })
    .await
    .unwrap_or(false)
}
