//! Jobmanager leadership: one lease in Redis (`P:jm:leader` = `ID|TOKEN`, with a TTL) held by the
//! leader and renewed well within its TTL. Every time the lease changes hands the new holder gets a
//! larger fencing token (`INCR P:jm:token`): jobs carry it, Redis refuses a publish whose holder no
//! longer owns the lease, and engines ignore a job whose token is below the highest they have seen.
//!
//! A token only means something beside the counter it came from, and a Redis that restarts empty,
//! or fails over to a replica that missed the last `INCR`, counts again from a lower number: engines
//! that remembered the higher token would refuse every job after it, forever. So the same script
//! keeps a fleet epoch (`P:jm:epoch`, a random u64 from the OS, written only when the key is
//! absent): Redis losing its state loses the epoch with the counter, the next lease creates a new
//! one, and engines judge tokens only within one epoch (`plane::jobs`).
//!
//! A standby tries to take the lease every quarter of its length, so it leads at most one lease and
//! a quarter after the leader died. A leader that cannot renew (Redis unreachable, lease taken)
//! steps down at once, before its lease could have lapsed anywhere else.
//!
//! Operators steer it through the hash `P:jm:control` (sluicectl `jobmanager pause|resume|promote`):
//! a jobmanager with field `pause:ID` set neither takes nor keeps the lease; while field `prefer`
//! names another live jobmanager, no other takes the lease and a leader hands it over.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crate::plane::{spawn_loop, Backoff, Keys, PlaneLoop, PlaneSettings, StepError};

/// Takes or renews the lease: returns `{token, epoch}`, the token -1 when another holds the lease.
/// `ARGV[3]` (a fresh random epoch) becomes the fleet's epoch when there is none, or when what is
/// there is not one (a stray write must not keep every jobmanager from leading).
const ACQUIRE: &str = r#"
local epoch = redis.call('GET', KEYS[3])
if not epoch or not string.match(epoch, '^[1-9]%d*$') or string.len(epoch) > 19 then
  epoch = ARGV[3]
  redis.call('SET', KEYS[3], epoch)
end
local current = redis.call('GET', KEYS[1])
if current then
  local id, token = string.match(current, '^(.*)|(%d+)$')
  if id == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {tonumber(token), epoch}
  end
  return {-1, epoch}
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. token, 'PX', ARGV[2])
return {token, epoch}
"#;

/// A new fleet epoch from the OS's random source: 1 to 2^63 - 1, so that its decimal form has at
/// most 19 digits and a Lua number never has to hold it. A fresh one per attempt: an epoch one
/// process proposed before must not come back after a second loss of Redis's state.
fn random_epoch() -> u64 {
    let mut buf = [0u8; 8];
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: getrandom writes at most `len` bytes into the part of the buffer we own.
        let n =
            unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n > 0 {
            filled += n as usize;
        } else if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            // No OS randomness (a kernel before 3.17): the clock still differs across restarts.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            buf = (now ^ u64::from(std::process::id()).rotate_left(32)).to_le_bytes();
            break;
        }
    }
    (u64::from_le_bytes(buf) >> 1).max(1)
}

/// Gives the lease up if this process holds it.
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// Whether operators let this jobmanager lead: not paused, and no other live jobmanager preferred.
fn may_lead(con: &mut redis::Connection, keys: &Keys, id: &str) -> redis::RedisResult<bool> {
    let (paused, preferred): (Option<String>, Option<String>) = redis::cmd("HMGET")
        .arg(keys.jm_control())
        .arg(format!("pause:{id}"))
        .arg("prefer")
        .query(con)?;
    if paused.is_some() {
        return Ok(false);
    }
    match preferred {
        Some(p) if p != id => {
            // A preferred jobmanager that is gone must not leave the fleet without a leader.
            let alive: bool = redis::cmd("EXISTS").arg(keys.service(&p)).query(con)?;
            Ok(!alive)
        }
        _ => Ok(true),
    }
}

/// The leadership state other threads read: the token while leading, 0 while not, and the fleet
/// epoch the token belongs to.
#[derive(Debug, Default)]
pub struct Leadership {
    token: AtomicU64,
    epoch: AtomicU64,
}

impl Leadership {
    /// The fencing token while this process leads.
    pub fn token(&self) -> Option<u64> {
        match self.token.load(Ordering::Acquire) {
            0 => None,
            t => Some(t),
        }
    }

    /// `(epoch, token)` while this process leads. The two are read one after the other: a
    /// publish that pairs an old token with a new epoch is refused by Redis, which checks both.
    pub fn fence(&self) -> Option<(u64, u64)> {
        let token = self.token()?;
        Some((self.epoch.load(Ordering::Acquire), token))
    }
}

/// Runs the lease loop on its own thread; `on_change` hears every change of state (`Some(token)` on
/// taking the lease, `None` on losing it).
pub fn spawn(
    settings: PlaneSettings,
    leadership: Arc<Leadership>,
    on_change: impl FnMut(Option<u64>) + Send + 'static,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    let attempt_every = settings.lease / 4;
    let url = settings.url.clone();
    let body = LeaseLoop {
        keys: Keys::new(&settings.prefix),
        acquire: redis::Script::new(ACQUIRE),
        release: redis::Script::new(RELEASE),
        lease_ms: settings.lease.as_millis() as u64,
        attempt_every,
        settings,
        leadership,
        on_change,
    };
    // A failed attempt is followed by the next one a quarter lease later, as a good one is.
    spawn_loop(
        "sluice-lease",
        url,
        Backoff::fixed(attempt_every),
        stop,
        body,
    )
}

struct LeaseLoop<F> {
    settings: PlaneSettings,
    keys: Keys,
    acquire: redis::Script,
    release: redis::Script,
    lease_ms: u64,
    attempt_every: std::time::Duration,
    leadership: Arc<Leadership>,
    on_change: F,
}

impl<F: FnMut(Option<u64>) + Send + 'static> LeaseLoop<F> {
    /// Takes or renews the lease when this process may lead: `(token, epoch)`, the token 0 or
    /// below when it does not lead.
    fn attempt(&self, c: &mut redis::Connection) -> Result<(i64, u64), StepError> {
        let (keys, settings) = (&self.keys, &self.settings);
        if may_lead(c, keys, &settings.id)? {
            let (token, epoch) = self
                .acquire
                .key(keys.leader())
                .key(keys.token())
                .key(keys.epoch())
                .arg(&settings.id)
                .arg(self.lease_ms)
                .arg(random_epoch())
                .invoke::<(i64, String)>(c)?;
            match epoch.parse::<u64>() {
                Ok(epoch) => Ok((token, epoch)),
                Err(_) => Err(StepError::NoEpoch {
                    key: keys.epoch().to_string(),
                    found: epoch,
                }),
            }
        } else {
            if let Some(token) = self.leadership.token() {
                tracing::info!(
                    "paused, or another jobmanager is preferred: handing the lease over"
                );
                let _ = self
                    .release
                    .key(keys.leader())
                    .arg(format!("{}|{token}", settings.id))
                    .invoke::<i64>(c);
            }
            Ok((0, 0))
        }
    }

    /// Publishes the state after an attempt and tells `on_change` when it changed.
    fn apply(&mut self, now_token: u64, now_epoch: u64) {
        let leadership = &self.leadership;
        // The epoch first: a reader that sees the new token also sees its epoch.
        let epoch_before = leadership.epoch.swap(now_epoch, Ordering::AcqRel);
        let before = leadership.token.swap(now_token, Ordering::AcqRel);
        if before != now_token || (now_token != 0 && epoch_before != now_epoch) {
            if now_token == 0 {
                tracing::warn!(token = before, "no longer the leading jobmanager");
                (self.on_change)(None);
            } else {
                tracing::info!(token = now_token, epoch = now_epoch, "leading jobmanager");
                (self.on_change)(Some(now_token));
            }
        }
    }
}

impl<F: FnMut(Option<u64>) + Send + 'static> PlaneLoop for LeaseLoop<F> {
    fn step(
        &mut self,
        c: &mut redis::Connection,
        _stop: &AtomicBool,
    ) -> Result<std::time::Duration, StepError> {
        let started = Instant::now();
        match self.attempt(c)? {
            (t, epoch) if t > 0 => self.apply(t as u64, epoch),
            _ => self.apply(0, 0),
        }
        Ok((started + self.attempt_every).saturating_duration_since(Instant::now()))
    }

    fn failed(&mut self, error: &StepError) {
        if self.leadership.token().is_some() {
            tracing::warn!(error = %error, "cannot renew the jobmanager lease: stepping down");
        }
        self.apply(0, 0);
    }

    fn finish(&mut self, con: Option<&mut redis::Connection>) {
        // Hand over at once on a clean stop rather than after the lease lapses.
        if let (Some(token), Some(c)) = (self.leadership.token(), con) {
            let _ = self
                .release
                .key(self.keys.leader())
                .arg(format!("{}|{token}", self.settings.id))
                .invoke::<i64>(c);
            self.leadership.token.store(0, Ordering::Release);
            (self.on_change)(None);
        }
    }
}
