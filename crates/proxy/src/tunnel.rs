//! The blind tunnel a connection becomes after `101 Switching Protocols` (WebSocket).

use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Joins the client's and the upstream's upgraded connections once both are handed over, in a
/// task of its own; `link` names the upstream in logs.
pub fn spawn(client: OnUpgrade, upstream: OnUpgrade, idle: Duration, link: String) {
    tokio::spawn(async move {
        match tokio::try_join!(client, upstream) {
            Ok((c, u)) => {
                tunnel(TokioIo::new(c), TokioIo::new(u), idle).await;
                tracing::debug!(%link, "tunnel closed");
            }
            Err(e) => tracing::debug!(%link, "upgrade failed: {e}"),
        }
    });
}

/// Bytes both ways, half-closes passed on, closed after `idle` without traffic in either
/// direction (nginx `proxy_read_timeout`).
async fn tunnel<A, B>(a: A, b: B, idle: Duration)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let mut abuf = vec![0u8; 16 * 1024];
    let mut bbuf = vec![0u8; 16 * 1024];
    let (mut a_open, mut b_open) = (true, true);
    while a_open || b_open {
        tokio::select! {
            r = ar.read(&mut abuf), if a_open => match r {
                Ok(0) | Err(_) => {
                    a_open = false;
                    let _ = bw.shutdown().await;
                }
                Ok(n) => if bw.write_all(&abuf[..n]).await.is_err() { return },
            },
            r = br.read(&mut bbuf), if b_open => match r {
                Ok(0) | Err(_) => {
                    b_open = false;
                    let _ = aw.shutdown().await;
                }
                Ok(n) => if aw.write_all(&bbuf[..n]).await.is_err() { return },
            },
            _ = tokio::time::sleep(idle) => {
                tracing::debug!("tunnel idle for {idle:?}: closed");
                return;
            }
        }
    }
}
