//! A small HTTP/1.1 client for the nodes' control planes (`/state`, `/events`, `/faults`,
//! `/crash`, `/restart`): what the lab handle uses, in-process or against a running lab.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest control-plane answer read (a busy node's `/state` is a few hundred KiB).
const MAX_ANSWER: u64 = 16 << 20;
/// How long one exchange may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// One request to a control plane; the status and body of the answer.
pub async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let body = body.unwrap_or("");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.take(MAX_ANSWER).read_to_end(&mut answer).await?;
        anyhow::Ok(String::from_utf8_lossy(&answer).into_owned())
    };
    let answer = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .with_context(|| format!("{addr}: no answer within {TIMEOUT:?}"))?
        .with_context(|| format!("{addr}: control plane unreachable (is the lab up?)"))?;
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("{addr}: not an HTTP answer"))?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// A request that must succeed (2xx); its body as JSON (`null` when empty).
pub async fn expect_ok(
    node: &str,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<Value> {
    let (status, text) = call(addr, method, path, body).await?;
    if !(200..300).contains(&status) {
        bail!("{node}: {method} {path} answered {status}: {}", text.trim());
    }
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).with_context(|| format!("{node}: {method} {path}: not JSON"))
}
