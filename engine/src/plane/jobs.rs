//! Job fan-out through Redis.
//!
//! The jobmanager side is a [`JobSink`]: every job its source builds is kept as the latest, and
//! while this process leads it is written to `P:job:latest` and published on `P:jobs` by one Lua
//! script that first checks the lease is still ours (a deposed leader cannot publish even once).
//! On taking the lease, the new leader publishes the latest job it built at once.
//!
//! The engine side subscribes first, then reads `P:job:latest`, so a job published in between is
//! not missed; every (re)connection reads the latest again, so an engine that starts or returns to
//! Redis has work at once.
//!
//! What an engine trusts, in order: the message's tag under the fleet key (anything else is
//! refused, counted and logged at most every [`REFUSAL_LOG_INTERVAL`], so a flood cannot flood the
//! log); then, within the fleet epoch it follows, (token, sequence) order: a job with a token below
//! the highest seen comes from a deposed leader and is refused, and one already applied is skipped.
//! A signed job of another epoch means Redis lost its state (a restart, a failover that lost the
//! last `INCR`) and the tokens count again: it starts the new epoch. The engine remembers a job's
//! (epoch, token, sequence) only once the job is in the feed, so a job it could not use raises no
//! fence against the next.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::chain::sink::{JobSink, PublishError};
use crate::chain::JobParts;
use crate::clock::UnixMicros;
use crate::feed::JobFeed;
use crate::metrics::Metrics;
use crate::plane::keys::LATEST_JOB_TTL_MS;
use crate::plane::lease::Leadership;
use crate::plane::{connect, spawn_loop, Backoff, Keys, PlaneLoop, PlaneSettings, StepError};
use crate::units::ExtranonceSizes;
use sluice_layout::job_message::{JobMessage, WireError};

/// Refused job messages are logged at most this often (all are counted).
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Writes the latest job and publishes it, only while `ARGV[1]` (`ID|TOKEN`) holds the lease and
/// `ARGV[4]` is still the fleet's epoch (a Redis that lost its state has another, or none).
const PUBLISH_FENCED: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] or redis.call('GET', KEYS[4]) ~= ARGV[4] then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('PUBLISH', KEYS[3], ARGV[2])
return 1
"#;

struct SinkState {
    con: Option<redis::Connection>,
    latest: Option<JobParts>,
    sequence: u64,
}

/// The jobmanager's side: publishes while leading.
pub struct RedisJobSink {
    settings: PlaneSettings,
    keys: Keys,
    leadership: Arc<Leadership>,
    script: redis::Script,
    state: Mutex<SinkState>,
    /// Jobs Redis took, and publishes it refused (the lease or the epoch no longer ours): for the
    /// jobmanager's `/metrics`.
    published: AtomicU64,
    fenced: AtomicU64,
}

impl RedisJobSink {
    pub fn new(settings: PlaneSettings, leadership: Arc<Leadership>) -> RedisJobSink {
        RedisJobSink {
            keys: Keys::new(&settings.prefix),
            settings,
            leadership,
            script: redis::Script::new(PUBLISH_FENCED),
            state: Mutex::new(SinkState {
                con: None,
                latest: None,
                sequence: 0,
            }),
            published: AtomicU64::new(0),
            fenced: AtomicU64::new(0),
        }
    }

    /// (jobs published, publishes refused by fencing) since start.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.published.load(Ordering::Relaxed),
            self.fenced.load(Ordering::Relaxed),
        )
    }

    fn send(
        &self,
        state: &mut SinkState,
        (epoch, token): (u64, u64),
        parts: JobParts,
        clean: bool,
    ) -> Result<(), SendError> {
        // Above the clock as well as the last one: should a failover hand a new leader a token
        // the engines already saw (the counter lost its last INCR but not the epoch), its jobs
        // still come after the old leader's.
        state.sequence = (state.sequence + 1).max(UnixMicros::now().as_micros());
        let message = JobMessage {
            epoch,
            token,
            sequence: state.sequence,
            published_us: UnixMicros::now().as_micros(),
            clean,
            parts,
        }
        .encode(&self.settings.fleet_key);
        // A connection Redis dropped (a restart) fails once; the second try is on a new one.
        let mut last_error = None;
        for _ in 0..2 {
            if state.con.is_none() {
                state.con = Some(connect(&self.settings.url).map_err(SendError::Connect)?);
            }
            let con = state.con.as_mut().expect("connected above");
            let published = self
                .script
                .key(self.keys.leader())
                .key(self.keys.latest_job())
                .key(self.keys.jobs_channel())
                .key(self.keys.epoch())
                .arg(format!("{}|{token}", self.settings.id))
                .arg(&message)
                .arg(LATEST_JOB_TTL_MS)
                .arg(epoch)
                .invoke::<i64>(con);
            match published {
                Ok(1) => {
                    self.published.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Ok(_) => {
                    self.fenced.fetch_add(1, Ordering::Relaxed);
                    return Err(SendError::LeaseLost);
                }
                Err(e) => {
                    state.con = None;
                    last_error = Some(e);
                }
            }
        }
        Err(SendError::Redis(last_error.expect("two tries failed")))
    }

    /// Called when the lease changes hands: a new leader publishes its latest job at once, so the
    /// engines have work from it within one lease attempt.
    pub fn on_leadership(&self, token: Option<u64>) {
        let Some(token) = token else { return };
        let Some((epoch, _)) = self.leadership.fence() else {
            return;
        };
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(parts) = state.latest.clone() {
            if let Err(e) = self.send(&mut state, (epoch, token), parts, false) {
                tracing::warn!(error = %e, "new leader could not publish its latest job");
            }
        }
    }
}

impl JobSink for RedisJobSink {
    fn publish_job(&self, parts: JobParts, clean: bool) -> Result<(), PublishError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.latest = Some(parts.clone());
        match self.leadership.fence() {
            // A standby keeps its latest job ready and publishes nothing.
            None => Ok(()),
            Some(fence) => self
                .send(&mut state, fence, parts, clean)
                .map_err(|e| PublishError::Store(Box::new(e))),
        }
    }
}

/// Why the leader's job did not reach Redis.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{0}")]
    Connect(redis::RedisError),
    #[error("the lease is no longer ours: job not published")]
    LeaseLost,
    #[error("cannot publish the job to Redis: {0}")]
    Redis(redis::RedisError),
}

/// An engine's view of the job stream: what it has applied, and where jobs go.
struct Follower {
    settings: PlaneSettings,
    keys: Keys,
    feed: Arc<JobFeed>,
    extranonce: ExtranonceSizes,
    metrics: Arc<Metrics>,
    /// The fleet epoch followed (0 before the first job), the highest fencing token seen in it,
    /// and the last sequence applied under that token.
    epoch: u64,
    token: u64,
    sequence: u64,
    /// When the last job applied was published (its leader's clock, µs).
    published_us: u64,
    /// Refusals since the last one logged, and when that was.
    refusals: Refusals,
}

/// Logs refused job messages at most once every [`REFUSAL_LOG_INTERVAL`]: anyone who can publish
/// on the channel can send thousands a second.
#[derive(Default)]
struct Refusals {
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl Refusals {
    /// Whether to log this refusal, and how many went unlogged before it.
    fn log_now(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last_logged
            .is_some_and(|t| now.duration_since(t) < REFUSAL_LOG_INTERVAL)
        {
            self.unlogged += 1;
            return None;
        }
        self.last_logged = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

impl Follower {
    fn refuse(&mut self, error: &WireError) {
        self.metrics.jobs_refused.fetch_add(1, Ordering::Relaxed);
        if let Some(unlogged) = self.refusals.log_now() {
            let signed = matches!(
                error,
                WireError::BadTag | WireError::Unsigned | WireError::Magic
            );
            if signed {
                tracing::error!(error = %error, refused_unlogged = unlogged, "job message refused: not signed with this fleet's key (is redis.fleet_key the same on every jobmanager and engine?), or forged by something that can publish on Redis");
            } else {
                tracing::error!(error = %error, refused_unlogged = unlogged, "job message refused: malformed, although signed with the fleet's key");
            }
        }
    }

    fn apply(&mut self, bytes: &[u8]) {
        let message = match JobMessage::decode(bytes, &self.settings.fleet_key) {
            Ok(m) => m,
            Err(e) => return self.refuse(&e),
        };
        let metrics = &self.metrics;
        let same_epoch = message.epoch == self.epoch;
        if same_epoch && message.token < self.token {
            metrics.jobs_refused.fetch_add(1, Ordering::Relaxed);
            if let Some(unlogged) = self.refusals.log_now() {
                tracing::warn!(
                    token = message.token,
                    highest = self.token,
                    refused_unlogged = unlogged,
                    "job from a deposed jobmanager (stale fencing token) refused"
                );
            }
            return;
        }
        // A new epoch is a leader after Redis lost its state: its jobs are newer than any seen.
        // A signed job of another epoch published before the last one applied is a replay (a
        // recorded message published again), which would put miners back on old work.
        if !same_epoch && self.epoch != 0 && message.published_us <= self.published_us {
            metrics.jobs_refused.fetch_add(1, Ordering::Relaxed);
            if let Some(unlogged) = self.refusals.log_now() {
                tracing::warn!(
                    epoch = message.epoch,
                    followed = self.epoch,
                    refused_unlogged = unlogged,
                    "job of another fleet epoch, older than the last job applied (a replayed message?), refused"
                );
            }
            return;
        }
        if same_epoch && message.token == self.token && message.sequence <= self.sequence {
            return;
        }
        if message.parts.extranonce != self.extranonce {
            metrics.jobs_refused.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                "job's extranonce sizes differ from this engine's pool.extranonce1_size / extranonce2_size: refused; configure the jobmanagers and engines alike"
            );
            return;
        }
        if let Ok(mut h) = metrics.plane_job_latency_us.lock() {
            let _ = h.record(
                UnixMicros::now()
                    .as_micros()
                    .saturating_sub(message.published_us)
                    .max(1),
            );
        }
        // A new leader may publish on the block the old one did without `clean`: the previous
        // block decides, whoever sent the job.
        let clean = message.clean
            || self
                .feed
                .load()
                .current()
                .is_none_or(|j| j.prev_hash != message.parts.prev_hash);
        let (epoch, token, sequence, published_us) = (
            message.epoch,
            message.token,
            message.sequence,
            message.published_us,
        );
        match self.feed.publish(message.parts, clean) {
            Ok(job) => {
                metrics.jobs_published.fetch_add(1, Ordering::Relaxed);
                if !same_epoch && self.epoch != 0 {
                    tracing::info!(
                        epoch,
                        token,
                        previous_epoch = self.epoch,
                        previous_token = self.token,
                        "fleet epoch changed (Redis lost its state or failed over): following the new leader"
                    );
                }
                self.epoch = epoch;
                self.token = token;
                self.sequence = sequence;
                self.published_us = self.published_us.max(published_us);
                tracing::debug!(job = %job.id, height = job.height, token, clean, "job from Redis");
            }
            Err(e) => {
                metrics.jobs_refused.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "job from Redis cannot be built");
            }
        }
    }

    /// One subscription: subscribe, read the latest, then follow the channel until an error or
    /// `stop`. `first` hears when the latest job has been applied.
    fn follow(
        &mut self,
        get: &mut redis::Connection,
        stop: &AtomicBool,
        first: &mut Option<std::sync::mpsc::Sender<()>>,
    ) -> Result<(), redis::RedisError> {
        let mut sub = connect(&self.settings.url)?;
        let mut pubsub = sub.as_pubsub();
        pubsub.subscribe(self.keys.jobs_channel())?;
        let latest: Option<Vec<u8>> = redis::cmd("GET").arg(self.keys.latest_job()).query(get)?;
        if let Some(bytes) = latest {
            self.apply(&bytes);
        }
        if let Some(tx) = first.take() {
            let _ = tx.send(());
        }
        pubsub.set_read_timeout(Some(Duration::from_millis(100)))?;
        while !stop.load(Ordering::Relaxed) {
            match pubsub.get_message() {
                Ok(msg) => self.apply(msg.get_payload_bytes()),
                Err(e) if e.is_timeout() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Why an engine cannot follow the fleet's jobs.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    /// Redis answered with a layout this build cannot use.
    #[error(transparent)]
    Layout(#[from] crate::plane::keys::LayoutError),
    #[error("{0}")]
    Thread(#[from] std::io::Error),
}

/// The subscriber's thread: one subscription per step, until it is lost.
struct Subscription {
    follower: Follower,
    /// Hears when the latest job has been applied (the start waits for it).
    first: Option<std::sync::mpsc::Sender<()>>,
}

impl PlaneLoop for Subscription {
    fn step(
        &mut self,
        get: &mut redis::Connection,
        stop: &AtomicBool,
    ) -> Result<Duration, StepError> {
        self.follower.follow(get, stop, &mut self.first)?;
        Ok(Duration::ZERO)
    }

    fn failed(&mut self, error: &StepError) {
        tracing::warn!(error = %error, "job subscription to Redis lost; miners keep their work while it reconnects");
    }
}

/// Starts the engine's job subscriber. Waits up to two seconds for the first pass (subscription
/// and latest job), so an engine starting on a fleet with a leader has work before its first miner;
/// fails only when Redis speaks another layout.
pub fn start_subscriber(
    settings: PlaneSettings,
    feed: Arc<JobFeed>,
    extranonce: ExtranonceSizes,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, SubscribeError> {
    let keys = Keys::new(&settings.prefix);
    match connect(&settings.url) {
        Ok(mut con) => crate::plane::keys::check_layout(&mut con, &keys).or_else(|e| match e {
            crate::plane::keys::LayoutError::Redis(_) => Ok(()),
            other => Err(other),
        })?,
        Err(e) => {
            tracing::warn!(error = %e, "Redis is unreachable: the engine starts without work and keeps trying")
        }
    }
    let follower = Follower {
        settings,
        keys,
        feed,
        extranonce,
        metrics,
        epoch: 0,
        token: 0,
        sequence: 0,
        published_us: 0,
        refusals: Refusals::default(),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let url = follower.settings.url.clone();
    let body = Subscription {
        follower,
        first: Some(tx),
    };
    // A refused connect costs nothing: keep trying every half second at most, so a Redis that
    // restarted is followed within a fraction of a second.
    let backoff = Backoff {
        first: Duration::from_millis(100),
        max: Duration::from_millis(500),
    };
    let handle = spawn_loop("sluice-plane-jobs", url, backoff, stop, body)?;
    let _ = rx.recv_timeout(Duration::from_secs(2));
    Ok(handle)
}
