//! A WWE 8.5-like desktop replayed against gws-mock: the login requests in the order a real WWE
//! sends them (trailing slashes included), an inbound call, and a browser reload in the middle
//! of the call — a new cookie-less session by Basic credentials, the state-recovery GET and a new
//! CometD handshake — after which the desktop has its agent state and its call back and controls
//! the call (docs/gws-api.md, "Recovering state after a reload").

use drlab_tests::gws::*;
use drlab_tests::ua::{AnswerMode, PhoneEvent, TestCaller, TestPhone};
use drlab_tests::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

const USER: &str = "agent7050";

fn ok(what: &str, (status, body): &(StatusCode, Value)) {
    assert_eq!(
        (*status, body["statusCode"].clone()),
        (StatusCode::OK, json!(0)),
        "{what}: {body}"
    );
}

/// `POST /api/v2/me/channels/voice {operationName}`, then the device in that state on CometD.
async fn agent_state(wwe: &mut Desktop, operation: &'static str) {
    let body = json!({ "operationName": operation });
    ok(
        operation,
        &wwe.post("/api/v2/me/channels/voice", body).await,
    );
    wwe.wait_for(operation, device_is("Active", Some(operation)))
        .await;
}

/// `POST /api/v2/me/calls/{id} {operationName}`, then the call in `state` on CometD.
async fn call_operation(wwe: &mut Desktop, id: &str, operation: &str, state: &'static str) {
    let body = json!({ "operationName": operation });
    ok(
        operation,
        &wwe.post(&format!("/api/v2/me/calls/{id}"), body).await,
    );
    wwe.wait_for(state, call_is(state)).await;
}

#[tokio::test]
async fn wwe_login_call_and_browser_reload_recover_state_and_call() {
    let sip = start_node("ss1", |_| {}).await;
    let mut phone = TestPhone::bind().await.unwrap();
    phone.set_answer(AnswerMode::OnNotifyTalk);
    let gws = start_gws("gws1", &sip, |_| {}).await;
    let mut wwe = Desktop::new(&gws);

    // 1. The login probe without credentials, then with them.
    let (status, body) = wwe
        .get("/api/v2/me?subresources=features,devices,channels")
        .await;
    assert_eq!(
        (status, body["statusCode"].clone()),
        (StatusCode::FORBIDDEN, json!(20))
    );
    let probe = wwe
        .login_at(
            "/api/v2/me?subresources=features,devices,channels",
            USER,
            "password",
        )
        .await;
    ok("login probe", &probe);
    let device = probe.1["user"]["devices"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // 2. Settings, services, the DN's T-Server annex.
    ok(
        "agent states",
        &wwe.get("/api/v2/settings/agent-states").await,
    );
    ok("services", &wwe.get("/api/v2/services?fields=*").await);
    ok(
        "tserver settings",
        &wwe.get(&format!("/api/v2/me/devices/{device}/settings/tserver"))
            .await,
    );
    // 3. The softphone registers the DN.
    assert_eq!(
        phone.register(sip.sip_addr(), "7050", 300).await.unwrap(),
        200
    );
    // 4. StartContactCenterSession on voice and chat.
    ok(
        "StartContactCenterSession",
        &wwe.post(
            "/api/v2/me",
            json!({"operationName": "StartContactCenterSession", "channels": ["voice", "chat"]}),
        )
        .await,
    );
    // 5. State load (trailing slash), then CometD.
    let state = wwe
        .get("/api/v2/me/?subresources=devices,calls,channels,interactions,chats")
        .await;
    ok("state load", &state);
    assert_eq!(state.1["user"]["devices"][0]["deviceState"], "Active");
    wwe.cometd_subscribe(&["/v2/me/*", "/notifications/services"])
        .await;
    // 6. NotReady at once, later Ready.
    agent_state(&mut wwe, "NotReady").await;
    agent_state(&mut wwe, "Ready").await;
    ok("version", &wwe.get("/api/v2/diagnostics/version").await);

    // An inbound call, answered from the desktop.
    let caller = TestCaller::bind().await.unwrap();
    let mut call = caller
        .invite(sip.sip_addr(), "7050", "5551234")
        .await
        .unwrap();
    let ringing = wwe.wait_for("Ringing", call_is("Ringing")).await;
    let id = ringing["call"]["id"].as_str().unwrap().to_owned();
    // Only what the mock carries out is advertised; WWE updates the user data of every ringing
    // call.
    assert_eq!(
        ringing["call"]["capabilities"],
        json!([
            "Answer",
            "ClearCall",
            "AttachUserData",
            "UpdateUserData",
            "DeleteUserData"
        ])
    );
    let update = json!({"operationName": "UpdateUserData", "userData": {"IW_CaseUid": "c1"}});
    ok(
        "UpdateUserData",
        &wwe.post(&format!("/api/v2/me/calls/{id}"), update).await,
    );
    wwe.wait_for("user data", |d| d["call"]["userData"]["IW_CaseUid"] == "c1")
        .await;
    let answer = json!({"operationName": "Answer"});
    ok(
        "Answer",
        &wwe.post(&format!("/api/v2/me/calls/{id}"), answer).await,
    );
    call.wait_for_status(200, PATIENCE).await.unwrap();
    wwe.wait_for("Established", call_is("Established")).await;
    let before = wwe.get("/api/v2/me?subresources=devices").await.1["user"]["devices"][0]
        ["userState"]
        .clone();

    // The browser reloads: no cookie, a new session by Basic credentials.
    wwe.reload();
    let recovered = wwe
        .login_at("/api/v2/me?subresources=*", USER, "password")
        .await;
    ok("recovery", &recovered);
    let user = &recovered.1["user"];
    assert_eq!(user["devices"][0]["deviceState"], "Active");
    assert_eq!(
        user["devices"][0]["userState"], before,
        "agent state recovered"
    );
    assert_eq!(
        user["calls"][0]["id"],
        id.as_str(),
        "the call is recovered: {user}"
    );
    assert_eq!(user["calls"][0]["state"], "Established");
    assert_eq!(user["calls"][0]["userData"]["IW_CaseUid"], "c1");
    assert_eq!(
        user["calls"][0]["participants"][0]["phoneNumber"],
        "5551234"
    );
    assert_eq!(user["channels"][0]["channel"], "voice");
    wwe.cometd_subscribe(&["/v2/me/*"]).await;
    // The recovered desktop controls the call and follows it.
    call_operation(&mut wwe, &id, "Hold", "Held").await;
    call_operation(&mut wwe, &id, "Retrieve", "Established").await;
    call_operation(&mut wwe, &id, "Hangup", "Released").await;
    phone
        .wait_for(|e| matches!(e, PhoneEvent::Bye { .. }), PATIENCE)
        .await
        .unwrap();
}
