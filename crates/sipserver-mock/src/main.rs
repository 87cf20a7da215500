//! `sipserver-mock --config node.toml` or `sipserver-mock --name ss1 --dc dc1 --address 127.0.1.1`.

use clap::Parser;
use nodekit::cli::NodeArgs;
use nodekit::telemetry::LogArgs;
use sipserver_mock::NodeConfig;

/// mimalloc returns freed pages to the OS, so memory drops back after bursts (e.g. when the
/// 32 s SIP transaction cache of a registration storm drains) instead of staying with the process.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One SIP Cluster node double: SIP registrar (UDP+TCP), T-Lib server, control plane.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    log: LogArgs,
    /// SIP port (UDP and TCP) on the node's address.
    #[arg(long)]
    sip_port: Option<u16>,
    /// T-Lib port on the node's address.
    #[arg(long)]
    tlib_port: Option<u16>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cli.log.init("info");
    let resolved = cli.node.resolve("ss1", |config: &mut NodeConfig| {
        if let Some(p) = cli.sip_port {
            config.sip_port = p;
        }
        if let Some(p) = cli.tlib_port {
            config.tlib_port = p;
        }
    })?;
    let Some(config) = resolved else {
        return Ok(());
    };
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
