//! The commands: each gets a connection already checked against the layout. All of them read,
//! except those in [`control`], which send a command to one engine and wait for its answer.

pub mod blocks;
pub mod control;
pub mod jobmanager;
pub mod services;
pub mod session;
pub mod shares;
pub mod stats;

use crate::connect::Redis;
use crate::layout::Keys;

/// What every Redis command works with.
pub struct Ctx {
    pub redis: Redis,
    pub keys: Keys,
    /// JSON for machines instead of tables for people.
    pub json: bool,
}
