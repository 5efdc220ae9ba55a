//! The commands that read the fleet: each gets a connection already checked against the layout.

pub mod blocks;
pub mod jobmanager;
pub mod services;
pub mod shares;
pub mod stats;

use crate::connect::Redis;
use crate::layout::Keys;

/// What every Redis-reading command works with.
pub struct Ctx {
    pub redis: Redis,
    pub keys: Keys,
    /// JSON for machines instead of tables for people.
    pub json: bool,
}
