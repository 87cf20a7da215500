//! A voice login the SIP node refuses is an expected DR outcome, not a server fault: a Basic-auth
//! `POST /api/v2/me` StartContactCenterSession whose voice channel cannot start answers HTTP 200
//! with statusCode 7 and the voice channel in `failed`, sets the cookie of the session it opened,
//! and that session keeps working. Cases: the DN's owner is unreachable (R10, EventError 58, the
//! TC layer cut) and a call is in progress on the DN (R5, EventError 1712).

use std::time::Duration;

use drlab_tests::cluster::{cut_dcs, node, wait_dcs_split, wait_owner_everywhere};
use drlab_tests::desktop::lab_behind_proxy;
use drlab_tests::gws::{start_gws, Desktop};
use drlab_tests::ua::TestCaller;
use drlab_tests::{start_node, UdpPhone, PATIENCE};
use netfault::FaultMode;
use reqwest::StatusCode;
use serde_json::{json, Value};

const START: &str = r#"{"operationName":"StartContactCenterSession","channels":["voice"]}"#;

/// The one request a desktop with no cookie sends: Basic credentials and the operation.
async fn basic_start(base: &str, user: &str) -> (StatusCode, Option<String>, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{base}/api/v2/me"))
        .basic_auth(user, Some("password"))
        .header("content-type", "application/json")
        .body(START)
        .send()
        .await
        .expect("GWS answers");
    let session = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.strip_prefix("JSESSIONID="))
        .next()
        .map(str::to_owned);
    let status = resp.status();
    (status, session, resp.json().await.unwrap_or(Value::Null))
}

/// `rule`'s refused login at `base` by `agent<dn>`: 200/7 with voice failed with `code` and a
/// message containing `why`, and the cookie of the session it opened. Returns a desktop on that
/// session.
async fn refused_login_keeps_the_session(
    base: String,
    dn: &str,
    code: u32,
    why: &str,
    rule: &str,
) -> Desktop {
    let (status, session, body) = basic_start(&base, &format!("agent{dn}")).await;
    let message = assert_voice_failed(status, &body, code);
    assert!(message.contains(why), "{rule}: {message}");
    let session = session
        .unwrap_or_else(|| panic!("{rule} refused login: the opened session's cookie is sent"));
    let mut desktop = Desktop::at(base);
    desktop.session = Some(session);
    desktop
}

/// The answer GWS gives for a voice channel that cannot start: 200, statusCode 7, voice failed
/// with `code`; returns the failure's message.
fn assert_voice_failed(status: StatusCode, body: &Value, code: u32) -> String {
    assert_eq!(status, StatusCode::OK, "never a 5xx: {body}");
    assert_eq!(body["statusCode"], 7, "{body}");
    assert_eq!(body["succeeded"], json!([]), "{body}");
    let failed = &body["failed"][0];
    assert_eq!(
        (&failed["channel"], &failed["statusCode"]),
        (&json!("voice"), &json!(code)),
        "{body}"
    );
    failed["statusMessage"].as_str().unwrap_or("").to_owned()
}

/// R10: DN 7121's owner is ss4; with the TC layer cut, a login through DC1
/// (proxy-dc1 → gws1/gws2 → ss1) is refused with EventError 58. The desktop gets 200/7 and its
/// session cookie; with it, it reads its device (out of service) and opens CometD.
#[tokio::test]
async fn r10_refused_voice_login_owner_unreachable_keeps_the_session() {
    let (lab, proxy) = lab_behind_proxy().await;
    let phone = UdpPhone::new(node(&lab, "ss4").sip_addr()).await;
    assert_eq!(
        drlab_tests::status_of(&phone.register("7121", 60).await),
        200
    );
    wait_owner_everywhere(&lab, "7121", Some("ss4")).await;
    cut_dcs(&lab, FaultMode::Reject);
    wait_dcs_split(&lab).await;

    let mut desktop = refused_login_keeps_the_session(
        format!("http://{proxy}"),
        "7121",
        4,
        "out of service",
        "R10",
    )
    .await;
    let (status, me) = desktop
        .get("/api/v2/me?subresources=devices,channels")
        .await;
    assert_eq!(status, StatusCode::OK, "the session works: {me}");
    assert_eq!(me["user"]["devices"][0]["deviceState"], "Inactive", "{me}");
    assert_eq!(
        me["user"]["channels"][0]["userState"]["state"], "OutOfService",
        "{me}"
    );
    desktop.cometd_subscribe(&["/v2/me/*"]).await;
    // A retry is refused the same way, now seen on CometD too.
    let (status, body) = desktop.start_contact_center_session().await;
    assert_voice_failed(status, &body, 4);
    let error = desktop
        .wait_for("ErrorMessage 58", |d| d["messageType"] == "ErrorMessage")
        .await;
    assert_eq!(error["errorCode"], 58, "{error}");
}

/// R5: a call is up on DN 7131 when the agent logs in: RegisterAddress
/// works, AgentLogin is refused with EventError 1712. The desktop gets 200/7 and its cookie,
/// sees the call and its voice channel logged out; after the call it logs in.
#[tokio::test]
async fn r5_refused_voice_login_call_in_progress_keeps_the_session() {
    let sip = start_node("ss1", |c| c.options.wrap_up_time = Duration::ZERO).await;
    let phone = drlab_tests::ua::TestPhone::bind().await.unwrap();
    assert_eq!(
        phone.register(sip.sip_addr(), "7131", 300).await.unwrap(),
        200
    );
    let gws = start_gws("gws1", &sip, |_| {}).await;
    let caller = TestCaller::bind().await.unwrap();
    let mut call = caller
        .invite(sip.sip_addr(), "7131", "5551234")
        .await
        .unwrap();
    call.wait_for_status(200, PATIENCE).await.unwrap();

    let base = format!("http://{}", gws.http_addr());
    let mut desktop =
        refused_login_keeps_the_session(base, "7131", 2, "call is in progress", "R5").await;
    desktop.cometd_subscribe(&["/v2/me/*"]).await;
    let (status, calls) = desktop.get("/api/v2/me/calls").await;
    assert_eq!(status, StatusCode::OK, "the session works: {calls}");
    assert_eq!(calls["calls"][0]["state"], "Established", "{calls}");
    let (_, me) = desktop
        .get("/api/v2/me?subresources=devices,channels")
        .await;
    assert_eq!(me["user"]["devices"][0]["deviceState"], "Active", "{me}");
    assert_eq!(
        me["user"]["channels"][0]["userState"]["state"], "LoggedOut",
        "{me}"
    );
    let (status, body) = desktop.start_contact_center_session().await;
    assert_voice_failed(status, &body, 2);
    let error = desktop
        .wait_for("ErrorMessage 1712", |d| d["messageType"] == "ErrorMessage")
        .await;
    assert_eq!(error["errorCode"], 1712, "{error}");

    call.hang_up().await.unwrap();
    desktop
        .wait_for("Released", |d| {
            d["messageType"] == "CallStateChangeMessage" && d["call"]["state"] == "Released"
        })
        .await;
    desktop
        .start_session_until_ready("R5: Ready after the call")
        .await;
}
