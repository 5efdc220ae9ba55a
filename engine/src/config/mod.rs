//! The configuration file: one TOML document, every key documented in `sluice.example.toml` and
//! defaulted here, checked into the typed settings the engine runs on.
//!
//! Unknown keys are errors (a typo must not silently fall back to a default), and every semantic
//! check names the key to fix. `sluice config check FILE` runs exactly this code.
//!
//! The parts: `schema` (the file's serde types and their defaults), `limits` (every default and
//! bound, named), `check` (the file into checked settings, or an error naming the key), `settings`
//! (the checked types), `cidr` (a value of the file that needs parsing of its own; the fleet key is
//! `sluice_layout::job_message::FleetKey`, beside the message it signs). The configuration sits below
//! the layers it configures: the server, the plane and the job sources import it, and it imports
//! none of them: only the pure crates and sluice-layout, `redact`, and the node
//! client (`node/`: `NodeSettings` and the RPC and ZMQ endpoint parsers), a leaf that imports
//! nothing of the engine's but `redact`.

mod check;
mod cidr;
pub mod limits;
mod schema;
mod settings;
#[cfg(test)]
mod tests;

use std::path::Path;

pub(crate) use cidr::unmapped;
pub use cidr::{Cidr, CidrError};
pub use limits::{DEFAULT_MAX_ROLLUP_WORKERS, DEFAULT_TRUSTED_PROXIES};
pub use schema::*;
pub use settings::*;
pub use sluice_layout::job_message::{FleetKey, FleetKeyError, MIN_FLEET_KEY_BYTES};

impl FileConfig {
    pub fn from_toml(text: &str) -> Result<FileConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string().trim_end().to_owned()))
    }

    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        FileConfig::from_toml(&text)
    }
}

/// A configuration error that names the key to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{0}")]
    Syntax(String),
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}
