//! The file's shape: one serde type per TOML section, each key documented in
//! `sluice.example.toml` and defaulted here (the numbers are named in `limits.rs`). Nothing is
//! checked here beyond TOML types and unknown keys; `check.rs` turns these into `Settings`.

use bitcoin::Network;
use serde::Deserialize;

use super::limits::*;
use crate::session::vardiff::VardiffConfig;
use crate::session::SessionLimits;
use crate::simulated::SimulatedChainConfig;

/// A regtest address for `sluice run` with no configuration: a newcomer's blocks must pay somewhere.
pub const DEFAULT_REGTEST_PAYOUT: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub pool: PoolSection,
    pub engine: EngineSection,
    pub listeners: Vec<ListenerSection>,
    pub vardiff: VardiffSection,
    pub limits: LimitsSection,
    pub jobs: JobsSection,
    pub simulated_chain: SimulatedChainSection,
    /// Real nodes; none means the simulated chain.
    pub nodes: Vec<NodeSection>,
    pub redis: RedisSection,
    pub share_log: ShareLogSection,
    pub blocks: BlocksSection,
    pub admin: AdminSection,
    pub statsd: StatsdSection,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            pool: PoolSection::default(),
            engine: EngineSection::default(),
            listeners: vec![ListenerSection::default()],
            vardiff: VardiffSection::default(),
            limits: LimitsSection::default(),
            jobs: JobsSection::default(),
            simulated_chain: SimulatedChainSection::default(),
            nodes: Vec::new(),
            redis: RedisSection::default(),
            share_log: ShareLogSection::default(),
            blocks: BlocksSection::default(),
            admin: AdminSection::default(),
            statsd: StatsdSection::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolSection {
    /// `bitcoin`, `testnet`, `testnet4`, `signet` or `regtest`.
    pub network: String,
    /// Where block rewards go; several with weights via `payouts`.
    pub payout_address: Option<String>,
    pub payouts: Vec<PayoutSection>,
    pub coinbase_tag: String,
    pub extranonce1_size: usize,
    pub extranonce2_size: usize,
    /// The version bits miners may roll, as hex.
    pub version_mask: String,
    /// Whether worker names need not start with a payout address.
    pub allow_free_worker_names: bool,
}

impl Default for PoolSection {
    fn default() -> Self {
        PoolSection {
            network: "regtest".into(),
            payout_address: None,
            payouts: Vec::new(),
            coinbase_tag: "/sluice/".into(),
            extranonce1_size: DEFAULT_EXTRANONCE1_SIZE,
            extranonce2_size: DEFAULT_EXTRANONCE2_SIZE,
            version_mask: DEFAULT_VERSION_MASK.to_string(),
            allow_free_worker_names: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayoutSection {
    pub address: String,
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSection {
    /// Engine threads, one per core; 0 means one per available core.
    pub threads: usize,
    /// Pin each engine thread to its core.
    pub pin_threads: bool,
    /// Where `client.reconnect` sends miners when the engine shuts down (`host:port`); unset, they
    /// reconnect to the address they used (through the balancer, to another engine).
    pub reconnect_to: Option<String>,
    /// Seconds miners are told to wait before reconnecting to `reconnect_to`.
    pub reconnect_wait_secs: u32,
}

impl Default for EngineSection {
    fn default() -> Self {
        EngineSection {
            threads: 0,
            pin_threads: true,
            reconnect_to: None,
            reconnect_wait_secs: DEFAULT_RECONNECT_WAIT_SECS,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerSection {
    pub address: String,
    /// Expect a PROXY protocol (v1 or v2) header from a load balancer on every connection.
    pub proxy_protocol: bool,
    /// With `proxy_protocol`: the networks (CIDRs) whose PROXY header is believed; a connection
    /// from anywhere else is closed before anything is read. Unset: loopback only.
    pub trusted_proxies: Option<Vec<String>>,
    /// Defaults by network: [`default_difficulties`].
    pub start_difficulty: Option<f64>,
    pub min_difficulty: Option<f64>,
    pub max_difficulty: f64,
}

impl Default for ListenerSection {
    fn default() -> Self {
        ListenerSection {
            address: "0.0.0.0:3333".into(),
            proxy_protocol: false,
            trusted_proxies: None,
            start_difficulty: None,
            min_difficulty: None,
            max_difficulty: DEFAULT_MAX_DIFFICULTY,
        }
    }
}

/// The listeners' default (start, minimum) share difficulty on a network. On regtest a CPU miner
/// must see shares at once. Anywhere else the minimum is 1 (2^32 hashes a share): a share the
/// pool credits must cost real hashing, or a CPU could fill the share log with accepted shares
/// (the pool validates one in about a microsecond; at difficulty 1 a 10 MH/s CPU finds one every
/// seven minutes). Miners start at 1024 and vardiff moves them from there.
pub fn default_difficulties(network: Network) -> (f64, f64) {
    match network {
        Network::Regtest => (REGTEST_START_DIFFICULTY, REGTEST_MIN_DIFFICULTY),
        _ => (START_DIFFICULTY, MIN_DIFFICULTY),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VardiffSection {
    pub enabled: bool,
    pub target_shares_per_minute: f64,
    pub retarget_shares: u32,
    pub retarget_interval_secs: f64,
    pub tolerance: f64,
}

impl Default for VardiffSection {
    fn default() -> Self {
        let d = VardiffConfig::default();
        VardiffSection {
            enabled: true,
            target_shares_per_minute: d.target_shares_per_minute,
            retarget_shares: d.retarget_shares,
            retarget_interval_secs: d.retarget_interval_ms as f64 / 1000.0,
            tolerance: d.tolerance,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    pub max_line_length: usize,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub unauthenticated_timeout_secs: f64,
    pub idle_timeout_secs: f64,
    pub max_invalid_streak: u32,
    pub max_failed_authorize: u32,
    /// Bytes queued for a miner that does not read before it is dropped.
    pub max_pending_output: usize,
    pub max_workers_per_connection: usize,
    pub max_shares_per_job: usize,
    /// `mining.suggest_difficulty` calls answered per connection and minute.
    pub max_suggestions_per_minute: u32,
    /// The shortest time between two saves of a session to the fleet's store.
    pub session_save_interval_secs: f64,
}

impl Default for LimitsSection {
    fn default() -> Self {
        let s = SessionLimits::default();
        LimitsSection {
            max_line_length: crate::stratum::DEFAULT_MAX_LINE_LENGTH,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            unauthenticated_timeout_secs: s.unauthenticated_timeout_ms as f64 / 1000.0,
            idle_timeout_secs: s.idle_timeout_ms as f64 / 1000.0,
            max_invalid_streak: s.max_invalid_streak,
            max_failed_authorize: s.max_failed_authorize,
            max_pending_output: DEFAULT_MAX_PENDING_OUTPUT,
            max_workers_per_connection: s.max_workers,
            max_shares_per_job: crate::share::DEFAULT_MAX_SHARES_PER_JOB,
            max_suggestions_per_minute: s.max_suggestions_per_minute,
            session_save_interval_secs: s.session_save_interval_ms as f64 / 1000.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsSection {
    /// A new job on the same block this often (fresh ntime and transactions).
    pub refresh_interval_secs: f64,
    /// Jobs kept open to shares.
    pub job_history: usize,
    /// Nodes: `getbestblockhash` this often while the template node has no live ZMQ subscription.
    pub poll_interval_ms: u64,
    /// Nodes: `getbestblockhash` this often even while ZMQ is live (ZMQ may drop a message).
    pub zmq_check_interval_secs: f64,
    /// Nodes: the timeout of every RPC call.
    pub rpc_timeout_secs: f64,
    /// Nodes: a node that failed is probed again this often.
    pub node_retry_secs: f64,
    /// Nodes: tries per node for each found block before its outcome is "no answer".
    pub submit_attempts: u32,
}

impl Default for JobsSection {
    fn default() -> Self {
        JobsSection {
            refresh_interval_secs: DEFAULT_REFRESH_INTERVAL_SECS,
            job_history: crate::chain::book::DEFAULT_JOB_HISTORY,
            poll_interval_ms: DEFAULT_POLL_INTERVAL_MS,
            zmq_check_interval_secs: DEFAULT_ZMQ_CHECK_INTERVAL_SECS,
            rpc_timeout_secs: DEFAULT_RPC_TIMEOUT_SECS,
            node_retry_secs: DEFAULT_NODE_RETRY_SECS,
            submit_attempts: DEFAULT_SUBMIT_ATTEMPTS,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSection {
    /// `http://host:port`; `http://user:password@host:port` also works.
    pub url: String,
    pub rpc_user: Option<String>,
    pub rpc_password: Option<String>,
    /// The node's `.cookie` file, instead of a user and password.
    pub rpc_cookie_file: Option<String>,
    /// The node's `-zmqpubhashblock` endpoint, `tcp://host:port`.
    pub zmq_hashblock: Option<String>,
    /// Lower is preferred; equal priorities keep file order.
    pub priority: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatedChainSection {
    pub network_difficulty: f64,
    /// 0 turns the timer off: blocks come only from miners.
    pub block_interval_secs: u64,
    pub transactions: usize,
}

impl Default for SimulatedChainSection {
    fn default() -> Self {
        let d = SimulatedChainConfig::default();
        SimulatedChainSection {
            network_difficulty: d.network_difficulty,
            block_interval_secs: d.block_interval_secs,
            transactions: d.transactions,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSection {
    /// The control plane of `sluice jobmanager` and `sluice stratum` (`redis://host:port`); unused
    /// by `sluice run`. With `sentinels`, optional: it gives only the scheme, user, password and
    /// database of the master, whose address the sentinels tell.
    pub url: Option<String>,
    /// Sentinels (`host:port`) that monitor the fleet's Redis; with `master_name`, every
    /// connection asks them (in order) for the master, so the fleet follows a failover.
    pub sentinels: Vec<String>,
    /// The master's name in the sentinels' configuration (`sentinel monitor NAME ...`).
    pub master_name: Option<String>,
    /// The ACL user the sentinels ask for (their `user` lines), if any.
    pub sentinel_username: Option<String>,
    /// The sentinels' password (their `requirepass` or the user's), if any.
    pub sentinel_password: Option<Secret>,
    /// Every key is `{prefix}:name` (Redis Cluster's hash tag); fleets sharing one Redis use
    /// different prefixes.
    pub prefix: String,
    /// This process's id in the fleet; unset, `ROLE-HOST-PID`.
    pub id: Option<String>,
    /// A service disappears from the registry this long after its last heartbeat.
    pub service_ttl_secs: f64,
    /// The jobmanager lease: a standby leads at most this long (and a quarter) after the leader died.
    pub lease_secs: f64,
    /// A miner may resume its session (same extranonce1, difficulty, workers) on any engine this
    /// long after it was last saved.
    pub session_ttl_secs: f64,
    /// A file holding the fleet key that signs job messages (at least 32 bytes once surrounding
    /// whitespace is trimmed). `sluice jobmanager` and `sluice stratum` need this or `fleet_key`.
    pub fleet_key_file: Option<String>,
    /// The fleet key inline, instead of `fleet_key_file`.
    pub fleet_key: Option<Secret>,
    /// `rediss://` only: the PEM certificates that sign the server's (a private CA); unset, the
    /// public roots compiled in.
    pub tls_ca_file: Option<String>,
    /// `rediss://` only, with `tls_key_file`: the client certificate chain (PEM) for a Redis that
    /// asks for one (`tls-auth-clients yes`).
    pub tls_cert_file: Option<String>,
    /// The private key (PEM) of `tls_cert_file`.
    pub tls_key_file: Option<String>,
}

/// A secret from the configuration file: it never prints (`Debug` shows `Secret(..)`).
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Default for RedisSection {
    fn default() -> Self {
        RedisSection {
            url: None,
            sentinels: Vec::new(),
            master_name: None,
            sentinel_username: None,
            sentinel_password: None,
            prefix: DEFAULT_REDIS_PREFIX.into(),
            id: None,
            service_ttl_secs: DEFAULT_SERVICE_TTL_SECS,
            lease_secs: DEFAULT_LEASE_SECS,
            session_ttl_secs: DEFAULT_SESSION_TTL_SECS,
            fleet_key_file: None,
            fleet_key: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShareLogSection {
    /// Records per batch written to Redis (at most).
    pub batch_size: usize,
    /// A batch goes out at least this often.
    pub batch_interval_ms: u64,
    /// `P:shares` is trimmed to about this many entries.
    pub stream_maxlen: usize,
    /// Where batches wait while Redis is away.
    pub spool_path: String,
    /// The spool's bound; past it, batches are dropped and counted.
    pub max_spool_bytes: u64,
    /// Named workers per minute's rollup hash, fleet-wide; the rest are summed under one name.
    pub max_rollup_workers: usize,
    /// Answer an accepted submit only once its batch is in Redis or in the fsynced spool.
    pub durable_ack: bool,
    /// With `durable_ack`: the group commit, a batch goes out this long after its first accept.
    pub durable_commit_ms: u64,
    /// With `durable_ack`: a connection reads no more lines while this many accepts wait.
    pub max_held_replies: usize,
    /// Replicas each batch must reach (Redis `WAIT`) before it counts as kept; else it is spooled too.
    pub durable_replicas: u32,
    /// How long a batch waits for `durable_replicas`.
    pub durable_replicas_timeout_ms: u64,
}

impl Default for ShareLogSection {
    fn default() -> Self {
        ShareLogSection {
            batch_size: DEFAULT_SHARE_BATCH_SIZE,
            batch_interval_ms: DEFAULT_SHARE_BATCH_INTERVAL_MS,
            stream_maxlen: DEFAULT_SHARE_STREAM_MAXLEN,
            spool_path: "sluice-shares.spool".into(),
            max_spool_bytes: DEFAULT_MAX_SPOOL_BYTES,
            max_rollup_workers: DEFAULT_MAX_ROLLUP_WORKERS,
            durable_ack: false,
            durable_commit_ms: DEFAULT_DURABLE_COMMIT_MS,
            max_held_replies: DEFAULT_MAX_HELD_REPLIES,
            durable_replicas: DEFAULT_DURABLE_REPLICAS,
            durable_replicas_timeout_ms: DEFAULT_DURABLE_REPLICAS_TIMEOUT_MS,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlocksSection {
    /// Where a fleet engine keeps the found blocks it has not yet handed to Redis (fsynced per
    /// block, sent at its next start); unset, `<share_log.spool_path>.blocks`. One per engine.
    pub held_path: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    /// Address of the HTTP listener for `/metrics` and `/status`; none turns it off.
    pub listen: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatsdSection {
    /// UDP address of a statsd daemon; none (the default) turns statsd off.
    pub address: Option<String>,
    pub prefix: String,
    pub interval_secs: f64,
}

impl Default for StatsdSection {
    fn default() -> Self {
        StatsdSection {
            address: None,
            prefix: DEFAULT_REDIS_PREFIX.into(),
            interval_secs: DEFAULT_STATSD_INTERVAL_SECS,
        }
    }
}
