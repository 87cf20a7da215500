//! End-to-end routing through the proxy with real upstream servers on loopback.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{client, config, dying_upstream, get, TestUpstream};
use proxy::Sticky;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

async fn three() -> Vec<TestUpstream> {
    vec![
        TestUpstream::start("gws1").await,
        TestUpstream::start("gws2").await,
        TestUpstream::start("gws3").await,
    ]
}

fn index_of(ups: &[TestUpstream], name: &str) -> usize {
    ups.iter().position(|u| u.name == name).unwrap()
}

#[tokio::test]
async fn hash_mode_sticks_moves_on_kill_and_fails_back() {
    let mut ups = three().await;
    let p = proxy::start(config(&ups.iter().collect::<Vec<_>>(), Sticky::Hash))
        .await
        .unwrap();
    let c = client();
    let (status, _, cookie) = get(&c, p.local_addr(), "/login", None).await;
    assert_eq!(status, 200);
    let cookie = cookie.expect("login sets JSESSIONID");
    let (_, home, _) = get(&c, p.local_addr(), "/api", Some(&cookie)).await;
    for _ in 0..10 {
        assert_eq!(get(&c, p.local_addr(), "/api", Some(&cookie)).await.1, home);
    }
    let h = index_of(&ups, &home);
    ups[h].kill();
    let (status, moved, _) = get(&c, p.local_addr(), "/api", Some(&cookie)).await;
    assert_eq!(status, 200, "a GET is retried on the next peer of the ring");
    assert_ne!(moved, home);
    for _ in 0..5 {
        assert_eq!(
            get(&c, p.local_addr(), "/api", Some(&cookie)).await.1,
            moved
        );
    }
    assert_eq!(p.status()["upstreams"][0]["peers"][h]["state"], "unavail");
    ups[h].restart().await;
    // Still skipped within fail_timeout (1 s) ...
    assert_eq!(
        get(&c, p.local_addr(), "/api", Some(&cookie)).await.1,
        moved
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // ... then the next real request probes it and the ring sends the cookie back: fail-back.
    assert_eq!(get(&c, p.local_addr(), "/api", Some(&cookie)).await.1, home);
    assert_eq!(p.status()["upstreams"][0]["peers"][h]["state"], "up");
    p.shutdown().await;
}

#[tokio::test]
async fn hash_mode_empty_key_round_robins() {
    let ups = three().await;
    let p = proxy::start(config(&ups.iter().collect::<Vec<_>>(), Sticky::Hash))
        .await
        .unwrap();
    let c = client();
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(get(&c, p.local_addr(), "/login", None).await.1);
    }
    seen.sort();
    assert_eq!(seen, vec!["gws1", "gws2", "gws3"]);
}

#[tokio::test]
async fn learn_mode_binds_session_moves_on_kill_and_does_not_fail_back() {
    let mut ups = three().await;
    let p = proxy::start(config(&ups.iter().collect::<Vec<_>>(), Sticky::Learn))
        .await
        .unwrap();
    let c = client();
    let (_, home, cookie) = get(&c, p.local_addr(), "/login", None).await;
    let cookie = cookie.unwrap();
    assert!(cookie.starts_with(&format!("JSESSIONID={home}-")));
    for _ in 0..10 {
        assert_eq!(get(&c, p.local_addr(), "/api", Some(&cookie)).await.1, home);
    }
    let h = index_of(&ups, &home);
    ups[h].kill();
    let (status, moved, _) = get(&c, p.local_addr(), "/api", Some(&cookie)).await;
    assert_eq!(status, 200);
    assert_ne!(moved, home);
    ups[h].restart().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..5 {
        assert_eq!(
            get(&c, p.local_addr(), "/api", Some(&cookie)).await.1,
            moved,
            "learn mode rebinds: no fail-back"
        );
    }
    assert_eq!(p.status()["upstreams"][0]["learned"], 1);
}

#[tokio::test]
async fn cookie_mode_sets_route_cookie_and_does_not_fail_back() {
    let mut ups = three().await;
    let p = proxy::start(config(&ups.iter().collect::<Vec<_>>(), Sticky::Cookie))
        .await
        .unwrap();
    let c = client();
    let (_, home, route) = get(&c, p.local_addr(), "/", None).await;
    let route = route.expect("proxy sets its route cookie");
    assert!(route.starts_with("srv_id="));
    for _ in 0..10 {
        let (_, who, set) = get(&c, p.local_addr(), "/", Some(&route)).await;
        assert_eq!(who, home);
        assert_eq!(set, None, "a bound client gets no new cookie");
    }
    let h = index_of(&ups, &home);
    ups[h].kill();
    let (status, moved, new_route) = get(&c, p.local_addr(), "/", Some(&route)).await;
    assert_eq!(status, 200);
    assert_ne!(moved, home);
    let new_route = new_route.expect("route cookie rewritten");
    assert_ne!(new_route, route);
    ups[h].restart().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        get(&c, p.local_addr(), "/", Some(&new_route)).await.1,
        moved
    );
}

#[tokio::test]
async fn ip_hash_keeps_one_client_network_on_one_upstream() {
    let ups = three().await;
    let p = proxy::start(config(&ups.iter().collect::<Vec<_>>(), Sticky::IpHash))
        .await
        .unwrap();
    let c = client();
    let first = get(&c, p.local_addr(), "/", None).await.1;
    for _ in 0..10 {
        assert_eq!(get(&c, p.local_addr(), "/", None).await.1, first);
    }
}

#[tokio::test]
async fn post_in_flight_when_upstream_dies_gets_502_get_is_retried() {
    let good = TestUpstream::start("good").await;
    let (dead_addr, seen) = dying_upstream().await;
    let mk = |non_idempotent| {
        let mut cfg = config(&[&good], Sticky::None);
        let mut dying = proxy::ServerConfig::new(dead_addr.to_string());
        dying.name = Some("dying".into());
        // Round robin starts with the first server.
        cfg.upstreams[0].servers.insert(0, dying);
        cfg.non_idempotent = non_idempotent;
        cfg
    };
    let c = client();

    let p = proxy::start(mk(false)).await.unwrap();
    let r = c
        .post(format!("http://{}/echo", p.local_addr()))
        .body("meta/connect")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        502,
        "a POST already sent is not retried"
    );
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    assert_eq!(good.hits.load(Ordering::SeqCst), 0);
    assert_eq!(p.status()["upstreams"][0]["peers"][0]["state"], "unavail");
    p.shutdown().await;

    let p = proxy::start(mk(false)).await.unwrap();
    let (status, who, _) = get(&c, p.local_addr(), "/", None).await;
    assert_eq!((status, who.as_str()), (200, "good"), "a GET is retried");
    assert_eq!(seen.load(Ordering::SeqCst), 2);
    p.shutdown().await;

    let p = proxy::start(mk(true)).await.unwrap();
    let r = c
        .post(format!("http://{}/echo", p.local_addr()))
        .body("meta/connect")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "non_idempotent retries a POST");
    assert_eq!(
        r.text().await.unwrap(),
        "good:12",
        "the buffered body is replayed"
    );
    assert_eq!(seen.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn post_to_refused_upstream_is_retried_because_nothing_was_sent() {
    let good = TestUpstream::start("good").await;
    let mut gone = TestUpstream::start("gone").await;
    gone.kill();
    let mut cfg = config(&[&gone, &good], Sticky::None);
    cfg.non_idempotent = false;
    let p = proxy::start(cfg).await.unwrap();
    let r = client()
        .post(format!("http://{}/echo", p.local_addr()))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await.unwrap(), "good:1");
}

/// An upstream that accepts and never answers (or answers garbage).
async fn bad_upstream(garbage: bool) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                if garbage {
                    let _ = s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n\r\n").await;
                }
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn read_timeout_gives_504_and_get_goes_to_next_peer() {
    let good = TestUpstream::start("good").await;
    let silent = bad_upstream(false).await;
    let mk = || {
        let mut cfg = config(&[&good], Sticky::None);
        cfg.proxy_read_timeout = Duration::from_millis(300);
        let mut s = proxy::ServerConfig::new(silent.to_string());
        s.name = Some("silent".into());
        cfg.upstreams[0].servers.insert(0, s);
        cfg
    };
    let c = client();
    let p = proxy::start(mk()).await.unwrap();
    let r = c
        .post(format!("http://{}/echo", p.local_addr()))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 504);
    let p = proxy::start(mk()).await.unwrap();
    let t = std::time::Instant::now();
    let (status, who, _) = get(&c, p.local_addr(), "/", None).await;
    assert_eq!((status, who.as_str()), (200, "good"));
    assert!(t.elapsed() >= Duration::from_millis(290));
}

#[tokio::test]
async fn garbage_from_upstream_gives_502_without_retry() {
    let good = TestUpstream::start("good").await;
    let garbage = bad_upstream(true).await;
    let mut cfg = config(&[&good], Sticky::None);
    let mut s = proxy::ServerConfig::new(garbage.to_string());
    s.name = Some("garbage".into());
    cfg.upstreams[0].servers.insert(0, s);
    let p = proxy::start(cfg).await.unwrap();
    let (status, _, _) = get(&client(), p.local_addr(), "/", None).await;
    assert_eq!(
        status, 502,
        "invalid_header is not in the default proxy_next_upstream"
    );
    assert_eq!(good.hits.load(Ordering::SeqCst), 0);
    assert_eq!(p.status()["upstreams"][0]["peers"][0]["failures"], 1);
}

#[tokio::test]
async fn all_peers_down_gives_502_no_live_upstreams() {
    let mut a = TestUpstream::start("a").await;
    let mut b = TestUpstream::start("b").await;
    a.kill();
    b.kill();
    let p = proxy::start(config(&[&a, &b], Sticky::None)).await.unwrap();
    let c = client();
    assert_eq!(get(&c, p.local_addr(), "/", None).await.0, 502);
    // Both are now marked failed: the next request is refused without trying.
    assert_eq!(get(&c, p.local_addr(), "/", None).await.0, 502);
    assert_eq!(p.status()["upstreams"][0]["peers"][0]["failures"], 1);
}

/// Without `zone` each worker keeps its own peer state: every worker hits the dead node once
/// before it skips it (per-worker peer state, as nginx); with `zone` only the first request does.
#[tokio::test]
async fn per_worker_state_without_zone_each_worker_hits_the_dead_peer_once() {
    for (zone, expected_failures) in [(false, 3u64), (true, 1)] {
        let mut ups = three().await;
        let mut cfg = config(&ups.iter().collect::<Vec<_>>(), Sticky::Hash);
        cfg.worker_processes = 3;
        cfg.upstreams[0].zone = zone;
        let p = proxy::start(cfg).await.unwrap();
        // Three client connections: one per worker.
        let clients: Vec<reqwest::Client> = (0..3).map(|_| client()).collect();
        let cookie = "JSESSIONID=worker-test";
        let mut home = String::new();
        for c in &clients {
            home = get(c, p.local_addr(), "/", Some(cookie)).await.1;
        }
        let h = index_of(&ups, &home);
        ups[h].kill();
        for _ in 0..2 {
            for c in &clients {
                let (status, who, _) = get(c, p.local_addr(), "/", Some(cookie)).await;
                assert_eq!(status, 200);
                assert_ne!(who, home);
            }
        }
        let failed = p
            .journal()
            .since(0, 1000)
            .iter()
            .filter(|e| e.kind == "upstream.failed")
            .count() as u64;
        assert_eq!(failed, expected_failures, "zone = {zone}");
        let st = p.status();
        assert_eq!(st["upstreams"][0]["zone"], zone);
        p.shutdown().await;
    }
}

#[tokio::test]
async fn next_upstream_timeout_stops_retrying() {
    let good = TestUpstream::start("good").await;
    let (s1, s2) = (bad_upstream(false).await, bad_upstream(false).await);
    let mk = |budget_ms| {
        let mut cfg = config(&[&good], Sticky::None);
        cfg.proxy_read_timeout = Duration::from_millis(300);
        cfg.proxy_next_upstream_timeout = Duration::from_millis(budget_ms);
        for (i, a) in [s1, s2].iter().enumerate() {
            let mut s = proxy::ServerConfig::new(a.to_string());
            s.name = Some(format!("silent{i}"));
            cfg.upstreams[0].servers.insert(i, s);
        }
        cfg
    };
    let c = client();
    let p = proxy::start(mk(400)).await.unwrap();
    assert_eq!(
        get(&c, p.local_addr(), "/", None).await.0,
        504,
        "budget spent after 2 tries"
    );
    assert_eq!(good.hits.load(Ordering::SeqCst), 0);
    let p = proxy::start(mk(0)).await.unwrap();
    let (status, who, _) = get(&c, p.local_addr(), "/", None).await;
    assert_eq!(
        (status, who.as_str()),
        (200, "good"),
        "unlimited: third try reaches good"
    );
}

/// `max_fails = 2`, `fail_timeout = 10s`, hash mode, the session's node refusing connections:
/// the first failure leaves the node in use (the request is retried elsewhere), the second takes
/// it out; for exactly fail_timeout nothing is sent to it, then the next real request probes it
/// (and takes it out again while it is still dead); once it is back, a probe after fail_timeout
/// finds it and the session fails back. The clock is paused: the times below are exact.
#[tokio::test(start_paused = true)]
async fn max_fails_and_fail_timeout_decide_when_a_dead_node_is_skipped_and_probed() {
    let mut ups = vec![
        TestUpstream::start("gws1").await,
        TestUpstream::start("gws2").await,
    ];
    let mut cfg = config(&ups.iter().collect::<Vec<_>>(), Sticky::Hash);
    for s in &mut cfg.upstreams[0].servers {
        s.max_fails = 2;
        s.fail_timeout = Duration::from_secs(10);
    }
    let p = proxy::start(cfg).await.unwrap();
    let c = client();
    let cookie = "JSESSIONID=fail-timing";
    let home = get(&c, p.local_addr(), "/", Some(cookie)).await.1;
    let h = index_of(&ups, &home);
    let other = ups[1 - h].name.clone();
    // (failures journalled so far, whether the last one disabled the node)
    let failures = || {
        let events: Vec<_> = p
            .journal()
            .since(0, 1000)
            .into_iter()
            .filter(|e| e.kind == "upstream.failed")
            .collect();
        let disabled = events.last().map(|e| e.detail()["disabled"] == true);
        (events.len(), disabled)
    };
    let served_by_other = || async {
        let (status, who, _) = get(&c, p.local_addr(), "/", Some(cookie)).await;
        assert_eq!((status, who.as_str()), (200, other.as_str()));
    };

    ups[h].kill();
    served_by_other().await;
    assert_eq!(failures(), (1, Some(false)), "1 of 2 fails: still in use");
    served_by_other().await;
    assert_eq!(failures(), (2, Some(true)), "2 of 2: disabled");
    let disabled_at = tokio::time::Instant::now();
    served_by_other().await;
    tokio::time::advance(Duration::from_secs(10)).await;
    served_by_other().await;
    assert_eq!(failures().0, 2, "skipped for all of fail_timeout");

    tokio::time::advance(Duration::from_millis(1)).await;
    served_by_other().await;
    assert_eq!(
        failures(),
        (3, Some(true)),
        "probed once fail_timeout passed"
    );
    assert!(disabled_at.elapsed() > Duration::from_secs(10));
    served_by_other().await;
    assert_eq!(failures().0, 3, "skipped again");

    ups[h].restart().await;
    tokio::time::advance(Duration::from_secs(10)).await;
    served_by_other().await;
    tokio::time::advance(Duration::from_millis(1)).await;
    let (status, who, _) = get(&c, p.local_addr(), "/", Some(cookie)).await;
    assert_eq!(
        (status, who.as_str()),
        (200, home.as_str()),
        "probe finds it back: fail-back"
    );
    assert_eq!(p.status()["upstreams"][0]["peers"][h]["state"], "up");
    assert_eq!(p.status()["upstreams"][0]["peers"][h]["fails"], 0);
}
