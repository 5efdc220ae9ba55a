//! A session's whole state as one versioned value: [`Session::export`], and the two ways back,
//! [`Session::restore`] and [`Session::resume`].
//!
//! Everything [`Session`] holds that changes what it answers next, as plain serde data. One value
//! serves both moves of a session: a live connection continued by another process (an engine
//! restarted or upgraded in place: [`Session::restore`] takes all of it), and the fleet's session
//! store, where a miner that reconnects, to any engine, resumes its session
//! ([`Session::resume`] takes the part a new connection carries). Both check the state again
//! against this process's configuration, so a corrupt or foreign state is refused with a typed
//! error and never panics the engine.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sluice_core::chain::{JobBook, Lookup};
use sluice_core::share::{SavedShares, SessionShares};
use sluice_core::units::{Difficulty, Extranonce1, JobId, VersionMask};

use super::vardiff::Vardiff;
use super::worker::{parse_worker, Worker};
use super::{clamp, SentJob, Session, SessionConfig, MAX_USER_AGENT_LENGTH};

/// The version of [`SessionState`] this build writes and reads (2: duplicate sets by job
/// fingerprint, no longer by the session's job ids).
pub const SESSION_STATE_VERSION: u32 = 2;

/// The most accepted shares on open jobs a session carries to another connection or process; a
/// session with more is not carried ([`ExportError`]: its miner gets a fresh session, whose
/// extranonce1 no old share fits). At 18 shares a minute over 16 jobs of 30 s, a miner holds about
/// 150.
pub const MAX_SAVED_SHARES: usize = 2048;

/// Everything a live connection needs to continue on another process.
///
/// Deliberately left out:
/// - the `Arc<SessionConfig>`: it is the new process's listener's (or policy's), passed to
///   [`Session::restore`], and the state is checked against it;
/// - the subscribe kept while a [`Flow::Resume`](super::Flow::Resume) is answered: it lives only
///   between two calls of the I/O layer (the lookup, then `answer_subscribe`), which finishes it
///   before the session is exported;
/// - the share validator's cached merkle root and its hit count: a cache (rebuilt by the next
///   share) and a statistic;
/// - duplicate sets of jobs no longer in the job book: their jobs can no longer be submitted
///   against.
///
/// Duplicate sets are keyed by job fingerprint, what a job is on every engine: each process's job
/// book gives the same job its own id, so the sets are mapped to the ids of the book the state is
/// resumed or restored with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionState {
    /// [`SESSION_STATE_VERSION`] when written; any other is refused.
    pub version: u32,
    pub extranonce1: Vec<u8>,
    pub session_id: u64,
    pub subscribed: bool,
    pub extranonce_subscribed: bool,
    pub user_agent: Option<String>,
    /// The authorized workers' names, checked again on restore.
    pub workers: Vec<String>,
    pub version_mask: VersionMask,
    /// A resumed session's narrowed mask still to be announced with the subscribe answer.
    pub announce_mask: bool,
    pub difficulty: f64,
    /// Whether `difficulty` still has to be sent before the next job.
    pub difficulty_pending: bool,
    /// The lowest difficulty the miner asked for.
    pub floor: f64,
    pub vardiff: Vardiff,
    pub vardiff_chose: bool,
    /// The minute of the suggestions counted, and their count.
    pub suggestions: (u64, u32),
    /// The jobs sent, oldest first.
    pub sent: Vec<SentJobState>,
    /// The accepted shares' keys, per job fingerprint (jobs still in the book).
    pub duplicates: SavedShares,
    pub accepted: u64,
    pub rejected: u64,
    pub invalid_streak: u32,
    pub failed_authorize: u32,
    pub authorize_retry_at_ms: u64,
    pub connected_ms: u64,
    pub last_request_ms: u64,
    pub save_due: bool,
    pub last_save_ms: u64,
    pub may_resume: bool,
}

/// A job as sent to the session. Its share target is the difficulty's, so it is not kept twice.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SentJobState {
    pub id: u64,
    pub difficulty: f64,
    pub version_mask: VersionMask,
}

/// Why a [`SessionState`] cannot be restored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RestoreError {
    #[error("session state version {found} is not the version {SESSION_STATE_VERSION} this engine reads")]
    Version { found: u32 },
    #[error(
        "the saved extranonce1 is {found} bytes; this listener's `pool.extranonce1_size` is {expected}"
    )]
    Extranonce1 { found: usize, expected: usize },
    #[error("the saved {field} {value} is not a difficulty (finite and above 0)")]
    Difficulty { field: &'static str, value: f64 },
    #[error(
        "the saved version mask {mask} is not within this listener's `pool.version_mask` {allowed}"
    )]
    VersionMask {
        mask: VersionMask,
        allowed: VersionMask,
    },
    #[error("the saved user agent is longer than {MAX_USER_AGENT_LENGTH} bytes")]
    UserAgent,
    #[error(
        "{found} saved workers exceed this listener's `limits.max_workers_per_connection` {max}"
    )]
    TooManyWorkers { found: usize, max: usize },
    #[error("the saved worker {name:?} is not valid on this listener: {reason}")]
    Worker { name: String, reason: &'static str },
    #[error("{found} saved jobs exceed this listener's `jobs.job_history` {max}")]
    TooManyJobs { found: usize, max: usize },
    #[error("job {0} was saved as sent twice")]
    JobSentTwice(u64),
    #[error("two duplicate sets are saved for the job of fingerprint {0:#018x}")]
    DuplicatesTwice(u64),
    #[error("the saved duplicate sets exceed this listener's `jobs.job_history` jobs or `limits.max_shares_per_job` shares")]
    TooManyDuplicates,
    #[error("the saved {field} {value} reached this listener's `limits.{key}` {max}: the session would have been closed")]
    Closed {
        field: &'static str,
        value: u32,
        key: &'static str,
        max: u32,
    },
}

/// Why a session cannot be exported.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExportError {
    #[error("the session holds more than {MAX_SAVED_SHARES} accepted shares on open jobs: too many to carry to another connection")]
    TooManyShares,
}

/// Why a fleet resume ([`Session::resume`]) refused a stored state: the miner gets a fresh
/// session.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ResumeError {
    #[error("the connection has subscribed already")]
    AlreadySubscribed,
    #[error("session state version {found} is not the version {SESSION_STATE_VERSION} this engine reads")]
    Version { found: u32 },
    #[error(
        "the saved extranonce1 is {found} bytes; this listener's `pool.extranonce1_size` is {expected}"
    )]
    Extranonce1 { found: usize, expected: usize },
    #[error("the saved difficulty {0} is not a difficulty (finite and above 0)")]
    Difficulty(f64),
    #[error(
        "{found} saved workers exceed this listener's `limits.max_workers_per_connection` {max}"
    )]
    TooManyWorkers { found: usize, max: usize },
    #[error("the saved worker {name:?} is not valid on this listener: {reason}")]
    Worker { name: String, reason: &'static str },
    #[error("the saved duplicate sets hold more than {MAX_SAVED_SHARES} shares")]
    TooManyShares,
}

impl Session {
    /// The session's whole state, to continue it on another connection ([`Session::resume`]) or
    /// in another process ([`Session::restore`]): its duplicate sets of the jobs still in `book`,
    /// by fingerprint. Refused when those hold more than [`MAX_SAVED_SHARES`] shares.
    pub fn export(&self, book: &JobBook) -> Result<SessionState, ExportError> {
        let duplicates = self
            .shares
            // The sets of every job still in the book, sent on this connection or carried by a
            // resume: another engine may still send that job (it may be its current one).
            .save_duplicates(
                |id| match book.lookup(id) {
                    Lookup::Current(job) | Lookup::Stale(job) => Some(job.fingerprint),
                    Lookup::NotFound => None,
                },
                MAX_SAVED_SHARES,
            )
            .ok_or(ExportError::TooManyShares)?;
        Ok(self.state_with(duplicates))
    }

    /// The state as the fleet's store saves it while this connection holds the session: without
    /// the duplicate sets, since a held record is never resumed (its release carries them, by
    /// [`Session::export`]).
    pub fn export_held(&self) -> SessionState {
        self.state_with(SavedShares::default())
    }

    fn state_with(&self, duplicates: SavedShares) -> SessionState {
        SessionState {
            version: SESSION_STATE_VERSION,
            extranonce1: self.extranonce1.as_bytes().to_vec(),
            session_id: self.session_id,
            subscribed: self.subscribed,
            extranonce_subscribed: self.extranonce_subscribed,
            user_agent: self.user_agent.as_deref().map(str::to_owned),
            workers: self.workers.iter().map(|w| w.name.to_string()).collect(),
            version_mask: self.version_mask,
            announce_mask: self.announce_mask,
            difficulty: self.difficulty.get(),
            difficulty_pending: self.difficulty_pending,
            floor: self.floor.get(),
            vardiff: self.vardiff.clone(),
            vardiff_chose: self.vardiff_chose,
            suggestions: self.suggestions,
            sent: self
                .sent
                .iter()
                .map(|s| SentJobState {
                    id: s.id.0,
                    difficulty: s.difficulty.get(),
                    version_mask: s.version_mask,
                })
                .collect(),
            duplicates,
            accepted: self.accepted,
            rejected: self.rejected,
            invalid_streak: self.invalid_streak,
            failed_authorize: self.failed_authorize,
            authorize_retry_at_ms: self.authorize_retry_at_ms,
            connected_ms: self.connected_ms,
            last_request_ms: self.last_request_ms,
            save_due: self.save_due,
            last_save_ms: self.last_save_ms,
            may_resume: self.may_resume,
        }
    }

    /// A session continued from an exported state, on this process's `config` and job `book`;
    /// the state is checked against them first (see [`RestoreError`]). A duplicate set of a job no
    /// longer in `book` is dropped: that job can no longer be submitted against.
    pub fn restore(
        state: SessionState,
        config: Arc<SessionConfig>,
        book: &JobBook,
    ) -> Result<Session, RestoreError> {
        if state.version != SESSION_STATE_VERSION {
            return Err(RestoreError::Version {
                found: state.version,
            });
        }
        let limits = &config.limits;
        for (field, value, key, max) in [
            (
                "invalid streak",
                state.invalid_streak,
                "max_invalid_streak",
                limits.max_invalid_streak,
            ),
            (
                "failed authorizations",
                state.failed_authorize,
                "max_failed_authorize",
                limits.max_failed_authorize,
            ),
        ] {
            // Counted up before compared: a state at its limit would overflow the count, and a
            // live session never holds one.
            if value >= max {
                return Err(RestoreError::Closed {
                    field,
                    value,
                    key,
                    max,
                });
            }
        }
        let expected = config.extranonce.extranonce1();
        let extranonce1 = Extranonce1::new(&state.extranonce1)
            .filter(|e| e.as_bytes().len() == expected)
            .ok_or(RestoreError::Extranonce1 {
                found: state.extranonce1.len(),
                expected,
            })?;
        let difficulty = checked_difficulty("difficulty", state.difficulty)?;
        let floor = checked_difficulty("floor", state.floor)?;
        if !config.version_mask.contains(state.version_mask) {
            return Err(RestoreError::VersionMask {
                mask: state.version_mask,
                allowed: config.version_mask,
            });
        }
        if state
            .user_agent
            .as_ref()
            .is_some_and(|ua| ua.len() > MAX_USER_AGENT_LENGTH)
        {
            return Err(RestoreError::UserAgent);
        }
        if state.workers.len() > config.limits.max_workers {
            return Err(RestoreError::TooManyWorkers {
                found: state.workers.len(),
                max: config.limits.max_workers,
            });
        }
        let workers = checked_workers(&state.workers, &config)
            .map_err(|(name, reason)| RestoreError::Worker { name, reason })?;
        if state.sent.len() > config.job_history {
            return Err(RestoreError::TooManyJobs {
                found: state.sent.len(),
                max: config.job_history,
            });
        }
        let mut sent = VecDeque::with_capacity(state.sent.len());
        for s in &state.sent {
            if sent.iter().any(|j: &SentJob| j.id.0 == s.id) {
                return Err(RestoreError::JobSentTwice(s.id));
            }
            let d = checked_difficulty("difficulty of a sent job", s.difficulty)?;
            sent.push_back(SentJob {
                id: JobId(s.id),
                target: d.target(),
                difficulty: d,
                version_mask: s.version_mask,
            });
        }
        let limits = config.duplicate_limits;
        for (i, (fingerprint, keys)) in state.duplicates.jobs.iter().enumerate() {
            if state.duplicates.jobs[..i]
                .iter()
                .any(|(f, _)| f == fingerprint)
            {
                return Err(RestoreError::DuplicatesTwice(*fingerprint));
            }
            if keys.len() > limits.max_shares_per_job {
                return Err(RestoreError::TooManyDuplicates);
            }
        }
        if state.duplicates.jobs.len() > limits.max_jobs {
            return Err(RestoreError::TooManyDuplicates);
        }
        let mut shares = SessionShares::new(limits);
        shares.restore_duplicates(&state.duplicates, |fingerprint| {
            local_job(book, fingerprint)
        });
        Ok(Session {
            extranonce1,
            session_id: state.session_id,
            subscribed: state.subscribed,
            user_agent: state.user_agent.map(Arc::from),
            workers,
            version_mask: state.version_mask,
            extranonce_subscribed: state.extranonce_subscribed,
            difficulty,
            difficulty_pending: state.difficulty_pending,
            floor,
            sent,
            shares,
            vardiff: state.vardiff,
            invalid_streak: state.invalid_streak,
            suggestions: state.suggestions,
            vardiff_chose: state.vardiff_chose,
            save_due: state.save_due,
            announce_mask: state.announce_mask,
            last_save_ms: state.last_save_ms,
            failed_authorize: state.failed_authorize,
            authorize_retry_at_ms: state.authorize_retry_at_ms,
            connected_ms: state.connected_ms,
            last_request_ms: state.last_request_ms,
            accepted: state.accepted,
            rejected: state.rejected,
            may_resume: state.may_resume,
            pending_subscribe: None,
            config,
        })
    }
}

impl Session {
    /// Takes over a session the fleet's store kept under `session_id`, before the miner's
    /// subscribe is answered: its extranonce1 (so work and shares stay valid for the miner),
    /// difficulty (clamped into this listener's bounds), version mask (narrowed to this
    /// listener's, and then announced with the subscribe answer) and authorized workers (each
    /// checked again here), and its duplicate sets, mapped by fingerprint to this engine's ids of
    /// the same jobs in `book`. The subscribe that follows answers with the saved extranonce1, then
    /// sends the difficulty and a job at once.
    ///
    /// A fleet resume is a *new* connection that subscribes again, so it takes none of the live
    /// fields of `state` (subscribed flags, user agent, pending announcements, the difficulty
    /// floor, vardiff's window, the jobs sent, counters, timers): those are this connection's
    /// own. [`Session::restore`], for a live connection moved to another process, takes them all.
    /// The session id is the one the miner claimed (the store's key), not the state's copy.
    pub fn resume(
        &mut self,
        session_id: u64,
        state: &SessionState,
        book: &JobBook,
    ) -> Result<(), ResumeError> {
        if self.subscribed {
            return Err(ResumeError::AlreadySubscribed);
        }
        if state.version != SESSION_STATE_VERSION {
            return Err(ResumeError::Version {
                found: state.version,
            });
        }
        let expected = self.config.extranonce.extranonce1();
        let extranonce1 = Extranonce1::new(&state.extranonce1)
            .filter(|e| e.as_bytes().len() == expected)
            .ok_or(ResumeError::Extranonce1 {
                found: state.extranonce1.len(),
                expected,
            })?;
        let difficulty = Difficulty::new(state.difficulty)
            .map_err(|_| ResumeError::Difficulty(state.difficulty))?;
        // Checked before each name is, so a stored list of any length costs one comparison.
        if state.workers.len() > self.config.limits.max_workers {
            return Err(ResumeError::TooManyWorkers {
                found: state.workers.len(),
                max: self.config.limits.max_workers,
            });
        }
        if state.duplicates.len() > MAX_SAVED_SHARES {
            return Err(ResumeError::TooManyShares);
        }
        let workers = checked_workers(&state.workers, &self.config)
            .map_err(|(name, reason)| ResumeError::Worker { name, reason })?;
        self.extranonce1 = extranonce1;
        self.session_id = session_id;
        self.shares
            .restore_duplicates(&state.duplicates, |fingerprint| {
                local_job(book, fingerprint)
            });
        // A mask negotiated on this connection (a configure before the subscribe) is what the
        // miner was told: it stays. Otherwise the saved one, within this listener's, announced
        // with the subscribe answer when that narrowed it.
        if self.version_mask.is_none() {
            self.version_mask = state.version_mask.within(self.config.version_mask);
            self.announce_mask = self.version_mask != state.version_mask;
        }
        self.difficulty = clamp(
            difficulty,
            self.config.min_difficulty,
            self.config.max_difficulty,
        );
        self.difficulty_pending = true;
        self.workers = workers;
        Ok(())
    }
}

/// This book's id of the job with that fingerprint.
fn local_job(book: &JobBook, fingerprint: u64) -> Option<JobId> {
    book.jobs()
        .find(|j| j.fingerprint == fingerprint)
        .map(|j| j.id)
}

/// The saved workers' names checked on this listener; the first that fails, with why.
fn checked_workers(
    names: &[String],
    config: &SessionConfig,
) -> Result<Vec<Worker>, (String, &'static str)> {
    names
        .iter()
        .map(|name| {
            parse_worker(name, config.network, config.allow_free_worker_names)
                .map_err(|e| (name.clone(), e.message()))
        })
        .collect()
}

fn checked_difficulty(field: &'static str, value: f64) -> Result<Difficulty, RestoreError> {
    Difficulty::new(value).map_err(|_| RestoreError::Difficulty { field, value })
}
