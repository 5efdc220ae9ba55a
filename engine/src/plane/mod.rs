//! The Redis control plane: how jobmanagers and stratum engines of one fleet find each other, agree
//! on one publishing jobmanager, and pass jobs and found blocks (design section 6).
//!
//! - [`keys`]: the layout (every key, its type and bound) and its version;
//! - [`lease`]: jobmanager leadership, a lease with a fleet epoch and a fencing token;
//! - [`registry`]: each process's service hash, refreshed under a TTL;
//! - [`jobs`]: the leader publishes jobs (fenced in Redis), engines take them (fenced again by token);
//! - [`blocks`]: engines hand found blocks to the leader, which records each node's answer;
//! - [`sessions`]: engine slots (fleet-unique extranonce1) and the session store for resume;
//! - [`sharelog`]: every share verdict to a stream in idempotent batches, spooled while Redis is away;
//! - [`policies`]: per-connection overrides of difficulty, vardiff target and version mask;
//! - [`commands`]: drain, undrain and kick from sluicectl, acknowledged through Redis;
//! - [`wire`]: the binary job message, signed with the fleet key.
//!
//! Everything here is blocking (the `redis` crate's synchronous client) and runs on threads of its
//! own: never on an engine core.

pub mod blocks;
pub mod commands;
pub mod jobs;
pub mod keys;
pub mod lease;
pub mod policies;
pub mod registry;
pub mod sessions;
pub mod sharelog;
pub mod wire;

#[cfg(test)]
pub(crate) mod test_redis;

use std::time::Duration;

pub use keys::{Keys, LAYOUT_VERSION};
pub use wire::FleetKey;

pub use crate::config::PlaneSettings;

/// Redis calls time out after this: a hung Redis must not hold a thread forever.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// Opens a connection with timeouts set.
pub fn connect(url: &str) -> redis::RedisResult<redis::Connection> {
    let client = redis::Client::open(url)?;
    let con = client.get_connection_with_timeout(REDIS_TIMEOUT)?;
    con.set_read_timeout(Some(REDIS_TIMEOUT))?;
    con.set_write_timeout(Some(REDIS_TIMEOUT))?;
    Ok(con)
}

/// Sleeps `total` in short steps so `stop` is noticed; false when stopped.
pub fn pause(total: Duration, stop: &std::sync::atomic::AtomicBool) -> bool {
    let step = Duration::from_millis(50);
    let mut slept = Duration::ZERO;
    while slept < total {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(step.min(total - slept));
        slept += step;
    }
    !stop.load(std::sync::atomic::Ordering::Relaxed)
}

/// The connection, opened when there is none; `None` while Redis is unreachable. Threads keep
/// their connection in an `Option` and drop it on any error, so the next call reconnects.
pub fn connected<'a>(
    con: &'a mut Option<redis::Connection>,
    url: &str,
) -> Option<&'a mut redis::Connection> {
    if con.is_none() {
        *con = connect(url).ok();
    }
    con.as_mut()
}

pub use crate::config::default_id;
