//! The URL forms real CometD clients use at GWS's notification endpoint: the JS client (the one
//! WWE runs), and the Java and .NET ones, append the message type to the URL for long-polling
//! (`…/notifications/handshake`, `…/connect`, `…/disconnect`) and POST other batches to the bare
//! trailing slash (`…/notifications/`); WebSocket opens at the endpoint with or without the slash.
//! Each form is checked directly against a GWS node and through the lab's proxy-dc1. WWE's
//! state-recovery GET with a trailing slash (`/api/v2/me/?subresources=…`) is checked alongside.

use std::net::SocketAddr;

use drlab_tests::desktop::{gws, lab_behind_proxy};
use drlab_tests::gws::{websocket_upgrade_status, Desktop};
use reqwest::StatusCode;
use serde_json::{json, Value};

const ENDPOINT: &str = "/api/v2/notifications";

/// POSTs `batch` to the endpoint plus `suffix`; every reply must be successful.
async fn successful_at(
    desktop: &mut Desktop,
    suffix: &str,
    batch: Value,
    what: &str,
) -> Vec<Value> {
    let replies = desktop
        .bayeux_at(&format!("{ENDPOINT}{suffix}"), batch)
        .await;
    assert!(!replies.is_empty(), "{what}: no reply");
    assert!(
        replies.iter().all(|r| r["successful"] == true),
        "{what}: {replies:?}"
    );
    replies
}

/// Logs `agent<dn>` in at `addr` and drives a whole CometD client life over the suffixed URLs.
async fn every_cometd_url_form_works(addr: SocketAddr, dn: &str) {
    let mut desktop = Desktop::at(format!("http://{addr}"));
    let (status, me) = desktop
        .login_at(
            "/api/v2/me/?subresources=devices,channels",
            &format!("agent{dn}"),
            "password",
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "GET /api/v2/me/ (trailing slash): {me}"
    );
    assert_eq!(me["user"]["devices"][0]["phoneNumber"], dn, "{me}");
    assert!(me["user"]["channels"].is_array(), "{me}");

    let replies = successful_at(
        &mut desktop,
        "/handshake",
        json!([{"id": "1", "channel": "/meta/handshake", "version": "1.0",
                    "supportedConnectionTypes": ["long-polling"]}]),
        "handshake at …/handshake",
    )
    .await;
    let id = replies[0]["clientId"]
        .as_str()
        .expect("clientId")
        .to_owned();

    successful_at(
        &mut desktop,
        "/subscribe",
        json!([{"channel": "/meta/subscribe", "clientId": id, "subscription": "/v2/me/devices"}]),
        "subscribe at …/subscribe",
    )
    .await;
    let replies = successful_at(
        &mut desktop,
        "/",
        json!([{"channel": "/meta/subscribe", "clientId": id, "subscription": "/v2/me/channels"},
                   {"channel": "/meta/subscribe", "clientId": id, "subscription": "/v2/me/calls"}]),
        "subscribe batch at the trailing slash",
    )
    .await;
    assert_eq!(replies.len(), 2);

    successful_at(
        &mut desktop,
        "/connect",
        json!([{"channel": "/meta/connect", "clientId": id, "connectionType": "long-polling",
                    "advice": {"timeout": 0}}]),
        "first connect at …/connect",
    )
    .await;
    desktop.client_id = Some(id.clone());
    desktop.connect_path = format!("{ENDPOINT}/connect");

    desktop
        .start_session_until_ready("DeviceStateChangeMessage Ready over …/connect")
        .await;

    successful_at(
        &mut desktop,
        "/",
        json!([{"channel": "/meta/unsubscribe", "clientId": id, "subscription": "/v2/me/calls"}]),
        "unsubscribe at the trailing slash",
    )
    .await;
    successful_at(
        &mut desktop,
        "/disconnect",
        json!([{"channel": "/meta/disconnect", "clientId": id}]),
        "disconnect at …/disconnect",
    )
    .await;
    let (_, reply) = desktop.connect().await;
    assert_eq!(
        reply["error"], "402::Unknown client",
        "disconnected: {reply}"
    );

    for path in [ENDPOINT.to_owned(), format!("{ENDPOINT}/")] {
        assert_eq!(
            websocket_upgrade_status(addr, &path, &[]).await,
            101,
            "WebSocket upgrade at {path}"
        );
    }
}

#[tokio::test]
async fn cometd_js_url_forms_work_directly_on_a_gws_node() {
    let (lab, _proxy) = lab_behind_proxy().await;
    every_cometd_url_form_works(gws(&lab, "gws1").http_addr(), "8011").await;
}

#[tokio::test]
async fn cometd_js_url_forms_work_through_proxy_dc1() {
    let (_lab, proxy) = lab_behind_proxy().await;
    every_cometd_url_form_works(proxy, "8012").await;
}
