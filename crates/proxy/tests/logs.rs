//! The proxy binary's log lines on a stderr that is not a terminal (a pipe, as `2>file` gives):
//! plain text without ANSI escape sequences, or one JSON object a line with `--log-format json`.

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};

use proxy::{Config, ServerConfig};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::time::timeout;

/// Runs `proxy` with `args` and a one-server configuration until it logs that it started;
/// returns the lines logged until then.
async fn startup_lines(args: &[&str]) -> Vec<String> {
    let mut cfg = Config::new(
        "127.0.0.1:0".parse().unwrap(),
        vec![ServerConfig::new("127.0.0.1:1")],
    );
    cfg.name = "proxy-logs".into();
    // One file per run: the tests of this file run in parallel.
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!(
        "drlab-proxy-logs-{}-{run}.toml",
        std::process::id()
    ));
    std::fs::write(&path, cfg.to_toml()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_proxy"))
        .arg("--config")
        .arg(&path)
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the proxy binary runs");
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut lines = Vec::new();
    let started = timeout(std::time::Duration::from_secs(10), async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            let done = line.contains("proxy started");
            lines.push(line);
            if done {
                return;
            }
        }
        panic!("stderr closed before `proxy started`: {lines:?}");
    })
    .await;
    child.kill().await.unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(started.is_ok(), "no `proxy started` line: {lines:?}");
    lines
}

#[tokio::test]
async fn text_logs_to_a_file_carry_no_ansi_escapes() {
    let lines = startup_lines(&[]).await;
    for line in &lines {
        assert!(!line.contains('\u{1b}'), "escape sequence in {line:?}");
    }
    assert!(lines.iter().any(|l| l.contains("INFO")), "{lines:?}");
}

#[tokio::test]
async fn json_logs_are_one_object_a_line() {
    let lines = startup_lines(&["--log-format", "json"]).await;
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"));
        assert!(v["timestamp"].is_string(), "{line}");
        assert!(v["level"].is_string(), "{line}");
        assert!(v["target"].is_string(), "{line}");
    }
    let started = lines.last().unwrap();
    let v: serde_json::Value = serde_json::from_str(started).unwrap();
    assert_eq!(v["message"], "proxy started", "{started}");
    assert!(
        v["addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{started}"
    );
}
