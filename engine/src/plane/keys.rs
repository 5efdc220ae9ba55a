//! The Redis layout, version [`LAYOUT_VERSION`]. Every key starts with the configured prefix; none is
//! unbounded (a TTL, a cap or a stream MAXLEN), and nothing ever lists keys with `KEYS` or `SCAN`.
//!
//! | key | type | what | bound |
//! |---|---|---|---|
//! | `P:layout` | string | the layout version; a process refuses a different one | one value |
//! | `P:services` | sorted set | service id → expiry (ms); the registry's index | pruned by score on every heartbeat |
//! | `P:svc:ID` | hash | id, role, address, version, started_ms, heartbeat_ms, connections, hashrate, shares_per_second, state, shares_dropped (accepted shares the share log lost) | TTL (`service_ttl`) |
//! | `P:jm:leader` | string | `ID|TOKEN` of the leading jobmanager | TTL (the lease) |
//! | `P:jm:token` | counter | the last fencing token handed out | one value |
//! | `P:jm:epoch` | string | the fleet epoch (random u64, decimal) the tokens count in; written by the lease script when absent, so Redis losing its state starts a new one | one value |
//! | `P:jm:control` | hash | `pause:ID` (that jobmanager may not lead), `prefer` (the jobmanager that should) | one field per jobmanager |
//! | `P:job:latest` | string | the last job message (binary, `wire`: epoch, token, sequence, job, HMAC-SHA256 tag under the fleet key) | TTL 1 h, rewritten per job |
//! | `P:jobs` | pub/sub channel | every job message as published (signed, as above) | not stored |
//! | `P:blocks:found` | stream | blocks found by engines, for the leader to submit | MAXLEN ~ 10,000 |
//! | `P:blocks:cursor` | string | the last `blocks:found` entry whose outcome is in `P:blocks`; moved with the record, only forward | one value |
//! | `P:blocks` | stream | each found block with every node's answer | MAXLEN ~ 10,000 |
//! | `P:slot:N` | string | slot N, the first byte of an engine's extranonce1 values: `ID|RUN` of its holder, `released:ID|RUN` after a clean stop, `pinned` while another engine hosts its sessions | TTL max(`session_ttl`, `service_ttl`), renewed |
//! | `P:session:ID` | hash | a session (ID: 16 hex digits, random): extranonce1, difficulty, version_mask, workers, engine, updated_ms, holder, holder_slot, conn, released, shares (hex duplicate sets while released, ≤ `MAX_SAVED_SHARES`) | TTL (`session_ttl`) |
//! | `P:sessions` | sorted set | session id → expiry (ms) | pruned on every save |
//! | `P:shares` | stream | one entry per share verdict (`sharelog::FIELDS`) | MAXLEN ~ `share_log.stream_maxlen` |
//! | `P:shares:hwm:ENGINE:EPOCH` | string | the last share batch written by one run of an engine | TTL 7 days |
//! | `P:policies` | hash | policy name → JSON (`policies::Policy`) | at most 1,000 read |
//! | `P:cmd:ENGINE` | stream | commands from sluicectl: id, cmd (drain, undrain, kick), arg, sent_ms | MAXLEN ~ 1,000 |
//! | `P:ack:ID` | string | the engine's JSON answer to command ID | TTL 1 h |
//! | `P:roll:MINUTE` | hash | per worker `W|accepted`, `W|rejected`, `W|difficulty` (accepted shares' assigned difficulty); `~workers` (named workers counted, `sharelog::ROLLUP_WORKER_COUNT`); `~ other|…` (the workers past the cap, `sharelog::OTHER_WORKERS`) | TTL 2 days; at most `share_log.max_rollup_workers` named workers, fleet-wide (the batch script counts them) |

use redis::Connection;

/// Bumped whenever a key's meaning or encoding changes.
pub const LAYOUT_VERSION: u32 = 2;

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
    pub fn session(&self, id: &str) -> String {
        self.key(&format!("session:{id}"))
    }
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

/// Why a process will not use this Redis.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("Redis at this prefix holds layout version {found}, this build speaks {LAYOUT_VERSION}: upgrade every process of the fleet together, or use another prefix")]
    Version { found: String },
    #[error("cannot reach Redis: {0}")]
    Redis(String),
}

/// Writes the layout version if the prefix is new, and refuses a different one.
pub fn check_layout(con: &mut Connection, keys: &Keys) -> Result<(), LayoutError> {
    let redis_err = |e: redis::RedisError| LayoutError::Redis(e.to_string());
    let _: Option<String> = redis::cmd("SET")
        .arg(keys.layout())
        .arg(LAYOUT_VERSION)
        .arg("NX")
        .query(con)
        .map_err(redis_err)?;
    let found: String = redis::cmd("GET")
        .arg(keys.layout())
        .query(con)
        .map_err(redis_err)?;
    if found == LAYOUT_VERSION.to_string() {
        Ok(())
    } else {
        Err(LayoutError::Version { found })
    }
}
