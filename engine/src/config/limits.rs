//! Every number the configuration defaults to or bounds a key by, named once: the defaults in
//! `schema.rs`, the checks in `check.rs`, `sluice.example.toml` and ARCHITECTURE.md's limits table
//! all mean these. The session's own limits (timeouts, streaks, workers) are defaulted by
//! `SessionLimits::default` in the session crate, and read from there.

/// `pool.extranonce1_size`: bytes of the engine's part of each miner's extranonce.
pub const DEFAULT_EXTRANONCE1_SIZE: usize = 4;

/// `pool.extranonce2_size`: bytes each miner rolls.
pub const DEFAULT_EXTRANONCE2_SIZE: usize = 8;

/// `pool.version_mask`: the version bits miners may roll (BIP 320's general-purpose bits).
pub const DEFAULT_VERSION_MASK: crate::units::VersionMask = crate::units::VersionMask::BIP320;

/// The version of the coinbase transaction the pool builds.
pub const COINBASE_TX_VERSION: i32 = 1;

/// `engine.reconnect_wait_secs`: seconds a miner sent to `engine.reconnect_to` waits first.
pub const DEFAULT_RECONNECT_WAIT_SECS: u32 = 5;

/// `engine.threads`, at most: each core owns a slice of the extranonce1 space, which holds 256
/// values at its smallest (1 byte).
pub const MAX_THREADS: usize = 256;

/// `listeners[N].max_difficulty`: far above any miner's hash rate, so only a configured one binds.
pub const DEFAULT_MAX_DIFFICULTY: f64 = 1e15;

/// `listeners[N].start_difficulty` on regtest: a CPU miner sees shares at once.
pub const REGTEST_START_DIFFICULTY: f64 = 0.001;

/// `listeners[N].min_difficulty` on regtest.
pub const REGTEST_MIN_DIFFICULTY: f64 = 1e-9;

/// `listeners[N].start_difficulty` outside regtest: vardiff moves miners from there.
pub const START_DIFFICULTY: f64 = 1024.0;

/// `listeners[N].min_difficulty` outside regtest: every credited share costs 2^32 hashes.
pub const MIN_DIFFICULTY: f64 = 1.0;

/// `limits.max_connections`: below the machine's 20,000 open files, with room for the rest.
pub const DEFAULT_MAX_CONNECTIONS: usize = 19_000;

/// `limits.max_connections_per_ip`: per client (an IPv4 address or an IPv6 /64).
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 2_000;

/// `limits.max_pending_output`: bytes queued for a miner that does not read before it is dropped.
pub const DEFAULT_MAX_PENDING_OUTPUT: usize = 256 * 1024;

/// `jobs.refresh_interval_secs`: a new job on the same block this often.
pub const DEFAULT_REFRESH_INTERVAL_SECS: f64 = 30.0;

/// `jobs.poll_interval_ms`: `getbestblockhash` this often without a live ZMQ subscription.
pub const DEFAULT_POLL_INTERVAL_MS: u64 = 100;

/// `jobs.zmq_check_interval_secs`: `getbestblockhash` this often even while ZMQ is live.
pub const DEFAULT_ZMQ_CHECK_INTERVAL_SECS: f64 = 5.0;

/// `jobs.rpc_timeout_secs`: the timeout of every RPC call.
pub const DEFAULT_RPC_TIMEOUT_SECS: f64 = 5.0;

/// `jobs.node_retry_secs`: a failed node is probed again this often.
pub const DEFAULT_NODE_RETRY_SECS: f64 = 1.0;

/// `jobs.submit_attempts`: tries per node for each found block.
pub const DEFAULT_SUBMIT_ATTEMPTS: u32 = 3;

/// `redis.prefix`: what every key starts with.
pub const DEFAULT_REDIS_PREFIX: &str = "sluice";

/// `redis.service_ttl_secs`: a service leaves the registry this long after its last heartbeat.
pub const DEFAULT_SERVICE_TTL_SECS: f64 = 10.0;

/// `redis.lease_secs`: the jobmanager lease.
pub const DEFAULT_LEASE_SECS: f64 = 2.0;

/// `redis.lease_secs`, at least: renewed every quarter, a shorter lease would not survive one
/// slow Redis call.
pub const MIN_LEASE_MS: u64 = 200;

/// `redis.session_ttl_secs`: how long a saved session can be resumed.
pub const DEFAULT_SESSION_TTL_SECS: f64 = 600.0;

/// `share_log.batch_size`: records per batch written to Redis.
pub const DEFAULT_SHARE_BATCH_SIZE: usize = 500;

/// `share_log.batch_interval_ms`: a batch goes out at least this often.
pub const DEFAULT_SHARE_BATCH_INTERVAL_MS: u64 = 100;

/// `share_log.durable_commit_ms`: with `durable_ack`, a batch goes out this long after its first
/// accepted share at most (the group commit), ...
pub const DEFAULT_DURABLE_COMMIT_MS: u64 = 2;
/// ... and at most this: every held `true` waits for it.
pub const MAX_DURABLE_COMMIT_MS: u64 = 1_000;

/// `share_log.max_held_replies`: with `durable_ack`, a connection stops reading lines while this
/// many of its accepts wait for their batch, and goes on once they are answered.
pub const DEFAULT_MAX_HELD_REPLIES: usize = 256;
/// ... and at most this.
pub const MAX_HELD_REPLIES: usize = 65_536;

/// `share_log.durable_replicas`: after each batch, wait for this many replicas to hold it (Redis
/// `WAIT`); 0, the default, waits for none. A batch fewer replicas confirm in time is also put in
/// the fsynced spool (and replayed later: the high-water mark keeps it written once), so a failover
/// to a replica that missed it loses nothing.
pub const DEFAULT_DURABLE_REPLICAS: u32 = 0;
/// ... at most this many ...
pub const MAX_DURABLE_REPLICAS: u32 = 16;
/// `share_log.durable_replicas_timeout_ms`: ... within this long (every batch, and so every
/// held accept, may wait this long while a replica lags) ...
pub const DEFAULT_DURABLE_REPLICAS_TIMEOUT_MS: u64 = 50;
/// ... and at most this.
pub const MAX_DURABLE_REPLICAS_TIMEOUT_MS: u64 = 5_000;

/// `share_log.stream_maxlen`: `P:shares` is trimmed to about this many entries.
pub const DEFAULT_SHARE_STREAM_MAXLEN: usize = 1_000_000;

/// `share_log.max_spool_bytes`: the spool's bound (1 GiB).
pub const DEFAULT_MAX_SPOOL_BYTES: u64 = 1 << 30;

/// `share_log.max_rollup_workers`: named workers per minute's rollup hash, fleet-wide.
pub const DEFAULT_MAX_ROLLUP_WORKERS: usize = 10_000;

/// `statsd.interval_secs`: gauges and counters go out this often.
pub const DEFAULT_STATSD_INTERVAL_SECS: f64 = 10.0;

/// The networks a PROXY protocol listener believes by default: HAProxy on this host. One on
/// another host must be listed in `listeners[N].trusted_proxies`.
pub const DEFAULT_TRUSTED_PROXIES: [&str; 2] = ["127.0.0.0/8", "::1/128"];
