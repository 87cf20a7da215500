//! The control plane over HTTP with a toy node.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use netfault::Faults;
use nodekit::control::BoxFuture;
use nodekit::{serve_control, ControlTarget, Journal, Metrics};
use prometheus_client::metrics::gauge::Gauge;
use serde_json::{json, Value};

struct Toy {
    journal: Journal,
    faults: Faults,
    metrics: Metrics,
    crashes: AtomicUsize,
}

impl ControlTarget for Toy {
    fn node_name(&self) -> &str {
        "toy"
    }
    fn state(&self) -> BoxFuture<'_, Value> {
        Box::pin(async { json!({ "crashes": self.crashes.load(Ordering::SeqCst) }) })
    }
    fn journal(&self) -> &Journal {
        &self.journal
    }
    fn faults(&self) -> &Faults {
        &self.faults
    }
    fn metrics_text(&self) -> String {
        self.metrics.render()
    }
    fn crash(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {
            self.crashes.fetch_add(1, Ordering::SeqCst);
        })
    }
    fn restart(&self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async { anyhow::bail!("toy cannot restart") })
    }
}

async fn start(token: Option<&str>) -> (Arc<Toy>, String, nodekit::ControlServer) {
    let faults = Faults::new();
    let metrics = Metrics::new("toy");
    metrics
        .register("toy_up", "1 while the toy runs", Gauge::<i64>::default())
        .set(1);
    metrics.register_faults(&faults);
    let toy = Arc::new(Toy {
        journal: Journal::new("toy", 100),
        faults,
        metrics,
        crashes: AtomicUsize::new(0),
    });
    let server = serve_control(
        "127.0.0.1:0".parse().unwrap(),
        toy.clone(),
        token.map(Into::into),
    )
    .await
    .unwrap();
    let base = format!("http://{}", server.local_addr());
    (toy, base, server)
}

#[tokio::test]
async fn faults_state_events_metrics_crash() {
    let (toy, base, _server) = start(None).await;
    let http = reqwest::Client::new();

    let r = http
        .post(format!("{base}/faults"))
        .json(&json!({"link":"tc:*","mode":"drop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let ids: Value = r.json().await.unwrap();
    let id = ids["ids"][0].as_u64().unwrap();
    assert!(toy.faults.verdict("tc:ss1-ss3", None).drop);

    // Bad rules name the field and add nothing.
    let r = http
        .post(format!("{base}/faults"))
        .json(&json!([{"link":"x","mode":"reject"},{"link":"y","mode":"delay"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("`ms`"), "{body}");
    assert_eq!(toy.faults.list().len(), 1);
    let r = http
        .post(format!("{base}/faults"))
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(format!("{base}/faults"))
        .json(&json!({"link":"x","mode":"melt"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let list: Value = http
        .get(format!("{base}/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["faults"][0]["mode"], "drop");
    assert_eq!(
        http.delete(format!("{base}/faults/{id}"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.delete(format!("{base}/faults/{id}"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        http.delete(format!("{base}/faults/abc"))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );

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
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["fault.added", "fault.removed"]);

    // Long-poll wakes on a new entry.
    let last = events["last_seq"].as_u64().unwrap();
    let j = toy.journal.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        j.record("dn.in_service", json!({"dn":"7001"}));
    });
    let events: Value = http
        .get(format!("{base}/events?since={last}&wait_ms=5000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(events["events"][0]["kind"], "dn.in_service");
    assert_eq!(
        http.get(format!("{base}/events?since=x"))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );

    let resp = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(
        resp.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let metrics = resp.text().await.unwrap();
    assert!(metrics.contains("toy_up{node=\"toy\"} 1"), "{metrics}");
    assert!(
        metrics.contains("drlab_fault_rules{node=\"toy\"} 0\n# EOF\n"),
        "{metrics}"
    );

    assert_eq!(
        http.post(format!("{base}/crash"))
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
    assert_eq!(state["crashes"], 1);
    let status: Value = http
        .get(format!("{base}/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status, state, "/status is /state");
    let r = http.post(format!("{base}/restart")).send().await.unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(
        http.get(format!("{base}/nope"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn token_guards_every_endpoint() {
    let (_toy, base, _server) = start(Some("s3cret")).await;
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{base}/state"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let ok = http
        .get(format!("{base}/state"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn non_loopback_needs_a_token() {
    let toy = Arc::new(Toy {
        journal: Journal::new("toy", 1),
        faults: Faults::new(),
        metrics: Metrics::new("toy"),
        crashes: AtomicUsize::new(0),
    });
    let err = serve_control("0.0.0.0:0".parse().unwrap(), toy, None)
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("token"));
}

/// The capture tap through the control plane: a T-Lib frame over a real TCP connection and a SIP
/// datagram, each one record with its summary; the message text only with `full=true`.
#[tokio::test]
async fn capture_lists_what_crossed_the_links() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (toy, base, _server) = start(None).await;
    let http = reqwest::Client::new();
    let get = |path: String| {
        let http = http.clone();
        async move { http.get(path).send().await.unwrap() }
    };
    let off: Value = get(format!("{base}/capture")).await.json().await.unwrap();
    assert_eq!(off["enabled"], false);
    toy.faults.capture().set_limit(100);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    let client = tokio::spawn(async move {
        let mut s = tokio::net::TcpStream::connect(at).await.unwrap();
        let frame = br#"{"message":"RequestRegisterAddress","ThisDN":"7001","ReferenceID":1}"#;
        s.write_all(&(frame.len() as u32).to_be_bytes())
            .await
            .unwrap();
        s.write_all(frame).await.unwrap();
        s
    });
    let (accepted, _) = listener.accept().await.unwrap();
    let mut server_side = netfault::tcp::accept_stream(&toy.faults, "tlib:toy", accepted).unwrap();
    let _client = client.await.unwrap();
    let mut buf = vec![0u8; 256];
    let mut got = 0;
    while got < 4 + 68 {
        got += server_side.read(&mut buf[got..]).await.unwrap();
    }
    let udp =
        netfault::FaultUdpSocket::bind(&toy.faults, "sip:toy", "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
    let options = b"OPTIONS sip:toy SIP/2.0\r\nCall-ID: k1\r\nCSeq: 7 OPTIONS\r\n\r\n";
    udp.send_to(options, at).await.unwrap();

    let page: Value = get(format!("{base}/capture?since=0"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["enabled"], true);
    let records = page["records"].as_array().unwrap();
    assert_eq!(records.len(), 2, "{page}");
    assert_eq!(records[0]["summary"], "RequestRegisterAddress DN 7001");
    assert_eq!(records[0]["dir"], "in");
    assert_eq!(records[0]["proto"], "tlib");
    assert!(records[0].get("message").is_none());
    assert_eq!(records[1]["summary"], "OPTIONS sip:toy CSeq 7");
    assert_eq!(records[1]["key"], "k1");
    assert_eq!(records[1]["dir"], "out");
    let full: Value = get(format!("{base}/capture?since=1&full=true"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(full["records"].as_array().unwrap().len(), 1);
    assert!(full["records"][0]["message"]
        .as_str()
        .unwrap()
        .starts_with("OPTIONS sip:toy SIP/2.0"));
    let bad = get(format!("{base}/capture?since=x")).await;
    assert_eq!(bad.status(), 400);
}
