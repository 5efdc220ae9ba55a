//! What crosses a Sluice fleet's Redis, written once for every process that reads or writes it:
//! the engine (`sluice`, writer of most keys) and the operators' CLI (`sluicectl`, which must not
//! link the engine). Facts only: key names ([`Keys`]), the layout version, the block streams'
//! fields, the share record, the registry entry, the policy schema and its check, the command and
//! acknowledgement formats.
//! The Redis I/O (connections, Lua scripts, pollers) stays with each binary.
//!
//! # Redis layout, version [`LAYOUT_VERSION`]
//!
//! Every key starts with `redis.prefix` (default `sluice`) in braces, written `{P}` here: the braces
//! are Redis Cluster's hash tag, so one fleet's keys all hash to one slot (one shard), and every
//! key a script touches is passed in its `KEYS` (a prefix is checked by [`keys::check_prefix`]:
//! no braces, no whitespace). Nothing lists keys with `KEYS` or `SCAN`; every key is bounded by a
//! TTL, a cap or a stream MAXLEN. A Sluice process writes the version to `{P}:layout` if it is
//! absent and refuses to run against a different one; sluicectl only reads it, and refuses a
//! prefix without it or with another version. Layout 3 named keys `P:name` (no braces): a process
//! or sluicectl of this build that finds `P:layout` (and no `{P}:layout`) refuses the prefix as a
//! layout-3 fleet rather than ignore it.
//!
//! | key | type | what | written by → read by | bound |
//! |---|---|---|---|---|
//! | `{P}:layout` | string | the layout version | every Sluice process (`SET NX`) → every process, sluicectl | one value |
//! | `{P}:services` | sorted set | service id → expiry (ms): the registry's index, read by score | registry heartbeat → sluicectl | pruned on every heartbeat |
//! | `{P}:svc:ID` | hash | [`registry::FIELDS`]: id, role, address, version, started_ms, heartbeat_ms, connections, hashrate, shares_per_second, state, shares_dropped (accepted shares the share log lost since the process started; 0 for a jobmanager) | registry heartbeat → sluicectl (`services`, `engine ls`, `stats`) | TTL `redis.service_ttl_secs` |
//! | `{P}:jm:leader` | string | `ID|TOKEN` of the leading jobmanager | lease script → jobmanagers, sluicectl | TTL `redis.lease_secs` |
//! | `{P}:jm:token` | counter | the last fencing token handed out | lease script → sluicectl | one value |
//! | `{P}:jm:epoch` | string | the fleet epoch the tokens count in: a random u64 (decimal) the lease script writes when the key is absent, so a Redis that lost its state starts a new one | lease script → lease and publish scripts | one value |
//! | `{P}:jm:control` | hash | `pause:ID` = 1: that jobmanager may not lead; `prefer` = ID: only that (live) jobmanager may | sluicectl (`jobmanager pause|resume|promote`) → lease script | one field per jobmanager |
//! | `{P}:job:latest` | string | the last job message (binary, `job_message.rs` under the `job-message` feature: `SLJ2`, epoch, token, sequence, the job, then an HMAC-SHA256 tag under the fleet key over every byte before it) | leader's publish script → engines | TTL 1 h ([`LATEST_JOB_TTL_MS`]), rewritten per job |
//! | `{P}:jobs` | pub/sub channel | every job message (signed, as above) | leader → engines | not stored |
//! | `{P}:blocks:found` | stream | blocks found by engines: [`blocks::FOUND_FIELDS`] (hash, height, worker, engine, block hex) | engines → the leading jobmanager | MAXLEN ~ [`BLOCK_STREAM_MAXLEN`] |
//! | `{P}:blocks:cursor` | string | the last `blocks:found` entry whose outcome is recorded in `{P}:blocks`: moved by the same script that writes the record, only forward | leader's recorder → leader's reader | one value |
//! | `{P}:blocks` | stream | each submitted block: [`blocks::RECORD_FIELDS`] (hash, height, worker, accepted, found_ms, results (JSON, per node)) | leader's recorder → sluicectl (`blocks`) | MAXLEN ~ [`BLOCK_STREAM_MAXLEN`] |
//! | `{P}:slot:N` | string | slot N (0–255), the first byte of an engine's extranonce1 values: `ID|RUN` of the engine process leasing it (RUN random per start), `released:ID|RUN` after its clean stop, or `pinned` while another engine hosts resumed sessions from it | engines → engines | TTL max(`redis.session_ttl_secs`, `redis.service_ttl_secs`), renewed every third of the service TTL by its holder and by every engine hosting its sessions |
//! | `{P}:session:ID` | hash | [`session::FIELDS`]: `state` (the session's exported state, JSON, versioned: extranonce1, difficulty, version mask, workers and, only while released, the duplicate sets of its open jobs by job fingerprint, at most `MAX_SAVED_SHARES` = 2,048 shares); copies for sluicectl: extranonce1, difficulty, version_mask, workers (JSON); engine, updated_ms; `holder` (`ID|RUN` of the engine whose connection holds it), `holder_slot`, `conn`, `released` (1 once its connection let it go). ID: 16 hex digits of a random 64-bit number from the OS, the subscription id miners send back | engines' session store → engines (resume), sluicectl (`session`) | TTL `redis.session_ttl_secs` (600 s) |
//! | `{P}:sessions` | sorted set | session id → expiry (ms) | engines' session store → sluicectl | pruned on every save |
//! | `{P}:shares` | stream | one entry per share: [`shares::FIELDS`] (ts, engine, batch, verdict, reason, worker, assigned, actual, job, height, session, client, agent, block, hash), as [`shares::ShareEntry`] | engines' share-log writer → sluicectl (`shares`, `stats`) | MAXLEN ~ `share_log.stream_maxlen` (1,000,000) |
//! | `{P}:shares:hwm:ENGINE:EPOCH` | string | the last share batch written by one run of one engine (replays skip at or below it) | share-log batch script → itself | TTL 7 days |
//! | `{P}:roll:MINUTE` | hash | per worker: `W|accepted`, `W|rejected`, `W|difficulty` for one minute (unix seconds / 60); [`shares::ROLLUP_WORKER_COUNT`]: the count of named workers; [`shares::OTHER_WORKERS`]`|…`: the workers past the cap, summed (a space, which no worker name can hold) | share-log batch script → sluicectl (`stats`) | TTL 2 days; at most `share_log.max_rollup_workers` (10,000) named workers, fleet-wide, so at most 3 × 10,000 + 4 fields |
//! | `{P}:policies` | hash | policy name → JSON ([`policy::Policy`]): match fields `port`, `user`, `worker`, `agent` (prefix); overrides `start_difficulty`, `min_difficulty`, `max_difficulty`, `vardiff_target_shares_per_minute`, `version_mask` | sluicectl (`policy set|rm`) → engines (every second), sluicectl (`policy ls`) | at most [`policy::MAX_POLICIES`] read |
//! | `{P}:cmd:ENGINE` | stream | commands from sluicectl: [`command::FIELDS`] (id, cmd ([`command::Command`]: `drain`, `undrain`, `kick`, `reload`), arg, sent_ms) | sluicectl → that engine | MAXLEN ~ [`command::COMMAND_STREAM_MAXLEN`] |
//! | `{P}:ack:ID` | string | the engine's answer to command ID ([`command::Ack`]): `{"cmd","engine","ok","result"|"error"}` | the engine → sluicectl | TTL 1 h ([`command::ACK_TTL_SECS`]) |

pub mod blocks;
pub mod command;
#[cfg(feature = "job-message")]
pub mod job_message;
pub mod keys;
pub mod policy;
pub mod registry;
pub mod session;
pub mod shares;

pub use keys::{
    check_prefix, Keys, PrefixError, BLOCK_STREAM_MAXLEN, LATEST_JOB_TTL_MS, LAYOUT_VERSION,
};
