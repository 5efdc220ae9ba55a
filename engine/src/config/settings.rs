//! The checked settings: what `check.rs` builds from the file's sections and the engine, the plane
//! and the job sources run on. They live here, in the configuration, so that those layers import
//! the configuration and the configuration imports none of them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bitcoin::Network;

use super::{Cidr, FleetKey};
use crate::chain::CoinbaseConfig;
use crate::node::client::NodeSettings;
use crate::session::SessionConfig;
use crate::simulated::SimulatedChainConfig;

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
    /// `client.reconnect` target on shutdown (`engine.reconnect_to`).
    pub reconnect_to: Option<ReconnectTo>,
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
    pub statsd: Option<StatsdSettings>,
    /// A fleet engine's held-blocks file (`blocks.held_path`).
    pub held_blocks_path: std::path::PathBuf,
}

/// Where `client.reconnect` sends miners when the engine shuts down or drains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconnectTo {
    pub host: String,
    pub port: u16,
    /// Seconds the miner waits before it reconnects (`engine.reconnect_wait_secs`).
    pub wait_secs: u32,
}

/// The statsd sender's settings (`[statsd]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsdSettings {
    pub address: SocketAddr,
    /// What every metric name starts with.
    pub prefix: String,
    pub interval_ms: u64,
}

/// Where the plane is and, for `rediss://`, what to trust and show: every plane connection is
/// opened from this (`plane::connect`). The check reads and parses the PEM files once, so no
/// thread reads a file again when it reconnects. It reads as its URL (`Deref<Target = str>`), so
/// logs and redaction take it where they took the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisTarget {
    /// `redis://host:port[/db]`, `rediss://…` or `unix:///path`. With `sentinels`, its host and
    /// port are not used: the sentinels name the master.
    pub url: String,
    /// Set only with `rediss://` and a CA file or client certificate; `None` with `rediss://`
    /// trusts the roots compiled in (Mozilla's, `webpki-roots`). The sentinels are reached the
    /// same way as the master.
    pub tls: Option<Arc<TlsFiles>>,
    /// `redis.sentinels` and `redis.master_name`: every connection asks them for the master.
    pub sentinels: Option<Arc<Sentinels>>,
}

/// The sentinels that name the fleet's master (`redis.sentinels`, `redis.master_name`,
/// `redis.sentinel_*`); the password never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Sentinels {
    /// Asked in this order; the first that answers names the master.
    pub addrs: Vec<(String, u16)>,
    pub master_name: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for Sentinels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sentinels")
            .field("addrs", &self.addrs)
            .field("master_name", &self.master_name)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| ".."))
            .finish()
    }
}

impl Sentinels {
    /// `host:port` (`[v6]:port` for IPv6) as the sentinels list takes it; `None` when it is not.
    pub fn parse_addr(addr: &str) -> Option<(String, u16)> {
        let (host, port) = addr.trim().rsplit_once(':')?;
        let host = match host.strip_prefix('[') {
            Some(v6) => v6.strip_suffix(']')?,
            None if host.contains(':') => return None,
            None => host,
        };
        let port: u16 = port.parse().ok()?;
        if host.is_empty() || port == 0 || host.contains(['/', '@', ' ']) {
            return None;
        }
        Some((host.to_owned(), port))
    }
}

/// The PEM files of `redis.tls_*`, read and checked; the bytes never print.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// `redis.tls_ca_file`: the path (for errors) and its certificates.
    pub ca: Option<(String, Vec<u8>)>,
    /// `redis.tls_cert_file` and `redis.tls_key_file`, for servers that ask for a client certificate.
    pub client: Option<ClientCert>,
}

/// A client certificate chain and its key, PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCert {
    pub cert_path: String,
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFiles")
            .field("ca", &self.ca.as_ref().map(|(path, _)| path))
            .field("client", &self.client.as_ref().map(|c| &c.cert_path))
            .finish()
    }
}

impl RedisTarget {
    /// A target without CA file or client certificate (tests, and URLs given alone).
    pub fn plain(url: impl Into<String>) -> RedisTarget {
        RedisTarget {
            url: url.into(),
            tls: None,
            sentinels: None,
        }
    }
}

impl From<&str> for RedisTarget {
    fn from(url: &str) -> RedisTarget {
        RedisTarget::plain(url)
    }
}

impl From<String> for RedisTarget {
    fn from(url: String) -> RedisTarget {
        RedisTarget::plain(url)
    }
}

impl std::ops::Deref for RedisTarget {
    type Target = str;
    fn deref(&self) -> &str {
        &self.url
    }
}

/// How a process reaches the plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaneSettings {
    /// The URL and its TLS files; what every plane thread passes to `plane::connect`.
    pub url: RedisTarget,
    /// Every key starts with this and a colon.
    pub prefix: String,
    /// This process's id in the registry and the lease; unique in the fleet.
    pub id: String,
    /// A service hash lives this long without a refresh.
    pub service_ttl: Duration,
    /// The leader's lease; a standby takes over at most this long after the leader died (plus one
    /// of its attempts, a quarter of this).
    pub lease: Duration,
    /// A saved session lives this long after its last save.
    pub session_ttl: Duration,
    /// Signs the job messages a leader publishes and checks those an engine takes.
    pub fleet_key: FleetKey,
}

/// A default process id: host name and pid, unique enough across a fleet's hosts.
pub fn default_id(role: &str) -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer we own.
    let host = if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "host".to_owned()
    };
    format!("{role}-{host}-{}", std::process::id())
}

/// The settings of the share log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareLogSettings {
    pub batch_size: usize,
    pub batch_interval: Duration,
    /// `P:shares` is trimmed to about this many entries.
    pub stream_maxlen: usize,
    pub spool_path: PathBuf,
    pub max_spool_bytes: u64,
    /// Named workers per minute's rollup hash, fleet-wide; the rest go under `OTHER_WORKERS`.
    pub max_rollup_workers: usize,
    /// `share_log.durable_ack`: when set, an accepted submit is answered only once its batch is
    /// in Redis or in the fsynced spool.
    pub durable_ack: Option<DurableAck>,
    /// `share_log.durable_replicas` (with its timeout): replicas a batch must reach to be kept
    /// without the spool; `None` waits for none.
    pub durable_replicas: Option<DurableReplicas>,
}

/// `share_log.durable_replicas`: each batch is kept only once this many replicas hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurableReplicas {
    pub replicas: u32,
    /// `share_log.durable_replicas_timeout_ms`.
    pub timeout: Duration,
}

/// The durable acknowledgement's settings (`share_log.durable_ack = true`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurableAck {
    /// `share_log.durable_commit_ms`: a batch holding an accept goes out this long after it.
    pub commit: Duration,
    /// `share_log.max_held_replies`: a connection reads no more lines while this many wait.
    pub max_held_replies: usize,
}

/// Timing and retry settings of the node job source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodePolicy {
    /// A refreshed job on the same block this often.
    pub refresh: Duration,
    /// `getbestblockhash` this often while the template node has no live ZMQ subscription.
    pub poll_interval: Duration,
    /// `getbestblockhash` this often while it has one.
    pub zmq_check_interval: Duration,
    /// A node that failed is probed again this often.
    pub retry_interval: Duration,
    pub rpc_timeout: Duration,
    pub submit_attempts: u32,
}
