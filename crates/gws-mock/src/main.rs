//! `gws-mock --config gws.toml`, or `gws-mock --name gws1 --address 127.0.1.11 --sip ss1=127.0.1.1:3000`.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Parser;
use gws_mock::{GwsConfig, SipNodeRef};

/// mimalloc returns freed pages to the OS, so memory drops back after a login storm.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One GWS API node double: GWS API v2 REST + CometD, T-Lib client of the SIP Cluster.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Node configuration file (TOML); flags below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    dc: Option<String>,
    /// The node's own address (HTTP binds to it, the T-Lib link leaves from it).
    #[arg(long)]
    address: Option<IpAddr>,
    #[arg(long)]
    http_port: Option<u16>,
    #[arg(long)]
    control_port: Option<u16>,
    /// A SIP node `NAME=HOST:PORT` (its T-Lib port); repeat in priority order.
    #[arg(long = "sip", value_parser = parse_sip_node)]
    sip_nodes: Vec<SipNodeRef>,
    /// Use the fast timer profile (tests and scenario runs).
    #[arg(long)]
    fast: bool,
    /// Print the resolved configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
}

fn parse_sip_node(s: &str) -> Result<SipNodeRef, String> {
    let (name, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=HOST:PORT, got {s:?}"))?;
    let tlib = addr.parse().map_err(|e| format!("{addr:?}: {e}"))?;
    Ok(SipNodeRef {
        name: name.to_owned(),
        tlib,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    nodekit::telemetry::init("info");
    let cli = Cli::parse();
    let mut config = match &cli.config {
        Some(path) => nodekit::config::read_toml::<GwsConfig>(path)?,
        None => GwsConfig::new(
            cli.name.as_deref().unwrap_or("gws1"),
            cli.dc.as_deref().unwrap_or("dc1"),
            cli.address.unwrap_or(IpAddr::from([127, 0, 0, 1])),
        ),
    };
    if let Some(name) = cli.name {
        config.name = name;
    }
    if let Some(dc) = cli.dc {
        config.dc = dc;
    }
    if let Some(a) = cli.address {
        config.address = a;
    }
    if let Some(p) = cli.http_port {
        config.http_port = p;
    }
    if let Some(p) = cli.control_port {
        config.control_port = p;
    }
    if !cli.sip_nodes.is_empty() {
        config.sip_nodes = cli.sip_nodes;
    }
    if cli.fast {
        config = config.with_fast_timers();
    }
    if cli.print_config {
        print!("{}", toml::to_string_pretty(&config)?);
        return Ok(());
    }
    let node = gws_mock::start(config).await?;
    println!(
        "{} up: HTTP http://{} (REST + CometD), control http://{}",
        node.name(),
        node.http_addr(),
        node.control_addr()
    );
    tokio::signal::ctrl_c().await?;
    node.shutdown().await;
    Ok(())
}
