//! The command-line flags every node binary takes: a configuration file, flags that override the
//! node's identity in it, the fast timer profile and `--print-config`.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A node configuration the common flags can build and override.
pub trait NodeConfigFile: DeserializeOwned + Serialize + Sized {
    /// The configuration of a node with defaults everywhere but its identity.
    fn new(name: &str, dc: &str, address: IpAddr) -> Self;
    /// The node's identity fields, for the flag overrides.
    fn identity_mut(&mut self) -> Identity<'_>;
    /// The fast timer profile (tests and scenario runs).
    fn with_fast_timers(self) -> Self;
}

/// Implements [`NodeConfigFile`] for a configuration type with public `name`, `dc`, `address`
/// and `control_port` fields and inherent `new(name, dc, address)` and `with_fast_timers(self)`.
#[macro_export]
macro_rules! node_config_file {
    ($config:ty) => {
        impl $crate::cli::NodeConfigFile for $config {
            fn new(name: &str, dc: &str, address: ::std::net::IpAddr) -> Self {
                <$config>::new(name, dc, address)
            }
            fn identity_mut(&mut self) -> $crate::cli::Identity<'_> {
                $crate::cli::Identity {
                    name: &mut self.name,
                    dc: &mut self.dc,
                    address: &mut self.address,
                    control_port: &mut self.control_port,
                }
            }
            fn with_fast_timers(self) -> Self {
                <$config>::with_fast_timers(self)
            }
        }
    };
}

/// Borrowed identity fields of a node configuration.
pub struct Identity<'a> {
    pub name: &'a mut String,
    pub dc: &'a mut String,
    pub address: &'a mut IpAddr,
    pub control_port: &'a mut u16,
}

/// Flags shared by the node binaries; flatten them into the binary's own `clap` parser.
#[derive(clap::Args, Debug)]
pub struct NodeArgs {
    /// Node configuration file (TOML); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Node name.
    #[arg(long)]
    pub name: Option<String>,
    /// Data center.
    #[arg(long)]
    pub dc: Option<String>,
    /// The node's own address (its sockets bind to it).
    #[arg(long)]
    pub address: Option<IpAddr>,
    #[arg(long)]
    pub control_port: Option<u16>,
    /// Use the fast timer profile (tests and scenario runs).
    #[arg(long)]
    pub fast: bool,
    /// Print the resolved configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Capture the messages crossing the node's links, keeping this many newest (`GET
    /// /capture`); off (0) by default.
    #[arg(long, default_value_t = 0)]
    pub capture_limit: usize,
}

impl NodeArgs {
    /// The configuration file (or the defaults for a node called `default_name`) with the flags
    /// applied; `node_flags` applies the binary's own overrides. `None` when `--print-config`
    /// printed it and the binary should exit.
    pub fn resolve<C: NodeConfigFile>(
        &self,
        default_name: &str,
        node_flags: impl FnOnce(&mut C),
    ) -> anyhow::Result<Option<C>> {
        let mut config = match &self.config {
            Some(path) => crate::config::read_toml::<C>(path)?,
            None => C::new(
                self.name.as_deref().unwrap_or(default_name),
                self.dc.as_deref().unwrap_or("dc1"),
                self.address.unwrap_or(IpAddr::from([127, 0, 0, 1])),
            ),
        };
        let id = config.identity_mut();
        if let Some(name) = &self.name {
            id.name.clone_from(name);
        }
        if let Some(dc) = &self.dc {
            id.dc.clone_from(dc);
        }
        if let Some(a) = self.address {
            *id.address = a;
        }
        if let Some(p) = self.control_port {
            *id.control_port = p;
        }
        node_flags(&mut config);
        // Before the node starts: its fault layer takes the limit when it is created.
        netfault::capture::set_process_limit(self.capture_limit);
        if self.fast {
            config = config.with_fast_timers();
        }
        if self.print_config {
            print!("{}", toml::to_string_pretty(&config)?);
            return Ok(None);
        }
        Ok(Some(config))
    }
}
