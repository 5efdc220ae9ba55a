//! Fleet-wide sessions: a miner that reconnects with its session id, to any engine, resumes with
//! the same extranonce1, difficulty, workers and version mask.
//!
//! Two parts make that safe:
//! - **Engine slots.** Each engine leases a slot `P:slot:N` (N < 256) and puts it in the first byte
//!   of every extranonce1 it hands out, so extranonce1 values are unique across the fleet, not
//!   just within one engine; the session id is the extranonce1's value in hex.
//! - **The session store.** Engines write `P:session:ID` (a hash with a TTL, indexed by the sorted
//!   set `P:sessions`) when a miner authorizes, when its difficulty changes and when it leaves;
//!   the engine a miner reconnects to reads it before answering the subscribe.
//!
//! Cores never touch Redis: they ask the store's thread over a bounded channel and wait for the
//! answer asynchronously (with a deadline: without an answer the miner gets a new session).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::hex;
use crate::plane::{connect, connected, pause, Keys, PlaneSettings};
use crate::server::now_ms;
use crate::session::SavedSession;
use crate::units::{Difficulty, Extranonce1};

/// Engine slots: one byte of extranonce1.
pub const MAX_SLOTS: u32 = 256;

/// Requests queued for the store's thread; a full queue refuses (lookups give a new session,
/// saves are dropped and the next save repeats them).
pub const STORE_QUEUE: usize = 16_384;

/// The longest session id looked up (an extranonce1 of 8 bytes in hex).
const MAX_SESSION_ID: usize = 16;

/// Takes the first free slot.
const ACQUIRE_SLOT: &str = r#"
for n = 0, tonumber(ARGV[3]) - 1 do
  local key = ARGV[1] .. ':slot:' .. n
  local holder = redis.call('GET', key)
  if holder == ARGV[2] or (not holder and redis.call('SET', key, ARGV[2], 'NX', 'PX', ARGV[4])) then
    redis.call('PEXPIRE', key, ARGV[4])
    return n
  end
end
return -1
"#;

/// Renews the slot if this engine still holds it.
const RENEW_SLOT: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#;

/// Leases an engine slot and keeps it (renewed every third of the TTL) until `stop`.
pub fn lease_slot(
    settings: &PlaneSettings,
    stop: Arc<AtomicBool>,
) -> Result<(u8, JoinHandle<()>), String> {
    let ttl = settings.service_ttl.as_millis() as u64;
    let mut con = connect(&settings.url).map_err(|e| format!("redis.url: {e}"))?;
    let slot: i64 = redis::Script::new(ACQUIRE_SLOT)
        .arg(&settings.prefix)
        .arg(&settings.id)
        .arg(MAX_SLOTS)
        .arg(ttl)
        .invoke(&mut con)
        .map_err(|e| format!("cannot lease an engine slot: {e}"))?;
    if slot < 0 {
        return Err(format!(
            "all {MAX_SLOTS} engine slots under prefix {:?} are leased: too many engines, or stale ones (they expire after redis.service_ttl_secs)",
            settings.prefix
        ));
    }
    let key = Keys::new(&settings.prefix).slot(slot as u32);
    let (url, id) = (settings.url.clone(), settings.id.clone());
    let handle = std::thread::Builder::new()
        .name("sluice-slot".into())
        .spawn(move || {
            let renew = redis::Script::new(RENEW_SLOT);
            let mut con = Some(con);
            let every = Duration::from_millis(ttl / 3);
            while pause(every, &stop) {
                if let Some(c) = connected(&mut con, &url) {
                    match renew.key(&key).arg(&id).arg(ttl).invoke::<i64>(c) {
                        Ok(1) => {}
                        Ok(_) => tracing::error!(%key, "the engine slot was lost (expired while Redis was away?): extranonce1 values may repeat across engines"),
                        Err(_) => con = None,
                    }
                }
            }
            if let Some(c) = con.as_mut() {
                let _: Result<i64, _> = redis::cmd("DEL").arg(&key).query(c);
            }
        })
        .map_err(|e| e.to_string())?;
    Ok((slot as u8, handle))
}

enum Request {
    Lookup {
        id: String,
        reply: tokio::sync::oneshot::Sender<Option<SavedSession>>,
    },
    Save {
        id: String,
        saved: SavedSession,
    },
}

/// The cores' handle on the session store.
pub struct SessionStore {
    requests: Sender<Request>,
}

impl SessionStore {
    /// Asks for a saved session; `None` when there is none, the id is malformed, or the store is
    /// busy or away.
    pub async fn lookup(&self, id: &str, deadline: Duration) -> Option<SavedSession> {
        if id.is_empty() || id.len() > MAX_SESSION_ID || !id.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return None;
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.requests
            .try_send(Request::Lookup {
                id: id.to_ascii_lowercase(),
                reply,
            })
            .ok()?;
        tokio::time::timeout(deadline, answer).await.ok()?.ok()?
    }

    /// Saves a session (dropped when the queue is full: the next save carries the same state).
    pub fn save(&self, id: String, saved: SavedSession) {
        let _ = self.requests.try_send(Request::Save { id, saved });
    }
}

fn load(
    con: &mut redis::Connection,
    prefix: &str,
    id: &str,
) -> redis::RedisResult<Option<SavedSession>> {
    let fields: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg(Keys::new(prefix).session(id))
        .query(con)?;
    let parse = || -> Option<SavedSession> {
        let mut en1 = vec![0u8; fields.get("extranonce1")?.len() / 2];
        hex::decode_into(fields.get("extranonce1")?.as_bytes(), &mut en1).ok()?;
        Some(SavedSession {
            extranonce1: Extranonce1::new(&en1)?,
            difficulty: Difficulty::new(fields.get("difficulty")?.parse().ok()?).ok()?,
            version_mask: u32::from_str_radix(fields.get("version_mask")?, 16).ok()?,
            workers: serde_json::from_str(fields.get("workers")?).ok()?,
        })
    };
    Ok(if fields.is_empty() { None } else { parse() })
}

fn store(
    con: &mut redis::Connection,
    settings: &PlaneSettings,
    ttl: Duration,
    id: &str,
    saved: &SavedSession,
) -> redis::RedisResult<()> {
    let keys = Keys::new(&settings.prefix);
    let (key, index) = (keys.session(id), keys.sessions());
    let now = now_ms();
    let ttl_ms = ttl.as_millis() as u64;
    redis::pipe()
        .atomic()
        .cmd("HSET")
        .arg(&key)
        .arg("extranonce1")
        .arg(hex::encode(saved.extranonce1.as_bytes()))
        .arg("difficulty")
        .arg(saved.difficulty.get())
        .arg("version_mask")
        .arg(format!("{:08x}", saved.version_mask))
        .arg("workers")
        .arg(serde_json::to_string(&saved.workers).expect("strings serialize"))
        .arg("engine")
        .arg(&settings.id)
        .arg("updated_ms")
        .arg(now)
        .ignore()
        .cmd("PEXPIRE")
        .arg(&key)
        .arg(ttl_ms)
        .ignore()
        .cmd("ZADD")
        .arg(&index)
        .arg(now + ttl_ms)
        .arg(id)
        .ignore()
        .cmd("ZREMRANGEBYSCORE")
        .arg(&index)
        .arg("-inf")
        .arg(now)
        .ignore()
        .query(con)
}

/// Starts the store's thread; sessions live `ttl` after their last save.
pub fn spawn_store(
    settings: PlaneSettings,
    ttl: Duration,
    stop: Arc<AtomicBool>,
) -> std::io::Result<(Arc<SessionStore>, JoinHandle<()>)> {
    let (tx, rx): (Sender<Request>, Receiver<Request>) = crossbeam_channel::bounded(STORE_QUEUE);
    let handle = std::thread::Builder::new()
        .name("sluice-sessions".into())
        .spawn(move || {
            let mut con = None;
            while !stop.load(Ordering::Relaxed) {
                let request = match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(r) => r,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                };
                let Some(c) = connected(&mut con, &settings.url) else {
                    continue;
                };
                let failed = match request {
                    Request::Lookup { id, reply } => match load(c, &settings.prefix, &id) {
                        Ok(found) => {
                            let _ = reply.send(found);
                            false
                        }
                        Err(_) => true,
                    },
                    Request::Save { id, saved } => store(c, &settings, ttl, &id, &saved).is_err(),
                };
                if failed {
                    con = None;
                }
            }
        })?;
    Ok((Arc::new(SessionStore { requests: tx }), handle))
}
