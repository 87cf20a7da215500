//! `proxy --config FILE`: the NGINX in front of the GWS nodes.

use std::path::PathBuf;

use clap::Parser;
use nodekit::telemetry::LogArgs;

/// A per-request proxy allocates and frees many small buffers (heads, header maps, bodies);
/// mimalloc does that with less work than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    #[command(flatten)]
    log: LogArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = proxy::Config::load(&cli.config)?;
    if cli.print_config {
        print!("{}", config.to_toml());
        return Ok(());
    }
    // `worker_processes` threads, as nginx runs that many single-threaded workers: with one,
    // a single event loop with no cross-thread hand-offs.
    let runtime = match config.worker_processes {
        0 | 1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n as usize)
            .enable_all()
            .build()?,
    };
    runtime.block_on(run(config, cli.log))
}

async fn run(config: proxy::Config, log: LogArgs) -> anyhow::Result<()> {
    log.init("info");
    let handle = proxy::start(config).await?;
    tracing::info!(addr = %handle.local_addr(), "proxy started");
    tokio::signal::ctrl_c().await?;
    handle.shutdown().await;
    Ok(())
}
