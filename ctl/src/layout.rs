//! The Redis layout sluicectl reads (version [`LAYOUT_VERSION`], ARCHITECTURE.md "Redis layout"),
//! and the check that the fleet under a prefix speaks it. Unlike a Sluice process sluicectl never
//! writes `P:layout`, so pointing it at the wrong prefix changes nothing. The keys it writes, only
//! once the layout check has passed, are an engine's command stream `P:cmd:ENGINE` (`session kick`,
//! `engine drain|undrain`), the policies `P:policies` (`policy set|rm`) and the lease's steering
//! `P:jm:control` (`jobmanager pause|resume|promote`).

use crate::connect::Redis;
use crate::error::{CtlError, Result};

/// The layout version this build reads; `engine/src/plane/keys.rs` has the writer's.
pub const LAYOUT_VERSION: u32 = 2;

/// The share log's stream fields (`engine/src/plane/sharelog.rs`), in the order they are written.
pub const SHARE_FIELDS: [&str; 15] = [
    "ts", "engine", "batch", "verdict", "reason", "worker", "assigned", "actual", "job", "height",
    "session", "client", "agent", "block", "hash",
];

/// The rollup name under which a minute's workers past the share log's cap are summed
/// (`engine/src/plane/sharelog.rs`): it holds a space, which no worker name can.
pub const OTHER_WORKERS: &str = "~ other";

/// The rollup hash's count of its named workers: a field without a `|`, not a worker.
pub const ROLLUP_WORKER_COUNT: &str = "~workers";

/// The key names under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    pub fn layout(&self) -> String {
        self.key("layout")
    }
    pub fn services(&self) -> String {
        self.key("services")
    }
    pub fn service(&self, id: &str) -> String {
        self.key(&format!("svc:{id}"))
    }
    pub fn leader(&self) -> String {
        self.key("jm:leader")
    }
    pub fn token(&self) -> String {
        self.key("jm:token")
    }
    /// Operators' steering of the lease: fields `pause:ID` and `prefer`.
    pub fn jm_control(&self) -> String {
        self.key("jm:control")
    }
    /// Per-connection policies: name → JSON.
    pub fn policies(&self) -> String {
        self.key("policies")
    }
    pub fn blocks(&self) -> String {
        self.key("blocks")
    }
    pub fn shares(&self) -> String {
        self.key("shares")
    }
    /// The index of saved sessions: session id → expiry (ms).
    pub fn sessions(&self) -> String {
        self.key("sessions")
    }
    /// One saved session (the id is the extranonce1's value in hex).
    pub fn session(&self, id: &str) -> String {
        self.key(&format!("session:{id}"))
    }
    /// One engine's command stream, which sluicectl appends to.
    pub fn commands(&self, engine: &str) -> String {
        self.key(&format!("cmd:{engine}"))
    }
    /// The engine's acknowledgement of one command.
    pub fn ack(&self, command: &str) -> String {
        self.key(&format!("ack:{command}"))
    }
    /// The per-minute rollup of the minute starting at `minute * 60` unix seconds.
    pub fn rollup(&self, minute: u64) -> String {
        self.key(&format!("roll:{minute}"))
    }
}

/// Refuses a prefix without a fleet or with another layout version.
pub fn check(redis: &mut Redis, keys: &Keys) -> Result<()> {
    let found: Option<String> = redis.query(redis::cmd("GET").arg(keys.layout()))?;
    match found {
        None => Err(CtlError::NoFleet {
            prefix: keys.prefix().to_owned(),
        }),
        Some(v) if v == LAYOUT_VERSION.to_string() => Ok(()),
        Some(found) => Err(CtlError::Layout {
            prefix: keys.prefix().to_owned(),
            found,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sluicectl does not link the engine, so this is what notices when the writer's layout moves
    /// and this reader has not followed.
    #[test]
    fn the_layout_is_the_engines() {
        assert_eq!(LAYOUT_VERSION, sluice::plane::LAYOUT_VERSION);
        assert_eq!(SHARE_FIELDS, sluice::plane::sharelog::FIELDS);
        assert_eq!(OTHER_WORKERS, sluice::plane::sharelog::OTHER_WORKERS);
        assert_eq!(
            ROLLUP_WORKER_COUNT,
            sluice::plane::sharelog::ROLLUP_WORKER_COUNT
        );
        let ours = Keys::new("pool");
        let theirs = sluice::plane::Keys::new("pool");
        assert_eq!(ours.layout(), theirs.layout());
        assert_eq!(ours.services(), theirs.services());
        assert_eq!(ours.service("e-1"), theirs.service("e-1"));
        assert_eq!(ours.leader(), theirs.leader());
        assert_eq!(ours.token(), theirs.token());
        assert_eq!(ours.jm_control(), theirs.jm_control());
        assert_eq!(ours.policies(), theirs.policies());
        assert_eq!(ours.blocks(), theirs.blocks());
        assert_eq!(ours.shares(), theirs.shares());
        assert_eq!(ours.rollup(29_000_000), theirs.rollup(29_000_000));
        assert_eq!(ours.sessions(), theirs.sessions());
        assert_eq!(ours.session("1a2b"), theirs.session("1a2b"));
        assert_eq!(ours.commands("e-1"), theirs.commands("e-1"));
        assert_eq!(ours.ack("17-42-1"), theirs.ack("17-42-1"));
    }
}
