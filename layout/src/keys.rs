//! The key names under one prefix (the table in the crate's doc), and the layout's version.

/// Bumped whenever a key's meaning or encoding changes (3: a session hash holds the session's
/// exported state in `state`, no longer `shares`).
pub const LAYOUT_VERSION: u32 = 3;

/// Entries kept in each block stream.
pub const BLOCK_STREAM_MAXLEN: usize = 10_000;

/// How long the latest job survives its last rewrite (a fleet with no leader for an hour has no
/// current work to hand out anyway).
pub const LATEST_JOB_TTL_MS: u64 = 3_600_000;

/// The key names under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// The registry's index: service id → expiry (ms).
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
    /// The fleet epoch the fencing tokens count in.
    pub fn epoch(&self) -> String {
        self.key("jm:epoch")
    }
    /// Operators' steering of the lease: fields `pause:ID` and `prefer`.
    pub fn jm_control(&self) -> String {
        self.key("jm:control")
    }
    pub fn latest_job(&self) -> String {
        self.key("job:latest")
    }
    pub fn jobs_channel(&self) -> String {
        self.key("jobs")
    }
    pub fn blocks_found(&self) -> String {
        self.key("blocks:found")
    }
    pub fn blocks_cursor(&self) -> String {
        self.key("blocks:cursor")
    }
    pub fn blocks(&self) -> String {
        self.key("blocks")
    }
    pub fn slot(&self, n: u32) -> String {
        self.key(&format!("slot:{n}"))
    }
    /// One saved session (the id is random, the subscription id miners send back).
    pub fn session(&self, id: &str) -> String {
        self.key(&format!("session:{id}"))
    }
    /// The index of saved sessions: session id → expiry (ms).
    pub fn sessions(&self) -> String {
        self.key("sessions")
    }
    pub fn shares(&self) -> String {
        self.key("shares")
    }
    pub fn shares_hwm(&self, engine: &str, epoch: u64) -> String {
        self.key(&format!("shares:hwm:{engine}:{epoch}"))
    }
    /// Per-connection policies: name → JSON.
    pub fn policies(&self) -> String {
        self.key("policies")
    }
    /// One engine's command stream (from sluicectl).
    pub fn commands(&self, engine: &str) -> String {
        self.key(&format!("cmd:{engine}"))
    }
    /// The acknowledgement of one command.
    pub fn ack(&self, command: &str) -> String {
        self.key(&format!("ack:{command}"))
    }
    /// The rollup hash of one minute (unix seconds / 60).
    pub fn rollup(&self, minute: u64) -> String {
        self.key(&format!("roll:{minute}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a fleet running today's build holds: a rename here strands every key already written.
    #[test]
    fn key_names_and_version_are_todays() {
        assert_eq!(LAYOUT_VERSION, 3);
        let k = Keys::new("pool");
        assert_eq!(k.prefix(), "pool");
        let all = [
            (k.layout(), "pool:layout"),
            (k.services(), "pool:services"),
            (k.service("e-1"), "pool:svc:e-1"),
            (k.leader(), "pool:jm:leader"),
            (k.token(), "pool:jm:token"),
            (k.epoch(), "pool:jm:epoch"),
            (k.jm_control(), "pool:jm:control"),
            (k.latest_job(), "pool:job:latest"),
            (k.jobs_channel(), "pool:jobs"),
            (k.blocks_found(), "pool:blocks:found"),
            (k.blocks_cursor(), "pool:blocks:cursor"),
            (k.blocks(), "pool:blocks"),
            (k.slot(7), "pool:slot:7"),
            (k.session("1a2b"), "pool:session:1a2b"),
            (k.sessions(), "pool:sessions"),
            (k.shares(), "pool:shares"),
            (k.shares_hwm("e-1", 42), "pool:shares:hwm:e-1:42"),
            (k.policies(), "pool:policies"),
            (k.commands("e-1"), "pool:cmd:e-1"),
            (k.ack("17-42-1"), "pool:ack:17-42-1"),
            (k.rollup(29_000_000), "pool:roll:29000000"),
        ];
        for (got, want) in all {
            assert_eq!(got, want);
        }
        assert_eq!(BLOCK_STREAM_MAXLEN, 10_000);
        assert_eq!(LATEST_JOB_TTL_MS, 3_600_000);
    }
}
