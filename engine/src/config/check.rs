//! The checks: every key of a parsed [`FileConfig`] turned into the typed settings the engine,
//! the plane and the job sources run on, or into a [`ConfigError`] that names the key to fix.
//! `sluice config check FILE` runs exactly this code; the bounds it checks are in `limits.rs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bitcoin::Network;

use super::limits::*;
use super::schema::*;
use super::settings::*;
use super::{invalid, Cidr, ConfigError, FleetKey};
use crate::chain::{CoinbaseConfig, Payout};
use crate::node::client::NodeSettings;
use crate::node::rpc::{Auth, Endpoint};
use crate::session::vardiff::VardiffConfig;
use crate::session::{SessionConfig, SessionLimits};
use crate::share::DuplicateLimits;
use crate::simulated::SimulatedChainConfig;
use crate::units::{Difficulty, ExtranonceSizes};

/// How an operator makes a fleet key, for the errors that ask for one.
const MAKE_FLEET_KEY: &str =
    "make one with `head -c 32 /dev/urandom | xxd -p -c 64 > fleet.key`, give every jobmanager and engine of the fleet the same file, and set redis.fleet_key_file = \"fleet.key\"";

impl FileConfig {
    /// The share log's settings (used by `sluice stratum`).
    pub fn share_log(&self) -> Result<ShareLogSettings, ConfigError> {
        let l = &self.share_log;
        for (key, v) in [
            ("share_log.batch_size", l.batch_size as u64),
            ("share_log.batch_interval_ms", l.batch_interval_ms),
            ("share_log.stream_maxlen", l.stream_maxlen as u64),
            ("share_log.max_spool_bytes", l.max_spool_bytes),
            ("share_log.max_rollup_workers", l.max_rollup_workers as u64),
            ("share_log.durable_commit_ms", l.durable_commit_ms),
            ("share_log.max_held_replies", l.max_held_replies as u64),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        if l.spool_path.is_empty() {
            return Err(invalid("share_log.spool_path", "give a file path"));
        }
        if l.durable_commit_ms > MAX_DURABLE_COMMIT_MS {
            return Err(invalid(
                "share_log.durable_commit_ms",
                format!("at most {MAX_DURABLE_COMMIT_MS}: every held accept waits for it"),
            ));
        }
        if l.durable_replicas > MAX_DURABLE_REPLICAS {
            return Err(invalid(
                "share_log.durable_replicas",
                format!("at most {MAX_DURABLE_REPLICAS}"),
            ));
        }
        if !(1..=MAX_DURABLE_REPLICAS_TIMEOUT_MS).contains(&l.durable_replicas_timeout_ms) {
            return Err(invalid(
                "share_log.durable_replicas_timeout_ms",
                format!(
                    "from 1 to {MAX_DURABLE_REPLICAS_TIMEOUT_MS}: every batch may wait this long"
                ),
            ));
        }
        if l.max_held_replies > MAX_HELD_REPLIES {
            return Err(invalid(
                "share_log.max_held_replies",
                format!("at most {MAX_HELD_REPLIES}"),
            ));
        }
        Ok(ShareLogSettings {
            batch_size: l.batch_size,
            batch_interval: Duration::from_millis(l.batch_interval_ms),
            stream_maxlen: l.stream_maxlen,
            spool_path: l.spool_path.clone().into(),
            max_spool_bytes: l.max_spool_bytes,
            max_rollup_workers: l.max_rollup_workers,
            durable_ack: l.durable_ack.then(|| DurableAck {
                commit: Duration::from_millis(l.durable_commit_ms),
                max_held_replies: l.max_held_replies,
            }),
            durable_replicas: (l.durable_replicas > 0).then(|| DurableReplicas {
                replicas: l.durable_replicas,
                timeout: Duration::from_millis(l.durable_replicas_timeout_ms),
            }),
        })
    }

    /// The plane settings for a role, with the URL the flag gave or the file's.
    pub fn plane(&self, role: &str) -> Result<PlaneSettings, ConfigError> {
        let r = &self.redis;
        let sentinels = self.sentinels()?;
        let url = match (&r.url, &sentinels) {
            (Some(url), _) => url.clone(),
            // The master's address comes from the sentinels; the name stands in for its host.
            (None, Some(s)) => format!("redis://{}", s.master_name),
            (None, None) => {
                return Err(invalid(
                    "redis.url",
                    format!(
                        "`sluice {role}` needs Redis: give --redis redis://HOST:PORT or set redis.url (or redis.sentinels and redis.master_name)"
                    ),
                ))
            }
        };
        if sentinels.is_some() && !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(invalid(
                "redis.url",
                format!(
                    "{:?}: with redis.sentinels the master is reached over TCP: use redis://[USER:PASSWORD@]MASTER_NAME[/DB] or rediss://...",
                    crate::redact::url(&url)
                ),
            ));
        }
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
        if let Err(e) = sluice_layout::check_prefix(&r.prefix) {
            return Err(invalid("redis.prefix", e.to_string()));
        }
        let service_ttl = secs_to_ms("redis.service_ttl_secs", r.service_ttl_secs)?;
        let lease = secs_to_ms("redis.lease_secs", r.lease_secs)?;
        if lease < MIN_LEASE_MS {
            return Err(invalid(
                "redis.lease_secs",
                format!("must be at least {}", MIN_LEASE_MS as f64 / 1000.0),
            ));
        }
        let tls = self.redis_tls(&url)?;
        Ok(PlaneSettings {
            url: RedisTarget {
                url,
                tls,
                sentinels,
            },
            prefix: r.prefix.clone(),
            id: r.id.clone().unwrap_or_else(|| default_id(role)),
            service_ttl: Duration::from_millis(service_ttl),
            lease: Duration::from_millis(lease),
            session_ttl: Duration::from_millis(secs_to_ms(
                "redis.session_ttl_secs",
                r.session_ttl_secs,
            )?),
            fleet_key: self.fleet_key(role)?,
        })
    }

    /// `redis.sentinels` with `redis.master_name` (both or neither), each address checked.
    fn sentinels(&self) -> Result<Option<Arc<Sentinels>>, ConfigError> {
        let r = &self.redis;
        let master_name = match (r.sentinels.is_empty(), &r.master_name) {
            (true, None) => {
                for (key, set) in [
                    ("redis.sentinel_username", r.sentinel_username.is_some()),
                    ("redis.sentinel_password", r.sentinel_password.is_some()),
                ] {
                    if set {
                        return Err(invalid(
                            key,
                            "only used with redis.sentinels: set them or remove the key",
                        ));
                    }
                }
                return Ok(None);
            }
            (true, Some(_)) => {
                return Err(invalid(
                    "redis.sentinels",
                    "redis.master_name needs the sentinels that know it: set redis.sentinels = [\"HOST:26379\", ...] or remove redis.master_name",
                ))
            }
            (false, None) => {
                return Err(invalid(
                    "redis.master_name",
                    "redis.sentinels needs the master's name, as in sentinel.conf's `sentinel monitor NAME HOST PORT QUORUM`: set redis.master_name",
                ))
            }
            (false, Some(name)) => name,
        };
        if master_name.is_empty() || master_name.contains([' ', '\n', '/', '@', ':']) {
            return Err(invalid(
                "redis.master_name",
                format!("{master_name:?} is not a master name: one word, as in sentinel.conf"),
            ));
        }
        let addrs = r
            .sentinels
            .iter()
            .map(|a| {
                Sentinels::parse_addr(a).ok_or_else(|| {
                    invalid(
                        "redis.sentinels",
                        format!("{a:?} is not a sentinel address: use HOST:PORT (e.g. \"10.0.1.5:26379\", \"[::1]:26379\")"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Arc::new(Sentinels {
            addrs,
            master_name: master_name.clone(),
            username: r.sentinel_username.clone(),
            password: r.sentinel_password.as_ref().map(|p| p.0.clone()),
        })))
    }

    /// The files of `redis.tls_*`, read and parsed: a file that would be ignored (a URL without
    /// TLS), is unreadable or holds no PEM of its kind is an error naming its key.
    fn redis_tls(&self, url: &str) -> Result<Option<Arc<TlsFiles>>, ConfigError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};

        let r = &self.redis;
        let keys = [
            ("redis.tls_ca_file", &r.tls_ca_file),
            ("redis.tls_cert_file", &r.tls_cert_file),
            ("redis.tls_key_file", &r.tls_key_file),
        ];
        let Some((first, _)) = keys.iter().find(|(_, v)| v.is_some()) else {
            return Ok(None);
        };
        if !url.starts_with("rediss://") {
            return Err(invalid(
                *first,
                format!(
                    "only read for a rediss:// URL, and redis.url is {:?}: use rediss:// or remove the key",
                    crate::redact::url(url)
                ),
            ));
        }
        let read = |key: &str, path: &str| {
            std::fs::read(path).map_err(|e| invalid(key, format!("cannot read {path:?}: {e}")))
        };
        let certs = |key: &str, path: &str, pem: &[u8]| {
            let parsed: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem).collect();
            match parsed {
                Ok(list) if !list.is_empty() => Ok(list),
                Ok(_) => Err(invalid(
                    key,
                    format!("{path:?} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"),
                )),
                Err(e) => Err(invalid(
                    key,
                    format!("{path:?} is not PEM certificates: {e}"),
                )),
            }
        };
        let ca = match &r.tls_ca_file {
            None => None,
            Some(path) => {
                let pem = read("redis.tls_ca_file", path)?;
                let mut roots = rustls::RootCertStore::empty();
                for cert in certs("redis.tls_ca_file", path, &pem)? {
                    roots.add(cert).map_err(|e| {
                        invalid(
                            "redis.tls_ca_file",
                            format!("{path:?}: not a CA certificate: {e}"),
                        )
                    })?;
                }
                Some((path.clone(), pem))
            }
        };
        let client = match (&r.tls_cert_file, &r.tls_key_file) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid(
                    "redis.tls_key_file",
                    "redis.tls_cert_file needs its private key: set redis.tls_key_file",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "redis.tls_cert_file",
                    "redis.tls_key_file needs its certificate: set redis.tls_cert_file",
                ))
            }
            (Some(cert_path), Some(key_path)) => {
                let cert = read("redis.tls_cert_file", cert_path)?;
                certs("redis.tls_cert_file", cert_path, &cert)?;
                let key = read("redis.tls_key_file", key_path)?;
                PrivateKeyDer::from_pem_slice(&key).map_err(|e| {
                    invalid(
                        "redis.tls_key_file",
                        format!("{key_path:?} holds no PEM private key: {e}"),
                    )
                })?;
                Some(ClientCert {
                    cert_path: cert_path.clone(),
                    cert,
                    key,
                })
            }
        };
        Ok(Some(Arc::new(TlsFiles { ca, client })))
    }

    /// The fleet key from `redis.fleet_key_file` or `redis.fleet_key` (exactly one of them).
    fn fleet_key(&self, role: &str) -> Result<FleetKey, ConfigError> {
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
        FleetKey::new(trimmed).map_err(|e| {
            invalid(
                key,
                format!("{e} (after trimming whitespace); {MAKE_FLEET_KEY}"),
            )
        })
    }
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
        .map(|(j, text)| {
            Cidr::parse(text).map_err(|e| invalid(format!("{key}[{j}]"), e.to_string()))
        })
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
            .map(crate::units::VersionMask)
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
            tx_version: COINBASE_TX_VERSION,
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
        if threads > MAX_THREADS {
            return Err(invalid("engine.threads", format!("at most {MAX_THREADS}")));
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
                Some(ReconnectTo {
                    host: host.to_owned(),
                    port,
                    wait_secs: self.engine.reconnect_wait_secs,
                })
            }
        };
        let statsd = match &self.statsd.address {
            None => None,
            Some(a) => Some(StatsdSettings {
                address: address("statsd.address", a)?,
                prefix: self.statsd.prefix.clone(),
                interval_ms: secs_to_ms("statsd.interval_secs", self.statsd.interval_secs)?,
            }),
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
