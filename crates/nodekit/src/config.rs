//! What every node binary does with its configuration before it starts: read the TOML file and
//! bind the control port first (a busy port fails the start with a clear message).

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;

/// Reads a node's TOML configuration file; errors name the file and the bad field.
pub fn read_toml<T: DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{}", path.display()))
}

/// Binds node `name`'s control port.
pub async fn bind_control(name: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("node {name}: cannot bind control on {addr}"))
}
