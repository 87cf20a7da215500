//! The control plane (nodekit): `/state` with the routing state, `/metrics`, `/faults`, `/events`,
//! `/crash` and `/restart`; and a blackholed link that costs `proxy_connect_timeout`.

mod common;

use std::time::{Duration, Instant};

use common::{client, config, get, TestUpstream};
use proxy::Sticky;
use serde_json::{json, Value};

#[tokio::test]
async fn control_plane_shows_state_metrics_events_and_drives_faults() {
    let a = TestUpstream::start("gws1").await;
    let b = TestUpstream::start("gws2").await;
    let mut cfg = config(&[&a, &b], Sticky::None);
    cfg.control = Some("127.0.0.1:0".parse().unwrap());
    let p = proxy::start(cfg).await.unwrap();
    let base = format!("http://{}", p.control_addr().unwrap());
    let c = client();

    let r = c
        .post(format!("{base}/faults"))
        .json(&json!({"link": "http:proxy-test-gws1", "mode": "reject"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    for _ in 0..3 {
        assert_eq!(get(&c, p.local_addr(), "/", None).await.1, "gws2");
    }
    let state: Value = c
        .get(format!("{base}/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let peers = &state["upstreams"][0]["peers"];
    assert_eq!(peers[0]["name"], "gws1");
    assert_eq!(peers[0]["state"], "unavail");
    assert_eq!(peers[0]["failures"], 1);
    assert_eq!(peers[1]["state"], "up");
    assert_eq!(state["requests"], 3);

    let events: Value = c
        .get(format!("{base}/events?since=0"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = events.to_string();
    assert!(text.contains("upstream.failed"), "{text}");
    assert!(text.contains("\"disabled\":true"), "{text}");

    let metrics = c
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "proxy_peer_failures_total{node=\"proxy-test\",upstream=\"backend\",peer=\"gws1\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("proxy_peer_up{node=\"proxy-test\",upstream=\"backend\",peer=\"gws1\"} 0")
    );

    // Crash closes the listener; restart brings it back on the same address with fresh state.
    let r = c.post(format!("{base}/crash")).send().await.unwrap();
    assert!(r.status().is_success());
    assert!(tokio::net::TcpStream::connect(p.local_addr())
        .await
        .is_err());
    c.delete(format!("{base}/faults")).send().await.unwrap();
    let r = c.post(format!("{base}/restart")).send().await.unwrap();
    assert!(r.status().is_success());
    let fresh = client();
    let (status, _, _) = get(&fresh, p.local_addr(), "/", None).await;
    assert_eq!(status, 200);
    assert_eq!(p.status()["upstreams"][0]["peers"][0]["failures"], 0);
}

#[tokio::test]
async fn blackholed_upstream_costs_connect_timeout_then_is_skipped() {
    let ups = [
        TestUpstream::start("gws1").await,
        TestUpstream::start("gws2").await,
    ];
    let mut cfg = config(&[&ups[0], &ups[1]], Sticky::Hash);
    cfg.proxy_connect_timeout = Duration::from_millis(300);
    let p = proxy::start(cfg).await.unwrap();
    let c = client();
    let cookie = "JSESSIONID=abc";
    let home = get(&c, p.local_addr(), "/", Some(cookie)).await.1;
    let other = if home == "gws1" { "gws2" } else { "gws1" };
    // The pooled connection is blackholed too: drop the upstream's connections first.
    let rule: netfault::FaultRule =
        serde_json::from_value(json!({"link": format!("http:proxy-test-{home}"), "mode": "drop"}))
            .unwrap();
    p.faults().add(rule).unwrap();
    p.faults().crash();
    let t = Instant::now();
    let (status, who, _) = get(&c, p.local_addr(), "/", Some(cookie)).await;
    assert_eq!((status, who.as_str()), (200, other));
    assert!(
        t.elapsed() >= Duration::from_millis(290),
        "{:?}",
        t.elapsed()
    );
    let t = Instant::now();
    assert_eq!(get(&c, p.local_addr(), "/", Some(cookie)).await.1, other);
    assert!(
        t.elapsed() < Duration::from_millis(250),
        "skipped without waiting"
    );
}
