//! The commands: each gets a connection already checked against the layout. Most of them only
//! read. Those in [`control`] send a command to one engine and wait for its answer; `policy
//! set|rm` write `P:policies`; `jobmanager pause|resume|promote` write `P:jm:control`.

pub mod blocks;
pub mod control;
pub mod jobmanager;
pub mod policy;
pub mod services;
pub mod session;
pub mod shares;
pub mod stats;

use crate::connect::Redis;
use sluice_layout::Keys;

/// What every Redis command works with.
pub struct Ctx {
    pub redis: Redis,
    pub keys: Keys,
    /// JSON for machines instead of tables for people.
    pub json: bool,
}
