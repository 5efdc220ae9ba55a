//! The key names under one prefix (the table in the crate's doc), the layout's version, and the
//! check of a prefix. Every key is `{P}:name`: the braces make the prefix Redis Cluster's hash tag,
//! so all of one fleet's keys hash to one slot and every script's keys are on one shard.

/// Bumped whenever a key's name, meaning or encoding changes. 3: a session hash holds the
/// session's exported state in `state`, no longer `shares`. 4: every key is `{P}:name` (the prefix
/// is the hash tag), no longer `P:name`: a layout-3 fleet's keys are not found under the new
/// names, so a process of this build that finds [`Keys::layout_v3`] refuses to start rather than
/// run an empty fleet beside the old one.
pub const LAYOUT_VERSION: u32 = 4;

/// Entries kept in each block stream.
pub const BLOCK_STREAM_MAXLEN: usize = 10_000;

/// How long the latest job survives its last rewrite (a fleet with no leader for an hour has no
/// current work to hand out anyway).
pub const LATEST_JOB_TTL_MS: u64 = 3_600_000;

/// Why a prefix cannot name a fleet's keys: it must be a non-empty word without braces, so that
/// `{P}` is exactly Redis Cluster's hash tag (a `}` inside would end the tag early).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("is empty: every key of the fleet starts with it")]
    Empty,
    #[error("{0:?} holds {1:?}: the prefix is written in braces as Redis Cluster's hash tag, so it may hold no brace and no whitespace")]
    Forbidden(String, char),
}

/// Checks a prefix (`redis.prefix`, sluicectl's `--prefix`); the caller names its key.
pub fn check_prefix(prefix: &str) -> Result<(), PrefixError> {
    if prefix.is_empty() {
        return Err(PrefixError::Empty);
    }
    match prefix
        .chars()
        .find(|&c| c == '{' || c == '}' || c.is_whitespace() || c.is_control())
    {
        Some(c) => Err(PrefixError::Forbidden(prefix.to_owned(), c)),
        None => Ok(()),
    }
}

/// The key names under one prefix (checked by [`check_prefix`] where it is configured).
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
        format!("{{{}}}:{name}", self.prefix)
    }

    pub fn layout(&self) -> String {
        self.key("layout")
    }
    /// Where a layout-3 fleet (keys `P:name`, before the hash tag) kept its version: read only,
    /// to refuse an upgrade that would otherwise ignore the old fleet's keys.
    pub fn layout_v3(&self) -> String {
        format!("{}:layout", self.prefix)
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
        assert_eq!(LAYOUT_VERSION, 4);
        let k = Keys::new("pool");
        assert_eq!(k.prefix(), "pool");
        let all = [
            (k.layout(), "{pool}:layout"),
            (k.services(), "{pool}:services"),
            (k.service("e-1"), "{pool}:svc:e-1"),
            (k.leader(), "{pool}:jm:leader"),
            (k.token(), "{pool}:jm:token"),
            (k.epoch(), "{pool}:jm:epoch"),
            (k.jm_control(), "{pool}:jm:control"),
            (k.latest_job(), "{pool}:job:latest"),
            (k.jobs_channel(), "{pool}:jobs"),
            (k.blocks_found(), "{pool}:blocks:found"),
            (k.blocks_cursor(), "{pool}:blocks:cursor"),
            (k.blocks(), "{pool}:blocks"),
            (k.slot(7), "{pool}:slot:7"),
            (k.session("1a2b"), "{pool}:session:1a2b"),
            (k.sessions(), "{pool}:sessions"),
            (k.shares(), "{pool}:shares"),
            (k.shares_hwm("e-1", 42), "{pool}:shares:hwm:e-1:42"),
            (k.policies(), "{pool}:policies"),
            (k.commands("e-1"), "{pool}:cmd:e-1"),
            (k.ack("17-42-1"), "{pool}:ack:17-42-1"),
            (k.rollup(29_000_000), "{pool}:roll:29000000"),
        ];
        for (got, want) in all {
            assert_eq!(got, want);
        }
        assert_eq!(k.layout_v3(), "pool:layout");
        assert_eq!(BLOCK_STREAM_MAXLEN, 10_000);
        assert_eq!(LATEST_JOB_TTL_MS, 3_600_000);
    }

    #[test]
    fn a_prefix_is_a_word_without_braces() {
        for good in ["sluice", "pool-eu.1", "a", "x:y"] {
            assert_eq!(check_prefix(good), Ok(()), "{good}");
        }
        assert_eq!(check_prefix(""), Err(PrefixError::Empty));
        for (bad, c) in [
            ("a{b", '{'),
            ("}", '}'),
            ("a b", ' '),
            ("a\tb", '\t'),
            ("a\n", '\n'),
        ] {
            assert_eq!(
                check_prefix(bad),
                Err(PrefixError::Forbidden(bad.to_owned(), c)),
                "{bad:?}"
            );
        }
    }
}
