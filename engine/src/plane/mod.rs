//! The Redis control plane: how jobmanagers and stratum engines of one fleet find each other, agree
//! on one publishing jobmanager, and pass jobs and found blocks (design section 6).
//!
//! - [`keys`]: the layout version check (the layout itself is the `sluice-layout` crate);
//! - [`lease`]: jobmanager leadership, a lease with a fleet epoch and a fencing token;
//! - [`registry`]: each process's service hash, refreshed under a TTL;
//! - [`jobs`]: the leader publishes jobs (fenced in Redis), engines take them (fenced again by token);
//! - [`blocks`]: engines hand found blocks to the leader, which records each node's answer;
//! - [`sessions`]: engine slots (fleet-unique extranonce1) and the session store for resume;
//! - [`sharelog`]: every share verdict to a stream in idempotent batches, spooled while Redis is away;
//! - [`policies`]: per-connection overrides of difficulty, vardiff target and version mask;
//! - [`commands`]: drain, undrain and kick from sluicectl, acknowledged through Redis;
//!
//! Everything here is blocking (the `redis` crate's synchronous client) and runs on threads of its
//! own, never on an engine core; a thread that loops on Redis is a [`PlaneLoop`] run by
//! [`spawn_loop`].

pub mod blocks;
pub mod commands;
pub mod jobs;
pub mod keys;
pub mod lease;
pub mod policies;
pub mod registry;
pub mod sessions;
pub mod sharelog;

#[cfg(test)]
pub(crate) mod test_redis;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use keys::{Keys, LAYOUT_VERSION};
pub use sluice_layout::job_message::FleetKey;

pub use crate::config::PlaneSettings;

/// Redis calls time out after this: a hung Redis must not hold a thread forever.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// Opens a connection with timeouts set.
pub fn connect(url: &str) -> redis::RedisResult<redis::Connection> {
    let client = redis::Client::open(url)?;
    let con = client.get_connection_with_timeout(REDIS_TIMEOUT)?;
    con.set_read_timeout(Some(REDIS_TIMEOUT))?;
    con.set_write_timeout(Some(REDIS_TIMEOUT))?;
    Ok(con)
}

/// Sleeps `total` in short steps so `stop` is noticed; false when stopped.
pub fn pause(total: Duration, stop: &AtomicBool) -> bool {
    let step = Duration::from_millis(50);
    let mut slept = Duration::ZERO;
    while slept < total {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(step.min(total - slept));
        slept += step;
    }
    !stop.load(std::sync::atomic::Ordering::Relaxed)
}

/// The connection, opened when there is none; `None` while Redis is unreachable. Threads keep
/// their connection in an `Option` and drop it on any error, so the next call reconnects.
pub fn connected<'a>(
    con: &'a mut Option<redis::Connection>,
    url: &str,
) -> Option<&'a mut redis::Connection> {
    if con.is_none() {
        *con = connect(url).ok();
    }
    con.as_mut()
}

/// How long a plane thread waits after a failed step: `first`, doubled after each failure up to
/// `max`, back to `first` after a step that worked.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The same wait after every failure.
    pub const fn fixed(wait: Duration) -> Backoff {
        Backoff {
            first: wait,
            max: wait,
        }
    }
}

/// Why a plane thread's step failed: its connection is dropped and the next step reconnects.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("cannot connect")]
    Unreachable,
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
    /// The block submitter this thread hands blocks to has stopped.
    #[error("the block submitter stopped")]
    SubmitterStopped,
    /// The lease script left the fleet epoch unreadable (`P:jm:epoch` is not a u64).
    #[error("{key} holds no epoch: {found:?}")]
    NoEpoch { key: String, found: String },
}

/// The body of a plane thread, which [`spawn_loop`] runs.
pub trait PlaneLoop: Send + 'static {
    /// One step on a live connection; `Ok` with the wait before the next step.
    fn step(
        &mut self,
        con: &mut redis::Connection,
        stop: &AtomicBool,
    ) -> Result<Duration, StepError>;

    /// A step failed, or Redis could not be reached: before the backoff.
    fn failed(&mut self, _error: &StepError) {}

    /// Once the stop flag is up, with the connection if there is one.
    fn finish(&mut self, _con: Option<&mut redis::Connection>) {}
}

/// A [`PlaneLoop`] of a step alone: failures are silent (the connection is dropped and the loop
/// backs off), nothing to do on stop.
pub struct Steps<F>(pub F);

impl<F> PlaneLoop for Steps<F>
where
    F: FnMut(&mut redis::Connection, &AtomicBool) -> Result<Duration, StepError> + Send + 'static,
{
    fn step(
        &mut self,
        con: &mut redis::Connection,
        stop: &AtomicBool,
    ) -> Result<Duration, StepError> {
        (self.0)(con, stop)
    }
}

/// Runs `body` on a thread named `name` until `stop`: connects (again) to `url` when it has no
/// connection, steps, waits what the step asked for, and after a failure drops the connection
/// and waits `backoff`; every wait notices `stop`. The one skeleton of the plane's threads.
pub fn spawn_loop(
    name: &str,
    url: String,
    backoff: Backoff,
    stop: Arc<AtomicBool>,
    mut body: impl PlaneLoop,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let mut con = None;
            let mut wait = backoff.first;
            while !stop.load(Ordering::Relaxed) {
                let result = match connected(&mut con, &url) {
                    Some(c) => body.step(c, &stop),
                    None => Err(StepError::Unreachable),
                };
                match result {
                    Ok(next) => {
                        wait = backoff.first;
                        if !next.is_zero() {
                            pause(next, &stop);
                        }
                    }
                    Err(e) => {
                        con = None;
                        body.failed(&e);
                        pause(wait, &stop);
                        wait = (wait * 2).min(backoff.max);
                    }
                }
            }
            body.finish(con.as_mut());
        })
}

pub use crate::config::default_id;
