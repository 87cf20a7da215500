//! `gws-mock --config gws.toml`, or `gws-mock --name gws1 --address 127.0.1.11 --sip ss1=127.0.1.1:3000`.

use clap::Parser;
use gws_mock::{GwsConfig, SipNodeRef};
use nodekit::cli::NodeArgs;
use nodekit::telemetry::LogArgs;

/// mimalloc returns freed pages to the OS, so memory drops back after a login storm.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One GWS API node double: GWS API v2 REST + CometD, T-Lib client of the SIP Cluster.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    log: LogArgs,
    /// HTTP port (REST + CometD) on the node's address.
    #[arg(long)]
    http_port: Option<u16>,
    /// A SIP node `NAME=HOST:PORT` (its T-Lib port); repeat in priority order.
    #[arg(long = "sip", value_parser = parse_sip_node)]
    sip_nodes: Vec<SipNodeRef>,
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
    let cli = Cli::parse();
    cli.log.init("info");
    let resolved = cli.node.resolve("gws1", |config: &mut GwsConfig| {
        if let Some(p) = cli.http_port {
            config.http_port = p;
        }
        if !cli.sip_nodes.is_empty() {
            config.sip_nodes = cli.sip_nodes;
        }
    })?;
    let Some(config) = resolved else {
        return Ok(());
    };
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
