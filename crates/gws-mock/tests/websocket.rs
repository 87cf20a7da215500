//! The WebSocket transport of `/api/v2/notifications` against a real WebSocket client
//! (tokio-tungstenite): handshake and subscribe in frames, notifications pushed as they happen
//! (here: the T-Lib link cut and healed), a held connect answered after `advice.timeout`, `402`
//! for an unknown client, and a cookie-less client with Basic credentials.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use gws_mock::{GwsConfig, SipNodeRef};
use netfault::{FaultMode, FaultRule};
use serde_json::{json, Value};
use sipserver_mock::NodeConfig;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const PATIENCE: Duration = Duration::from_secs(5);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn send(ws: &mut Ws, batch: Value) {
    ws.send(Message::text(batch.to_string()))
        .await
        .expect("frame sent");
}

/// The next text frame as a batch.
async fn recv(ws: &mut Ws) -> Vec<Value> {
    loop {
        let frame = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("a frame in time")
            .expect("socket open")
            .expect("frame");
        if let Message::Text(t) = frame {
            return serde_json::from_str::<Vec<Value>>(&t).expect("a Bayeux batch");
        }
    }
}

/// Frames until a message on `channel` matches `pred`.
async fn recv_until(ws: &mut Ws, channel: &str, pred: impl Fn(&Value) -> bool) -> Value {
    loop {
        for m in recv(ws).await {
            if m["channel"] == channel && pred(&m) {
                return m;
            }
        }
    }
}

/// A SIP node and a GWS node on it, the T-Lib link up.
async fn start_nodes() -> (sipserver_mock::SipNode, gws_mock::GwsNode) {
    let sip = sipserver_mock::start(
        NodeConfig::new("ss1", "dc1", "127.0.0.1".parse().unwrap())
            .with_ephemeral_ports()
            .with_fast_timers(),
    )
    .await
    .unwrap();
    let mut cfg = GwsConfig::new("gws1", "dc1", "127.0.0.1".parse().unwrap())
        .with_ephemeral_ports()
        .with_fast_timers();
    cfg.sip_nodes = vec![SipNodeRef {
        name: "ss1".into(),
        tlib: sip.tlib_addr(),
    }];
    let gws = gws_mock::start(cfg).await.unwrap();
    assert!(gws
        .journal()
        .wait_for(0, PATIENCE, |e| e.kind == "tlib.link_up")
        .await
        .is_some());
    (sip, gws)
}

/// Handshake (which must succeed), then a subscription to the services channel with the first
/// connect; returns the client id.
async fn handshake_and_subscribe(ws: &mut Ws) -> String {
    send(
        ws,
        json!([{"id": "1", "channel": "/meta/handshake", "version": "1.0",
                          "supportedConnectionTypes": ["websocket"]}]),
    )
    .await;
    let hs = recv(ws).await;
    assert_eq!(hs[0]["successful"], true, "{hs:?}");
    let id = hs[0]["clientId"].as_str().unwrap().to_owned();
    send(
        ws,
        json!([{"id": "2", "channel": "/meta/subscribe", "clientId": id,
                          "subscription": "/notifications/services"},
                         {"id": "3", "channel": "/meta/connect", "clientId": id,
                          "connectionType": "websocket", "advice": {"timeout": 0}}]),
    )
    .await;
    let replies = recv(ws).await;
    assert_eq!(replies[0]["successful"], true, "{replies:?}");
    let first = recv_until(ws, "/meta/connect", |_| true).await;
    assert_eq!(first["successful"], true);
    id
}

/// A client that sends Basic credentials and no cookie (the .NET GWS client): the upgrade finds
/// or opens the user's session, and the client gets its notifications.
#[tokio::test]
async fn websocket_with_basic_credentials_and_no_cookie_gets_notifications() {
    let (_sip, gws) = start_nodes().await;
    let mut request = format!("ws://{}/api/v2/notifications", gws.http_addr())
        .into_client_request()
        .unwrap();
    // "agent8001:password"
    request.headers_mut().insert(
        "authorization",
        "Basic YWdlbnQ4MDAxOnBhc3N3b3Jk".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    handshake_and_subscribe(&mut ws).await;
    gws.faults()
        .add(FaultRule::new("tlib:*", FaultMode::Reject))
        .unwrap();
    let down = recv_until(&mut ws, "/notifications/services", |_| true).await;
    assert_eq!(down["data"]["service"]["state"], "Inactive");
}

#[tokio::test]
async fn websocket_transport_pushes_notifications_and_holds_connects() {
    let (_sip, gws) = start_nodes().await;

    // Log in over REST for the session cookie.
    let resp = reqwest::Client::new()
        .get(format!("http://{}/api/v2/me", gws.http_addr()))
        .basic_auth("agent8001", Some("password"))
        .send()
        .await
        .unwrap();
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    let session = cookie.split(';').next().unwrap().to_owned();

    let mut request = format!("ws://{}/api/v2/notifications", gws.http_addr())
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("cookie", session.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();

    let id = handshake_and_subscribe(&mut ws).await;

    // A held connect; meanwhile the link is cut and the service change is pushed at once.
    send(
        &mut ws,
        json!([{"id": "4", "channel": "/meta/connect", "clientId": id,
                          "connectionType": "websocket"}]),
    )
    .await;
    let held_since = tokio::time::Instant::now();
    gws.faults()
        .add(FaultRule::new("tlib:*", FaultMode::Reject))
        .unwrap();
    let down = recv_until(&mut ws, "/notifications/services", |_| true).await;
    assert_eq!(down["data"]["service"]["state"], "Inactive");
    gws.faults().clear();
    let up = recv_until(&mut ws, "/notifications/services", |m| {
        m["data"]["service"]["state"] == "Active"
    })
    .await;
    assert_eq!(up["data"]["messageType"], "ServiceStateChangeMessage");
    let connect = recv_until(&mut ws, "/meta/connect", |_| true).await;
    assert_eq!(connect["id"], "4");
    assert_eq!(connect["successful"], true);
    assert!(
        held_since.elapsed() >= Duration::from_millis(900),
        "held for advice.timeout"
    );

    send(
        &mut ws,
        json!([{"channel": "/meta/connect", "clientId": "unknown",
                          "connectionType": "websocket"}]),
    )
    .await;
    let unknown = recv(&mut ws).await;
    assert_eq!(unknown[0]["error"], "402::Unknown client");
    assert_eq!(unknown[0]["advice"]["reconnect"], "handshake");
}
