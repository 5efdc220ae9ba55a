//! The configuration file: one TOML document, every key documented in `sluice.example.toml` and
//! defaulted here, checked into the typed settings the engine runs on.
//!
//! Unknown keys are errors (a typo must not silently fall back to a default), and every semantic
//! check names the key to fix. `sluice config check FILE` runs exactly this code.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bitcoin::Network;
use serde::Deserialize;

use crate::chain::{CoinbaseConfig, Payout};
use crate::node::client::NodeSettings;
use crate::node::rpc::{Auth, Endpoint};
use crate::server::limits::{Cidr, DEFAULT_TRUSTED_PROXIES};
use crate::session::vardiff::VardiffConfig;
use crate::session::{SessionConfig, SessionLimits};
use crate::share::DuplicateLimits;
use crate::simulated::SimulatedChainConfig;
use crate::source::nodes::NodePolicy;
use crate::units::{Difficulty, ExtranonceSizes};

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
            extranonce1_size: 4,
            extranonce2_size: 8,
            version_mask: "1fffe000".into(),
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
            reconnect_wait_secs: 5,
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
            max_difficulty: 1e15,
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
        Network::Regtest => (0.001, 1e-9),
        _ => (1024.0, 1.0),
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
            max_connections: 19_000,
            max_connections_per_ip: 2_000,
            unauthenticated_timeout_secs: s.unauthenticated_timeout_ms as f64 / 1000.0,
            idle_timeout_secs: s.idle_timeout_ms as f64 / 1000.0,
            max_invalid_streak: s.max_invalid_streak,
            max_failed_authorize: s.max_failed_authorize,
            max_pending_output: 256 * 1024,
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
            refresh_interval_secs: 30.0,
            job_history: crate::chain::book::DEFAULT_JOB_HISTORY,
            poll_interval_ms: 100,
            zmq_check_interval_secs: 5.0,
            rpc_timeout_secs: 5.0,
            node_retry_secs: 1.0,
            submit_attempts: 3,
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
    /// by `sluice run`.
    pub url: Option<String>,
    /// Every key starts with this; fleets sharing one Redis use different prefixes.
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

/// How an operator makes a fleet key, for the errors that ask for one.
const MAKE_FLEET_KEY: &str =
    "make one with `head -c 32 /dev/urandom | xxd -p -c 64 > fleet.key`, give every jobmanager and engine of the fleet the same file, and set redis.fleet_key_file = \"fleet.key\"";

impl Default for RedisSection {
    fn default() -> Self {
        RedisSection {
            url: None,
            prefix: "sluice".into(),
            id: None,
            service_ttl_secs: 10.0,
            lease_secs: 2.0,
            session_ttl_secs: 600.0,
            fleet_key_file: None,
            fleet_key: None,
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
}

impl Default for ShareLogSection {
    fn default() -> Self {
        ShareLogSection {
            batch_size: 500,
            batch_interval_ms: 100,
            stream_maxlen: 1_000_000,
            spool_path: "sluice-shares.spool".into(),
            max_spool_bytes: 1 << 30,
            max_rollup_workers: crate::plane::sharelog::DEFAULT_MAX_ROLLUP_WORKERS,
        }
    }
}

impl FileConfig {
    /// The share log's settings (used by `sluice stratum`).
    pub fn share_log(&self) -> Result<crate::plane::sharelog::ShareLogSettings, ConfigError> {
        let l = &self.share_log;
        for (key, v) in [
            ("share_log.batch_size", l.batch_size as u64),
            ("share_log.batch_interval_ms", l.batch_interval_ms),
            ("share_log.stream_maxlen", l.stream_maxlen as u64),
            ("share_log.max_spool_bytes", l.max_spool_bytes),
            ("share_log.max_rollup_workers", l.max_rollup_workers as u64),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        if l.spool_path.is_empty() {
            return Err(invalid("share_log.spool_path", "give a file path"));
        }
        Ok(crate::plane::sharelog::ShareLogSettings {
            batch_size: l.batch_size,
            batch_interval: Duration::from_millis(l.batch_interval_ms),
            stream_maxlen: l.stream_maxlen,
            spool_path: l.spool_path.clone().into(),
            max_spool_bytes: l.max_spool_bytes,
            max_rollup_workers: l.max_rollup_workers,
        })
    }

    /// The plane settings for a role, with the URL the flag gave or the file's.
    pub fn plane(&self, role: &str) -> Result<crate::plane::PlaneSettings, ConfigError> {
        let r = &self.redis;
        let url = r.url.clone().ok_or_else(|| {
            invalid(
                "redis.url",
                format!(
                    "`sluice {role}` needs Redis: give --redis redis://HOST:PORT or set redis.url"
                ),
            )
        })?;
        if !(url.starts_with("redis://")
            || url.starts_with("rediss://")
            || url.starts_with("unix://"))
        {
            return Err(invalid(
                "redis.url",
                format!(
                    "{:?} is not a Redis URL: use redis://HOST:PORT",
                    crate::redact::url(&url)
                ),
            ));
        }
        if r.prefix.is_empty() || r.prefix.contains([' ', '\n']) {
            return Err(invalid("redis.prefix", "must be a non-empty word"));
        }
        let service_ttl = secs_to_ms("redis.service_ttl_secs", r.service_ttl_secs)?;
        let lease = secs_to_ms("redis.lease_secs", r.lease_secs)?;
        if lease < 200 {
            return Err(invalid("redis.lease_secs", "must be at least 0.2"));
        }
        Ok(crate::plane::PlaneSettings {
            url,
            prefix: r.prefix.clone(),
            id: r
                .id
                .clone()
                .unwrap_or_else(|| crate::plane::default_id(role)),
            service_ttl: Duration::from_millis(service_ttl),
            lease: Duration::from_millis(lease),
            session_ttl: Duration::from_millis(secs_to_ms(
                "redis.session_ttl_secs",
                r.session_ttl_secs,
            )?),
            fleet_key: self.fleet_key(role)?,
        })
    }

    /// The fleet key from `redis.fleet_key_file` or `redis.fleet_key` (exactly one of them).
    fn fleet_key(&self, role: &str) -> Result<crate::plane::FleetKey, ConfigError> {
        let r = &self.redis;
        let (key, secret) = match (&r.fleet_key_file, &r.fleet_key) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "redis.fleet_key",
                    "give redis.fleet_key_file or redis.fleet_key, not both",
                ))
            }
            (None, None) => {
                return Err(invalid(
                    "redis.fleet_key",
                    format!("`sluice {role}` needs the fleet key that signs job messages (set redis.fleet_key_file or redis.fleet_key): {MAKE_FLEET_KEY}"),
                ))
            }
            (Some(path), None) => {
                let bytes = std::fs::read(path).map_err(|e| {
                    invalid(
                        "redis.fleet_key_file",
                        format!("cannot read {path:?}: {e}; {MAKE_FLEET_KEY}"),
                    )
                })?;
                ("redis.fleet_key_file", bytes)
            }
            (None, Some(inline)) => ("redis.fleet_key", inline.0.clone().into_bytes()),
        };
        let trimmed = secret.trim_ascii();
        crate::plane::FleetKey::new(trimmed).map_err(|e| {
            invalid(
                key,
                format!("{e} (after trimming whitespace); {MAKE_FLEET_KEY}"),
            )
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlocksSection {
    /// Where a fleet engine keeps the found blocks it has not yet handed to Redis (fsynced per
    /// block, sent at its next start); unset, `<share_log.spool_path>.blocks`. One per engine.
    pub held_path: Option<String>,
}

impl FileConfig {
    fn held_blocks_path(&self) -> Result<std::path::PathBuf, ConfigError> {
        match &self.blocks.held_path {
            Some(p) if p.is_empty() => Err(invalid(
                "blocks.held_path",
                "give a file path, or leave it out for <share_log.spool_path>.blocks",
            )),
            Some(p) => Ok(p.into()),
            None => Ok(format!("{}.blocks", self.share_log.spool_path).into()),
        }
    }
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
            prefix: "sluice".into(),
            interval_secs: 10.0,
        }
    }
}

/// A configuration error that names the key to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{0}")]
    Syntax(String),
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

/// One listener, checked.
#[derive(Debug, Clone)]
pub struct Listener {
    /// Its place in `listeners` (reload swaps its session settings by it).
    pub index: usize,
    pub address: SocketAddr,
    pub proxy_protocol: bool,
    /// The peers whose PROXY header is believed (used only with `proxy_protocol`).
    pub trusted_proxies: Vec<Cidr>,
    pub session: std::sync::Arc<SessionConfig>,
}

impl Listener {
    /// Whether a connection from `peer` may send this listener a PROXY header.
    pub fn trusts(&self, peer: std::net::IpAddr) -> bool {
        self.trusted_proxies.iter().any(|c| c.contains(peer))
    }
}

/// The settings the engine runs on, every one checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub network: Network,
    pub coinbase: CoinbaseConfig,
    pub threads: usize,
    pub pin_threads: bool,
    /// `client.reconnect` target on shutdown: host, port and wait.
    pub reconnect_to: Option<(String, u16, u32)>,
    pub listeners: Vec<Listener>,
    pub max_line_length: usize,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_pending_output: usize,
    pub refresh_interval_ms: u64,
    pub job_history: usize,
    pub simulated_chain: SimulatedChainConfig,
    /// Real nodes, in priority order; empty means the simulated chain.
    pub nodes: Vec<NodeSettings>,
    pub node_policy: NodePolicy,
    pub admin: Option<SocketAddr>,
    pub statsd: Option<(SocketAddr, String, u64)>,
    /// A fleet engine's held-blocks file (`blocks.held_path`).
    pub held_blocks_path: std::path::PathBuf,
}

fn parse_network(s: &str) -> Result<Network, ConfigError> {
    match s {
        "bitcoin" | "mainnet" | "main" => Ok(Network::Bitcoin),
        "testnet" | "testnet3" => Ok(Network::Testnet),
        "testnet4" => Ok(Network::Testnet4),
        "signet" => Ok(Network::Signet),
        "regtest" => Ok(Network::Regtest),
        other => Err(invalid(
            "pool.network",
            format!("unknown network {other:?}; use bitcoin, testnet, testnet4, signet or regtest"),
        )),
    }
}

fn difficulty(key: &str, v: f64) -> Result<Difficulty, ConfigError> {
    Difficulty::new(v).map_err(|_| {
        invalid(
            key,
            format!("{v} is not a difficulty: use a number greater than 0"),
        )
    })
}

fn secs_to_ms(key: &str, v: f64) -> Result<u64, ConfigError> {
    if v.is_finite() && v > 0.0 {
        Ok((v * 1000.0).round() as u64)
    } else {
        Err(invalid(
            key,
            format!("{v} is not a duration: use seconds greater than 0"),
        ))
    }
}

/// A listener's trusted proxies, checked: a list on a listener that reads no PROXY header, or an
/// empty one on a listener that does, is a mistake the operator should hear about.
fn trusted_proxies(key: &str, ls: &ListenerSection) -> Result<Vec<Cidr>, ConfigError> {
    let list: Vec<String> = match &ls.trusted_proxies {
        None => DEFAULT_TRUSTED_PROXIES.iter().map(|s| (*s).to_owned()).collect(),
        Some(_) if !ls.proxy_protocol => {
            return Err(invalid(
                key,
                "only a listener with proxy_protocol = true reads PROXY headers: set it, or remove trusted_proxies",
            ))
        }
        Some(list) if list.is_empty() => {
            return Err(invalid(
                key,
                "an empty list trusts no balancer, so every connection would be closed: list your HAProxy hosts' networks",
            ))
        }
        Some(list) => list.clone(),
    };
    list.iter()
        .enumerate()
        .map(|(j, text)| Cidr::parse(text).map_err(|e| invalid(format!("{key}[{j}]"), e)))
        .collect()
}

fn address(key: &str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.parse().map_err(|_| {
        invalid(
            key,
            format!("{s:?} is not an address: use IP:PORT, e.g. 0.0.0.0:3333"),
        )
    })
}

impl FileConfig {
    pub fn from_toml(text: &str) -> Result<FileConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string().trim_end().to_owned()))
    }

    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        FileConfig::from_toml(&text)
    }

    /// Checks every key and builds the engine's settings.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let network = parse_network(&self.pool.network)?;
        let mut payouts = Vec::new();
        match (&self.pool.payout_address, self.pool.payouts.is_empty()) {
            (Some(_), false) => {
                return Err(invalid(
                    "pool.payout_address",
                    "give either payout_address or payouts, not both",
                ))
            }
            (Some(a), true) => payouts.push(
                Payout::to_address(a, network, 1)
                    .map_err(|e| invalid("pool.payout_address", e.to_string()))?,
            ),
            (None, false) => {
                for (i, p) in self.pool.payouts.iter().enumerate() {
                    payouts.push(
                        Payout::to_address(&p.address, network, p.weight)
                            .map_err(|e| invalid(format!("pool.payouts[{i}]"), e.to_string()))?,
                    );
                }
            }
            (None, true) if network == Network::Regtest => payouts.push(
                Payout::to_address(DEFAULT_REGTEST_PAYOUT, network, 1)
                    .expect("valid regtest address"),
            ),
            (None, true) => {
                return Err(invalid(
                    "pool.payout_address",
                    format!("a payout address for {network} is required"),
                ))
            }
        }
        let extranonce =
            ExtranonceSizes::new(self.pool.extranonce1_size, self.pool.extranonce2_size).map_err(
                |e| {
                    invalid(
                        "pool.extranonce1_size / pool.extranonce2_size",
                        e.to_string(),
                    )
                },
            )?;
        let version_mask = crate::hex::decode_u32_loose(self.pool.version_mask.as_bytes())
            .map_err(|_| {
                invalid(
                    "pool.version_mask",
                    "must be up to 8 hex digits, e.g. 1fffe000",
                )
            })?;
        let coinbase = CoinbaseConfig {
            payouts,
            tag: self.pool.coinbase_tag.as_bytes().to_vec(),
            extranonce,
            tx_version: 1,
        };
        coinbase
            .validate()
            .map_err(|e| invalid("pool.coinbase_tag", e.to_string()))?;

        let l = &self.limits;
        for (key, v) in [
            ("limits.max_line_length", l.max_line_length),
            ("limits.max_connections", l.max_connections),
            ("limits.max_connections_per_ip", l.max_connections_per_ip),
            ("limits.max_pending_output", l.max_pending_output),
            (
                "limits.max_workers_per_connection",
                l.max_workers_per_connection,
            ),
            ("limits.max_shares_per_job", l.max_shares_per_job),
            ("jobs.job_history", self.jobs.job_history),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        for (key, v) in [
            ("limits.max_invalid_streak", l.max_invalid_streak),
            ("limits.max_failed_authorize", l.max_failed_authorize),
            (
                "limits.max_suggestions_per_minute",
                l.max_suggestions_per_minute,
            ),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        let session_limits = SessionLimits {
            max_workers: l.max_workers_per_connection,
            max_invalid_streak: l.max_invalid_streak,
            max_failed_authorize: l.max_failed_authorize,
            unauthenticated_timeout_ms: secs_to_ms(
                "limits.unauthenticated_timeout_secs",
                l.unauthenticated_timeout_secs,
            )?,
            idle_timeout_ms: secs_to_ms("limits.idle_timeout_secs", l.idle_timeout_secs)?,
            max_suggestions_per_minute: l.max_suggestions_per_minute,
            session_save_interval_ms: secs_to_ms(
                "limits.session_save_interval_secs",
                l.session_save_interval_secs,
            )?,
        };
        let v = &self.vardiff;
        let vardiff = if v.enabled {
            if !(v.target_shares_per_minute.is_finite() && v.target_shares_per_minute > 0.0) {
                return Err(invalid(
                    "vardiff.target_shares_per_minute",
                    "must be greater than 0",
                ));
            }
            if v.retarget_shares == 0 {
                return Err(invalid("vardiff.retarget_shares", "must be at least 1"));
            }
            if !(0.0..1.0).contains(&v.tolerance) {
                return Err(invalid(
                    "vardiff.tolerance",
                    "must be at least 0 and below 1",
                ));
            }
            Some(VardiffConfig {
                target_shares_per_minute: v.target_shares_per_minute,
                retarget_shares: v.retarget_shares,
                retarget_interval_ms: secs_to_ms(
                    "vardiff.retarget_interval_secs",
                    v.retarget_interval_secs,
                )?,
                tolerance: v.tolerance,
                ..VardiffConfig::default()
            })
        } else {
            None
        };

        if self.listeners.is_empty() {
            return Err(invalid("listeners", "at least one [[listeners]] is needed"));
        }
        let mut listeners = Vec::new();
        for (i, ls) in self.listeners.iter().enumerate() {
            let key = |k: &str| format!("listeners[{i}].{k}");
            let (default_start, default_min) = default_difficulties(network);
            let min = difficulty(
                &key("min_difficulty"),
                ls.min_difficulty.unwrap_or(default_min),
            )?;
            let max = difficulty(&key("max_difficulty"), ls.max_difficulty)?;
            // The default start follows a configured minimum or maximum; a configured start is
            // checked against them below.
            let start = difficulty(
                &key("start_difficulty"),
                ls.start_difficulty
                    .unwrap_or_else(|| default_start.max(min.get()).min(max.get())),
            )?;
            if min > max {
                return Err(invalid(
                    key("min_difficulty"),
                    "must not exceed max_difficulty",
                ));
            }
            if start < min || start > max {
                return Err(invalid(
                    key("start_difficulty"),
                    "must lie between min_difficulty and max_difficulty",
                ));
            }
            let trusted_proxies = trusted_proxies(&key("trusted_proxies"), ls)?;
            listeners.push(Listener {
                index: i,
                address: address(&key("address"), &ls.address)?,
                proxy_protocol: ls.proxy_protocol,
                trusted_proxies,
                session: std::sync::Arc::new(SessionConfig {
                    network,
                    extranonce,
                    version_mask,
                    start_difficulty: start,
                    min_difficulty: min,
                    max_difficulty: max,
                    vardiff,
                    allow_free_worker_names: self.pool.allow_free_worker_names,
                    limits: session_limits,
                    duplicate_limits: DuplicateLimits {
                        max_jobs: self.jobs.job_history,
                        max_shares_per_job: l.max_shares_per_job,
                    },
                    job_history: self.jobs.job_history,
                }),
            });
        }
        let sc = &self.simulated_chain;
        difficulty("simulated_chain.network_difficulty", sc.network_difficulty)?;
        let threads = if self.engine.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.engine.threads
        };
        if threads > 256 {
            return Err(invalid("engine.threads", "at most 256"));
        }
        let reconnect_to = match &self.engine.reconnect_to {
            None => None,
            Some(target) => {
                let bad = || {
                    invalid(
                        "engine.reconnect_to",
                        format!("{target:?} is not host:port"),
                    )
                };
                let (host, port) = target.rsplit_once(':').ok_or_else(bad)?;
                let port: u16 = port.parse().map_err(|_| bad())?;
                if host.is_empty() || host.contains(['"', '\\']) {
                    return Err(bad());
                }
                Some((host.to_owned(), port, self.engine.reconnect_wait_secs))
            }
        };
        let statsd = match &self.statsd.address {
            None => None,
            Some(a) => Some((
                address("statsd.address", a)?,
                self.statsd.prefix.clone(),
                secs_to_ms("statsd.interval_secs", self.statsd.interval_secs)?,
            )),
        };
        Ok(Settings {
            network,
            coinbase,
            threads,
            pin_threads: self.engine.pin_threads,
            reconnect_to,
            listeners,
            max_line_length: l.max_line_length,
            max_connections: l.max_connections,
            max_connections_per_ip: l.max_connections_per_ip,
            max_pending_output: l.max_pending_output,
            refresh_interval_ms: secs_to_ms(
                "jobs.refresh_interval_secs",
                self.jobs.refresh_interval_secs,
            )?,
            job_history: self.jobs.job_history,
            simulated_chain: SimulatedChainConfig {
                network_difficulty: sc.network_difficulty,
                block_interval_secs: sc.block_interval_secs,
                transactions: sc.transactions,
            },
            nodes: self.node_settings()?,
            node_policy: self.node_policy()?,
            admin: self
                .admin
                .listen
                .as_deref()
                .map(|a| address("admin.listen", a))
                .transpose()?,
            statsd,
            held_blocks_path: self.held_blocks_path()?,
        })
    }
}

impl FileConfig {
    fn node_settings(&self) -> Result<Vec<NodeSettings>, ConfigError> {
        let mut nodes = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let key = format!("nodes[{i}]");
            let auth = match (&n.rpc_user, &n.rpc_password, &n.rpc_cookie_file) {
                (None, None, None) => Auth::None,
                (Some(user), Some(password), None) => Auth::UserPassword {
                    user: user.clone(),
                    password: password.clone(),
                },
                (None, None, Some(path)) => Auth::CookieFile(path.into()),
                (_, _, Some(_)) => {
                    return Err(invalid(
                        format!("{key}.rpc_cookie_file"),
                        "give either rpc_cookie_file or rpc_user and rpc_password, not both",
                    ))
                }
                _ => {
                    return Err(invalid(
                        format!("{key}.rpc_user"),
                        "rpc_user and rpc_password go together",
                    ))
                }
            };
            let endpoint = Endpoint::parse(&n.url, auth)
                .map_err(|e| invalid(format!("{key}.url"), e.to_string()))?;
            if let Some(z) = &n.zmq_hashblock {
                crate::node::zmq::parse_endpoint(z)
                    .map_err(|e| invalid(format!("{key}.zmq_hashblock"), e.to_string()))?;
            }
            nodes.push(NodeSettings {
                key,
                endpoint,
                zmq_hashblock: n.zmq_hashblock.clone(),
                priority: n.priority,
            });
        }
        nodes.sort_by_key(|n| n.priority);
        Ok(nodes)
    }

    fn node_policy(&self) -> Result<NodePolicy, ConfigError> {
        let j = &self.jobs;
        if j.poll_interval_ms == 0 {
            return Err(invalid("jobs.poll_interval_ms", "must be at least 1"));
        }
        if j.submit_attempts == 0 {
            return Err(invalid("jobs.submit_attempts", "must be at least 1"));
        }
        let ms = |key: &str, v: f64| secs_to_ms(key, v).map(Duration::from_millis);
        Ok(NodePolicy {
            refresh: ms("jobs.refresh_interval_secs", j.refresh_interval_secs)?,
            poll_interval: Duration::from_millis(j.poll_interval_ms),
            zmq_check_interval: ms("jobs.zmq_check_interval_secs", j.zmq_check_interval_secs)?,
            retry_interval: ms("jobs.node_retry_secs", j.node_retry_secs)?,
            rpc_timeout: ms("jobs.rpc_timeout_secs", j.rpc_timeout_secs)?,
            submit_attempts: j.submit_attempts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_the_example_file_is_too() {
        FileConfig::default().settings().unwrap();
        let example = include_str!("../../sluice.example.toml");
        let parsed = FileConfig::from_toml(example).unwrap();
        parsed.settings().unwrap();
        assert_eq!(
            parsed.share_log().unwrap(),
            FileConfig::default().share_log().unwrap(),
            "the example shows the share log's defaults"
        );
    }

    #[test]
    fn the_rollup_cap_is_named_when_refused() {
        let log = |toml: &str| FileConfig::from_toml(toml).unwrap().share_log();
        assert_eq!(
            log("[share_log]\nmax_rollup_workers = 1\n")
                .unwrap()
                .max_rollup_workers,
            1
        );
        let err = log("[share_log]\nmax_rollup_workers = 0\n").unwrap_err();
        assert!(
            err.to_string().starts_with("share_log.max_rollup_workers:"),
            "{err}"
        );
    }

    #[test]
    fn errors_name_the_key() {
        let err = FileConfig::from_toml("[pool]\nnetwrk = \"regtest\"\n").unwrap_err();
        assert!(err.to_string().contains("netwrk"), "{err}");
        let bad = |toml: &str| {
            FileConfig::from_toml(toml)
                .unwrap()
                .settings()
                .unwrap_err()
                .to_string()
        };
        assert!(bad("[pool]\nnetwork = \"mars\"\n").starts_with("pool.network:"));
        assert!(bad("[pool]\nnetwork = \"bitcoin\"\n").starts_with("pool.payout_address:"));
        assert!(
            bad("[pool]\npayout_address = \"bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4\"\n")
                .contains("not for the regtest network")
        );
        assert!(bad("[[listeners]]\naddress = \"nowhere\"\n").starts_with("listeners[0].address:"));
        assert!(bad("[[listeners]]\nstart_difficulty = 0\n")
            .starts_with("listeners[0].start_difficulty:"));
        assert!(bad("[limits]\nmax_line_length = 0\n").starts_with("limits.max_line_length:"));
        assert!(bad("[pool]\ncoinbase_tag = \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"\n")
            .starts_with("pool.coinbase_tag:"));
        assert!(bad("[[nodes]]\nurl = \"node:8332\"\n").starts_with("nodes[0].url:"));
        assert!(bad("[[nodes]]\nurl = \"http://n:1\"\nrpc_user = \"u\"\n")
            .starts_with("nodes[0].rpc_user:"));
        assert!(bad(
            "[[nodes]]\nurl = \"http://n:1\"\nrpc_user = \"u\"\nrpc_password = \"p\"\nrpc_cookie_file = \"/c\"\n"
        )
        .starts_with("nodes[0].rpc_cookie_file:"));
        assert!(
            bad("[[nodes]]\nurl = \"http://n:1\"\n[[nodes]]\nurl = \"http://n:2\"\nzmq_hashblock = \"udp://x\"\n")
                .starts_with("nodes[1].zmq_hashblock:")
        );
        assert!(bad("[jobs]\npoll_interval_ms = 0\n").starts_with("jobs.poll_interval_ms:"));
        assert!(bad("[jobs]\nsubmit_attempts = 0\n").starts_with("jobs.submit_attempts:"));
        assert!(bad("[blocks]\nheld_path = \"\"\n").starts_with("blocks.held_path:"));
    }

    #[test]
    fn trusted_proxies_default_to_loopback_and_errors_name_the_key() {
        let settings = |toml: &str| FileConfig::from_toml(toml).unwrap().settings();
        let l = &settings("[[listeners]]\nproxy_protocol = true\n")
            .unwrap()
            .listeners[0];
        assert!(l.trusts("127.0.0.1".parse().unwrap()));
        assert!(l.trusts("::1".parse().unwrap()));
        assert!(l.trusts("::ffff:127.0.0.9".parse().unwrap()));
        assert!(!l.trusts("10.0.0.1".parse().unwrap()));
        let l = &settings(
            "[[listeners]]\nproxy_protocol = true\ntrusted_proxies = [\"10.0.0.0/8\", \"2001:db8::/48\"]\n",
        )
        .unwrap()
        .listeners[0];
        assert!(l.trusts("10.1.2.3".parse().unwrap()));
        assert!(l.trusts("2001:db8:0:ffff::1".parse().unwrap()));
        assert!(
            !l.trusts("127.0.0.1".parse().unwrap()),
            "the list replaces the default"
        );
        let bad = |toml: &str| settings(toml).unwrap_err().to_string();
        let e = bad("[[listeners]]\n[[listeners]]\nproxy_protocol = true\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/40\"]\n");
        assert!(e.starts_with("listeners[1].trusted_proxies[1]:"), "{e}");
        let e =
            bad("[[listeners]]\nproxy_protocol = true\ntrusted_proxies = [\"haproxy.local\"]\n");
        assert!(e.starts_with("listeners[0].trusted_proxies[0]:"), "{e}");
        let e = bad("[[listeners]]\nproxy_protocol = true\ntrusted_proxies = []\n");
        assert!(e.starts_with("listeners[0].trusted_proxies:"), "{e}");
        let e = bad("[[listeners]]\ntrusted_proxies = [\"10.0.0.0/8\"]\n");
        assert!(e.starts_with("listeners[0].trusted_proxies:"), "{e}");
    }

    #[test]
    fn the_roles_need_a_fleet_key_of_at_least_32_bytes() {
        let plane = |redis: &str| {
            FileConfig::from_toml(&format!("[redis]\nurl = \"redis://127.0.0.1:1\"\n{redis}"))
                .unwrap()
                .plane("stratum")
        };
        let err = plane("").unwrap_err().to_string();
        assert!(err.starts_with("redis.fleet_key:"), "{err}");
        assert!(err.contains("head -c 32 /dev/urandom"), "{err}");
        // 31 bytes once the whitespace around them is trimmed.
        let short = format!("fleet_key = \"  {}\\n\"", "k".repeat(31));
        let err = plane(&short).unwrap_err().to_string();
        assert!(err.starts_with("redis.fleet_key:"), "{err}");
        assert!(err.contains("31 bytes"), "{err}");
        let exact = format!("fleet_key = \" {} \"", "k".repeat(32));
        assert_eq!(
            plane(&exact).unwrap().fleet_key,
            crate::plane::FleetKey::new(vec![b'k'; 32]).unwrap()
        );
        let both = format!("{exact}\nfleet_key_file = \"/nonexistent\"");
        assert!(plane(&both)
            .unwrap_err()
            .to_string()
            .starts_with("redis.fleet_key:"));

        let dir = std::env::temp_dir().join(format!("sluice-fleet-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("fleet.key");
        std::fs::write(&file, format!("{}\n", "a".repeat(31))).unwrap();
        let from_file = format!("fleet_key_file = {:?}", file.to_str().unwrap());
        let err = plane(&from_file).unwrap_err().to_string();
        assert!(err.starts_with("redis.fleet_key_file:"), "{err}");
        std::fs::write(&file, format!("{}\n", "a".repeat(64))).unwrap();
        assert_eq!(
            plane(&from_file).unwrap().fleet_key,
            crate::plane::FleetKey::new(vec![b'a'; 64]).unwrap()
        );
        let missing = format!("fleet_key_file = {:?}", dir.join("none").to_str().unwrap());
        let err = plane(&missing).unwrap_err().to_string();
        assert!(err.starts_with("redis.fleet_key_file:"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
        // The secret never prints with the configuration.
        let config = FileConfig::from_toml(&format!("[redis]\n{exact}")).unwrap();
        assert!(!format!("{config:?}").contains("kkkk"));
        assert!(!format!("{:?}", plane(&exact).unwrap()).contains("kkkk"));
    }

    #[test]
    fn nodes_are_ordered_by_priority_then_file_order() {
        let config = FileConfig::from_toml(
            "[[nodes]]\nurl = \"http://a:1\"\npriority = 2\n[[nodes]]\nurl = \"http://u:p@b:1\"\npriority = 1\n[[nodes]]\nurl = \"http://c:1\"\npriority = 2\n",
        )
        .unwrap();
        let nodes = config.settings().unwrap().nodes;
        let order: Vec<_> = nodes.iter().map(|n| n.key.as_str()).collect();
        assert_eq!(order, ["nodes[1]", "nodes[0]", "nodes[2]"]);
        assert_eq!(
            nodes[0].endpoint.auth,
            Auth::UserPassword {
                user: "u".into(),
                password: "p".into()
            }
        );
    }
}
