//! How a desktop carries CometD: HTTP long-polling (a POST per batch, the connect held by the
//! server) or one WebSocket (batches both ways, messages pushed as they come). WWE uses
//! WebSocket when it can and long-polling through proxies that cannot upgrade; gws-mock speaks
//! both.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    #[default]
    LongPolling,
    WebSocket,
}

impl Transport {
    /// The Bayeux `connectionType`.
    pub fn name(self) -> &'static str {
        match self {
            Transport::LongPolling => "long-polling",
            Transport::WebSocket => "websocket",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `long-polling` or `websocket` (the CLI's `--transport`).
impl FromStr for Transport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "long-polling" => Ok(Transport::LongPolling),
            "websocket" => Ok(Transport::WebSocket),
            other => Err(format!(
                "unknown transport `{other}` (use long-polling or websocket)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in [Transport::LongPolling, Transport::WebSocket] {
            assert_eq!(t.to_string().parse::<Transport>(), Ok(t));
        }
        assert!("callback-polling".parse::<Transport>().is_err());
    }
}
