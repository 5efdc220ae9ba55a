//! Service discovery: every process keeps a hash `P:svc:ID` (id, role, address, version, start time,
//! load, accepted shares its share log lost) alive under a TTL and its id in the sorted set `P:services`, scored by when it expires. A
//! process that stops refreshing disappears on its own; listing reads the index by score, never
//! `KEYS`. Each heartbeat also prunes expired ids from the index, so it stays as small as the fleet.
//! The hash's fields are `sluice_layout::registry`'s, which sluicectl reads. The heartbeat is also
//! the process's Redis health probe: each beat's outcome and round trip go to a
//! [`RedisHealth`] (`sluice_redis_up`, `sluice_redis_roundtrip_seconds`), so watching Redis costs
//! no call of its own.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crate::clock::UnixMillis;
use crate::metrics::RedisHealth;
use crate::plane::{connect, spawn_loop, Backoff, Keys, PlaneLoop, PlaneSettings, StepError};
use sluice_layout::registry::{ServiceEntry, Value};

/// What a process says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    pub role: String,
    /// Where it serves (the stratum listeners, or empty for a jobmanager).
    pub address: String,
    pub version: String,
    pub started_ms: u64,
}

/// Load figures refreshed with every heartbeat.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Load {
    pub connections: u64,
    pub hashrate: f64,
    pub shares_per_second: f64,
    /// Role-specific state, e.g. `leader` or `standby`.
    pub state: String,
    /// Accepted shares the share log lost since this process started (`shares_dropped` in the
    /// hash): each one an error, which `sluicectl stats` shows. Always 0 for a jobmanager.
    pub shares_dropped: u64,
}

/// One heartbeat: the hash, its TTL and the index entry, in one transaction.
pub fn heartbeat(
    con: &mut redis::Connection,
    keys: &Keys,
    settings: &PlaneSettings,
    info: &ServiceInfo,
    load: &Load,
) -> redis::RedisResult<()> {
    let now = UnixMillis::now().as_millis();
    let ttl = settings.service_ttl.as_millis() as u64;
    let key = keys.service(&settings.id);
    let entry = ServiceEntry {
        id: &settings.id,
        role: &info.role,
        address: &info.address,
        version: &info.version,
        started_ms: info.started_ms,
        heartbeat_ms: now,
        connections: load.connections,
        hashrate: load.hashrate,
        shares_per_second: load.shares_per_second,
        state: &load.state,
        shares_dropped: load.shares_dropped,
    };
    let mut pipe = redis::pipe();
    pipe.atomic().cmd("HSET").arg(&key);
    for (name, value) in entry.fields() {
        pipe.arg(name);
        // Typed, so numbers reach Redis in the client's encoding, as they always have.
        match value {
            Value::Text(t) => pipe.arg(t),
            Value::Int(n) => pipe.arg(n),
            Value::Float(f) => pipe.arg(f),
        };
    }
    pipe.ignore()
        .cmd("PEXPIRE")
        .arg(&key)
        .arg(ttl)
        .ignore()
        .cmd("ZADD")
        .arg(keys.services())
        .arg(now + ttl)
        .arg(&settings.id)
        .ignore()
        .cmd("ZREMRANGEBYSCORE")
        .arg(keys.services())
        .arg("-inf")
        .arg(now)
        .ignore()
        // The layout version, if the prefix is new: a Redis restarted empty under a running
        // fleet gets it back within a beat (sluicectl refuses a prefix without it). The
        // processes checked it at start; a different version cannot appear here (NX).
        .cmd("SET")
        .arg(keys.layout())
        .arg(crate::plane::keys::LAYOUT_VERSION)
        .arg("NX")
        .ignore()
        .query(con)
}

/// Removes this process from the registry (a clean stop).
pub fn deregister(con: &mut redis::Connection, keys: &Keys, id: &str) -> redis::RedisResult<()> {
    redis::pipe()
        .cmd("DEL")
        .arg(keys.service(id))
        .ignore()
        .cmd("ZREM")
        .arg(keys.services())
        .arg(id)
        .ignore()
        .query(con)
}

/// Registers at once (so a process is listed by the time it says it is ready), then heartbeats
/// every third of the TTL on a thread of its own until `stop`; then deregisters. Every beat's
/// outcome goes to `health`.
pub fn spawn(
    settings: PlaneSettings,
    info: ServiceInfo,
    load: impl FnMut() -> Load + Send + 'static,
    health: Arc<RedisHealth>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    let every = settings.service_ttl / 3;
    let url = settings.url.clone();
    let mut body = Heartbeat {
        keys: Keys::new(&settings.prefix),
        settings,
        info,
        load,
        every,
        registered: false,
        health,
    };
    match connect(&url).ok().as_mut() {
        Some(c) => match body.step(c, &stop) {
            Ok(_) => body.registered = true,
            Err(e) => body.failed(&e),
        },
        None => body.failed(&StepError::Unreachable),
    }
    spawn_loop("sluice-registry", url, Backoff::fixed(every), stop, body)
}

struct Heartbeat<L> {
    settings: PlaneSettings,
    keys: Keys,
    info: ServiceInfo,
    load: L,
    every: std::time::Duration,
    /// The registration before the thread started worked: its first beat waits a period.
    registered: bool,
    health: Arc<RedisHealth>,
}

impl<L: FnMut() -> Load + Send + 'static> PlaneLoop for Heartbeat<L> {
    fn step(
        &mut self,
        c: &mut redis::Connection,
        _stop: &AtomicBool,
    ) -> Result<std::time::Duration, StepError> {
        if std::mem::take(&mut self.registered) {
            return Ok(self.every);
        }
        let load = (self.load)();
        let started = Instant::now();
        heartbeat(c, &self.keys, &self.settings, &self.info, &load)?;
        self.health.ok(started.elapsed());
        Ok(self.every)
    }

    fn failed(&mut self, error: &StepError) {
        self.health.failed();
        // Redis away is the registry's normal outage: the TTL says so; only a failed beat is news.
        if !matches!(error, StepError::Unreachable) {
            tracing::warn!(error = %error, "registry heartbeat failed");
        }
    }

    fn finish(&mut self, con: Option<&mut redis::Connection>) {
        if let Some(c) = con {
            let _ = deregister(c, &self.keys, &self.settings.id);
        }
    }
}
