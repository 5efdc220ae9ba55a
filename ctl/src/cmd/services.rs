//! `services ls` and `engine ls`: the live processes of the fleet, from the registry's index
//! `P:services` (read by score, never by listing keys) and each one's hash `P:svc:ID`.

use std::collections::HashMap;

use serde_json::{json, Value};
use sluice_layout::registry::{self, field};

use super::Ctx;
use crate::error::Result;
use crate::format;
use crate::output::{self, Align, Table};

/// The roles a Sluice process registers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    Stratum,
    Jobmanager,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Stratum => registry::ROLE_STRATUM,
            Role::Jobmanager => registry::ROLE_JOBMANAGER,
        }
    }
}

/// One live service as its last heartbeat described it.
#[derive(Debug, Clone)]
pub struct Service {
    pub id: String,
    pub role: String,
    pub address: String,
    pub version: String,
    pub state: String,
    pub started_ms: Option<u64>,
    pub heartbeat_ms: Option<u64>,
    /// When the registry forgets it unless it heartbeats again (its score in `P:services`).
    pub expires_ms: u64,
    pub connections: Option<u64>,
    pub hashrate: Option<f64>,
    pub shares_per_second: Option<f64>,
}

impl Service {
    fn from_hash(id: String, expires_ms: u64, mut h: HashMap<String, String>) -> Service {
        let mut text = |k: &str| h.remove(k).unwrap_or_default();
        let (role, address, version, state) = (
            text(field::ROLE),
            text(field::ADDRESS),
            text(field::VERSION),
            text(field::STATE),
        );
        let number = |k: &str| h.get(k).and_then(|v| v.parse::<u64>().ok());
        let float = |k: &str| h.get(k).and_then(|v| v.parse::<f64>().ok());
        Service {
            started_ms: number(field::STARTED_MS),
            heartbeat_ms: number(field::HEARTBEAT_MS),
            connections: number(field::CONNECTIONS),
            hashrate: float(field::HASHRATE),
            shares_per_second: float(field::SHARES_PER_SECOND),
            id,
            role,
            address,
            version,
            state,
            expires_ms,
        }
    }

    pub fn to_json(&self, now_ms: u64) -> Value {
        json!({
            "id": self.id,
            "role": self.role,
            "address": self.address,
            "version": self.version,
            "state": self.state,
            "started_ms": self.started_ms,
            "uptime_ms": self.started_ms.map(|s| now_ms.saturating_sub(s)),
            "heartbeat_ms": self.heartbeat_ms,
            "heartbeat_age_ms": self.heartbeat_ms.map(|h| now_ms.saturating_sub(h)),
            "expires_ms": self.expires_ms,
            "connections": self.connections,
            "hashrate": self.hashrate,
            "shares_per_second": self.shares_per_second,
        })
    }
}

/// The services whose registration has not expired, by role then id.
pub fn live(ctx: &mut Ctx, now_ms: u64, role: Option<Role>) -> Result<Vec<Service>> {
    // Exclusive: the fleet prunes scores up to and including now, so a score equal to now is dead.
    let index: Vec<(String, f64)> = ctx.redis.query(
        redis::cmd("ZRANGEBYSCORE")
            .arg(ctx.keys.services())
            .arg(format!("({now_ms}"))
            .arg("+inf")
            .arg("WITHSCORES"),
    )?;
    if index.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for (id, _) in &index {
        pipe.cmd("HGETALL").arg(ctx.keys.service(id));
    }
    let hashes: Vec<HashMap<String, String>> = ctx.redis.query_pipe(&pipe)?;
    let mut services: Vec<Service> = index
        .into_iter()
        .zip(hashes)
        // An empty hash is a service that stopped between the two reads: it is gone.
        .filter(|(_, h)| !h.is_empty())
        .map(|((id, score), h)| Service::from_hash(id, score as u64, h))
        .filter(|s| role.is_none_or(|r| s.role == r.as_str()))
        .collect();
    services.sort_by(|a, b| (&a.role, &a.id).cmp(&(&b.role, &b.id)));
    Ok(services)
}

/// One service by id, if its registration has not expired (the same test as [`live`]'s).
pub fn one(ctx: &mut Ctx, now_ms: u64, id: &str) -> Result<Option<Service>> {
    let (score, hash): (Option<f64>, HashMap<String, String>) = ctx.redis.query_pipe(
        redis::pipe()
            .cmd("ZSCORE")
            .arg(ctx.keys.services())
            .arg(id)
            .cmd("HGETALL")
            .arg(ctx.keys.service(id)),
    )?;
    Ok(match score {
        Some(score) if score > now_ms as f64 && !hash.is_empty() => {
            Some(Service::from_hash(id.to_owned(), score as u64, hash))
        }
        _ => None,
    })
}

/// The table people read. The jobmanager listing passes the lease holder: the `state` a service
/// reports is as old as its last heartbeat, the lease is what decides who leads.
pub fn table(services: &[Service], now_ms: u64, lease_holder: Option<&str>) -> Table {
    let mut columns = vec![
        ("ID", Align::Left),
        ("ROLE", Align::Left),
        ("ADDRESS", Align::Left),
        ("VERSION", Align::Left),
        ("UPTIME", Align::Right),
        ("STATE", Align::Left),
        ("CONNS", Align::Right),
        ("HASHRATE", Align::Right),
        ("HEARTBEAT", Align::Right),
    ];
    if lease_holder.is_some() {
        columns.push(("LEASE", Align::Left));
    }
    let mut t = Table::new(&columns);
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.to_owned()
        }
    };
    for s in services {
        let mut row = vec![
            s.id.clone(),
            or_dash(&s.role),
            or_dash(&s.address),
            or_dash(&s.version),
            s.started_ms.map_or("-".into(), |v| {
                format::duration_ms(now_ms.saturating_sub(v))
            }),
            or_dash(&s.state),
            s.connections.map_or("-".into(), |c| c.to_string()),
            s.hashrate.map_or("-".into(), format::hashrate),
            s.heartbeat_ms.map_or("-".into(), |h| {
                format!("{} ago", format::duration_ms(now_ms.saturating_sub(h)))
            }),
        ];
        if let Some(holder) = lease_holder {
            row.push(if s.id == holder { "held" } else { "" }.to_owned());
        }
        t.row(row);
    }
    t
}

/// `services ls [--role R]` and, with `key = "engines"`, `engine ls`.
pub fn ls(ctx: &mut Ctx, role: Option<Role>, key: &str) -> Result<()> {
    let now = ctx.redis.now_ms()?;
    let services = live(ctx, now, role)?;
    if ctx.json {
        let list: Vec<Value> = services.iter().map(|s| s.to_json(now)).collect();
        return output::json(&json!({
            "prefix": ctx.keys.prefix(),
            "now_ms": now,
            key: list,
        }));
    }
    if services.is_empty() {
        let what = role.map_or("services".to_owned(), |r| {
            format!("{} services", r.as_str())
        });
        return output::print(&format!(
            "no live {what} under prefix {:?}\n",
            ctx.keys.prefix()
        ));
    }
    output::print(&table(&services, now, None).render())
}
