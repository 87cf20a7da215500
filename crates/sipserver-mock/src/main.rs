//! `sipserver-mock --config node.toml` or `sipserver-mock --name ss1 --dc dc1 --address 127.0.1.1`.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Parser;
use sipserver_mock::NodeConfig;

/// mimalloc returns freed pages to the OS, so memory drops back after bursts (e.g. when the
/// 32 s SIP transaction cache of a registration storm drains) instead of staying with the process.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One SIP Cluster node double: SIP registrar (UDP+TCP), T-Lib server, control plane.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Node configuration file (TOML); flags below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Node name.
    #[arg(long)]
    name: Option<String>,
    /// Data center.
    #[arg(long)]
    dc: Option<String>,
    /// The node's own address (every socket binds to it).
    #[arg(long)]
    address: Option<IpAddr>,
    #[arg(long)]
    sip_port: Option<u16>,
    #[arg(long)]
    tlib_port: Option<u16>,
    #[arg(long)]
    control_port: Option<u16>,
    /// Use the fast timer profile (tests and scenario runs).
    #[arg(long)]
    fast: bool,
    /// Print the resolved configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    nodekit::telemetry::init("info");
    let cli = Cli::parse();
    let mut config = match &cli.config {
        Some(path) => nodekit::config::read_toml::<NodeConfig>(path)?,
        None => NodeConfig::new(
            cli.name.as_deref().unwrap_or("ss1"),
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
    if let Some(p) = cli.sip_port {
        config.sip_port = p;
    }
    if let Some(p) = cli.tlib_port {
        config.tlib_port = p;
    }
    if let Some(p) = cli.control_port {
        config.control_port = p;
    }
    if cli.fast {
        config = config.with_fast_timers();
    }
    if cli.print_config {
        print!("{}", toml::to_string_pretty(&config)?);
        return Ok(());
    }
    let node = sipserver_mock::start(config).await?;
    println!(
        "{} up: SIP {} (UDP+TCP), T-Lib {}, control http://{}",
        node.name(),
        node.sip_addr(),
        node.tlib_addr(),
        node.control_addr()
    );
    tokio::signal::ctrl_c().await?;
    node.shutdown().await;
    Ok(())
}
