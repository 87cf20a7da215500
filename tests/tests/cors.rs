//! Cross-origin desktops (GWS `crossOriginSettings`): a page served from another origin than GWS
//! calls the API from a browser. Checked with the headers themselves, on a GWS node and through
//! proxy-dc1 (both of its request paths), and end to end in headless Chromium: a page on another
//! port of the proxy's address logs in with `fetch(…, {credentials: 'include'})`, handshakes,
//! subscribes and receives a DeviceStateChangeMessage by hand-written CometD long-polling.

use std::net::SocketAddr;
use std::time::Duration;

use drlab_tests::browser::{chromium, chromium_available};
use drlab_tests::desktop::{gws, lab_behind_proxy_with};
use drlab_tests::gws::{raw_http_head, websocket_upgrade};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The lab with `origin` allowed by every GWS node.
fn allow(origin: &str) -> impl FnOnce(String) -> String + '_ {
    move |text| format!("{text}\n[gws_cors]\nallowed_origins = [\"{origin}\"]\n")
}

/// A header's value in a reqwest response.
fn header<'r>(resp: &'r reqwest::Response, name: &str) -> &'r str {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Every CORS answer GWS gives, at `addr` (a GWS node or the proxy).
async fn cors_headers_at(addr: SocketAddr, origin: &str) {
    let http = reqwest::Client::new();
    let base = format!("http://{addr}");
    let preflight = |path: &str, from: &str| {
        http.request(Method::OPTIONS, format!("{base}{path}"))
            .header("Origin", from)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "content-type,authorization",
            )
            .send()
    };
    for path in ["/api/v2/me", "/api/v2/notifications/handshake"] {
        let resp = preflight(path, origin).await.expect("preflight answered");
        assert_eq!(
            resp.status(),
            StatusCode::NO_CONTENT,
            "preflight of {path} at {addr}"
        );
        assert_eq!(header(&resp, "access-control-allow-origin"), origin);
        assert_eq!(header(&resp, "access-control-allow-credentials"), "true");
        assert!(header(&resp, "access-control-allow-methods").contains("POST"));
        let allowed = header(&resp, "access-control-allow-headers").to_ascii_lowercase();
        assert!(allowed.contains("content-type") && allowed.contains("authorization"));
        assert_eq!(header(&resp, "access-control-max-age"), "1800");
        assert_eq!(header(&resp, "vary"), "Origin");
    }
    let refused = preflight("/api/v2/me", "http://evil.example")
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        StatusCode::FORBIDDEN,
        "disallowed origin at {addr}"
    );
    assert_eq!(header(&refused, "access-control-allow-origin"), "");
    let body: Value = refused.json().await.expect("JSON body");
    assert_eq!(body["statusCode"], 3, "{body}");

    let login = http
        .get(format!("{base}/api/v2/me"))
        .header("Origin", origin)
        .basic_auth("agent8031", Some("password"))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    assert_eq!(header(&login, "access-control-allow-origin"), origin);
    assert_eq!(header(&login, "access-control-allow-credentials"), "true");
    assert!(header(&login, "access-control-expose-headers").contains("X-CSRF-TOKEN"));
    assert!(header(&login, "vary").contains("Origin"));
    // Errors carry them too, so the page can read why.
    let denied = http
        .get(format!("{base}/api/v2/me"))
        .header("Origin", origin)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    assert_eq!(header(&denied, "access-control-allow-origin"), origin);
    let other = http
        .get(format!("{base}/api/v2/diagnostics/version"))
        .header("Origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&other, "access-control-allow-origin"),
        "",
        "not for another origin"
    );

    // A chunked POST (the proxy's general path rather than its fast one).
    let body = r#"{"operationName":"StartContactCenterSession","channels":["voice"]}"#;
    let chunked = format!(
        "POST /api/v2/me HTTP/1.1\r\nHost: {addr}\r\nOrigin: {origin}\r\n\
         Authorization: Basic YWdlbnQ4MDMxOnBhc3N3b3Jk\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let (status, head) = raw_http_head(addr, &chunked).await;
    assert_eq!(status, 200, "{head}");
    assert!(
        head.contains(&format!("access-control-allow-origin: {origin}")),
        "{head}"
    );

    // WebSocket: browsers do not preflight it, so the upgrade itself checks Origin.
    let path = "/api/v2/notifications";
    let (status, head) = websocket_upgrade(addr, path, &[("Origin", origin)]).await;
    assert_eq!(status, 101, "allowed origin: {head}");
    assert!(
        head.contains(&format!("access-control-allow-origin: {origin}")),
        "{head}"
    );
    let (status, _) = websocket_upgrade(addr, path, &[("Origin", "http://evil.example")]).await;
    assert_eq!(status, 403, "disallowed origin's WebSocket at {addr}");
    let (status, _) = websocket_upgrade(addr, path, &[]).await;
    assert_eq!(status, 101, "no Origin: not a browser");
}

#[tokio::test]
async fn cors_headers_on_a_gws_node_and_through_proxy_dc1() {
    let origin = "http://wwe.example:8765";
    let (lab, proxy) = lab_behind_proxy_with(allow(origin)).await;
    cors_headers_at(gws(&lab, "gws1").http_addr(), origin).await;
    cors_headers_at(proxy, origin).await;
}

#[tokio::test]
async fn cors_is_off_by_default() {
    let (lab, proxy) = lab_behind_proxy_with(|t| t).await;
    for addr in [gws(&lab, "gws1").http_addr(), proxy] {
        let resp = reqwest::Client::new()
            .request(Method::OPTIONS, format!("http://{addr}/api/v2/me"))
            .header("Origin", "http://wwe.example:8765")
            .header("Access-Control-Request-Method", "POST")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "preflight at {addr}");
        assert_eq!(header(&resp, "access-control-allow-origin"), "");
        let (status, _) = websocket_upgrade(
            addr,
            "/api/v2/notifications",
            &[("Origin", "http://wwe.example:8765")],
        )
        .await;
        assert_eq!(status, 403, "cross-origin WebSocket at {addr}");
        let own = format!("http://{addr}");
        let (status, _) =
            websocket_upgrade(addr, "/api/v2/notifications", &[("Origin", own.as_str())]).await;
        assert_eq!(status, 101, "same-origin WebSocket at {addr}");
    }
}

/// The desktop page: plain `fetch` with credentials, CometD by hand. It writes `PASS …` or
/// `FAIL …` into `#out` and the title.
fn desktop_page(gws: &str, user: &str) -> String {
    format!(
        r#"<!doctype html><html><head><title>running</title></head><body><pre id="out">running</pre>
<script>
const GWS = "{gws}", USER = "{user}";
const show = (text) => {{ document.getElementById("out").textContent = text; document.title = text; }};
async function call(method, path, body, basic) {{
  const headers = {{"Content-Type": "application/json"}};
  if (basic) headers["Authorization"] = "Basic " + btoa(USER + ":password");
  const init = {{method, headers, credentials: "include"}};
  if (body !== undefined) init.body = JSON.stringify(body);
  const resp = await fetch(GWS + path, init);
  const json = await resp.json();
  if (!resp.ok) throw new Error(method + " " + path + " -> " + resp.status + " " + JSON.stringify(json));
  return json;
}}
(async () => {{
  try {{
    const me = await call("GET", "/api/v2/me?subresources=devices", undefined, true);
    const hs = await call("POST", "/api/v2/notifications/handshake",
      [{{channel: "/meta/handshake", version: "1.0", supportedConnectionTypes: ["long-polling"]}}]);
    if (!hs[0].successful) throw new Error("handshake " + JSON.stringify(hs));
    const id = hs[0].clientId;
    const sub = await call("POST", "/api/v2/notifications/",
      [{{channel: "/meta/subscribe", clientId: id, subscription: "/v2/me/devices"}},
       {{channel: "/meta/connect", clientId: id, connectionType: "long-polling", advice: {{timeout: 0}}}}]);
    if (!sub.every((r) => r.successful)) throw new Error("subscribe " + JSON.stringify(sub));
    const start = await call("POST", "/api/v2/me",
      {{operationName: "StartContactCenterSession", channels: ["voice"]}});
    if (start.statusCode !== 0) throw new Error("start " + JSON.stringify(start));
    for (let i = 0; i < 20; i++) {{
      const batch = await call("POST", "/api/v2/notifications/connect",
        [{{channel: "/meta/connect", clientId: id, connectionType: "long-polling"}}]);
      const device = batch.find((m) => m.data && m.data.messageType === "DeviceStateChangeMessage");
      if (device) {{
        const d = device.data.devices[0];
        show("PASS DeviceStateChangeMessage " + d.phoneNumber + " " + d.deviceState);
        return;
      }}
    }}
    show("FAIL no DeviceStateChangeMessage");
  }} catch (e) {{ show("FAIL " + e); }}
}})();
</script></body></html>"#
    )
}

/// Serves `page` to every GET on `listener` (one request per connection).
async fn serve_page(listener: TcpListener, page: String) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let page = page.clone();
        tokio::spawn(async move {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let (status, body) = if head.starts_with(b"GET / ") {
                ("200 OK", page)
            } else {
                ("404 Not Found", String::new())
            };
            let answer = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
        });
    }
}

/// Cross-origin desktop in a real browser: the page on `http://127.0.1.10:<port>` (same site as
/// proxy-dc1, another origin) logs in through the proxy, keeps its session cookie, and receives
/// its DeviceStateChangeMessage over CometD long-polling.
#[tokio::test]
async fn browser_page_on_another_origin_logs_in_and_receives_device_messages_through_the_proxy() {
    if !chromium_available() {
        return;
    }
    let listener = TcpListener::bind("127.0.1.10:0").await.expect("page port");
    let page_origin = format!("http://{}", listener.local_addr().unwrap());
    let (_lab, proxy) = lab_behind_proxy_with(allow(&page_origin)).await;
    tokio::spawn(serve_page(
        listener,
        desktop_page(&format!("http://{proxy}"), "agent8041"),
    ));

    let output = chromium(
        &format!("{page_origin}/"),
        &[
            "--dump-dom".into(),
            // Let the page's fetches finish before the DOM is dumped (virtual time stops while
            // requests are in flight).
            "--virtual-time-budget=30000".into(),
        ],
        Duration::from_secs(90),
    )
    .await;
    let dom = String::from_utf8_lossy(&output.stdout);
    let outcome = dom
        .split("<pre id=\"out\">")
        .nth(1)
        .and_then(|rest| rest.split("</pre>").next())
        .unwrap_or("");
    assert_eq!(
        outcome,
        "PASS DeviceStateChangeMessage 8041 Active",
        "cross-origin desktop (CORS): page said {outcome:?}; stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
