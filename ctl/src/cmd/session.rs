//! `session ls`, `session show` and `session kick`: the miners' sessions the engines save in
//! `P:session:ID` (on authorize, on difficulty changes at most every few seconds, and released on
//! disconnect), indexed by the sorted set `P:sessions` (id → expiry in ms). A session outlives its
//! connection by the session TTL: `state` says whether a connection holds it (`held`) or a miner
//! may resume it (`released`). The session's exported state (`state`, JSON, with its duplicate
//! sets) is the engines'; this reads only the plain fields beside it ([`sluice_layout::session`]).

use std::collections::HashMap;

use serde_json::{json, Value};
use sluice_layout::session::{field, RELEASED};

use super::control::{self, Timeout};
use super::Ctx;
use crate::error::{CtlError, Result};
use crate::format;
use crate::output::{self, Align, Table};

/// HGETALLs sent per pipeline: a fleet can hold many thousands of sessions.
const PIPELINE: usize = 1000;

/// Workers named in a table cell before the rest are counted.
const WORKERS_SHOWN: usize = 3;

/// One saved session, as the engine that saved it last wrote it.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub engine: String,
    /// The workers authorized on it; `Err` holds the field's text when it is not a JSON array
    /// of strings (shown as it is rather than lost).
    pub workers: std::result::Result<Vec<String>, String>,
    pub difficulty: Option<f64>,
    pub extranonce1: String,
    pub version_mask: String,
    pub updated_ms: Option<u64>,
    /// Whether a connection holds it now (`false`: released, a miner may resume it).
    pub held: bool,
    /// Its score in `P:sessions`; None when the index no longer holds it.
    pub expires_ms: Option<u64>,
}

impl Session {
    fn from_hash(id: String, expires_ms: Option<u64>, mut h: HashMap<String, String>) -> Session {
        let workers = h.remove(field::WORKERS).unwrap_or_default();
        Session {
            workers: serde_json::from_str::<Vec<String>>(&workers).map_err(|_| workers),
            difficulty: h.get(field::DIFFICULTY).and_then(|v| v.parse().ok()),
            updated_ms: h.get(field::UPDATED_MS).and_then(|v| v.parse().ok()),
            held: h.get(field::RELEASED).map(String::as_str) != Some(RELEASED),
            engine: h.remove(field::ENGINE).unwrap_or_default(),
            extranonce1: h.remove(field::EXTRANONCE1).unwrap_or_default(),
            version_mask: h.remove(field::VERSION_MASK).unwrap_or_default(),
            id,
            expires_ms,
        }
    }

    fn has_worker(&self, worker: &str) -> bool {
        self.workers
            .as_ref()
            .is_ok_and(|ws| ws.iter().any(|w| w == worker))
    }

    fn to_json(&self, now_ms: u64) -> Value {
        json!({
            "id": self.id,
            "engine": self.engine,
            "workers": match &self.workers {
                Ok(ws) => json!(ws),
                Err(raw) => json!(raw),
            },
            "difficulty": self.difficulty,
            "extranonce1": self.extranonce1,
            "version_mask": self.version_mask,
            "state": if self.held { "held" } else { "released" },
            "updated_ms": self.updated_ms,
            "updated_age_ms": self.updated_ms.map(|u| now_ms.saturating_sub(u)),
            "expires_ms": self.expires_ms,
            "expires_in_ms": self.expires_ms.map(|e| e.saturating_sub(now_ms)),
        })
    }

    fn workers_cell(&self, all: bool) -> String {
        match &self.workers {
            Ok(ws) if ws.is_empty() => "-".to_owned(),
            Ok(ws) if all || ws.len() <= WORKERS_SHOWN => ws.join(","),
            Ok(ws) => format!(
                "{} (+{} more)",
                ws[..WORKERS_SHOWN].join(","),
                ws.len() - WORKERS_SHOWN
            ),
            Err(raw) => raw.clone(),
        }
    }

    fn cells(&self, now_ms: u64, all_workers: bool) -> Vec<String> {
        let or_dash = |s: &str| {
            if s.is_empty() {
                "-".to_owned()
            } else {
                s.to_owned()
            }
        };
        vec![
            self.id.clone(),
            or_dash(&self.engine),
            self.workers_cell(all_workers),
            self.difficulty.map_or("-".into(), format::difficulty),
            or_dash(&self.extranonce1),
            or_dash(&self.version_mask),
            self.updated_ms.map_or("-".into(), |u| {
                format!("{} ago", format::duration_ms(now_ms.saturating_sub(u)))
            }),
            self.expires_ms.map_or("-".into(), |e| {
                if e > now_ms {
                    format::duration_ms(e - now_ms)
                } else {
                    "expired".to_owned()
                }
            }),
        ]
    }
}

const COLUMNS: [(&str, Align); 8] = [
    ("ID", Align::Left),
    ("ENGINE", Align::Left),
    ("WORKERS", Align::Left),
    ("DIFFICULTY", Align::Right),
    ("EXTRANONCE1", Align::Left),
    ("VERSION MASK", Align::Left),
    ("UPDATED", Align::Right),
    ("EXPIRES IN", Align::Right),
];

/// Session ids are hex as `mining.subscribe` gave them; engines save them in lower case.
fn normalize(id: &str) -> String {
    id.trim().to_ascii_lowercase()
}

/// The sessions whose expiry is after now, filtered, by engine then extranonce1.
fn live(
    ctx: &mut Ctx,
    now_ms: u64,
    engine: Option<&str>,
    worker: Option<&str>,
) -> Result<Vec<Session>> {
    // Exclusive, as for services: the engines prune scores up to and including their now.
    let index: Vec<(String, f64)> = ctx.redis.query(
        redis::cmd("ZRANGEBYSCORE")
            .arg(ctx.keys.sessions())
            .arg(format!("({now_ms}"))
            .arg("+inf")
            .arg("WITHSCORES"),
    )?;
    let mut sessions = Vec::with_capacity(index.len());
    for chunk in index.chunks(PIPELINE) {
        let mut pipe = redis::pipe();
        for (id, _) in chunk {
            pipe.cmd("HGETALL").arg(ctx.keys.session(id));
        }
        let hashes: Vec<HashMap<String, String>> = ctx.redis.query_pipe(&pipe)?;
        sessions.extend(
            chunk
                .iter()
                .zip(hashes)
                // An empty hash expired between the two reads: it is gone.
                .filter(|(_, h)| !h.is_empty())
                .map(|((id, score), h)| Session::from_hash(id.clone(), Some(*score as u64), h))
                .filter(|s| engine.is_none_or(|e| s.engine == e))
                .filter(|s| worker.is_none_or(|w| s.has_worker(w))),
        );
    }
    sessions.sort_by(|a, b| {
        (&a.engine, a.extranonce1.len(), &a.extranonce1, &a.id).cmp(&(
            &b.engine,
            b.extranonce1.len(),
            &b.extranonce1,
            &b.id,
        ))
    });
    Ok(sessions)
}

/// One session, live or not yet removed; None when Redis holds no hash for it.
fn one(ctx: &mut Ctx, id: &str) -> Result<Option<Session>> {
    let (hash, score): (HashMap<String, String>, Option<f64>) = ctx.redis.query_pipe(
        redis::pipe()
            .cmd("HGETALL")
            .arg(ctx.keys.session(id))
            .cmd("ZSCORE")
            .arg(ctx.keys.sessions())
            .arg(id),
    )?;
    Ok(
        (!hash.is_empty())
            .then(|| Session::from_hash(id.to_owned(), score.map(|s| s as u64), hash)),
    )
}

fn not_found(ctx: &Ctx, id: &str) -> CtlError {
    CtlError::Usage(format!(
        "no session {id:?} under prefix {:?}: it expired or never existed (see sluicectl session ls)",
        ctx.keys.prefix()
    ))
}

/// `session ls [--engine ID] [--worker W]`.
pub fn ls(ctx: &mut Ctx, engine: Option<&str>, worker: Option<&str>) -> Result<()> {
    let now = ctx.redis.now_ms()?;
    let sessions = live(ctx, now, engine, worker)?;
    if ctx.json {
        let list: Vec<Value> = sessions.iter().map(|s| s.to_json(now)).collect();
        return output::json(&json!({
            "prefix": ctx.keys.prefix(),
            "now_ms": now,
            "sessions": list,
        }));
    }
    if sessions.is_empty() {
        let filtered = if engine.is_some() || worker.is_some() {
            " matching the filters"
        } else {
            ""
        };
        return output::print(&format!(
            "no live sessions{filtered} under prefix {:?}\n",
            ctx.keys.prefix()
        ));
    }
    let mut t = Table::new(&COLUMNS);
    for s in &sessions {
        t.row(s.cells(now, false));
    }
    output::print(&t.render())
}

/// `session show ID`: one session, every worker named.
pub fn show(ctx: &mut Ctx, id: &str) -> Result<()> {
    let id = normalize(id);
    let now = ctx.redis.now_ms()?;
    let session = one(ctx, &id)?.ok_or_else(|| not_found(ctx, &id))?;
    if ctx.json {
        return output::json(&json!({
            "prefix": ctx.keys.prefix(),
            "now_ms": now,
            "session": session.to_json(now),
        }));
    }
    let mut t = Table::new(&[("", Align::Left), ("", Align::Left)]);
    let mut cells = session.cells(now, true);
    if let Some(u) = session.updated_ms {
        cells[6] = format!("{} ({})", format::utc_ms(u), cells[6]);
    }
    for ((name, _), value) in COLUMNS.iter().zip(cells) {
        t.row(vec![name.to_ascii_lowercase(), value]);
    }
    output::print(&t.render_rows())
}

/// `session kick ID`: asks the engine that saved the session last to close its connections.
pub fn kick(ctx: &mut Ctx, id: &str, timeout: Timeout) -> Result<()> {
    let id = normalize(id);
    let session = one(ctx, &id)?.ok_or_else(|| not_found(ctx, &id))?;
    if session.engine.is_empty() {
        return Err(CtlError::Usage(format!(
            "session {id:?} names no engine: nothing to ask"
        )));
    }
    control::kick(ctx, &session.engine, &id, timeout)
}
