//! Accepting clients: each connection gets a task that starts on the fast path ([`crate::fast`])
//! and moves to the general path ([`crate::general`]) at its first request that needs hyper.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::header::HeaderValue;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::rewind::Rewind;
use crate::shared::Shared;
use crate::{fast, general};

/// Largest request head accepted (nginx `large_client_header_buffers 4 8k`); beyond it: 431.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Accepts clients until `stop` changes or its sender is dropped; then every client connection
/// is closed.
pub async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut accepted: usize = 0;
    // The client connections: dropped with the set when the node stops, which closes them all
    // (cheaper than each connection also waiting on `stop`, which costs on every wake-up).
    let mut connections = JoinSet::new();
    loop {
        let (stream, client) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            // Reaps finished connections.
            Some(_) = connections.join_next() => continue,
            _ = stop.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        // nginx hands each connection to one worker; here they take turns.
        let worker = accepted;
        accepted = accepted.wrapping_add(1);
        connections.spawn(serve_client(shared, stream, Client::new(client), worker));
    }
}

/// A client connection: on the fast path while its requests allow, then on hyper's.
async fn serve_client(shared: Arc<Shared>, mut stream: TcpStream, client: Client, worker: usize) {
    if let fast::Outcome::General(read) = fast::serve(&shared, &mut stream, &client, worker).await {
        general::serve(shared, Rewind::new(read.freeze(), stream), client, worker).await;
    }
}

/// The client end of a connection.
#[derive(Clone)]
pub struct Client {
    pub addr: SocketAddr,
    /// Its address as `X-Forwarded-For` text, formatted once per connection.
    pub ip: HeaderValue,
}

impl Client {
    fn new(addr: SocketAddr) -> Self {
        let ip = HeaderValue::try_from(addr.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Client { addr, ip }
    }
}

/// The access line nginx writes for a client that timed out (`client_header_timeout`,
/// `client_body_timeout`): status 408, and the connection closed without a response.
pub fn log_timeout(client: SocketAddr, phase: &'static str) {
    tracing::info!(target: "proxy::access", client = %client.ip(), status = 408, phase, "client timed out");
}
