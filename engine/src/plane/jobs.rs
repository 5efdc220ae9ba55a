//! Job fan-out through Redis.
//!
//! The jobmanager side is a [`JobSink`]: every job its source builds is kept as the latest, and
//! while this process leads it is written to `P:job:latest` and published on `P:jobs` by one Lua
//! script that first checks the lease is still ours (a deposed leader cannot publish even once).
//! On taking the lease, the new leader publishes the latest job it built at once.
//!
//! The engine side subscribes first, then reads `P:job:latest`, so a job published in between is
//! not missed; every (re)connection reads the latest again, so an engine that starts or returns to
//! Redis has work at once. Jobs are applied in (token, sequence) order: a job with a token below
//! the highest seen comes from a deposed leader and is refused, and one already applied is skipped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::chain::JobParts;
use crate::metrics::Metrics;
use crate::plane::keys::LATEST_JOB_TTL_MS;
use crate::plane::lease::Leadership;
use crate::plane::wire::JobMessage;
use crate::plane::{connect, Keys, PlaneSettings};
use crate::server::feed::{JobFeed, JobSink};
use crate::units::ExtranonceSizes;

/// Microseconds since the Unix epoch.
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Writes the latest job and publishes it, only while `ARGV[1]` (`ID|TOKEN`) holds the lease.
const PUBLISH_FENCED: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
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
        }
    }

    fn send(
        &self,
        state: &mut SinkState,
        token: u64,
        parts: JobParts,
        clean: bool,
    ) -> Result<(), String> {
        state.sequence += 1;
        let message = JobMessage {
            token,
            sequence: state.sequence,
            published_us: now_us(),
            clean,
            parts,
        }
        .encode();
        if state.con.is_none() {
            state.con = Some(connect(&self.settings.url).map_err(|e| e.to_string())?);
        }
        let con = state.con.as_mut().expect("connected above");
        let published = self
            .script
            .key(self.keys.leader())
            .key(self.keys.latest_job())
            .key(self.keys.jobs_channel())
            .arg(format!("{}|{token}", self.settings.id))
            .arg(message)
            .arg(LATEST_JOB_TTL_MS)
            .invoke::<i64>(con);
        match published {
            Ok(1) => Ok(()),
            Ok(_) => Err("the lease is no longer ours: job not published".into()),
            Err(e) => {
                state.con = None;
                Err(format!("cannot publish the job to Redis: {e}"))
            }
        }
    }

    /// Called when the lease changes hands: a new leader publishes its latest job at once, so the
    /// engines have work from it within one lease attempt.
    pub fn on_leadership(&self, token: Option<u64>) {
        let Some(token) = token else { return };
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(parts) = state.latest.clone() {
            if let Err(e) = self.send(&mut state, token, parts, false) {
                tracing::warn!(error = %e, "new leader could not publish its latest job");
            }
        }
    }
}

impl JobSink for RedisJobSink {
    fn publish_job(&self, parts: JobParts, clean: bool) -> Result<(), String> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.latest = Some(parts.clone());
        match self.leadership.token() {
            // A standby keeps its latest job ready and publishes nothing.
            None => Ok(()),
            Some(token) => self.send(&mut state, token, parts, clean),
        }
    }
}

/// An engine's view of the job stream: what it has applied, and where jobs go.
struct Follower {
    settings: PlaneSettings,
    keys: Keys,
    feed: Arc<JobFeed>,
    extranonce: ExtranonceSizes,
    metrics: Arc<Metrics>,
    /// The highest fencing token seen, and the last sequence applied under it.
    token: u64,
    sequence: u64,
}

impl Follower {
    fn apply(&mut self, bytes: &[u8]) {
        let metrics = &self.metrics;
        let message = match JobMessage::decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                metrics.jobs_refused.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "malformed job message from Redis");
                return;
            }
        };
        if message.token < self.token {
            metrics.jobs_refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                token = message.token,
                highest = self.token,
                "job from a deposed jobmanager (stale fencing token) refused"
            );
            return;
        }
        if message.token == self.token && message.sequence <= self.sequence {
            return;
        }
        if message.parts.extranonce != self.extranonce {
            metrics.jobs_refused.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                "job's extranonce sizes differ from this engine's pool.extranonce1_size / extranonce2_size: refused; configure the jobmanagers and engines alike"
            );
            return;
        }
        self.token = message.token;
        self.sequence = message.sequence;
        if let Ok(mut h) = metrics.plane_job_latency_us.lock() {
            let _ = h.record(now_us().saturating_sub(message.published_us).max(1));
        }
        // A new leader may publish on the block the old one did without `clean`: the previous
        // block decides, whoever sent the job.
        let clean = message.clean
            || self
                .feed
                .load()
                .current()
                .is_none_or(|j| j.prev_hash != message.parts.prev_hash);
        match self.feed.publish(message.parts, clean) {
            Ok(job) => {
                metrics.jobs_published.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(job = %job.id, height = job.height, token = message.token, clean, "job from Redis");
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
        stop: &AtomicBool,
        first: &mut Option<std::sync::mpsc::Sender<()>>,
    ) -> Result<(), String> {
        let mut sub = connect(&self.settings.url).map_err(|e| e.to_string())?;
        let mut get = connect(&self.settings.url).map_err(|e| e.to_string())?;
        let mut pubsub = sub.as_pubsub();
        pubsub
            .subscribe(self.keys.jobs_channel())
            .map_err(|e| e.to_string())?;
        let latest: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.keys.latest_job())
            .query(&mut get)
            .map_err(|e| e.to_string())?;
        drop(get);
        if let Some(bytes) = latest {
            self.apply(&bytes);
        }
        if let Some(tx) = first.take() {
            let _ = tx.send(());
        }
        pubsub
            .set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
        while !stop.load(Ordering::Relaxed) {
            match pubsub.get_message() {
                Ok(msg) => self.apply(msg.get_payload_bytes()),
                Err(e) if e.is_timeout() => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
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
) -> Result<JoinHandle<()>, String> {
    let keys = Keys::new(&settings.prefix);
    match connect(&settings.url) {
        Ok(mut con) => crate::plane::keys::check_layout(&mut con, &keys).or_else(|e| match e {
            crate::plane::keys::LayoutError::Redis(_) => Ok(()),
            other => Err(other.to_string()),
        })?,
        Err(e) => {
            tracing::warn!(error = %e, "Redis is unreachable: the engine starts without work and keeps trying")
        }
    }
    let mut follower = Follower {
        settings,
        keys,
        feed,
        extranonce,
        metrics,
        token: 0,
        sequence: 0,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("sluice-plane-jobs".into())
        .spawn(move || {
            let mut first = Some(tx);
            let mut backoff = Duration::from_millis(100);
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                if let Err(e) = follower.follow(&stop, &mut first) {
                    tracing::warn!(error = %e, "job subscription to Redis lost; miners keep their work while it reconnects");
                }
                if started.elapsed() > Duration::from_secs(5) {
                    backoff = Duration::from_millis(100);
                }
                let until = Instant::now() + backoff;
                while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(20));
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        })
        .map_err(|e| e.to_string())?;
    let _ = rx.recv_timeout(Duration::from_secs(2));
    Ok(handle)
}
