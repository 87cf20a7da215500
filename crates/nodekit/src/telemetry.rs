//! Tracing set-up for the binaries: a `RUST_LOG`-style filter and one line per event on stderr,
//! as text for people or as JSON objects for log shippers (`--log-format`). Text is coloured
//! only when stderr is a terminal and `NO_COLOR` is not set, so `drlab up 2>file` writes no
//! escape sequences.

use std::ffi::OsStr;
use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Compact human-readable lines.
    #[default]
    Text,
    /// One JSON object a line: `timestamp`, `level`, `target`, the message and the event's
    /// fields.
    Json,
}

/// The logging flag every binary takes; flatten it into the binary's own `clap` parser.
#[derive(clap::Args, Debug, Clone, Copy, Default)]
pub struct LogArgs {
    /// Log lines on stderr: `text` for people, `json` (one object a line) for log shippers.
    #[arg(long, value_enum, default_value_t, global = true)]
    pub log_format: LogFormat,
}

impl LogArgs {
    /// Installs the global subscriber with `default_filter` unless `RUST_LOG` says otherwise;
    /// later calls (tests) are ignored.
    pub fn init(&self, default_filter: &str) {
        init(default_filter, self.log_format);
    }
}

/// Installs the global subscriber once; later calls (tests) are ignored.
pub fn init(default_filter: &str, format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_target(false)
            .with_ansi(use_ansi(
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR").as_deref(),
            ))
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Whether text logs get ANSI colours: only on a terminal, and not when `NO_COLOR` is set to
/// anything but the empty string (<https://no-color.org>).
pub fn use_ansi(stderr_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(OsStr::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(use_ansi(true, None));
        assert!(use_ansi(true, Some(OsStr::new(""))));
        assert!(!use_ansi(true, Some(OsStr::new("1"))));
        assert!(!use_ansi(false, None));
        assert!(!use_ansi(false, Some(OsStr::new(""))));
    }
}
