//! The Redis layout's check: a process writes the version to `P:layout` if the prefix is new and
//! refuses a different one. The layout itself (every key, its type, writer, reader and bound, and
//! [`LAYOUT_VERSION`]) is written once in the `sluice-layout` crate, shared with sluicectl.

use redis::Connection;

pub use sluice_layout::keys::{Keys, BLOCK_STREAM_MAXLEN, LATEST_JOB_TTL_MS, LAYOUT_VERSION};

/// Why a process will not use this Redis.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("Redis at this prefix holds layout version {found}, this build speaks {LAYOUT_VERSION}: upgrade every process of the fleet together, or use another prefix")]
    Version { found: String },
    #[error("cannot reach Redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Writes the layout version if the prefix is new, and refuses a different one.
pub fn check_layout(con: &mut Connection, keys: &Keys) -> Result<(), LayoutError> {
    let _: Option<String> = redis::cmd("SET")
        .arg(keys.layout())
        .arg(LAYOUT_VERSION)
        .arg("NX")
        .query(con)?;
    let found: String = redis::cmd("GET").arg(keys.layout()).query(con)?;
    if found == LAYOUT_VERSION.to_string() {
        Ok(())
    } else {
        Err(LayoutError::Version { found })
    }
}
