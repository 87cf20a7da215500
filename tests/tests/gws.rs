//! A GWS node (gws-mock) in front of a SIP node over real sockets: a desktop logs in over REST,
//! follows its device and calls over CometD, controls calls; the T-Lib link is cut (R13);
//! sessions are per node and expire; bad input is refused cleanly; a real CometD client library
//! talks to it.

use std::process::Stdio;
use std::time::Duration;

use drlab_tests::gws::*;
use drlab_tests::ua::{AnswerMode, PhoneEvent, TestCaller, TestPhone};
use drlab_tests::*;
use netfault::{FaultMode, FaultRule};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

/// A SIP node, a GWS node on it, and desktop `agent<dn>` logged in with a contact-center session
/// and a CometD client subscribed to every `/v2/me` topic and the services.
async fn logged_in_desktop(dn: &str) -> (sipserver_mock::SipNode, gws_mock::GwsNode, Desktop) {
    let sip = start_node("ss1", |_| {}).await;
    let gws = start_gws("gws1", &sip, |_| {}).await;
    let mut desktop = Desktop::new(&gws);
    let (status, me) = desktop.login(&format!("agent{dn}"), "password").await;
    assert_eq!(status, StatusCode::OK, "{me}");
    desktop
        .cometd_subscribe(&["/v2/me/*", "/notifications/services"])
        .await;
    let (status, body) = desktop.start_contact_center_session().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["statusCode"], 0, "{body}");
    (sip, gws, desktop)
}

/// The main flow: Basic auth, StartContactCenterSession, LoggedIn then Ready over CometD,
/// an inbound call Ringing → Established → Released, answered and hung up through REST.
#[tokio::test]
async fn desktop_logs_in_sees_ready_and_answers_and_hangs_up_a_call() {
    let sip = start_node("ss1", |c| c.options.wrap_up_time = Duration::ZERO).await;
    let mut phone = TestPhone::bind().await.unwrap();
    phone.set_answer(AnswerMode::OnNotifyTalk);
    assert_eq!(
        phone.register(sip.sip_addr(), "7001", 300).await.unwrap(),
        200
    );
    let gws = start_gws("gws1", &sip, |_| {}).await;

    let mut desktop = Desktop::new(&gws);
    let (status, me) = desktop.login("agent7001", "password").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["statusCode"], 0);
    assert_eq!(me["user"]["userName"], "agent7001");
    assert_eq!(me["user"]["devices"][0]["phoneNumber"], "7001");
    assert!(desktop.session.is_some(), "JSESSIONID cookie set");
    desktop
        .cometd_subscribe(&["/v2/me/devices", "/v2/me/calls"])
        .await;
    let (status, body) = desktop.start_contact_center_session().await;
    assert_eq!(
        (status, body["statusCode"].clone()),
        (StatusCode::OK, json!(0))
    );
    desktop
        .wait_for("LoggedIn", device_is("Active", Some("LoggedIn")))
        .await;
    let ready = desktop
        .wait_for("Ready", device_is("Active", Some("Ready")))
        .await;
    assert_eq!(ready["devices"][0]["userState"]["displayName"], "Ready");

    let caller = TestCaller::bind().await.unwrap();
    let mut call = caller
        .invite(sip.sip_addr(), "7001", "5551234")
        .await
        .unwrap();
    let ringing = desktop.wait_for("Ringing", call_is("Ringing")).await;
    let id = ringing["call"]["id"].as_str().unwrap().to_owned();
    assert_eq!(ringing["call"]["participants"][0]["phoneNumber"], "5551234");
    assert_eq!(ringing["call"]["connId"].as_str().unwrap().len(), 16);
    // Hangup is not a capability of a ringing call.
    let (status, body) = desktop
        .post(
            &format!("/api/v2/me/calls/{id}"),
            json!({"operationName": "Hangup"}),
        )
        .await;
    assert_eq!(
        (status, body["statusCode"].clone()),
        (StatusCode::BAD_REQUEST, json!(2))
    );

    let (status, _) = desktop
        .post(
            &format!("/api/v2/me/calls/{id}"),
            json!({"operationName": "Answer"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let talk = phone
        .wait_for(|e| matches!(e, PhoneEvent::Notify { .. }), PATIENCE)
        .await
        .unwrap();
    assert!(matches!(talk, PhoneEvent::Notify { ref event, .. } if event == "talk"));
    call.wait_for_status(200, PATIENCE).await.unwrap();
    let established = desktop
        .wait_for("Established", call_is("Established"))
        .await;
    assert_eq!(established["call"]["id"], id.as_str());
    let (_, calls) = desktop.get("/api/v2/me/calls").await;
    assert_eq!(calls["calls"][0]["state"], "Established");

    let (status, _) = desktop
        .post(
            &format!("/api/v2/me/calls/{id}"),
            json!({"operationName": "Hangup"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    desktop.wait_for("Released", call_is("Released")).await;
    phone
        .wait_for(|e| matches!(e, PhoneEvent::Bye { .. }), PATIENCE)
        .await
        .unwrap();
    let (_, calls) = desktop.get("/api/v2/me/calls").await;
    assert_eq!(calls["calls"], json!([]));
    let (status, _) = desktop
        .post(
            &format!("/api/v2/me/calls/{id}"),
            json!({"operationName": "Hangup"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a released call is gone");
}

/// NotReady with a configured reason and back to Ready through `/api/v2/me/channels/voice`.
#[tokio::test]
async fn voice_channel_not_ready_with_reason_then_ready() {
    let (_sip, _gws, mut desktop) = logged_in_desktop("8001").await;
    desktop
        .wait_for("Ready", device_is("Active", Some("Ready")))
        .await;
    let (status, _) = desktop
        .post(
            "/api/v2/me/channels/voice",
            json!({"operationName": "NotReady", "reason": "Lunch"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let nr = desktop
        .wait_for("NotReady", device_is("Active", Some("NotReady")))
        .await;
    assert_eq!(nr["devices"][0]["userState"]["reason"], "Lunch");
    let (status, _) = desktop
        .post(
            "/api/v2/me/channels/voice",
            json!({"operationName": "AfterCallWork"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let acw = desktop
        .wait_for("ACW", |d| {
            d["devices"][0]["userState"]["workMode"] == "AfterCallWork"
        })
        .await;
    assert_eq!(acw["devices"][0]["userState"]["state"], "NotReady");
    let (status, _) = desktop
        .post(
            "/api/v2/me/channels/voice",
            json!({"operationName": "Ready"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    desktop
        .wait_for("Ready", device_is("Active", Some("Ready")))
        .await;
}

/// R13 / S2.3: a cut T-Lib link (`mode`) makes the device inactive and the Voice service
/// unavailable for the desktop; on heal the node reconnects and registers the DN again.
async fn voice_channel_out_of_service_then_reregistered(mode: FaultMode) {
    let (sip, gws, mut desktop) = logged_in_desktop("8002").await;
    desktop
        .wait_for("Ready", device_is("Active", Some("Ready")))
        .await;
    let registrations = |sip: &sipserver_mock::SipNode| {
        sip.journal()
            .since(0, usize::MAX)
            .iter()
            .filter(|e| e.kind == "tlib.registered" && e.detail()["dn"] == "8002")
            .count()
    };
    assert_eq!(registrations(&sip), 1);
    let since = gws.journal().last_seq();
    gws.faults().add(FaultRule::new("tlib:*", mode)).unwrap();

    desktop
        .wait_for("device Inactive", device_is("Inactive", None))
        .await;
    let service = desktop
        .wait_for("Voice unavailable", |d| {
            d["messageType"] == "ServiceStateChangeMessage"
        })
        .await;
    assert_eq!(service["service"]["type"], "Voice");
    assert_eq!(service["service"]["state"], "Inactive");
    let (_, services) = desktop.get("/api/v2/services").await;
    assert_eq!(services["services"][0]["state"], "Inactive");
    assert!(gws
        .journal()
        .wait_for(since, PATIENCE, |e| e.kind == "tlib.link_down")
        .await
        .is_some());
    // The session survives the link loss: the desktop keeps talking to its node.
    let (status, _) = desktop.get("/api/v2/me/devices").await;
    assert_eq!(status, StatusCode::OK);

    gws.faults().clear();
    desktop
        .wait_for("Voice back", |d| {
            d["messageType"] == "ServiceStateChangeMessage" && d["service"]["state"] == "Active"
        })
        .await;
    desktop
        .wait_for("device Active", device_is("Active", None))
        .await;
    let up = gws
        .journal()
        .wait_for(since, PATIENCE, |e| e.kind == "tlib.link_up")
        .await
        .expect("link up again");
    assert_eq!(up.detail()["reregister"], json!(["8002"]));
    assert_eq!(
        registrations(&sip),
        2,
        "the DN is registered again after reconnect"
    );
}

#[tokio::test]
async fn r13_voice_channel_out_of_service_on_sip_link_reject() {
    voice_channel_out_of_service_then_reregistered(FaultMode::Reject).await;
}

#[tokio::test]
async fn r13_voice_channel_out_of_service_on_sip_link_silent_drop() {
    voice_channel_out_of_service_then_reregistered(FaultMode::Drop).await;
}

/// Sessions are per node (R14, S1.3): an unknown JSESSIONID and a missing one get 403 with
/// statusCode 20; wrong credentials 401.
#[tokio::test]
async fn unknown_jsessionid_gets_403_status_code_20() {
    let sip = start_node("ss1", |_| {}).await;
    let gws = start_gws("gws1", &sip, |_| {}).await;
    let mut desktop = Desktop::new(&gws);
    let (status, body) = desktop.get("/api/v2/me").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body,
        json!({"statusCode": 20, "statusMessage": "Access denied"})
    );
    desktop.session = Some("0123456789abcdef0123456789abcdef".into());
    let (status, body) = desktop.get("/api/v2/me").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["statusCode"], 20);
    let (status, body) = desktop.login("agent7001", "wrong").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["statusCode"], 20);
    let (status, _) = desktop.login("agent7001", "password").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = desktop.get("/api/v2/me").await;
    assert_eq!(status, StatusCode::OK, "the new cookie works");
    let (_, version) = Desktop::new(&gws).get("/api/v2/diagnostics/version").await;
    assert_eq!(version["statusCode"], 0);
    // The control plane sees the one session.
    let control = format!("http://{}", gws.control_addr());
    let metrics = reqwest::get(format!("{control}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("drlab_gws_sessions{node=\"gws1\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("drlab_gws_tlib_link_up{node=\"gws1\"} 1"),
        "{metrics}"
    );
    let state: Value = reqwest::get(format!("{control}/state"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["sessions"][0]["user"], "agent7001");
    assert_eq!(state["tlib_link"], "ss1");
}

/// A clientId the node does not know (another node's, or expired) gets `402::Unknown client`
/// with `advice.reconnect = handshake`; a re-handshake works.
#[tokio::test]
async fn unknown_cometd_client_gets_402_and_handshake_advice() {
    let sip = start_node("ss1", |_| {}).await;
    let gws = start_gws("gws1", &sip, |_| {}).await;
    let mut desktop = Desktop::new(&gws);
    desktop.login("agent7002", "password").await;
    let replies = desktop
        .bayeux(
            json!([{"channel": "/meta/connect", "clientId": "from-another-node",
                         "connectionType": "long-polling"}]),
        )
        .await;
    assert_eq!(replies[0]["successful"], false);
    assert_eq!(replies[0]["error"], "402::Unknown client");
    assert_eq!(replies[0]["advice"]["reconnect"], "handshake");
    desktop.cometd_subscribe(&["/v2/me/devices"]).await;
    assert!(desktop.client_id.is_some());
    // The handshake handed out a BAYEUX_BROWSER cookie.
    let (status, _) = desktop.get("/api/v2/me").await;
    assert_eq!(status, StatusCode::OK);
    // A held connect returns after the advised timeout with nothing to deliver.
    let started = tokio::time::Instant::now();
    let (messages, reply) = desktop.connect().await;
    assert!(messages.is_empty());
    assert_eq!(reply["successful"], true);
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "connect held"
    );
}

/// A desktop that stops polling: its session expires after `session_timeout` and the node
/// sends RequestUnregisterAddress for its DN (observed on the SIP node, which logs the agent out).
#[tokio::test]
async fn session_expiry_sends_unregister_address() {
    let (sip, gws, desktop) = logged_in_desktop("8003").await;
    let since = sip.journal().last_seq();
    drop(desktop);
    let unregistered = sip
        .journal()
        .wait_for(since, PATIENCE, |e| {
            e.kind == "tlib.unregistered" && e.detail()["dn"] == "8003"
        })
        .await
        .expect("UnregisterAddress reached the SIP node");
    assert_eq!(unregistered.detail()["cause"], "unregister");
    assert!(gws
        .journal()
        .since(0, usize::MAX)
        .iter()
        .any(|e| e.kind == "session.ended" && e.detail()["cause"] == "expired"));
    assert_eq!(gws.state().await["sessions"], json!([]));
}

/// R13 `end_session_on_dn_out_of_service`: the softphone's registration expires, the SIP node
/// reports the DN out of service, and the node ends the desktop session (REST 403/20 next).
#[tokio::test]
async fn r13_session_ends_when_dn_goes_out_of_service() {
    let sip = start_node("ss1", |_| {}).await;
    let phone = TestPhone::bind().await.unwrap();
    assert_eq!(
        phone.register(sip.sip_addr(), "7005", 300).await.unwrap(),
        200
    );
    let gws = start_gws("gws1", &sip, |_| {}).await;
    let mut desktop = Desktop::new(&gws);
    desktop.login("agent7005", "password").await;
    desktop.cometd_subscribe(&["/v2/me/devices"]).await;
    desktop.start_contact_center_session().await;
    desktop
        .wait_for("Ready", device_is("Active", Some("Ready")))
        .await;
    // Expires: 0 removes the binding: the DN goes out of service (R12).
    assert_eq!(
        phone.register(sip.sip_addr(), "7005", 0).await.unwrap(),
        200
    );
    // The desktop hears the device go inactive, then its CometD client is unknown.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut saw_inactive = false;
    let last = loop {
        assert!(tokio::time::Instant::now() < deadline, "session not ended");
        let (messages, reply) = desktop.connect().await;
        saw_inactive |= messages
            .iter()
            .any(|m| device_is("Inactive", None)(&m["data"]));
        if reply["successful"] == false {
            break reply;
        }
    };
    assert!(saw_inactive);
    assert_eq!(last["error"], "402::Unknown client");
    let (status, body) = desktop.get("/api/v2/me").await;
    assert_eq!(
        (status, body["statusCode"].clone()),
        (StatusCode::FORBIDDEN, json!(20))
    );
}

/// Bad input: each gets its documented status and a JSON body, and none creates a session.
#[tokio::test]
async fn bad_input_gets_documented_status_and_leaves_no_session() {
    let sip = start_node("ss1", |_| {}).await;
    let gws = start_gws("gws1", &sip, |_| {}).await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", gws.http_addr());
    let post = |path: &str, body: Vec<u8>| {
        http.post(format!("{base}{path}"))
            .basic_auth("agent7001", Some("password"))
            .header("content-type", "application/json")
            .body(body)
    };
    let cases: Vec<(&str, Vec<u8>, StatusCode, u32)> = vec![
        ("/api/v2/me", b"{".to_vec(), StatusCode::BAD_REQUEST, 10),
        ("/api/v2/me", b"[1,2]".to_vec(), StatusCode::BAD_REQUEST, 10),
        ("/api/v2/me", b"{}".to_vec(), StatusCode::BAD_REQUEST, 1),
        (
            "/api/v2/me",
            br#"{"operationName":"Dance"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            10,
        ),
        (
            "/api/v2/me",
            br#"{"operationName":7}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            10,
        ),
        (
            "/api/v2/me",
            br#"{"operationName":"StartContactCenterSession","channels":"voice"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            10,
        ),
        (
            "/api/v2/me/channels/voice",
            br#"{"operationName":"NotReady","reason":5}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            10,
        ),
        (
            "/api/v2/me/devices/x/calls",
            br#"{"operationName":"Dial","destination":{}}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            1,
        ),
        (
            "/api/v2/me",
            vec![b' '; 200 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
            10,
        ),
    ];
    for (path, body, status, code) in cases {
        let shown = String::from_utf8_lossy(&body[..body.len().min(60)]).into_owned();
        let resp = post(path, body).send().await.unwrap();
        assert_eq!(resp.status(), status, "{path} {shown}");
        let json: Value = resp.json().await.expect("JSON body");
        assert_eq!(json["statusCode"], code, "{path} {shown}: {json}");
        assert!(json["statusMessage"].is_string());
    }
    // Missing auth on a valid operation.
    let resp = http
        .post(format!("{base}/api/v2/me"))
        .json(&json!({"operationName": "StartContactCenterSession"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(resp.json::<Value>().await.unwrap()["statusCode"], 20);
    // CometD: not JSON, and an unknown resource.
    let resp = http
        .post(format!("{base}/api/v2/notifications"))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.json::<Value>().await.unwrap()[0]["error"]
        .as_str()
        .unwrap()
        .starts_with("400::"));
    let resp = http
        .get(format!("{base}/api/v2/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(resp.json::<Value>().await.unwrap()["statusCode"], 6);
    assert_eq!(
        gws.state().await["sessions"],
        json!([]),
        "no half-made session"
    );
}

/// A real CometD client library (Python aiocometd-ng) handshakes, subscribes with the session
/// cookie and receives the device messages of its StartContactCenterSession.
#[tokio::test]
async fn real_cometd_client_library_receives_device_messages() {
    if !cometd_client_available() {
        return;
    }
    let sip = start_node("ss1", |_| {}).await;
    let gws = start_gws("gws1", &sip, |_| {}).await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/cometd_desktop.py");
    let mut child = tokio::process::Command::new("python3")
        .arg(script)
        .arg(format!("http://{}", gws.http_addr()))
        .args(["agent8004", "password", "10"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while let Ok(Ok(Some(line))) = tokio::time::timeout_at(deadline, lines.next_line()).await {
        seen.push(line);
    }
    let status = child.wait().await.expect("script ends");
    assert!(status.success(), "script failed: {seen:#?}");
    assert!(seen.iter().any(|l| l == "SUBSCRIBED"), "{seen:#?}");
    let device_messages = seen
        .iter()
        .filter(|l| l.starts_with("MESSAGE") && l.contains("DeviceStateChangeMessage"))
        .count();
    assert!(device_messages >= 2, "LoggedIn and Ready: {seen:#?}");
    assert_eq!(seen.last().map(String::as_str), Some("READY"));
}

/// StartContactCenterSession for voice + chat on a softphone DN whose phone is not registered:
/// HTTP 200 with statusCode 7, voice failed with statusCode 4 "Device … is not registered."
/// (the observed GWS answer), chat succeeded. Voice alone: the same with nothing succeeded.
#[tokio::test]
async fn start_session_on_unregistered_dn_is_partial_success_7() {
    let sip = start_node("ss1", |_| {}).await;
    let gws = start_gws("gws1", &sip, |_| {}).await;
    let mut desktop = Desktop::new(&gws);
    desktop.login("agent7009", "password").await;
    let (status, body) = desktop
        .post(
            "/api/v2/me",
            json!({"operationName": "StartContactCenterSession", "channels": ["voice", "chat"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"statusCode": 7,
               "failed": [{"statusCode": 4, "statusMessage": "Device '7009' is not registered.", "channel": "voice"}],
               "succeeded": [{"statusCode": 0, "channel": "chat"}]})
    );
    // Voice alone: the same answer with nothing succeeded (a refused voice login is never a 5xx).
    let (status, body) = desktop.start_contact_center_session().await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({"statusCode": 7,
                   "failed": [{"statusCode": 4, "statusMessage": "Device '7009' is not registered.", "channel": "voice"}],
                   "succeeded": []})
        )
    );
    let (status, body) = desktop
        .post(
            "/api/v2/me/channels/voice",
            json!({"operationName": "Ready"}),
        )
        .await;
    assert_eq!(
        (status, body["statusCode"].clone()),
        (StatusCode::BAD_REQUEST, json!(4)),
        "observed 500 / 4, a 4xx here: {body}"
    );
}

/// CSRF protection on: GETs hand out `X-CSRF-TOKEN`, a POST without it is 403, with it works.
#[tokio::test]
async fn csrf_protection_requires_the_token_on_posts() {
    let sip = start_node("ss1", |_| {}).await;
    let gws = start_gws("gws1", &sip, |c| c.csrf = true).await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", gws.http_addr());
    let login = http
        .get(format!("{base}/api/v2/me"))
        .basic_auth("agent8005", Some("password"))
        .send()
        .await
        .unwrap();
    assert_eq!(login.headers()["x-csrf-header"], "X-CSRF-TOKEN");
    let token = login.headers()["x-csrf-token"].to_str().unwrap().to_owned();
    let session = login.headers()["set-cookie"].to_str().unwrap();
    let session = session.split(';').next().unwrap().to_owned();
    let start = json!({"operationName": "StartContactCenterSession", "channels": ["voice"]});
    let refused = http
        .post(format!("{base}/api/v2/me"))
        .header("cookie", &session)
        .json(&start)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["statusMessage"], "Missing or invalid Csrf token");
    let accepted = http
        .post(format!("{base}/api/v2/me"))
        .header("cookie", &session)
        .header("X-CSRF-TOKEN", &token)
        .json(&start)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), StatusCode::OK);
}

/// Dial from the desktop: the agent's phone rings first, then the destination; the desktop sees
/// Dialing then Established with the destination as participant, reads the call, and clears it
/// through REST.
#[tokio::test]
async fn desktop_dials_through_its_device() {
    let sip = start_node("ss1", |c| c.options.wrap_up_time = Duration::ZERO).await;
    let phone = TestPhone::bind().await.unwrap();
    assert_eq!(
        phone.register(sip.sip_addr(), "7020", 300).await.unwrap(),
        200
    );
    let mut callee = TestPhone::bind().await.unwrap();
    assert_eq!(
        callee.register(sip.sip_addr(), "7021", 300).await.unwrap(),
        200
    );
    let gws = start_gws("gws1", &sip, |_| {}).await;
    let mut desktop = Desktop::new(&gws);
    let (_, me) = desktop.login("agent7020", "password").await;
    let device = me["user"]["devices"][0]["id"].as_str().unwrap().to_owned();
    desktop.cometd_subscribe(&["/v2/me/calls"]).await;
    desktop.start_contact_center_session().await;

    let (status, body) = desktop
        .post(
            &format!("/api/v2/me/devices/{device}/calls"),
            json!({"operationName": "Dial", "destination": {"phoneNumber": "7021"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let dialing = desktop.wait_for("Dialing", call_is("Dialing")).await;
    assert_eq!(
        dialing["call"]["participants"][0]["phoneNumber"], "7021",
        "the destination is the participant"
    );
    let up = desktop
        .wait_for("Established", call_is("Established"))
        .await;
    callee
        .wait_for(|e| matches!(e, PhoneEvent::Ack { .. }), PATIENCE)
        .await
        .unwrap();
    let id = up["call"]["id"].as_str().unwrap().to_owned();
    let (status, call) = desktop.get(&format!("/api/v2/me/calls/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(call["call"]["state"], "Established");
    assert_eq!(call["call"]["participants"][0]["phoneNumber"], "7021");
    assert!(call["call"]["duration"]
        .as_str()
        .unwrap()
        .parse::<u64>()
        .is_ok());
    // Only what the mock carries out is advertised; ClearCall is one of them.
    assert_eq!(
        call["call"]["capabilities"],
        json!([
            "Hangup",
            "Hold",
            "ClearCall",
            "AttachUserData",
            "UpdateUserData",
            "DeleteUserData",
            "SendDtmf"
        ])
    );
    let (status, _) = desktop
        .post(
            &format!("/api/v2/me/calls/{id}"),
            json!({"operationName": "ClearCall"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    desktop.wait_for("Released", call_is("Released")).await;
    let (status, body) = desktop
        .post(
            "/api/v2/me/devices/not-mine/calls",
            json!({"operationName": "Dial", "destination": {"phoneNumber": "7021"}}),
        )
        .await;
    assert_eq!(
        (status, body["statusCode"].clone()),
        (StatusCode::NOT_FOUND, json!(6))
    );
}

/// EndContactCenterSession logs the agent out and unregisters the DN at the SIP node; then the
/// desktop session is invalidated (as GWS documents it).
#[tokio::test]
async fn end_contact_center_session_logs_out_and_unregisters() {
    let (sip, _gws, mut desktop) = logged_in_desktop("8006").await;
    desktop
        .wait_for("Ready", device_is("Active", Some("Ready")))
        .await;
    let since = sip.journal().last_seq();
    let (status, body) = desktop
        .post(
            "/api/v2/me",
            json!({"operationName": "EndContactCenterSession"}),
        )
        .await;
    assert_eq!(
        (status, body["statusCode"].clone()),
        (StatusCode::OK, json!(0))
    );
    // The session is gone: the next connect delivers what was queued (the agent logged out),
    // then `402::Unknown client`.
    let (messages, reply) = desktop.connect().await;
    assert!(
        messages.iter().any(|m| {
            m["data"]["messageType"] == "DeviceStateChangeMessage"
                && m["data"]["devices"][0]["userState"]["state"] == "LoggedOut"
        }),
        "{messages:?}"
    );
    assert_eq!(reply["error"], "402::Unknown client");
    let unregistered = sip
        .journal()
        .wait_for(since, PATIENCE, |e| {
            e.kind == "tlib.unregistered" && e.detail()["dn"] == "8006"
        })
        .await;
    assert!(unregistered.is_some());
    let (status, body) = desktop.get("/api/v2/me").await;
    assert_eq!(
        (status, body["statusCode"].clone()),
        (StatusCode::FORBIDDEN, json!(20))
    );
}

/// R13: gws1's SIP nodes are ss1 then ss2. ss1 dies: gws1 connects
/// to ss2 and registers its sessions' DNs again there; the desktop sees ss1's Voice service go
/// and ss2's come. ss1 comes back: gws1 stays on ss2 (the list is walked from the top only after
/// a loss); ss2 dies: gws1 is back on ss1, the first of its list.
#[tokio::test]
async fn r13_gws_moves_down_its_ordered_sip_node_list_and_back_only_after_a_loss() {
    let ss1 = start_node("ss1", |_| {}).await;
    let ss2 = start_node("ss2", |_| {}).await;
    let gws = start_gws("gws1", &ss1, |c| {
        c.sip_nodes.push(gws_mock::SipNodeRef {
            name: "ss2".into(),
            tlib: ss2.tlib_addr(),
        });
    })
    .await;
    let mut desktop = Desktop::new(&gws);
    desktop.login("agent8051", "password").await;
    desktop
        .cometd_subscribe(&["/v2/me/*", "/notifications/services"])
        .await;
    desktop.start_session_until_ready("Ready at ss1").await;
    let registered_at = |node: &sipserver_mock::SipNode, since: u64| {
        let node = node.clone();
        async move {
            node.journal()
                .wait_for(since, PATIENCE, |e| {
                    e.kind == "tlib.registered" && e.detail()["dn"] == "8051"
                })
                .await
        }
    };
    let service = |name: &'static str, state: &'static str| {
        move |d: &Value| {
            d["messageType"] == "ServiceStateChangeMessage"
                && d["service"]["name"] == name
                && d["service"]["state"] == state
        }
    };

    let (since_gws, since_ss2) = (gws.journal().last_seq(), ss2.journal().last_seq());
    ss1.crash().await;
    let up = gws
        .journal()
        .wait_for(since_gws, PATIENCE, |e| e.kind == "tlib.link_up")
        .await
        .expect("R13: gws1 reconnects by its list");
    assert_eq!(up.detail()["sip_node"], "ss2");
    assert_eq!(up.detail()["reregister"], json!(["8051"]));
    assert!(
        registered_at(&ss2, since_ss2).await.is_some(),
        "the session's DN is registered again at ss2"
    );
    desktop
        .wait_for("ss2 Active", service("ss2", "Active"))
        .await;
    let (_, services) = desktop.get("/api/v2/services").await;
    assert_eq!(services["services"][0]["state"], "Inactive", "{services}");
    assert_eq!(services["services"][1]["state"], "Active", "{services}");

    // ss1 is back: no fail-back while the link to ss2 is up. For twice gws1's longest
    // reconnect wait (max_backoff 1 s) the desktop keeps polling (held connects) and ss1 sees
    // no T-Lib client.
    let since_ss1 = ss1.journal().last_seq();
    ss1.restart().await.expect("ss1 restarts");
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < until {
        let (_, reply) = desktop.connect().await;
        assert_eq!(reply["successful"], true, "{reply}");
    }
    let back_early = ss1
        .journal()
        .since(since_ss1, usize::MAX)
        .iter()
        .any(|e| e.kind == "tlib.client_connected");
    assert!(!back_early, "gws1 left ss2 while its link was up");
    assert_eq!(gws.state().await["tlib_link"], "ss2");

    let (since_gws, since_ss1) = (gws.journal().last_seq(), ss1.journal().last_seq());
    ss2.crash().await;
    let up = gws
        .journal()
        .wait_for(since_gws, PATIENCE, |e| e.kind == "tlib.link_up")
        .await
        .expect("gws1 reconnects after losing ss2");
    assert_eq!(up.detail()["sip_node"], "ss1", "the top of the list first");
    assert!(registered_at(&ss1, since_ss1).await.is_some());
    desktop
        .wait_for("ss1 Active", service("ss1", "Active"))
        .await;
}
