//! GWS API v2 as desktops written against its documentation use it (docs/gws-api.md, "What a
//! voice desktop uses"): CometD with Basic credentials and no cookie, agent state that belongs
//! to the user's device (a second session sees and changes it), the resources desktops read,
//! DND and forwarding, the agent-state model, EndContactCenterSession, user data and DTMF.

use drlab_tests::gws::*;
use drlab_tests::ua::{AnswerMode, PhoneEvent, TestCaller, TestPhone};
use drlab_tests::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

const NOT_READY_ID: &str = "900D55CC-2BB0-431F-8BF9-D3525B383BE6";
const AFTER_CALL_WORK_ID: &str = "D3663509-3D82-4DD3-A82E-2EA8EFA02AEF";
const OFFLINE_ID: &str = "0F7F5003-EF26-4D13-A6EF-D0C7EC819BEB";

/// A SIP node, a GWS node on it, and desktop `agent<dn>` in a contact-center session, Ready,
/// with a CometD client on every `/v2/me` topic.
async fn ready_desktop(dn: &str) -> (sipserver_mock::SipNode, gws_mock::GwsNode, Desktop) {
    let sip = start_node("ss1", |_| {}).await;
    let gws = start_gws("gws1", &sip, |_| {}).await;
    let mut desktop = Desktop::new(&gws);
    let (status, me) = desktop.login(&format!("agent{dn}"), "password").await;
    assert_eq!(status, StatusCode::OK, "{me}");
    desktop.cometd_subscribe(&["/v2/me/*"]).await;
    desktop.start_session_until_ready("Ready").await;
    (sip, gws, desktop)
}

fn user_state(d: &Value) -> &Value {
    &d["devices"][0]["userState"]
}

/// POSTs `{"operationName": operation}` to `path` (200 expected), then waits for the device
/// message `pred` matches.
async fn set_state(
    desktop: &mut Desktop,
    path: &str,
    operation: &str,
    pred: impl FnMut(&Value) -> bool,
) -> Value {
    let (status, body) = desktop
        .post(path, json!({ "operationName": operation }))
        .await;
    assert_eq!(status, StatusCode::OK, "{operation}: {body}");
    desktop.wait_for(operation, pred).await
}

fn in_acw(d: &Value) -> bool {
    user_state(d)["workMode"] == "AfterCallWork"
}

/// The HTTP status and GWS `statusCode` of an answer.
fn status_code((status, body): (StatusCode, Value)) -> (StatusCode, Value) {
    (status, body["statusCode"].clone())
}

/// A client that keeps no cookie and sends Basic credentials on every request (the .NET GWS
/// client): its CometD handshake opens a session for the user and it gets the events of the
/// contact-center session it starts over REST. Wrong credentials still get `403::Unknown session`.
#[tokio::test]
async fn cometd_with_basic_credentials_and_no_cookie_gets_events() {
    let sip = start_node("ss1", |_| {}).await;
    let gws = start_gws("gws1", &sip, |_| {}).await;
    let mut stranger = Desktop::new(&gws);
    stranger.basic = Some(("agent8010".into(), "wrong".into()));
    let replies = stranger
        .bayeux(json!([{"channel": "/meta/handshake", "version": "1.0",
                         "supportedConnectionTypes": ["long-polling"]}]))
        .await;
    assert_eq!(replies[0]["error"], "403::Unknown session", "{replies:?}");

    let mut client = Desktop::new(&gws);
    client.basic = Some(("agent8010".into(), "password".into()));
    client.cometd_subscribe(&["/v2/me/devices"]).await;
    // It drops the cookie it was given: every later request is cookie-less Basic.
    client.session = None;
    let (status, body) = client.start_contact_center_session().await;
    assert_eq!(
        (status, body["statusCode"].clone()),
        (StatusCode::OK, json!(0))
    );
    client
        .wait_for("Ready", device_is("Active", Some("Ready")))
        .await;
}

/// Agent state belongs to the user's device: a second session of agent8011 (opened with
/// Basic, no cookie) sees the device Active and Ready and sets it NotReady, which the first
/// desktop sees on CometD.
#[tokio::test]
async fn a_second_session_of_the_user_sees_and_changes_the_device_state() {
    let (_sip, gws, mut first) = ready_desktop("8011").await;
    let mut second = Desktop::new(&gws);
    let (status, me) = second
        .login_at("/api/v2/me?subresources=*", "agent8011", "password")
        .await;
    assert_eq!(status, StatusCode::OK);
    let device = &me["user"]["devices"][0];
    assert_eq!(device["deviceState"], "Active", "{me}");
    assert_eq!(device["userState"]["state"], "Ready");
    for sub in ["calls", "channels", "features", "settings"] {
        assert!(!me["user"][sub].is_null(), "subresources=* has {sub}: {me}");
    }
    assert_eq!(me["user"]["channels"][0]["userState"]["state"], "Ready");
    assert!(me["user"]["features"][0]["id"].is_string());
    let (status, body) = second
        .post(
            "/api/v2/me/channels/voice",
            json!({"operationName": "NotReady"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let nr = first
        .wait_for("NotReady", device_is("Active", Some("NotReady")))
        .await;
    assert_eq!(user_state(&nr)["id"], NOT_READY_ID);
    assert_eq!(user_state(&nr)["displayName"], "Not Ready");
}

/// A softphone registered before StartContactCenterSession: the login probe shows the device
/// Active with the agent logged out (the Offline state).
#[tokio::test]
async fn a_phone_registered_before_the_contact_center_session_shows_active_and_logged_out() {
    let sip = start_node("ss1", |_| {}).await;
    let phone = TestPhone::bind().await.unwrap();
    assert_eq!(
        phone.register(sip.sip_addr(), "7030", 300).await.unwrap(),
        200
    );
    let gws = start_gws("gws1", &sip, |_| {}).await;
    let mut desktop = Desktop::new(&gws);
    let (_, me) = desktop.login("agent7030", "password").await;
    let device = &me["user"]["devices"][0];
    assert_eq!(device["deviceState"], "Active", "{me}");
    assert_eq!(
        device["userState"],
        json!({"id": OFFLINE_ID, "displayName": "Offline", "state": "LoggedOut"})
    );
    // Without a phone, the device is inactive.
    let mut other = Desktop::new(&gws);
    let (_, me) = other.login("agent7031", "password").await;
    assert_eq!(me["user"]["devices"][0]["deviceState"], "Inactive");
}

/// The resources desktops read, and DND / forwarding on the device as its capabilities say.
#[tokio::test]
async fn device_call_channel_and_settings_resources_and_dnd_forwarding() {
    let (_sip, _gws, mut desktop) = ready_desktop("8012").await;
    let (_, devices) = desktop.get("/api/v2/me/devices").await;
    let id = devices["devices"][0]["id"].as_str().unwrap().to_owned();
    let (status, device) = desktop.get(&format!("/api/v2/me/devices/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(device["device"]["phoneNumber"], "8012");
    let (status, tserver) = desktop
        .get(&format!("/api/v2/me/devices/{id}/settings/tserver"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(tserver["settings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["name"] == "sip-cti-control"));
    let (_, channels) = desktop.get("/api/v2/me/channels").await;
    assert_eq!(channels["channels"][0]["channel"], "voice");
    assert_eq!(channels["channels"][0]["userState"]["state"], "Ready");
    let (_, states) = desktop.get("/api/v2/settings/agent-states").await;
    let names: Vec<&str> = states["settings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    for n in [
        "Ready",
        "NotReady",
        "AfterCallWork",
        "AuxWork",
        "Offline",
        "Lunch",
    ] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
    for path in [
        "/api/v2/me/devices/nope".to_owned(),
        "/api/v2/me/devices/nope/settings/tserver".to_owned(),
        "/api/v2/me/calls/nope".to_owned(),
    ] {
        let (status, body) = desktop.get(&path).await;
        assert_eq!(
            (status, body["statusCode"].clone()),
            (StatusCode::NOT_FOUND, json!(6)),
            "{path}"
        );
    }

    let device_path = format!("/api/v2/me/devices/{id}");
    let (status, _) = desktop
        .post(&device_path, json!({"operationName": "DoNotDisturbOn"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let dnd = desktop
        .wait_for("DND on", |d| d["devices"][0]["doNotDisturb"] == "On")
        .await;
    let caps = &dnd["devices"][0]["capabilities"];
    assert_eq!(*caps, json!(["DoNotDisturbOff", "ForwardCallsOn"]));
    desktop
        .wait_for("channel DND", |d| d["channels"][0]["dndState"] == "On")
        .await;
    // Not a capability now: refused as a state error; forwarding needs its destination.
    for (body, expected) in [
        (
            json!({"operationName": "DoNotDisturbOn"}),
            (StatusCode::BAD_REQUEST, json!(2)),
        ),
        (
            json!({"operationName": "ForwardCallsOn"}),
            (StatusCode::BAD_REQUEST, json!(1)),
        ),
        (
            json!({"operationName": "ForwardCallsOn", "forwardTo": "5000"}),
            (StatusCode::OK, json!(0)),
        ),
    ] {
        assert_eq!(
            status_code(desktop.post(&device_path, body).await),
            expected
        );
    }
    let (_, device) = desktop.get(&device_path).await;
    assert_eq!(
        device["device"]["capabilities"],
        json!(["DoNotDisturbOff", "CancelForward"])
    );
    assert_eq!(device["device"]["callForwardingDestination"], "5000");
}

/// `POST /api/v2/me` sets the agent state on all channels; a NotReady reason comes from the
/// configured agent states (by name or id) and shows as the documented sample; `Offline`
/// logs the agent out.
#[tokio::test]
async fn agent_state_on_all_channels_with_configured_reasons_and_offline() {
    let (_sip, _gws, mut desktop) = ready_desktop("8013").await;
    let (status, body) = desktop
        .post(
            "/api/v2/me",
            json!({"operationName": "NotReady", "reason": "Lunch"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let nr = desktop
        .wait_for("NotReady", device_is("Active", Some("NotReady")))
        .await;
    assert_eq!(
        *user_state(&nr),
        json!({"id": NOT_READY_ID, "displayName": "Not Ready", "state": "NotReady",
               "workMode": "AuxWork", "reason": "Lunch"})
    );
    let (status, body) = desktop
        .post(
            "/api/v2/me",
            json!({"operationName": "NotReady", "reason": "Nap"}),
        )
        .await;
    assert_eq!(
        (status, body["statusCode"].clone()),
        (StatusCode::BAD_REQUEST, json!(10))
    );
    let acw = set_state(&mut desktop, "/api/v2/me", "AfterCallWork", in_acw).await;
    assert_eq!(user_state(&acw)["id"], AFTER_CALL_WORK_ID);
    assert_eq!(user_state(&acw)["displayName"], "After Call Work");
    let ready = device_is("Active", Some("Ready"));
    set_state(&mut desktop, "/api/v2/me", "Ready", ready).await;
    let logged_out = device_is("Active", Some("LoggedOut"));
    let out = set_state(&mut desktop, "/api/v2/me", "Offline", logged_out).await;
    assert_eq!(user_state(&out)["id"], OFFLINE_ID);
}

/// EndContactCenterSession during after-call work is refused with the SIP node's state error
/// (statusCode 2) and changes nothing; after a successful end the session is invalidated.
#[tokio::test]
async fn end_contact_center_session_in_acw_is_refused_and_a_successful_end_invalidates() {
    let (_sip, _gws, mut desktop) = ready_desktop("8014").await;
    let voice = "/api/v2/me/channels/voice";
    set_state(&mut desktop, voice, "AfterCallWork", in_acw).await;
    let end = json!({"operationName": "EndContactCenterSession"});
    let (status, body) = desktop.post("/api/v2/me", end.clone()).await;
    assert_eq!(
        (status, body["statusCode"].clone()),
        (StatusCode::BAD_REQUEST, json!(2)),
        "{body}"
    );
    let (_, me) = desktop.get("/api/v2/me?subresources=devices").await;
    assert_eq!(
        me["user"]["devices"][0]["userState"]["workMode"],
        "AfterCallWork"
    );
    set_state(
        &mut desktop,
        voice,
        "Ready",
        device_is("Active", Some("Ready")),
    )
    .await;
    let (status, body) = desktop.post("/api/v2/me", end).await;
    assert_eq!(
        (status, body["statusCode"].clone()),
        (StatusCode::OK, json!(0))
    );
    let (status, body) = desktop.get("/api/v2/me").await;
    assert_eq!(
        (status, body["statusCode"].clone()),
        (StatusCode::FORBIDDEN, json!(20))
    );
}

/// User data on a call, as WWE sends it (UpdateUserData on every ringing call): each change
/// goes to the SIP node (`RequestUpdateUserData` / `AttachUserData` / `DeleteUserData`) and
/// comes back as `EventAttachedDataChanged`, which the desktop sees as an `AttachedDataChanged`
/// notification with the call's whole `userData`. SendDtmf, advertised on an established call
/// only, is answered by the SIP node's `EventDTMFSent`.
#[tokio::test]
async fn user_data_and_dtmf_through_the_sip_node() {
    let sip = start_node("ss1", |_| {}).await;
    let mut phone = TestPhone::bind().await.unwrap();
    phone.set_answer(AnswerMode::OnNotifyTalk);
    assert_eq!(
        phone.register(sip.sip_addr(), "7060", 300).await.unwrap(),
        200
    );
    let gws = start_gws("gws1", &sip, |_| {}).await;
    let mut desktop = Desktop::new(&gws);
    desktop.login("agent7060", "password").await;
    desktop.cometd_subscribe(&["/v2/me/*"]).await;
    desktop.start_session_until_ready("Ready").await;
    let caller = TestCaller::bind().await.unwrap();
    let mut call = caller
        .invite(sip.sip_addr(), "7060", "5551234")
        .await
        .unwrap();
    let ringing = desktop.wait_for("Ringing", call_is("Ringing")).await;
    let path = format!(
        "/api/v2/me/calls/{}",
        ringing["call"]["id"].as_str().unwrap()
    );
    let data_changed = |d: &Value| d["notificationType"] == "AttachedDataChanged";

    let update = json!({"operationName": "UpdateUserData", "userData": {"Case": "42"}});
    assert_eq!(
        status_code(desktop.post(&path, update).await),
        (StatusCode::OK, json!(0))
    );
    let changed = desktop.wait_for("UpdateUserData", data_changed).await;
    assert_eq!(changed["call"]["userData"], json!({"Case": "42"}));
    let attach = json!({"operationName": "AttachUserData", "userData": {"Lang": "en"}});
    desktop.post(&path, attach).await;
    let changed = desktop.wait_for("AttachUserData", data_changed).await;
    assert_eq!(
        changed["call"]["userData"],
        json!({"Case": "42", "Lang": "en"})
    );
    let dtmf = json!({"operationName": "SendDtmf", "dtmfDigits": "12#"});
    assert_eq!(
        status_code(desktop.post(&path, dtmf.clone()).await),
        (StatusCode::BAD_REQUEST, json!(2)),
        "not a capability of a ringing call"
    );
    for bad in [
        json!({"operationName": "UpdateUserData"}),
        json!({"operationName": "AttachUserData", "userData": "x"}),
        json!({"operationName": "SendDtmf", "dtmfDigits": "12x"}),
    ] {
        assert_eq!(
            status_code(desktop.post(&path, bad.clone()).await).0,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }

    desktop
        .post(&path, json!({"operationName": "Answer"}))
        .await;
    call.wait_for_status(200, PATIENCE).await.unwrap();
    let up = desktop
        .wait_for("Established", call_is("Established"))
        .await;
    assert_eq!(
        up["call"]["userData"]["Case"], "42",
        "kept across call events"
    );
    assert!(up["call"]["capabilities"]
        .as_array()
        .unwrap()
        .contains(&json!("SendDtmf")));
    assert_eq!(
        status_code(desktop.post(&path, dtmf).await),
        (StatusCode::OK, json!(0))
    );
    desktop
        .post(&path, json!({"operationName": "DeleteUserData"}))
        .await;
    let changed = desktop.wait_for("DeleteUserData", data_changed).await;
    assert_eq!(changed["call"]["userData"], json!({}));
    let (_, read) = desktop.get(&path).await;
    assert_eq!(read["call"]["userData"], json!({}));
    desktop
        .post(&path, json!({"operationName": "Hangup"}))
        .await;
    desktop.wait_for("Released", call_is("Released")).await;
    phone
        .wait_for(|e| matches!(e, PhoneEvent::Bye { .. }), PATIENCE)
        .await
        .unwrap();
}
