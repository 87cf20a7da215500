//! Benchmark: N concurrent long-polling desktops on one gws-mock node (a separate process, the
//! release binary), fed by a scripted SIP node. Prints the latency from a T-Event leaving the SIP
//! node to its CometD notification reaching the desktop (p50/p99/max, hdrhistogram), and the
//! node's memory per session (RSS growth / sessions). Run through `bench/gws/run.sh`.
//!
//! ```text
//! gws_bench --gws-bin target/release/gws-mock [--desktops 5000] [--rate 1000] [--seconds 10]
//! ```
//!
//! The scripted SIP node answers the T-Lib handshake, RegisterAddress, AgentLogin (then Ready)
//! and Ping, and then sends `EventAgentNotReady` to random registered DNs at `rate` per second,
//! with the send time (µs since the epoch) as the reason code; each desktop reads it back from
//! `userState.reason` of the DeviceStateChangeMessage. Both sides run on one machine, so one
//! clock.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tlib::{event, JsonFrameCodec, KvList, Message, MessageName};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::codec::Framed;

/// Desktops logging in at once.
const LOGIN_CONCURRENCY: usize = 200;
const FIRST_DN: u32 = 100_000;

struct Args {
    gws_bin: String,
    desktops: u32,
    rate: u32,
    seconds: u64,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        gws_bin: "target/release/gws-mock".into(),
        desktops: 5000,
        rate: 1000,
        seconds: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--gws-bin" => a.gws_bin = value,
            "--desktops" => a.desktops = value.parse()?,
            "--rate" => a.rate = value.parse()?,
            "--seconds" => a.seconds = value.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The scripted SIP node: serves one T-Lib connection; `stamps` asks it to send a NotReady
/// carrying a send time to a DN. Reports every DN registered on `registered`.
async fn sip_node(
    listener: TcpListener,
    mut stamps: mpsc::Receiver<String>,
    registered: mpsc::UnboundedSender<String>,
) -> anyhow::Result<()> {
    let (stream, _) = listener.accept().await?;
    stream.set_nodelay(true)?;
    let mut framed = Framed::new(stream, JsonFrameCodec::new());
    loop {
        tokio::select! {
            frame = framed.next() => {
                let Some(frame) = frame else { return Ok(()) };
                let msg = Message::from_object(frame?)?;
                let r = msg.reference_id();
                let dn = msg.this_dn().unwrap_or_default().to_owned();
                let replies = match msg.name {
                    MessageName::Ping => vec![Message::pong()],
                    MessageName::RequestRegisterClient => vec![
                        event::server_info(r, "bench-ss", "dc1", tlib::ServerRole::Primary),
                        event::link_connected(),
                    ],
                    MessageName::RequestRegisterAddress => {
                        let mut reg = event::registered(r, &dn);
                        let mut ext = KvList::new();
                        ext.insert("DNStatus".into(), json!("InService"));
                        ext.insert("AgentStatus".into(), json!("LoggedOut"));
                        reg.attrs.extensions = Some(ext);
                        let _ = registered.send(dn.clone());
                        vec![reg]
                    }
                    MessageName::RequestAgentLogin => vec![
                        event::agent_login(r, &dn, msg.attrs.agent_id.as_deref(), None),
                        event::agent_ready(None, &dn, None, None),
                    ],
                    _ => vec![event::ack(r)],
                };
                for reply in replies {
                    framed.send(reply).await?;
                }
            }
            Some(dn) = stamps.recv() => {
                let mut reasons = KvList::new();
                reasons.insert("ReasonCode".into(), json!(now_us().to_string()));
                framed.send(event::agent_not_ready(None, &dn, None, None, Some(reasons))).await?;
            }
        }
    }
}

struct Desktop {
    http: reqwest::Client,
    base: String,
    cookie: String,
    client_id: String,
}

impl Desktop {
    async fn bayeux(&self, batch: Value) -> anyhow::Result<Vec<Value>> {
        let resp = self
            .http
            .post(format!("{}/api/v2/notifications", self.base))
            .header("cookie", &self.cookie)
            .json(&batch)
            .send()
            .await?;
        Ok(resp.json().await?)
    }

    /// Login, CometD handshake + subscribe + first connect, StartContactCenterSession.
    async fn login(http: reqwest::Client, base: String, dn: u32) -> anyhow::Result<Desktop> {
        let resp = http
            .get(format!("{base}/api/v2/me"))
            .basic_auth(format!("agent{dn}"), Some("password"))
            .send()
            .await?;
        let cookie = resp
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .context("no JSESSIONID")?
            .to_owned();
        let mut d = Desktop {
            http,
            base,
            cookie,
            client_id: String::new(),
        };
        let hs = d
            .bayeux(json!([{"channel": "/meta/handshake", "version": "1.0",
                             "supportedConnectionTypes": ["long-polling"]}]))
            .await?;
        d.client_id = hs[0]["clientId"].as_str().context("handshake")?.to_owned();
        d.bayeux(json!([
            {"channel": "/meta/subscribe", "clientId": d.client_id, "subscription": "/v2/me/devices"},
            {"channel": "/meta/connect", "clientId": d.client_id, "connectionType": "long-polling",
             "advice": {"timeout": 0}}
        ]))
        .await?;
        let start = d
            .http
            .post(format!("{}/api/v2/me", d.base))
            .header("cookie", &d.cookie)
            .json(&json!({"operationName": "StartContactCenterSession", "channels": ["voice"]}))
            .send()
            .await?;
        if !start.status().is_success() {
            bail!("StartContactCenterSession: {}", start.status());
        }
        Ok(d)
    }

    /// Long-polls for ever, recording the latency of every stamped notification.
    async fn poll(self, latencies: Arc<Mutex<Histogram<u64>>>) {
        loop {
            let Ok(replies) = self
                .bayeux(
                    json!([{"channel": "/meta/connect", "clientId": self.client_id,
                                 "connectionType": "long-polling"}]),
                )
                .await
            else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let arrived = now_us();
            for m in replies {
                let reason = &m["data"]["devices"][0]["userState"]["reason"];
                if let Some(sent) = reason.as_str().and_then(|s| s.parse::<u64>().ok()) {
                    let mut h = latencies.lock().unwrap_or_else(|e| e.into_inner());
                    let _ = h.record(arrived.saturating_sub(sent).max(1));
                }
            }
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let sip_addr = listener.local_addr()?;
    let (stamp_tx, stamp_rx) = mpsc::channel(4096);
    let (reg_tx, mut reg_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        if let Err(e) = sip_node(listener, stamp_rx, reg_tx).await {
            eprintln!("scripted SIP node: {e}");
        }
    });

    let last = FIRST_DN + args.desktops.max(1) - 1;
    let config = format!(
        "name = \"gws-bench\"\ndc = \"dc1\"\naddress = \"127.0.0.1\"\nhttp_port = 0\ncontrol_port = 0\n\
         [[sip_nodes]]\nname = \"ss1\"\ntlib = \"{sip_addr}\"\n\
         [[user_ranges]]\ndns = \"{FIRST_DN}-{last}\"\nname = \"agent{{dn}}\"\npassword = \"password\"\n"
    );
    let config_path = std::env::temp_dir().join(format!("gws-bench-{}.toml", std::process::id()));
    std::fs::write(&config_path, config)?;
    let mut child = tokio::process::Command::new(&args.gws_bin)
        .arg("--config")
        .arg(&config_path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run {}", args.gws_bin))?;
    let pid = child.id().context("gws-mock pid")?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let banner = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await??
        .context("gws-mock printed nothing")?;
    let base = banner
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .context("no HTTP address in the banner")?
        .to_owned();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = rss_kb(pid);

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(usize::MAX)
        .build()?;
    let latencies = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    let gate = Arc::new(Semaphore::new(LOGIN_CONCURRENCY));
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let login_started = std::time::Instant::now();
    for dn in FIRST_DN..=last {
        let (http, base, gate, latencies, ready_tx) = (
            http.clone(),
            base.clone(),
            gate.clone(),
            latencies.clone(),
            ready_tx.clone(),
        );
        tokio::spawn(async move {
            let desktop = {
                let _permit = gate.acquire().await;
                Desktop::login(http, base, dn).await
            };
            match desktop {
                Ok(d) => {
                    let _ = ready_tx.send(true);
                    d.poll(latencies).await;
                }
                Err(e) => {
                    eprintln!("desktop {dn}: {e}");
                    let _ = ready_tx.send(false);
                }
            }
        });
    }
    let mut logged_in = 0u32;
    for _ in 0..args.desktops {
        if ready_rx.recv().await == Some(true) {
            logged_in += 1;
        }
    }
    let login_time = login_started.elapsed();
    let mut dns = Vec::new();
    while let Ok(dn) = reg_rx.try_recv() {
        dns.push(dn);
    }
    // Let the first-connect round trips settle into parked long polls.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_sessions = rss_kb(pid);
    latencies.lock().unwrap_or_else(|e| e.into_inner()).reset();

    let total = args.rate as u64 * args.seconds;
    let gap = Duration::from_secs(1) / args.rate.max(1);
    let mut tick = tokio::time::interval(gap);
    let mut rng_state: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..total {
        tick.tick().await;
        // xorshift: a cheap spread over the DNs, no extra dependency.
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        let i = (rng_state % dns.len().max(1) as u64) as usize;
        if let Some(dn) = dns.get(i) {
            stamp_tx.send(dn.clone()).await?;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let h = latencies.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let rss_end = rss_kb(pid);

    println!("gws-mock benchmark: {logged_in} long-polling desktops on one node (pid {pid})");
    println!(
        "  logins:       {logged_in}/{} in {:.1} s ({} DNs registered over T-Lib)",
        args.desktops,
        login_time.as_secs_f64(),
        dns.len()
    );
    println!(
        "  events:       {total} T-Events at {}/s for {} s; {} notifications received",
        args.rate,
        args.seconds,
        h.len()
    );
    println!(
        "  latency T-Event -> CometD delivery: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        h.value_at_quantile(0.50) as f64 / 1000.0,
        h.value_at_quantile(0.90) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.max() as f64 / 1000.0
    );
    let per_session =
        (rss_sessions.saturating_sub(rss_before)) as f64 / f64::from(logged_in.max(1));
    println!(
        "  memory:       RSS {} MB idle -> {} MB with sessions -> {} MB after events; {:.1} KB per session",
        rss_before / 1024,
        rss_sessions / 1024,
        rss_end / 1024,
        per_session
    );
    let _ = child.kill().await;
    let _ = std::fs::remove_file(&config_path);
    Ok(())
}
