//! Fleet-wide sessions: a miner that reconnects with its session id, to any engine, resumes with
//! the same extranonce1, difficulty, workers, version mask and duplicate sets, and no extranonce1
//! is ever held by two live or resumable sessions of the fleet.
//!
//! Three parts make that safe:
//! - **Engine slots.** Each engine process leases a slot `P:slot:N` (N < 256), whose value is the
//!   process's holder name `ID|RUN` (RUN is random per start), and puts N in the first byte of
//!   every extranonce1 it hands out. A slot outlives its holder by the session TTL: a clean stop
//!   leaves `released:ID|RUN` behind, a crash leaves the lease to lapse, and an engine hosting
//!   resumed sessions of another slot keeps that slot's key alive ("pins" it). So a slot is handed
//!   out again only once no session from it can be live or resumed.
//! - **Claims.** A session record `P:session:ID` (ID: 16 hex digits of a random number, the
//!   subscription id the miner got) names the connection holding it (`holder`, `holder_slot`,
//!   `conn`). A resume claims it in one script: refused while its holder's slot lease still names
//!   the holder (the session is live elsewhere); a record whose holder died is deleted (its
//!   duplicate sets died with it, so it cannot be resumed safely); a released record becomes this
//!   connection's, and its state (with the duplicate sets) leaves Redis with the claim. Saves by a
//!   connection that does not hold the record are refused by the same kind of script.
//! - **Release.** A connection that ends (the miner left, a drain, a stop) writes the session
//!   with the shares it accepted on jobs still open, and marks it released: only then can
//!   another connection take it, and those shares stay duplicates there.
//!
//! The session travels as the Stratum session's exported state ([`SessionState`], versioned),
//! serialized as JSON in one field of the record; the record's other fields
//! ([`sluice_layout::session`] names them all) are the claim's bookkeeping and copies for
//! sluicectl. A stored state that does not parse, or of another version, resumes nothing: the
//! miner gets a fresh session, and the refusal is logged and counted (as `unknown`).
//!
//! Cores never touch Redis: they ask the store's thread over a bounded channel and wait for the
//! answer asynchronously (with a deadline: without an answer the miner gets a new session).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::clock::UnixMillis;
use crate::hex;
use crate::plane::{connect, connected, pause, Keys, PlaneSettings};
use crate::session::{format_session_id, SessionState, SESSION_STATE_VERSION};

/// Engine slots: one byte of extranonce1.
pub const MAX_SLOTS: u32 = 256;

/// Requests queued for the store's thread; a full queue refuses (claims give a new session,
/// saves are dropped and the next save repeats them).
pub const STORE_QUEUE: usize = 16_384;

/// How long a stopping engine's store keeps writing the releases queued before it.
const STOP_DRAIN: Duration = Duration::from_secs(3);

/// Takes the first slot with no key: neither leased nor kept for sessions that may resume.
/// KEYS: every slot key, slot 0 first (a script names only keys it is given, so the candidates
/// come in whole: 256 short names, once per start). ARGV: holder, ttl. Returns the slot or -1.
const ACQUIRE_SLOT: &str = r#"
for n = 1, #KEYS do
  if redis.call('SET', KEYS[n], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return n - 1
  end
end
return -1
"#;

/// Renews the slot: 1 when held, 2 when the key had lapsed and is taken again, 0 when another
/// value holds it (the slot is lost).
const RENEW_SLOT: &str = r#"
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0
"#;

/// Keeps another slot's key alive for at least ARGV[1] ms (this engine hosts sessions from it);
/// run after the [`KEEP_SLOT`] prelude.
const PIN_SLOT: &str = r#"
keep_slot_key(KEYS[1], ARGV[1])
return 1
"#;

/// A clean stop: the slot stays taken by a tombstone while its released sessions may resume.
const RELEASE_SLOT: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], 'released:' .. ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"#;

/// Keeps the slot key of a session's extranonce1 alive for at least the session TTL (Lua prelude
/// of the claim and save scripts): a released or claimed session keeps its slot from being leased
/// again for as long as its record may be resumed, whatever happens to the engines after.
const KEEP_SLOT: &str = r#"
local function keep_slot_key(key, ttl)
  if redis.call('PTTL', key) < tonumber(ttl) then
    if redis.call('EXISTS', key) == 1 then
      redis.call('PEXPIRE', key, ttl)
    else
      redis.call('SET', key, 'pinned', 'PX', ttl)
    end
  end
end
"#;

/// Claims a session for a resume, in two steps because the slot keys it needs are named by the
/// record: the store first reads `holder_slot` and `extranonce1` ([`CLAIM_READ`]), then runs
/// this with those slots' keys, and the script refuses ({'4'}: read again) if the record no longer
/// names them. KEYS: record, the holder slot's key (or the record's again when it names none),
/// the key of the extranonce1's slot (likewise). ARGV: holder, conn, holder slot, engine id, slot
/// ttl, the holder_slot and the extranonce1 read (or ''). Returns {'0'} unknown, {'1'} held by a
/// live connection, {'2'} its holder died (deleted), {'3', state}, or {'4'}. The field names are
/// [`sluice_layout::session::field`]'s (a test checks them).
const CLAIM: &str = r#"
local h = redis.call('HMGET', KEYS[1], 'holder', 'holder_slot', 'released', 'extranonce1')
if not h[4] then return {'0'} end
if (h[2] or '') ~= ARGV[6] or h[4] ~= ARGV[7] then return {'4'} end
if h[3] ~= '1' then
  if h[1] and h[2] and KEYS[2] ~= KEYS[1] and redis.call('GET', KEYS[2]) == h[1] then
    return {'1'}
  end
  redis.call('DEL', KEYS[1])
  return {'2'}
end
local r = redis.call('HMGET', KEYS[1], 'extranonce1', 'state')
if KEYS[3] ~= KEYS[1] then keep_slot_key(KEYS[3], ARGV[5]) end
redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'conn', ARGV[2], 'holder_slot', ARGV[3],
  'engine', ARGV[4], 'released', '0')
redis.call('HDEL', KEYS[1], 'state')
return {'3', r[2] or ''}
"#;

/// Saves a session this connection holds (or creates it). KEYS: record, index, and the key of the
/// extranonce1's slot (absent when the write has no extranonce1: a forget). ARGV: holder,
/// conn, holder slot, engine, now, ttl, id, extranonce1, difficulty, version_mask, workers,
/// release ('0' save, '1' release, '2' forget), state, slot ttl. The field names are
/// [`sluice_layout::session::field`]'s (a test checks them).
const SAVE: &str = r#"
local h = redis.call('HMGET', KEYS[1], 'holder', 'conn', 'released')
if h[1] and (h[1] ~= ARGV[1] or h[2] ~= ARGV[2] or h[3] == '1') then return 0 end
if ARGV[12] == '2' then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[7])
  return 1
end
if KEYS[3] then keep_slot_key(KEYS[3], ARGV[14]) end
local released = '0'
if ARGV[12] == '1' then released = '1' end
redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'conn', ARGV[2], 'holder_slot', ARGV[3],
  'engine', ARGV[4], 'updated_ms', ARGV[5], 'released', released, 'extranonce1', ARGV[8],
  'difficulty', ARGV[9], 'version_mask', ARGV[10], 'workers', ARGV[11], 'state', ARGV[13])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('ZADD', KEYS[2], tonumber(ARGV[5]) + tonumber(ARGV[6]), ARGV[7])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[5])
return 1
"#;

/// The record's fields the claim reads before its script, to name the slot keys it needs.
const CLAIM_READ: [&str; 2] = [
    sluice_layout::session::field::HOLDER_SLOT,
    sluice_layout::session::field::EXTRANONCE1,
];

/// Reads and scripts a claim tries before it gives up on a record that keeps changing.
const CLAIM_ATTEMPTS: usize = 3;

/// The slot an extranonce1 (hex, as stored) was handed out from: its first byte.
fn extranonce1_slot(extranonce1: &str) -> Option<u32> {
    extranonce1
        .get(..2)
        .and_then(|b| u32::from_str_radix(b, 16).ok())
}

/// This process's engine slot and the slots it keeps alive for the sessions it hosts.
#[derive(Debug)]
pub struct SlotLease {
    /// The first byte of every extranonce1 this engine hands out.
    pub slot: u8,
    /// `ID|RUN`: the slot key's value while this process holds it, and the holder of its
    /// sessions' records.
    pub holder: String,
    /// Set when the slot key names someone else: the engine takes no new connections.
    lost: AtomicBool,
    /// Live sessions hosted here whose extranonce1 comes from each other slot.
    pinned: Vec<AtomicU32>,
}

impl SlotLease {
    /// Whether the slot was lost to another engine (new connections are refused).
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    /// A session from `slot` is hosted here (resumed from another engine, or an earlier run).
    pub fn pin(&self, slot: u8) {
        if slot != self.slot {
            self.pinned[usize::from(slot)].fetch_add(1, Ordering::AcqRel);
        }
    }

    /// That session ended here (it was released, so its record keeps the slot's claim).
    pub fn unpin(&self, slot: u8) {
        if slot != self.slot {
            let _ = self.pinned[usize::from(slot)].fetch_update(
                Ordering::AcqRel,
                Ordering::Acquire,
                |n| n.checked_sub(1),
            );
        }
    }

    fn pinned_slots(&self) -> Vec<u32> {
        (0..MAX_SLOTS)
            .filter(|&n| self.pinned[n as usize].load(Ordering::Acquire) > 0)
            .collect()
    }
}

/// The thread that keeps the slot; [`SlotKeeper::release`] leaves the tombstone on a clean stop.
pub struct SlotKeeper {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl SlotKeeper {
    /// Stops renewing and leaves `released:ID|RUN` for the session TTL. Call it after the
    /// sessions were released, so a resume elsewhere finds them released, never orphaned.
    pub fn release(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for SlotKeeper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// 64 random bits from the OS, in hex.
fn random_hex() -> String {
    format_session_id(crate::random::random_session_id())
}

/// How long a slot key and its tombstone live: as long as a session from it may be resumed.
fn slot_ttl(settings: &PlaneSettings) -> u64 {
    settings.session_ttl.max(settings.service_ttl).as_millis() as u64
}

/// Why a process cannot take its place (its id, its engine slot) in the fleet.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    #[error("redis.url: {0}")]
    Connect(redis::RedisError),
    #[error("cannot read the service registry: {0}")]
    Registry(redis::RedisError),
    #[error("redis.id {id:?} is already live in this fleet (its service hash was refreshed within redis.service_ttl_secs): give each process its own redis.id (or --id); if that process just died, start again after {ttl_secs} s")]
    IdLive { id: String, ttl_secs: f64 },
    #[error("cannot lease an engine slot: {0}")]
    Lease(redis::RedisError),
    #[error("all {MAX_SLOTS} engine slots under prefix {prefix:?} are taken: too many engines, or slots kept for sessions that may still resume (they free redis.session_ttl_secs after their engine stopped)")]
    Full { prefix: String },
    #[error("{0}")]
    Thread(#[from] std::io::Error),
}

/// Refuses to start a second process under an id that is live in the registry.
pub fn check_id_is_free(
    con: &mut redis::Connection,
    settings: &PlaneSettings,
) -> Result<(), SlotError> {
    let live: bool = redis::cmd("EXISTS")
        .arg(Keys::new(&settings.prefix).service(&settings.id))
        .query(con)
        .map_err(SlotError::Registry)?;
    if live {
        return Err(SlotError::IdLive {
            id: settings.id.clone(),
            ttl_secs: settings.service_ttl.as_secs_f64(),
        });
    }
    Ok(())
}

/// Leases an engine slot and keeps it (renewed every third of the service TTL) until released.
pub fn lease_slot(settings: &PlaneSettings) -> Result<(Arc<SlotLease>, SlotKeeper), SlotError> {
    let ttl = slot_ttl(settings);
    let mut con = connect(&settings.url).map_err(SlotError::Connect)?;
    check_id_is_free(&mut con, settings)?;
    let holder = format!("{}|{}", settings.id, random_hex());
    let keys = Keys::new(&settings.prefix);
    let script = redis::Script::new(ACQUIRE_SLOT);
    let mut acquire = script.prepare_invoke();
    for n in 0..MAX_SLOTS {
        acquire.key(keys.slot(n));
    }
    let slot: i64 = acquire
        .arg(&holder)
        .arg(ttl)
        .invoke(&mut con)
        .map_err(SlotError::Lease)?;
    if slot < 0 {
        return Err(SlotError::Full {
            prefix: settings.prefix.clone(),
        });
    }
    let lease = Arc::new(SlotLease {
        slot: slot as u8,
        holder,
        lost: AtomicBool::new(false),
        pinned: (0..MAX_SLOTS).map(|_| AtomicU32::new(0)).collect(),
    });
    let url = settings.url.clone();
    let every = settings.service_ttl / 3;
    let stop = Arc::new(AtomicBool::new(false));
    let kept = Arc::clone(&lease);
    let stopping = Arc::clone(&stop);
    let handle = std::thread::Builder::new()
        .name("sluice-slot".into())
        .spawn(move || {
            let (renew, pin) = (redis::Script::new(RENEW_SLOT), redis::Script::new(&format!("{KEEP_SLOT}{PIN_SLOT}")));
            let key = keys.slot(u32::from(kept.slot));
            let mut con = Some(con);
            let pin_all = |c: &mut redis::Connection| -> redis::RedisResult<()> {
                for n in kept.pinned_slots() {
                    pin.key(keys.slot(n)).arg(ttl).invoke::<i64>(c)?;
                }
                Ok(())
            };
            while pause(every, &stopping) {
                let Some(c) = connected(&mut con, &url) else {
                    continue;
                };
                match renew.key(&key).arg(&kept.holder).arg(ttl).invoke::<i64>(c) {
                    Ok(0) => {
                        if !kept.lost.swap(true, Ordering::AcqRel) {
                            tracing::error!(%key, "this engine's slot is held by another engine: it takes no new connections (their extranonce1 values could repeat); restart it to lease a new slot");
                        }
                    }
                    Ok(n) => {
                        if n == 2 {
                            tracing::warn!(%key, "the engine slot's lease had lapsed (Redis restarted or was away): leased it again");
                        }
                        if kept.lost.swap(false, Ordering::AcqRel) {
                            tracing::warn!(%key, "the engine slot is this engine's again: taking new connections");
                        }
                    }
                    Err(_) => {
                        con = None;
                        continue;
                    }
                }
                if pin_all(c).is_err() {
                    con = None;
                }
            }
            if let Some(c) = connected(&mut con, &url) {
                let _ = pin_all(c);
                let _: Result<i64, _> = redis::Script::new(RELEASE_SLOT)
                    .key(&key)
                    .arg(&kept.holder)
                    .arg(ttl)
                    .invoke(c);
            }
        })?;
    Ok((
        lease,
        SlotKeeper {
            stop,
            handle: Some(handle),
        },
    ))
}

/// What a resume came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The session is this connection's now, with the state it was released with.
    Resumed(Box<SessionState>),
    /// Another live connection holds it.
    Held,
    /// No such session (never saved, expired, or its stored state does not parse or is of
    /// another version).
    Unknown,
    /// Its connection's engine died holding it: its duplicate sets are gone, so it is not resumed.
    Lapsed,
    /// The store is busy or Redis is away.
    Unavailable,
}

impl Claim {
    /// The label of a refused claim in metrics.
    pub fn refusal(&self) -> Option<&'static str> {
        match self {
            Claim::Resumed(_) => None,
            Claim::Held => Some("held"),
            Claim::Unknown => Some("unknown"),
            Claim::Lapsed => Some("lapsed"),
            Claim::Unavailable => Some("unavailable"),
        }
    }
}

/// How a session leaves its connection.
#[derive(Debug, Clone)]
pub enum Release {
    /// Resumable elsewhere: its exported state, with its duplicate sets.
    Resumable(Box<SessionState>),
    /// Not resumable (too many shares to carry, or kicked): the record is deleted.
    Forget,
}

enum Request {
    Claim {
        id: u64,
        conn: u64,
        reply: tokio::sync::oneshot::Sender<Claim>,
    },
    Save {
        id: u64,
        conn: u64,
        // Boxed, as in `Claim` and `Release`: the channel holds every slot of its bound.
        saved: Box<SessionState>,
    },
    Release {
        id: u64,
        conn: u64,
        release: Release,
    },
    Flush {
        reply: tokio::sync::oneshot::Sender<()>,
    },
}

/// The cores' handle on the session store.
pub struct SessionStore {
    requests: Sender<Request>,
}

impl SessionStore {
    /// Claims a saved session for connection `conn`. A session held elsewhere is asked again
    /// until `deadline` (a drained miner may arrive before its old engine's release).
    pub async fn claim(&self, id: u64, conn: u64, deadline: Duration) -> Claim {
        let until = Instant::now() + deadline;
        loop {
            let (reply, answer) = tokio::sync::oneshot::channel();
            if self
                .requests
                .try_send(Request::Claim { id, conn, reply })
                .is_err()
            {
                return Claim::Unavailable;
            }
            let left = until.saturating_duration_since(Instant::now());
            let claim = match tokio::time::timeout(left, answer).await {
                Ok(Ok(claim)) => claim,
                _ => return Claim::Unavailable,
            };
            let retry_in = Duration::from_millis(100);
            if claim != Claim::Held || Instant::now() + retry_in >= until {
                return claim;
            }
            tokio::time::sleep(retry_in).await;
        }
    }

    /// Saves a session connection `conn` holds (dropped when the queue is full: the next save
    /// carries the same state).
    pub fn save(&self, id: u64, conn: u64, saved: SessionState) {
        let saved = Box::new(saved);
        let _ = self.requests.try_send(Request::Save { id, conn, saved });
    }

    /// Lets the session go. A full queue loses the release, and with it the resume: the record
    /// stays held until it expires, and the miner gets a fresh session.
    pub fn release(&self, id: u64, conn: u64, release: Release) {
        if self
            .requests
            .try_send(Request::Release { id, conn, release })
            .is_err()
        {
            tracing::warn!(session = %format_session_id(id), "session store queue full: the session is not released (its miner gets a fresh one)");
        }
    }

    /// Waits (at most `deadline`) until everything queued before has been written.
    pub async fn flush(&self, deadline: Duration) {
        let (reply, answer) = tokio::sync::oneshot::channel();
        if self.requests.try_send(Request::Flush { reply }).is_ok() {
            let _ = tokio::time::timeout(deadline, answer).await;
        }
    }
}

/// Who writes: this engine's holder name and slot.
struct Writer {
    settings: PlaneSettings,
    keys: Keys,
    ttl: Duration,
    lease: Arc<SlotLease>,
    claim: redis::Script,
    save: redis::Script,
    slot_ttl: u64,
}

/// The largest stored state parsed. A real one is far smaller (at most `MAX_SAVED_SHARES` = 2,048
/// share hashes, about 45 KB, and the listener's workers); anything bigger was not written by an
/// engine, and is refused before serde allocates for it.
pub const MAX_STORED_STATE_BYTES: usize = 1 << 20;

/// Why a claimed record's state is not resumed (Redis is not trusted): the miner gets a fresh
/// session.
#[derive(Debug, thiserror::Error)]
enum StoredStateError {
    #[error("the stored session state is {len} bytes, more than the {MAX_STORED_STATE_BYTES} an engine writes")]
    TooLarge { len: usize },
    #[error("the stored session state is not a session state: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("the stored session state is version {found}; this engine reads version {SESSION_STATE_VERSION} (written by another build: the miner gets a fresh session)")]
    Version { found: u32 },
}

/// A claimed record's `state` field into a session state. What it holds is checked against the
/// listener by [`Session::resume`](crate::session::Session::resume); here only that it is one.
fn parse_state(bytes: &[u8]) -> Result<SessionState, StoredStateError> {
    if bytes.len() > MAX_STORED_STATE_BYTES {
        return Err(StoredStateError::TooLarge { len: bytes.len() });
    }
    let state: SessionState = serde_json::from_slice(bytes)?;
    if state.version != SESSION_STATE_VERSION {
        return Err(StoredStateError::Version {
            found: state.version,
        });
    }
    Ok(state)
}

impl Writer {
    fn claim(&self, con: &mut redis::Connection, id: u64, conn: u64) -> redis::RedisResult<Claim> {
        let record = self.keys.session(&format_session_id(id));
        // A record changing between the read and the script is another claim or save racing this
        // one: read again, a few times, then give the miner a fresh session.
        let mut reply: Vec<Vec<u8>> = Vec::new();
        for _ in 0..CLAIM_ATTEMPTS {
            let (holder_slot, extranonce1): (Option<String>, Option<String>) = redis::cmd("HMGET")
                .arg(&record)
                .arg(&CLAIM_READ[..])
                .query(con)?;
            let Some(extranonce1) = extranonce1 else {
                return Ok(Claim::Unknown);
            };
            let slot_key =
                |slot: Option<u32>| slot.map_or_else(|| record.clone(), |n| self.keys.slot(n));
            let held_by = holder_slot.as_deref().and_then(|n| n.parse().ok());
            reply = self
                .claim
                .key(&record)
                .key(slot_key(held_by))
                .key(slot_key(extranonce1_slot(&extranonce1)))
                .arg(&self.lease.holder)
                .arg(conn)
                .arg(self.lease.slot)
                .arg(&self.settings.id)
                .arg(self.slot_ttl)
                .arg(holder_slot.as_deref().unwrap_or(""))
                .arg(&extranonce1)
                .invoke(con)?;
            if reply.first().map(Vec::as_slice) != Some(b"4") {
                break;
            }
        }
        Ok(match reply.first().map(Vec::as_slice) {
            Some(b"1") => Claim::Held,
            Some(b"2") => Claim::Lapsed,
            Some(b"3") => match parse_state(reply.get(1).map_or(&[][..], Vec::as_slice)) {
                Ok(state) => Claim::Resumed(Box::new(state)),
                Err(why) => {
                    tracing::warn!(session = %format_session_id(id), %why, "a saved session is not resumed");
                    Claim::Unknown
                }
            },
            _ => Claim::Unknown,
        })
    }

    /// `mode`: '0' save, '1' release, '2' forget.
    fn write(
        &self,
        con: &mut redis::Connection,
        id: u64,
        conn: u64,
        saved: Option<&SessionState>,
        mode: &str,
    ) -> redis::RedisResult<()> {
        let id = format_session_id(id);
        let state = match saved.map(serde_json::to_string).transpose() {
            Ok(state) => state.unwrap_or_default(),
            Err(why) => {
                tracing::warn!(session = %id, %why, "a session state does not serialize: not saved");
                return Ok(());
            }
        };
        let mut call = self.save.prepare_invoke();
        call.key(self.keys.session(&id))
            .key(self.keys.sessions())
            .arg(&self.lease.holder)
            .arg(conn)
            .arg(self.lease.slot)
            .arg(&self.settings.id)
            .arg(UnixMillis::now().as_millis())
            .arg(self.ttl.as_millis() as u64)
            .arg(&id);
        match saved {
            // Copies of the state's fields for sluicectl (and the slot, for the Lua).
            Some(s) => call
                .arg(hex::encode(&s.extranonce1))
                .arg(s.difficulty)
                .arg(s.version_mask.to_string())
                .arg(serde_json::to_string(&s.workers).unwrap_or_default())
                .arg(mode)
                .arg(&state),
            None => call.arg("").arg("").arg("").arg("").arg(mode).arg(""),
        };
        if let Some(n) = saved.and_then(|s| s.extranonce1.first()) {
            call.key(self.keys.slot(u32::from(*n)));
        }
        call.arg(self.slot_ttl);
        let written: i64 = call.invoke(con)?;
        if written == 0 {
            tracing::debug!(session = %id, "a session write refused: this connection does not hold it");
        }
        Ok(())
    }

    fn handle(&self, con: &mut redis::Connection, request: Request) -> redis::RedisResult<()> {
        match request {
            Request::Claim { id, conn, reply } => {
                let _ = reply.send(self.claim(con, id, conn)?);
            }
            Request::Save { id, conn, saved } => self.write(con, id, conn, Some(&saved), "0")?,
            Request::Release { id, conn, release } => match release {
                Release::Resumable(saved) => self.write(con, id, conn, Some(&saved), "1")?,
                Release::Forget => self.write(con, id, conn, None, "2")?,
            },
            Request::Flush { reply } => {
                let _ = reply.send(());
            }
        }
        Ok(())
    }
}

/// Starts the store's thread; sessions live `ttl` after their last save. On `stop` it writes
/// what is queued (for a few seconds at most) before it ends.
pub fn spawn_store(
    settings: PlaneSettings,
    ttl: Duration,
    lease: Arc<SlotLease>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<(Arc<SessionStore>, JoinHandle<()>)> {
    let (tx, rx): (Sender<Request>, Receiver<Request>) = crossbeam_channel::bounded(STORE_QUEUE);
    let writer = Writer {
        slot_ttl: slot_ttl(&settings),
        keys: Keys::new(&settings.prefix),
        settings,
        ttl,
        lease,
        claim: redis::Script::new(&format!("{KEEP_SLOT}{CLAIM}")),
        save: redis::Script::new(&format!("{KEEP_SLOT}{SAVE}")),
    };
    let handle = std::thread::Builder::new()
        .name("sluice-sessions".into())
        .spawn(move || {
            let mut con = None;
            let mut drain_until = None;
            loop {
                if stop.load(Ordering::Relaxed) {
                    let until = *drain_until.get_or_insert_with(|| Instant::now() + STOP_DRAIN);
                    if rx.is_empty() || Instant::now() >= until {
                        break;
                    }
                }
                let request = match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(r) => r,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                };
                let Some(c) = connected(&mut con, &writer.settings.url) else {
                    continue;
                };
                if writer.handle(c, request).is_err() {
                    con = None;
                }
            }
        })?;
    Ok((Arc::new(SessionStore { requests: tx }), handle))
}

/// The claim, save and release scripts against a real `redis-server`.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::plane::test_redis::{plane, TestRedis};
    use crate::session::{Session, SessionConfig};
    use crate::share::SavedShares;
    use crate::units::Extranonce1;
    use bitcoin::Network;
    use sluice_layout::session::field;

    fn saved(difficulty: f64, shares: Vec<u64>) -> SessionState {
        let session = Session::new(
            Arc::new(SessionConfig::new(Network::Regtest)),
            Extranonce1::new(&[0, 0, 0, 7]).unwrap(),
            42,
            1_000,
        );
        SessionState {
            difficulty,
            version_mask: crate::units::VersionMask(0x1fff_e000),
            workers: vec!["w.rig".into()],
            duplicates: SavedShares {
                jobs: vec![(0x77, shares)],
            },
            ..session.export_held()
        }
    }

    fn difficulty(con: &mut redis::Connection, id: u64) -> Option<f64> {
        field(con, id, "difficulty").and_then(|d| d.parse().ok())
    }

    fn field(con: &mut redis::Connection, id: u64, name: &str) -> Option<String> {
        redis::cmd("HGET")
            .arg(Keys::new("t").session(&format_session_id(id)))
            .arg(name)
            .query(con)
            .unwrap()
    }

    /// A session store of `engine-1` on the slot it leased, with the runtime its async calls need.
    struct Running {
        settings: PlaneSettings,
        keeper: SlotKeeper,
        stop: Arc<AtomicBool>,
        store: Arc<SessionStore>,
        thread: std::thread::JoinHandle<()>,
        rt: tokio::runtime::Runtime,
    }

    impl Running {
        fn start(redis: &TestRedis) -> Running {
            let settings = plane(&redis.url(), "engine-1");
            let (lease, keeper) = lease_slot(&settings).unwrap();
            assert!(lease.holder.starts_with("engine-1|"));
            let stop = Arc::new(AtomicBool::new(false));
            let (store, thread) = spawn_store(
                settings.clone(),
                settings.session_ttl,
                lease,
                Arc::clone(&stop),
            )
            .unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            Running {
                settings,
                keeper,
                stop,
                store,
                thread,
                rt,
            }
        }
    }

    #[test]
    fn only_the_holder_writes_and_a_held_session_cannot_be_claimed() {
        let redis = TestRedis::start();
        let mut con = redis.con();
        let Running {
            settings,
            keeper,
            stop,
            store,
            thread,
            rt,
        } = Running::start(&redis);
        let claim = |conn| rt.block_on(store.claim(42, conn, Duration::from_millis(300)));
        let flush = || rt.block_on(store.flush(Duration::from_secs(2)));

        store.save(42, 1, saved(2.0, vec![]));
        flush();
        assert_eq!(difficulty(&mut con, 42), Some(2.0));
        // Another connection can neither overwrite, release nor claim it.
        store.save(42, 2, saved(9.0, vec![]));
        store.release(42, 2, Release::Forget);
        flush();
        assert_eq!(difficulty(&mut con, 42), Some(2.0));
        assert_eq!(claim(2), Claim::Held);
        // Released by its holder: claimed once, with its shares; then held by the claimant.
        store.release(42, 1, Release::Resumable(Box::new(saved(3.0, vec![5, 6]))));
        flush();
        assert_eq!(field(&mut con, 42, "released").as_deref(), Some("1"));
        match claim(2) {
            Claim::Resumed(s) => assert_eq!(*s, saved(3.0, vec![5, 6])),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            field(&mut con, 42, "shares"),
            None,
            "the sets left with the claim"
        );
        assert_eq!(field(&mut con, 42, field::STATE), None, "so did the state");
        assert_eq!(claim(3), Claim::Held);
        store.save(42, 1, saved(8.0, vec![]));
        flush();
        assert_eq!(
            difficulty(&mut con, 42),
            Some(3.0),
            "the old holder cannot write"
        );
        assert_eq!(claim(3), Claim::Held);
        assert_eq!(
            rt.block_on(store.claim(99, 3, Duration::from_millis(300))),
            Claim::Unknown
        );
        // The session's slot key lives at least the session TTL.
        let ttl: i64 = redis::cmd("PTTL")
            .arg(Keys::new("t").slot(0))
            .query(&mut con)
            .unwrap();
        assert!(ttl > 500_000, "{ttl}");

        // The holder's engine is gone: the record lapses on the next claim.
        stop.store(true, Ordering::Release);
        thread.join().unwrap();
        keeper.release();
        let (lease2, keeper2) = lease_slot(&plane(&redis.url(), "engine-2")).unwrap();
        assert_ne!(lease2.slot, 0, "a released slot is not handed out again");
        let stop2 = Arc::new(AtomicBool::new(false));
        let (store2, thread2) = spawn_store(
            settings.clone(),
            settings.session_ttl,
            lease2,
            Arc::clone(&stop2),
        )
        .unwrap();
        assert_eq!(
            rt.block_on(store2.claim(42, 1, Duration::from_millis(300))),
            Claim::Lapsed
        );
        assert_eq!(field(&mut con, 42, "extranonce1"), None, "deleted");
        stop2.store(true, Ordering::Release);
        thread2.join().unwrap();
        keeper2.release();
    }

    /// The scripts name the record's fields as literals (Lua): exactly the layout's.
    #[test]
    fn the_scripts_name_exactly_the_layouts_fields() {
        let mut named = std::collections::BTreeSet::new();
        for script in [CLAIM, SAVE] {
            for literal in script.split('\'').skip(1).step_by(2) {
                if literal.starts_with(|c: char| c.is_ascii_lowercase()) {
                    named.insert(literal);
                }
            }
        }
        let layout: std::collections::BTreeSet<&str> =
            sluice_layout::session::FIELDS.into_iter().collect();
        assert_eq!(named, layout);
    }

    #[test]
    fn a_stored_state_is_parsed_up_to_its_limit_and_refused_past_it() {
        let mut json = serde_json::to_vec(&saved(2.0, vec![5])).unwrap();
        assert!(json.len() < MAX_STORED_STATE_BYTES);
        // JSON allows trailing whitespace: the same state padded to the limit, then one byte more.
        json.resize(MAX_STORED_STATE_BYTES, b' ');
        assert!(parse_state(&json).is_ok());
        json.push(b' ');
        assert!(matches!(
            parse_state(&json),
            Err(StoredStateError::TooLarge { len }) if len == MAX_STORED_STATE_BYTES + 1
        ));
    }

    /// A record another build, a bug or an attacker with write access to Redis left behind: the
    /// claim or the resume refuses it, the miner gets a fresh session, nothing panics.
    #[test]
    fn a_hostile_stored_state_resumes_nothing() {
        let redis = TestRedis::start();
        let mut con = redis.con();
        let Running {
            keeper,
            stop,
            store,
            thread,
            rt,
            ..
        } = Running::start(&redis);
        const WORKER: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080.rig";
        let json = |edit: &dyn Fn(&mut SessionState)| {
            let mut state = saved(2.0, vec![5]);
            state.workers = vec![WORKER.into()];
            edit(&mut state);
            serde_json::to_vec(&state).unwrap()
        };
        let unparsed: Vec<(&str, Vec<u8>)> = vec![
            ("garbage", b"{not json".to_vec()),
            ("not utf-8", vec![0xff, 0xfe, 0x00]),
            ("empty", Vec::new()),
            ("deep", "[".repeat(100_000).into_bytes()),
            ("version 99", json(&|s| s.version = 99)),
        ];
        let refused: Vec<(&str, Vec<u8>)> = vec![
            (
                "extranonce1 of 3 bytes",
                json(&|s| s.extranonce1 = vec![1, 2, 3]),
            ),
            (
                "extranonce1 of 9 bytes",
                json(&|s| s.extranonce1 = vec![1; 9]),
            ),
            (
                "10,000 workers",
                json(&|s| s.workers = vec![WORKER.into(); 10_000]),
            ),
            ("a bad worker", json(&|s| s.workers = vec!["a b\n".into()])),
            ("a negative difficulty", json(&|s| s.difficulty = -1.0)),
            (
                "too many shares",
                json(&|s| s.duplicates.jobs = vec![(1, (0..3000).collect())]),
            ),
        ];
        let book = crate::chain::JobBook::new(16);
        let fresh = || {
            let config = Arc::new(SessionConfig::new(Network::Regtest));
            Session::new(config, Extranonce1::new(&[0, 0, 1, 1]).unwrap(), 7, 1_000)
        };
        // Each case differs from a state that resumes by what it names.
        let control = parse_state(&json(&|_| {})).unwrap();
        assert_eq!(fresh().resume(1, &control, &book), Ok(()));
        for (n, (what, state)) in unparsed.iter().chain(&refused).enumerate() {
            let id = 1000 + n as u64;
            let _: () = redis::cmd("HSET")
                .arg(Keys::new("t").session(&format_session_id(id)))
                .arg(field::EXTRANONCE1)
                .arg("00000007")
                .arg(field::RELEASED)
                .arg(sluice_layout::session::RELEASED)
                .arg(field::STATE)
                .arg(state.as_slice())
                .query(&mut con)
                .unwrap();
            let claim = rt.block_on(store.claim(id, 1, Duration::from_millis(300)));
            let parses = n >= unparsed.len();
            match claim {
                Claim::Resumed(state) => {
                    assert!(parses, "{what}: claimed");
                    let mut session = fresh();
                    let own = *session.extranonce1();
                    let resumed = session.resume(id, &state, &book);
                    assert!(resumed.is_err(), "{what}: resumed");
                    assert_eq!(session.extranonce1(), &own, "{what}");
                    assert!(!session.is_authorized(), "{what}");
                }
                other => assert_eq!((parses, other), (false, Claim::Unknown), "{what}"),
            }
        }
        stop.store(true, Ordering::Release);
        thread.join().unwrap();
        keeper.release();
    }

    #[test]
    fn a_second_process_under_a_live_id_is_refused() {
        let redis = TestRedis::start();
        let mut con = redis.con();
        let settings = plane(&redis.url(), "engine-1");
        let _: () = redis::cmd("HSET")
            .arg(Keys::new("t").service("engine-1"))
            .arg("role")
            .arg("stratum")
            .query(&mut con)
            .unwrap();
        let err = lease_slot(&settings).err().unwrap().to_string();
        assert!(err.contains("redis.id \"engine-1\""), "{err}");
    }
}
