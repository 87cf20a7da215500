//! ADDP keepalive settings as configuration files write them (`interval = "5s"`), for every
//! node with T-Lib or TC links.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// ADDP keepalive timers: ping after `interval` of silence, give up after `timeout`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddpSettings {
    #[serde(with = "crate::duration")]
    pub interval: Duration,
    #[serde(with = "crate::duration")]
    pub timeout: Duration,
}

impl Default for AddpSettings {
    /// The Genesys defaults (docs/scenarios.md §0).
    fn default() -> Self {
        AddpSettings {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
        }
    }
}

impl AddpSettings {
    pub fn to_tlib(self) -> tlib::AddpConfig {
        tlib::AddpConfig {
            interval: self.interval,
            timeout: self.timeout,
        }
    }
}
