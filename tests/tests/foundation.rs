//! Foundation: one SIP Cluster node over real sockets — registrar (R1, R12), T-Lib server,
//! logout on disconnect (R4), bad input, control plane, and SIPp interop.

use std::time::{Duration, Instant};

use drlab_tests::*;
use netfault::{FaultMode, FaultRule, Faults};
use serde_json::Value;
use tlib::{error_code, AgentWorkMode, MessageName, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn login(dn: &str, agent: &str) -> Request {
    Request::AgentLogin {
        dn: dn.into(),
        agent_id: Some(agent.into()),
        password: None,
        work_mode: AgentWorkMode::AutoIn,
        queue: None,
        reasons: None,
        extensions: None,
    }
}

/// R1 + R12 for a softphone DN: a T-Lib client that registered DN 7001 sees it come into service
/// when the phone registers, and go out of service when the registration expires.
#[tokio::test]
async fn r1_r12_softphone_registration_and_expiry_reach_tlib_clients() {
    let node = start_node("ss1", |c| c.registrar.min_expires = Duration::from_secs(1)).await;
    let (client, mut events) = tlib_client(&node, &Faults::new(), "tlib:test-ss1").await;
    let reply = request(&client, Request::register_address("7001")).await;
    assert_eq!(reply.name, MessageName::EventRegistered);
    expect_event(&mut events, MessageName::EventDNOutOfService).await;

    let phone = UdpPhone::new(node.sip_addr()).await;
    let ok = phone.register("7001", 1).await;
    assert_eq!(status_of(&ok), 200, "{ok}");
    assert!(
        ok.contains("expires=1"),
        "granted expiry echoed in Contact: {ok}"
    );
    let back = expect_event(&mut events, MessageName::EventDNBackInService).await;
    assert_eq!(back.attrs.this_dn.as_deref(), Some("7001"));
    let state = node.state().await;
    let dn = &state["dns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["dn"] == "7001")
        .unwrap()
        .clone();
    assert_eq!(
        dn["owner"], "ss1",
        "R1: the node that accepted the REGISTER owns the DN"
    );

    // No refresh: the binding expires after the granted second (R12).
    let oos = expect_event(&mut events, MessageName::EventDNOutOfService).await;
    assert_eq!(oos.attrs.this_dn.as_deref(), Some("7001"));
    let state = node.state().await;
    assert_eq!(state["bindings"], 0);
    assert!(node
        .journal()
        .since(0, 1000)
        .iter()
        .any(|e| e.kind == "ownership.released"));
}

/// R12: a refresh before expiry keeps the DN in service with no event.
#[tokio::test]
async fn r12_refresh_keeps_dn_in_service() {
    let node = start_node("ss1", |c| c.registrar.min_expires = Duration::from_secs(1)).await;
    let (client, mut events) = tlib_client(&node, &Faults::new(), "tlib:test-ss1").await;
    let phone = UdpPhone::new(node.sip_addr()).await;
    assert_eq!(status_of(&phone.register("7002", 2).await), 200);
    request(&client, Request::register_address("7002")).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(status_of(&phone.register("7002", 2).await), 200);
    }
    // 2.1 s after the first REGISTER the DN would have expired without the refreshes.
    let oos = events
        .wait_for(
            |m| m.name == MessageName::EventDNOutOfService,
            Duration::from_millis(100),
        )
        .await;
    assert!(
        matches!(oos, Err(tlib::ClientError::Timeout)),
        "no EventDNOutOfService while refreshed: {oos:?}"
    );
    assert_eq!(node.state().await["bindings"], 1);
}

/// The registrar (docs/protocols.md §4.1): unknown DN 404, too brief 423 + Min-Expires, Expires: 0
/// removes, PSTN DNs are not SIP-registered, OPTIONS answered.
#[tokio::test]
async fn registrar_answers_follow_the_rules() {
    let node = start_node("ss1", |c| c.registrar.min_expires = Duration::from_secs(60)).await;
    let phone = UdpPhone::new(node.sip_addr()).await;
    assert_eq!(status_of(&phone.register("9999", 3600).await), 404);
    let brief = phone.register("7001", 10).await;
    assert_eq!(status_of(&brief), 423, "{brief}");
    assert!(brief.contains("Min-Expires: 60"), "{brief}");
    assert_eq!(status_of(&phone.register("8001", 3600).await), 403);
    assert_eq!(status_of(&phone.register("7001", 3600).await), 200);
    assert_eq!(node.state().await["bindings"], 1);
    assert_eq!(status_of(&phone.register("7001", 0).await), 200);
    assert_eq!(node.state().await["bindings"], 0);
    let options =
        sipcore::RequestBuilder::options(&format!("sip:{}", node.sip_addr()), phone.local())
            .build()
            .unwrap();
    assert_eq!(
        status_of(&phone.exchange(options.to_string().as_bytes()).await),
        200
    );
}

/// A retransmitted REGISTER gets the cached response, not a second transaction.
#[tokio::test]
async fn retransmitted_register_gets_the_cached_response() {
    let node = start_node("ss1", |_| {}).await;
    let phone = UdpPhone::new(node.sip_addr()).await;
    let aor = format!("sip:7005@{}", node.sip_addr().ip());
    let req = sipcore::RequestBuilder::register(
        &format!("sip:{}", node.sip_addr()),
        &aor,
        phone.local(),
        300,
    )
    .build()
    .unwrap();
    let first = phone.exchange(req.to_string().as_bytes()).await;
    let again = phone.exchange(req.to_string().as_bytes()).await;
    assert_eq!(first, again, "same bytes, including the To tag");
    let metrics = reqwest::get(format!("http://{}/metrics", node.control_addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("drlab_sip_retransmissions_total{node=\"ss1\"} 1"),
        "{metrics}"
    );
}

/// Bad SIP input: a malformed request gets 400 and the node keeps serving.
#[tokio::test]
async fn malformed_sip_gets_400_and_node_keeps_serving() {
    let node = start_node("ss1", |_| {}).await;
    let phone = UdpPhone::new(node.sip_addr()).await;
    let local = phone.local();
    let bad_cseq = format!(
        "REGISTER sip:{0} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKbad1\r\nFrom: <sip:7001@{0}>;tag=1\r\nTo: <sip:7001@{0}>\r\nCall-ID: bad1\r\nCSeq: one REGISTER\r\nContact: <sip:7001@{local}>\r\nContent-Length: 0\r\n\r\n",
        node.sip_addr()
    );
    assert_eq!(status_of(&phone.exchange(bad_cseq.as_bytes()).await), 400);
    let no_call_id = format!(
        "REGISTER sip:{0} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKbad2\r\nFrom: <sip:7001@{0}>;tag=1\r\nTo: <sip:7001@{0}>\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n",
        node.sip_addr()
    );
    assert_eq!(status_of(&phone.exchange(no_call_id.as_bytes()).await), 400);
    let broken_length = format!(
        "REGISTER sip:{0} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKbad3\r\nFrom: <sip:7001@{0}>;tag=1\r\nTo: <sip:7001@{0}>\r\nCall-ID: bad3\r\nCSeq: 1 REGISTER\r\nContent-Length: 99\r\n\r\nshort",
        node.sip_addr()
    );
    assert_eq!(
        status_of(&phone.exchange(broken_length.as_bytes()).await),
        400
    );
    // Pure garbage cannot be answered: it is counted and dropped, and the node stays up.
    phone
        .socket
        .send_to(&[0xff, 0x00, 0x13, 0x37], node.sip_addr())
        .await
        .unwrap();
    assert_eq!(status_of(&phone.register("7001", 300).await), 200);
}

/// Bad T-Lib input: an invalid request gets EventError and the connection stays; a frame that
/// is not JSON gets EventError and a closed connection; other clients are not affected.
#[tokio::test]
async fn garbage_on_tlib_port_gets_event_error_and_node_keeps_serving() {
    let node = start_node("ss1", |_| {}).await;
    let (client, _events) = tlib_client(&node, &Faults::new(), "tlib:good-ss1").await;

    // Unknown request, missing attribute, unconfigured DN: EventError, link kept.
    let mut unknown = tlib::Message::new(MessageName::Other("RequestTeleport".into()));
    unknown.attrs.this_dn = Some("7001".into());
    let e = client.request(unknown).await.unwrap();
    assert_eq!(
        (e.name.clone(), e.attrs.error_code),
        (MessageName::EventError, Some(error_code::UNSUP_OPER))
    );
    let missing = tlib::Message::new(MessageName::RequestRegisterAddress);
    let e = client.request(missing).await.unwrap();
    assert_eq!(e.attrs.error_code, Some(error_code::INVALID_ATTR));
    let e = request(&client, Request::register_address("4242")).await;
    assert_eq!(e.attrs.error_code, Some(error_code::NOT_CONFIGURED));
    let e = request(&client, login("8001", "a1")).await;
    assert_eq!(e.attrs.error_code, Some(error_code::NOT_REGISTERED));

    // A frame that is not JSON: EventError, then the node closes that connection.
    let mut raw = tokio::net::TcpStream::connect(node.tlib_addr())
        .await
        .unwrap();
    let junk = b"this is not json";
    raw.write_all(&(junk.len() as u32).to_be_bytes())
        .await
        .unwrap();
    raw.write_all(junk).await.unwrap();
    let mut len = [0u8; 4];
    raw.read_exact(&mut len).await.unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    raw.read_exact(&mut body).await.unwrap();
    let reply: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(reply["message"], "EventError");
    let mut rest = Vec::new();
    let n = tokio::time::timeout(PATIENCE, raw.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "connection closed after the bad frame");

    // A declared length over 1 MiB: same.
    let mut raw = tokio::net::TcpStream::connect(node.tlib_addr())
        .await
        .unwrap();
    raw.write_all(&(2u32 * 1024 * 1024).to_be_bytes())
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, raw.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&rest).contains("EventError"));

    // The first client is still served.
    let ok = request(&client, Request::register_address("8001")).await;
    assert_eq!(ok.name, MessageName::EventRegistered);
}

/// PSTN DN (R1): the T-Lib registration puts it in service and makes the node its owner; agent
/// login, ready, not ready, logout produce the documented events to every registered client.
#[tokio::test]
async fn r1_pstn_dn_owned_by_tlib_registration_and_agent_states() {
    let node = start_node("ss1", |_| {}).await;
    let (gws, mut gws_events) = tlib_client(&node, &Faults::new(), "tlib:gws1-ss1").await;
    let (observer, mut observed) = tlib_client(&node, &Faults::new(), "tlib:obs-ss1").await;
    let reg = request(&gws, Request::register_address("8001")).await;
    assert_eq!(reg.name, MessageName::EventRegistered);
    expect_event(&mut gws_events, MessageName::EventDNBackInService).await;
    request(&observer, Request::register_address("8001")).await;

    let ack = request(&gws, login("8001", "agent8001")).await;
    assert_eq!(ack.name, MessageName::EventAgentLogin);
    let ready = expect_event(&mut observed, MessageName::EventAgentReady).await;
    assert_eq!(ready.attrs.agent_id.as_deref(), Some("agent8001"));
    let not_ready = request(
        &gws,
        Request::AgentNotReady {
            dn: "8001".into(),
            work_mode: Some(AgentWorkMode::AuxWork),
            reasons: None,
            extensions: None,
        },
    )
    .await;
    assert_eq!(not_ready.name, MessageName::EventAgentNotReady);
    assert_eq!(
        not_ready.attrs.agent_work_mode,
        Some(AgentWorkMode::AuxWork)
    );
    let other = request(&observer, login("8001", "intruder")).await;
    assert_eq!(
        other.attrs.error_code,
        Some(error_code::SOFT_AGENT_ALREADY_LOGGED_IN)
    );
    let info = request(
        &observer,
        Request::QueryAddress {
            dn: "8001".into(),
            info_type: tlib::AddressInfoType::AddressStatus,
        },
    )
    .await;
    let ext = info.attrs.extensions.unwrap();
    assert_eq!(
        (ext["Owner"].as_str(), ext["AgentStatus"].as_str()),
        (Some("ss1"), Some("NotReady"))
    );
    let out = request(
        &gws,
        Request::AgentLogout {
            dn: "8001".into(),
            reasons: None,
            extensions: None,
        },
    )
    .await;
    assert_eq!(out.name, MessageName::EventAgentLogout);
    expect_event(&mut observed, MessageName::EventAgentLogout).await;
}

/// A "GWS" client (its socket under `gws_faults`) that registered `dn` and logged its agent in,
/// and an observer client that registered `dn` too (it sees what R4 does).
async fn agent_logged_in_with_observer(
    node: &sipserver_mock::SipNode,
    gws_faults: &Faults,
    dn: &str,
) -> (
    (tlib::TlibClient, tlib::Events),
    tlib::TlibClient,
    tlib::Events,
) {
    // The GWS client's events are returned too: it must stay fully alive until the fault.
    let (gws, gws_events) = tlib_client(node, gws_faults, "tlib:gws1-ss1").await;
    let (observer, observed) = tlib_client(node, &Faults::new(), "tlib:obs-ss1").await;
    request(&gws, Request::register_address(dn)).await;
    request(&observer, Request::register_address(dn)).await;
    let agent = format!("agent{dn}");
    assert_eq!(
        request(&gws, login(dn, &agent)).await.name,
        MessageName::EventAgentLogin
    );
    ((gws, gws_events), observer, observed)
}

/// R4 with an RST: the client that logged the agent in is reset; the node logs the agent out at
/// once and tells the other clients of the DN.
#[tokio::test]
async fn r4_logout_on_disconnect_rst() {
    let node = start_node("ss1", |c| {
        // Long ADDP so that only the RST can explain a fast logout.
        c.addp.interval = Duration::from_secs(5);
        c.addp.timeout = Duration::from_secs(30);
    })
    .await;
    let gws_faults = Faults::new();
    let (_gws, _observer, mut observed) =
        agent_logged_in_with_observer(&node, &gws_faults, "8002").await;

    let cut = Instant::now();
    gws_faults
        .add(FaultRule::new("tlib:gws1-ss1", FaultMode::Reject))
        .unwrap();
    let logout = expect_event(&mut observed, MessageName::EventAgentLogout).await;
    assert_eq!(logout.attrs.this_dn.as_deref(), Some("8002"));
    assert!(
        cut.elapsed() < Duration::from_secs(2),
        "RST detected at once, took {:?}",
        cut.elapsed()
    );
    let entry = node
        .journal()
        .since(0, 1000)
        .into_iter()
        .find(|e| e.kind == "agent.logout")
        .unwrap();
    assert_eq!(entry.detail()["rule"], "R4");
}

/// R4 with silent loss (the fault layer's `drop`): detected by ADDP within `addp.timeout`.
#[tokio::test]
async fn r4_logout_on_disconnect_silent_drop() {
    let node = start_node("ss1", |_| {}).await; // fast profile: ADDP 200 ms / 600 ms
    let gws_faults = Faults::new();
    let (_gws, observer, mut observed) =
        agent_logged_in_with_observer(&node, &gws_faults, "8003").await;

    let cut = Instant::now();
    gws_faults
        .add(FaultRule::new("tlib:*", FaultMode::Drop))
        .unwrap();
    expect_event(&mut observed, MessageName::EventAgentLogout).await;
    let took = cut.elapsed();
    // Nothing reached the node to say the client left: only the ADDP timeout explains it.
    assert!(
        took >= Duration::from_millis(400),
        "detected too early for silent loss: {took:?}"
    );
    assert!(
        took <= Duration::from_millis(600) + Duration::from_secs(2),
        "ADDP too slow: {took:?}"
    );
    // Calls are never released by R4 and the agent state is gone.
    let info = request(
        &observer,
        Request::QueryAddress {
            dn: "8003".into(),
            info_type: tlib::AddressInfoType::AddressStatus,
        },
    )
    .await;
    assert_eq!(info.attrs.extensions.unwrap()["AgentStatus"], "LoggedOut");
}

/// Control plane: `/faults` drop on `sip:*` silences the registrar; `/crash` resets T-Lib
/// clients; `/restart` serves again on the same ports with fresh state.
#[tokio::test]
async fn control_plane_faults_crash_restart() {
    let node = start_node("ss1", |_| {}).await;
    let base = format!("http://{}", node.control_addr());
    let http = reqwest::Client::new();
    let phone = UdpPhone::new(node.sip_addr()).await;
    assert_eq!(status_of(&phone.register("7010", 300).await), 200);

    let r = http
        .post(format!("{base}/faults"))
        .json(&serde_json::json!({"link": "sip:*", "mode": "drop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let req = sipcore::RequestBuilder::options(&format!("sip:{}", node.sip_addr()), phone.local())
        .build()
        .unwrap();
    phone
        .socket
        .send_to(req.to_string().as_bytes(), node.sip_addr())
        .await
        .unwrap();
    let mut buf = [0u8; 2048];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), phone.socket.recv_from(&mut buf))
            .await
            .is_err()
    );
    assert_eq!(
        http.delete(format!("{base}/faults"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(status_of(&phone.register("7010", 300).await), 200);

    let (_client, mut events) = tlib_client(&node, &Faults::new(), "tlib:test-ss1").await;
    assert_eq!(
        http.post(format!("{base}/crash"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    expect_disconnect(&mut events).await;
    let state: Value = http
        .get(format!("{base}/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["running"], false);
    assert_eq!(
        http.post(format!("{base}/restart"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let state: Value = http
        .get(format!("{base}/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (state["running"].as_bool(), state["bindings"].as_u64()),
        (Some(true), Some(0)),
        "fresh state after restart"
    );
    assert_eq!(status_of(&phone.register("7010", 300).await), 200);
    let events: Value = http
        .get(format!("{base}/events?since=0"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"node.crashed") && kinds.contains(&"node.restarted"),
        "{kinds:?}"
    );
}

/// Interop: SIPp registers 200 distinct DNs over UDP and over TCP, all answered 200 OK.
#[tokio::test]
async fn sipp_registers_200_dns_over_udp_and_tcp() {
    if !sipp_available() {
        return;
    }
    for (transport, first_dn) in [("u1", 7000), ("t1", 7200)] {
        let node = start_node("ss1", |_| {}).await;
        let dir =
            std::env::temp_dir().join(format!("drlab-sipp-{}-{transport}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let csv = dir.join("dns.csv");
        let mut lines = String::from("SEQUENTIAL\n");
        for dn in first_dn..first_dn + 200 {
            lines.push_str(&format!("{dn}\n"));
        }
        std::fs::write(&csv, lines).unwrap();
        // Async: the node answers from this test's runtime while SIPp runs.
        let sipp = tokio::process::Command::new("timeout")
            .current_dir(&dir)
            .args(["60", "sipp", "-sf"])
            .arg(sipp_dir().join("register.xml"))
            .arg("-inf")
            .arg(&csv)
            .args([
                "-t",
                transport,
                "-m",
                "200",
                "-r",
                "400",
                "-l",
                "50",
                "-i",
                "127.0.0.1",
                "-p",
                "0",
                "-nostdin",
                "-trace_err",
                "-max_recv_loops",
                "1000",
            ])
            .arg(node.sip_addr().to_string())
            .output()
            .await
            .expect("run sipp");
        let stdout = String::from_utf8_lossy(&sipp.stdout);
        let stderr = String::from_utf8_lossy(&sipp.stderr);
        assert!(
            sipp.status.success(),
            "SIPp over {transport} failed: {:?}\n{stdout}\n{stderr}",
            sipp.status
        );
        let state = node.state().await;
        assert_eq!(state["bindings"], 200, "200 DNs bound over {transport}");
        node.shutdown().await;
    }
}
