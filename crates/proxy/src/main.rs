//! `proxy --config FILE`: the NGINX in front of the GWS nodes.

use std::path::PathBuf;

use clap::Parser;

/// HTTP/1.1 reverse proxy with nginx-exact stickiness and passive health checks.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML, nginx-like directives).
    #[arg(long)]
    config: PathBuf,
    /// Print the resolved configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = proxy::Config::load(&cli.config)?;
    if cli.print_config {
        print!("{}", config.to_toml());
        return Ok(());
    }
    nodekit::telemetry::init("info");
    let handle = proxy::start(config).await?;
    tracing::info!(addr = %handle.local_addr(), "proxy started");
    tokio::signal::ctrl_c().await?;
    handle.shutdown().await;
    Ok(())
}
