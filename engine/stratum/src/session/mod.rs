//! The session: one miner connection's state machine, sans-IO.
//!
//! Lines go in ([`Session::handle_line`]), jobs go in ([`Session::push_job`]), the clock goes in
//! ([`Session::tick`]); replies and notifications come out as bytes appended to the connection's
//! output buffer, and share verdicts and found blocks come out as [`Event`]s. The I/O layer owns the
//! socket, the framing and the timers; this module owns every protocol decision (what a line means,
//! when a subscribe resumes a saved session ([`Flow::Resume`]), which policy the first worker runs
//! on ([`policy`]), when the session must be saved ([`Event::SessionChanged`])), so it is tested and
//! fuzzed without a socket. Each line is parsed once, here.

pub use sluice_core::records::{BlockFound, CloseReason, ShareRecord};
pub use sluice_core::vardiff;
pub mod policy;
pub mod state;
pub mod worker;

use std::collections::VecDeque;
use std::sync::Arc;

use bitcoin::Network;

use crate::codec::request::OwnedId;
use crate::codec::request::{Configure, ParseError};
use crate::codec::{message, parse, ErrorCode, Id, Request, StratumError, Submit};
use crate::share::{RejectAnswer, ValidateSubmit};
use policy::PolicyLookup;
use sluice_core::chain::{Job, JobBook, Lookup};
use sluice_core::share::{parse_job_id, DuplicateLimits, Reject, SessionShares, ShareRules};
use sluice_core::units::{Difficulty, Extranonce1, ExtranonceSizes, JobId, Target, VersionMask};
pub use state::{
    ExportError, RestoreError, ResumeError, SessionState, MAX_SAVED_SHARES, SESSION_STATE_VERSION,
};
use vardiff::{Vardiff, VardiffConfig};
use worker::{parse_worker, password_difficulty, Worker};

/// The pool's default BIP310 version-rolling mask (BIP320's general-purpose bits).
pub const DEFAULT_VERSION_MASK: VersionMask = VersionMask::BIP320;

/// Per-connection limits, each with its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Workers one connection may authorize.
    pub max_workers: usize,
    /// Consecutive rejected shares or bad requests (stale shares excepted) before disconnecting.
    pub max_invalid_streak: u32,
    /// Failed `mining.authorize` calls before disconnecting; between failures the connection must
    /// wait a backoff that doubles from one second.
    pub max_failed_authorize: u32,
    /// Time from connecting to a first authorized worker.
    pub unauthenticated_timeout_ms: u64,
    /// Time without any request from the miner.
    pub idle_timeout_ms: u64,
    /// `mining.suggest_difficulty` calls answered per minute; more are refused (and count in the
    /// invalid streak), so a miner cannot keep resetting vardiff.
    pub max_suggestions_per_minute: u32,
    /// The shortest time between two saves of the session to the fleet's store (a difficulty or
    /// mask change waits for it; the first authorize and the release do not).
    pub session_save_interval_ms: u64,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max_workers: 64,
            max_invalid_streak: 100,
            max_failed_authorize: 5,
            unauthenticated_timeout_ms: 30_000,
            idle_timeout_ms: 600_000,
            max_suggestions_per_minute: 10,
            session_save_interval_ms: 5_000,
        }
    }
}

/// What a session needs to know about the pool. Shared by all sessions of a listener.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub network: Network,
    pub extranonce: ExtranonceSizes,
    /// The version bits the pool lets miners roll.
    pub version_mask: VersionMask,
    pub start_difficulty: Difficulty,
    pub min_difficulty: Difficulty,
    pub max_difficulty: Difficulty,
    /// `None` turns vardiff off: the difficulty stays where start, suggestion or password put it.
    pub vardiff: Option<VardiffConfig>,
    pub allow_free_worker_names: bool,
    pub limits: SessionLimits,
    pub duplicate_limits: DuplicateLimits,
    /// Jobs whose difficulty the session remembers; match the job book's capacity.
    pub job_history: usize,
}

impl SessionConfig {
    /// Defaults for a network: difficulty 1 to start, vardiff on.
    pub fn new(network: Network) -> SessionConfig {
        SessionConfig {
            network,
            extranonce: ExtranonceSizes::default(),
            version_mask: DEFAULT_VERSION_MASK,
            start_difficulty: Difficulty::ONE,
            min_difficulty: Difficulty::new(1e-8).expect("positive"),
            max_difficulty: Difficulty::new(1e15).expect("positive"),
            vardiff: Some(VardiffConfig::default()),
            allow_free_worker_names: false,
            limits: SessionLimits::default(),
            duplicate_limits: DuplicateLimits::default(),
            job_history: sluice_core::chain::book::DEFAULT_JOB_HISTORY,
        }
    }
}

/// Whether the connection goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Close(CloseReason),
    /// The miner's subscribe names this saved session: the I/O layer looks it up (and claims it),
    /// then calls [`Session::resume`] with what it found (or not), and [`Session::answer_subscribe`],
    /// before it hands the session another line. The session keeps the subscribe meanwhile.
    Resume(u64),
}

#[derive(Debug, Clone)]
pub enum Event {
    /// A share of an authorized worker on a job of this session, judged: for the share log.
    Share(ShareRecord),
    /// A submit refused before any worker or job of the session was known (not subscribed, an
    /// unauthorized worker, an unknown job): for metrics only. It carries nothing the miner chose,
    /// so a flood of made-up names never reaches the share log.
    Refused(Reject),
    Block(Box<BlockFound>),
    /// The session's difficulty changed (vardiff, suggestion or password).
    Difficulty(Difficulty),
    /// The session's state changed and should be saved to the fleet's store (at most once per
    /// `session_save_interval_ms`, except the first authorize's).
    SessionChanged,
    /// A subscribe named a session id that is not one (not 1 to 16 hex digits): it gets a fresh
    /// session. For metrics.
    UnknownSessionId,
}

/// What the session reads from its surroundings on each call.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub book: &'a JobBook,
    /// Unix time in milliseconds.
    pub now_ms: u64,
    /// The policies the first worker's authorize is matched against, before it is answered (so
    /// its first job carries the policy's difficulty). `None`: the session's own configuration.
    pub policies: Option<&'a dyn PolicyLookup>,
}

impl<'a> Context<'a> {
    /// A context without policies.
    pub fn new(book: &'a JobBook, now_ms: u64) -> Context<'a> {
        Context {
            book,
            now_ms,
            policies: None,
        }
    }
}

/// A subscribe waiting for the saved session it names (see [`Flow::Resume`]).
#[derive(Debug)]
struct PendingSubscribe {
    id: OwnedId,
    user_agent: Option<Arc<str>>,
}

/// A job as sent to this session: the difficulty its shares are judged at.
#[derive(Debug, Clone, Copy)]
struct SentJob {
    id: JobId,
    target: Target,
    difficulty: Difficulty,
    /// The version bits the miner was allowed to roll when the job was sent.
    version_mask: VersionMask,
}

/// An extranonce1 as the number its bytes spell (big-endian): the session id.
pub fn extranonce1_value(e: &Extranonce1) -> u64 {
    let mut b = [0u8; 8];
    let bytes = e.as_bytes();
    b[8 - bytes.len()..].copy_from_slice(bytes);
    u64::from_be_bytes(b)
}

/// One connection's protocol state.
#[derive(Debug)]
pub struct Session {
    config: Arc<SessionConfig>,
    extranonce1: Extranonce1,
    /// The subscription id sent in `mining.subscribe`'s answer (hex).
    session_id: u64,
    subscribed: bool,
    /// Shared with every share record of the session, so logging a share copies a pointer.
    user_agent: Option<Arc<str>>,
    workers: Vec<Worker>,
    version_mask: VersionMask,
    extranonce_subscribed: bool,
    /// The difficulty announced to the miner (applies to jobs sent from now on).
    difficulty: Difficulty,
    /// Whether `difficulty` still has to be sent before the next job.
    difficulty_pending: bool,
    /// The lowest difficulty the miner asked for (suggestion, configure or password).
    floor: Difficulty,
    sent: VecDeque<SentJob>,
    shares: SessionShares,
    vardiff: Vardiff,
    invalid_streak: u32,
    /// The minute (`now_ms / 60_000`) of the suggestions counted, and their count.
    suggestions: (u64, u32),
    /// Whether vardiff has chosen the difficulty; from then on a suggestion may raise it only.
    vardiff_chose: bool,
    /// A save is waiting for `session_save_interval_ms` to pass.
    save_due: bool,
    /// A resumed session's mask was narrowed: `mining.set_version_mask` goes with the subscribe
    /// answer.
    announce_mask: bool,
    last_save_ms: u64,
    failed_authorize: u32,
    authorize_retry_at_ms: u64,
    connected_ms: u64,
    last_request_ms: u64,
    accepted: u64,
    rejected: u64,
    /// A subscribe naming a session id may still ask to resume it (a fleet's store is there, and
    /// no subscribe has asked yet).
    may_resume: bool,
    pending_subscribe: Option<PendingSubscribe>,
}

impl Session {
    pub fn new(
        config: Arc<SessionConfig>,
        extranonce1: Extranonce1,
        session_id: u64,
        now_ms: u64,
    ) -> Session {
        assert_eq!(
            extranonce1.as_bytes().len(),
            config.extranonce.extranonce1()
        );
        let difficulty = clamp(
            config.start_difficulty,
            config.min_difficulty,
            config.max_difficulty,
        );
        Session {
            extranonce1,
            session_id,
            subscribed: false,
            user_agent: None,
            workers: Vec::new(),
            version_mask: VersionMask::NONE,
            extranonce_subscribed: false,
            difficulty,
            difficulty_pending: true,
            floor: config.min_difficulty,
            sent: VecDeque::new(),
            shares: SessionShares::new(config.duplicate_limits),
            vardiff: Vardiff::new(now_ms),
            invalid_streak: 0,
            suggestions: (0, 0),
            vardiff_chose: false,
            save_due: false,
            announce_mask: false,
            last_save_ms: 0,
            failed_authorize: 0,
            authorize_retry_at_ms: 0,
            connected_ms: now_ms,
            last_request_ms: now_ms,
            accepted: 0,
            rejected: 0,
            may_resume: false,
            pending_subscribe: None,
            config,
        }
    }

    /// Lets the first subscribe that names a session id ask to resume it ([`Flow::Resume`]):
    /// for connections of an engine with a fleet's session store.
    pub fn allow_resume(&mut self) {
        self.may_resume = true;
    }

    pub fn extranonce1(&self) -> &Extranonce1 {
        &self.extranonce1
    }

    pub fn difficulty(&self) -> Difficulty {
        self.difficulty
    }

    pub fn version_mask(&self) -> VersionMask {
        self.version_mask
    }

    pub fn workers(&self) -> &[Worker] {
        &self.workers
    }

    pub fn user_agent(&self) -> Option<&str> {
        self.user_agent.as_deref()
    }

    pub fn is_subscribed(&self) -> bool {
        self.subscribed
    }

    /// The session id miners send back to resume: 16 hex digits of a random number.
    pub fn session_id(&self) -> String {
        format_session_id(self.session_id)
    }

    /// The session id as a number (the store's key).
    pub fn raw_session_id(&self) -> u64 {
        self.session_id
    }

    /// The listener (or policy) configuration the session runs on.
    pub fn config(&self) -> &Arc<SessionConfig> {
        &self.config
    }

    /// The first authorized worker's name, which policies match on.
    pub fn first_worker(&self) -> Option<&str> {
        self.workers.first().map(|w| &*w.name)
    }

    /// Runs the session on another configuration (a per-connection policy): the difficulty is
    /// clamped into the new bounds (or, before authorization, set to the new start) and announced
    /// before the next job; the version mask can only narrow (widening needs a new configure).
    /// Returns whether the difficulty changed.
    pub fn apply_config(&mut self, config: Arc<SessionConfig>, out: &mut Vec<u8>) -> bool {
        let before = self.difficulty;
        let target = if self.workers.is_empty() {
            config.start_difficulty
        } else {
            self.difficulty
        };
        self.difficulty = clamp(target, config.min_difficulty, config.max_difficulty);
        self.floor = clamp(self.floor, config.min_difficulty, config.max_difficulty);
        let mask = self.version_mask.within(config.version_mask);
        self.config = config;
        if mask != self.version_mask {
            // Announced before any job judged by it: jobs sent before keep the mask they were
            // sent with, so work in flight is not thrown away.
            self.version_mask = mask;
            message::write_set_version_mask(out, mask);
            self.save_due = true;
        }
        let changed = self.difficulty != before;
        if changed {
            self.difficulty_pending = true;
            self.save_due = true;
            if !self.workers.is_empty() {
                // Announced now; it applies to the work sent after it.
                self.send_pending_difficulty(out);
            }
        }
        changed
    }

    /// The user agent, shared (for share records).
    pub fn user_agent_shared(&self) -> Option<Arc<str>> {
        self.user_agent.clone()
    }

    pub fn is_authorized(&self) -> bool {
        !self.workers.is_empty()
    }

    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// The ceiling the session's difficulty may reach.
    fn ceiling(&self) -> Difficulty {
        self.config.max_difficulty
    }

    /// Handles one line from the miner.
    pub fn handle_line(
        &mut self,
        line: &[u8],
        ctx: &Context<'_>,
        out: &mut Vec<u8>,
        events: &mut Vec<Event>,
    ) -> Flow {
        self.last_request_ms = ctx.now_ms;
        let message = match parse(line) {
            Ok(m) => m,
            Err(ParseError { id, kind }) => {
                message::write_error(out, id, kind.stratum_error());
                return self.count_invalid();
            }
        };
        let id = message.id;
        match message.request {
            Request::Submit(submit) => return self.submit(id, &submit, ctx, out, events),
            Request::Configure(c) => self.configure(id, &c, out),
            Request::Subscribe {
                user_agent,
                session_id,
            } => {
                if self.subscribed {
                    message::write_error(
                        out,
                        id,
                        StratumError::new(ErrorCode::Other, "Already subscribed"),
                    );
                    return self.count_invalid();
                }
                let user_agent = user_agent.map(|ua| {
                    let ua: &str = &ua;
                    let mut end = ua.len().min(MAX_USER_AGENT_LENGTH);
                    while !ua.is_char_boundary(end) {
                        end -= 1;
                    }
                    Arc::from(&ua[..end])
                });
                if let Some(text) = session_id.filter(|_| std::mem::take(&mut self.may_resume)) {
                    match parse_session_id(&text) {
                        Some(saved) => {
                            self.pending_subscribe = Some(PendingSubscribe {
                                id: id.to_owned(),
                                user_agent,
                            });
                            return Flow::Resume(saved);
                        }
                        None => events.push(Event::UnknownSessionId),
                    }
                }
                self.subscribe(id, user_agent, ctx, out);
            }
            Request::Authorize { worker, password } => {
                return self.authorize(id, &worker, password.as_deref(), ctx, out, events);
            }
            Request::SuggestDifficulty(d) => {
                let minute = ctx.now_ms / 60_000;
                if self.suggestions.0 != minute {
                    self.suggestions = (minute, 0);
                }
                self.suggestions.1 = self.suggestions.1.saturating_add(1);
                if self.suggestions.1 > self.config.limits.max_suggestions_per_minute {
                    message::write_error(
                        out,
                        id,
                        StratumError::new(ErrorCode::Other, "Too many difficulty suggestions"),
                    );
                    return self.count_invalid();
                }
                match Difficulty::new(d) {
                    Ok(d) => {
                        self.suggest_difficulty(d, ctx.now_ms, events);
                        message::write_true(out, id);
                    }
                    Err(_) => {
                        message::write_error(
                            out,
                            id,
                            StratumError::new(ErrorCode::Other, "Invalid difficulty"),
                        );
                        return self.count_invalid();
                    }
                }
                if self.is_authorized() {
                    self.send_pending_difficulty(out);
                }
            }
            Request::ExtranonceSubscribe => {
                self.extranonce_subscribed = true;
                message::write_true(out, id);
            }
            Request::Unknown(_) => {
                message::write_error(
                    out,
                    id,
                    StratumError::new(ErrorCode::Other, "Unknown method"),
                );
                return self.count_invalid();
            }
        }
        self.maybe_save(ctx.now_ms, events);
        Flow::Continue
    }

    /// Answers the subscribe kept by [`Flow::Resume`], once the saved session is resumed (or not):
    /// the answer carries the extranonce1 the session has now. Nothing happens without one.
    pub fn answer_subscribe(
        &mut self,
        ctx: &Context<'_>,
        out: &mut Vec<u8>,
        events: &mut Vec<Event>,
    ) -> Flow {
        if let Some(pending) = self.pending_subscribe.take() {
            self.subscribe(pending.id.as_id(), pending.user_agent, ctx, out);
            self.maybe_save(ctx.now_ms, events);
        }
        Flow::Continue
    }

    fn subscribe(
        &mut self,
        id: Id<'_>,
        user_agent: Option<Arc<str>>,
        ctx: &Context<'_>,
        out: &mut Vec<u8>,
    ) {
        self.subscribed = true;
        self.user_agent = user_agent;
        message::write_subscribe_result(
            out,
            id,
            &format_session_id(self.session_id),
            &self.extranonce1,
            self.config.extranonce.extranonce2(),
        );
        if std::mem::take(&mut self.announce_mask) {
            message::write_set_version_mask(out, self.version_mask);
        }
        // A resumed session is authorized already: work at once.
        if !self.workers.is_empty() {
            if let Some(job) = ctx.book.current() {
                let job = Arc::clone(job);
                self.push_job(&job, out);
            } else {
                self.send_pending_difficulty(out);
            }
        }
    }

    /// Emits [`Event::SessionChanged`] when a save is due and the save interval has passed.
    fn maybe_save(&mut self, now_ms: u64, events: &mut Vec<Event>) {
        if self.save_due
            && self.is_authorized()
            && now_ms.saturating_sub(self.last_save_ms)
                >= self.config.limits.session_save_interval_ms
        {
            self.save_due = false;
            self.last_save_ms = now_ms;
            events.push(Event::SessionChanged);
        }
    }

    fn count_invalid(&mut self) -> Flow {
        self.invalid_streak += 1;
        if self.invalid_streak >= self.config.limits.max_invalid_streak {
            Flow::Close(CloseReason::InvalidStreak)
        } else {
            Flow::Continue
        }
    }

    fn configure(&mut self, id: Id<'_>, c: &Configure, out: &mut Vec<u8>) {
        let version_rolling = c.version_rolling.map(|vr| {
            let granted = VersionMask(vr.mask).within(self.config.version_mask);
            if granted.is_none() || granted.0.count_ones() < vr.min_bit_count {
                None
            } else {
                if self.version_mask != granted {
                    self.save_due = true;
                }
                self.version_mask = granted;
                Some(granted)
            }
        });
        let minimum = c.minimum_difficulty.map(|d| match Difficulty::new(d) {
            Ok(d) => {
                self.floor = clamp(d, self.config.min_difficulty, self.ceiling());
                if self.difficulty < self.floor {
                    self.difficulty = self.floor;
                    self.difficulty_pending = true;
                }
                true
            }
            Err(_) => false,
        });
        message::write_configure_result(out, id, version_rolling, minimum, &c.unknown);
    }

    /// A difficulty the miner asks for (suggestion or password): it becomes the floor and, at once,
    /// the difficulty.
    fn ask_for_difficulty(&mut self, d: Difficulty, now_ms: u64, events: &mut Vec<Event>) {
        let d = clamp(d, self.config.min_difficulty, self.ceiling());
        self.floor = d;
        if d != self.difficulty {
            self.difficulty = d;
            self.difficulty_pending = true;
            self.save_due = true;
            events.push(Event::Difficulty(d));
            self.vardiff.reset(now_ms);
        }
    }

    /// `mining.suggest_difficulty`: the floor follows the suggestion, but once vardiff has chosen
    /// a difficulty a suggestion may only raise it, so a miner cannot hold its shares cheaper than
    /// vardiff's choice by suggesting again (nor keep vardiff from measuring by resetting it).
    fn suggest_difficulty(&mut self, d: Difficulty, now_ms: u64, events: &mut Vec<Event>) {
        let d = clamp(d, self.config.min_difficulty, self.ceiling());
        if self.vardiff_chose && d < self.difficulty {
            self.floor = d;
            return;
        }
        self.ask_for_difficulty(d, now_ms, events);
    }

    fn authorize(
        &mut self,
        id: Id<'_>,
        name: &str,
        password: Option<&str>,
        ctx: &Context<'_>,
        out: &mut Vec<u8>,
        events: &mut Vec<Event>,
    ) -> Flow {
        if !self.subscribed {
            // Many miners authorize before the subscribe answer arrives; the order on the wire is
            // still subscribe first. Refusing here is what ckpool and others do.
            message::write_error(out, id, Reject::NotSubscribed.stratum_error());
            return self.count_invalid();
        }
        if ctx.now_ms < self.authorize_retry_at_ms {
            message::write_error(
                out,
                id,
                StratumError::new(
                    ErrorCode::Unauthorized,
                    "Too many failed authorizations; retry later",
                ),
            );
            return self.count_invalid();
        }
        if self.workers.iter().any(|w| &*w.name == name) {
            message::write_true(out, id);
            return Flow::Continue;
        }
        if self.workers.len() >= self.config.limits.max_workers {
            message::write_error(
                out,
                id,
                StratumError::new(
                    ErrorCode::Unauthorized,
                    "Too many workers on this connection",
                ),
            );
            return self.count_invalid();
        }
        match parse_worker(
            name,
            self.config.network,
            self.config.allow_free_worker_names,
        ) {
            Err(e) => {
                message::write_error(
                    out,
                    id,
                    StratumError::new(ErrorCode::Unauthorized, e.message()),
                );
                self.failed_authorize += 1;
                if self.failed_authorize >= self.config.limits.max_failed_authorize {
                    return Flow::Close(CloseReason::FailedAuthorize);
                }
                let backoff = 1000u64 << (self.failed_authorize - 1).min(16);
                self.authorize_retry_at_ms = ctx.now_ms + backoff;
                self.count_invalid()
            }
            Ok(worker) => {
                let first = self.workers.is_empty();
                if first {
                    // The first worker's policy applies before its authorize is answered, so its
                    // first job already carries the policy's difficulty.
                    if let Some(policies) = ctx.policies {
                        let config = policies.config_for(name, self.user_agent.as_deref());
                        if !Arc::ptr_eq(&config, &self.config) {
                            self.apply_config(config, out);
                        }
                    }
                }
                self.workers.push(worker);
                message::write_true(out, id);
                if first {
                    if let Some(d) = password
                        .and_then(password_difficulty)
                        .and_then(|d| Difficulty::new(d).ok())
                    {
                        self.ask_for_difficulty(d, ctx.now_ms, events);
                    }
                    if let Some(job) = ctx.book.current() {
                        let job = Arc::clone(job);
                        self.push_job(&job, out);
                    } else {
                        self.send_pending_difficulty(out);
                    }
                    // The first save makes the record this connection holds in the fleet's store.
                    self.save_due = false;
                    self.last_save_ms = ctx.now_ms;
                    events.push(Event::SessionChanged);
                } else {
                    self.save_due = true;
                    self.maybe_save(ctx.now_ms, events);
                }
                Flow::Continue
            }
        }
    }

    fn send_pending_difficulty(&mut self, out: &mut Vec<u8>) {
        if self.difficulty_pending {
            message::write_set_difficulty(out, self.difficulty);
            self.difficulty_pending = false;
        }
    }

    /// Sends a job to the miner (once it has a worker), preceded by its difficulty when that changed.
    /// Shares on this job are judged at the difficulty in force now.
    pub fn push_job(&mut self, job: &Arc<Job>, out: &mut Vec<u8>) {
        if !self.is_authorized() {
            return;
        }
        // A job id always keeps the difficulty it was first sent with.
        if self.sent.iter().any(|s| s.id == job.id) {
            return;
        }
        self.send_pending_difficulty(out);
        out.extend_from_slice(message::notify_line(job));
        if self.sent.len() == self.config.job_history {
            self.sent.pop_front();
        }
        self.sent.push_back(SentJob {
            id: job.id,
            target: self.difficulty.target(),
            difficulty: self.difficulty,
            version_mask: self.version_mask,
        });
    }

    fn submit(
        &mut self,
        id: Id<'_>,
        submit: &Submit<'_>,
        ctx: &Context<'_>,
        out: &mut Vec<u8>,
        events: &mut Vec<Event>,
    ) -> Flow {
        if !self.subscribed {
            return self.refuse(id, Reject::NotSubscribed, out, events);
        }
        let Some(worker) = self.workers.iter().find(|w| *w.name == *submit.worker) else {
            return self.refuse(id, Reject::UnauthorizedWorker, out, events);
        };
        let worker = Arc::clone(&worker.name);
        let sent = parse_job_id(submit.job_id)
            .and_then(|jid| self.sent.iter().rev().find(|s| s.id == jid).copied());
        let (job, stale) = match sent.map(|s| ctx.book.lookup(s.id)) {
            Some(Lookup::Current(job)) => (job, false),
            Some(Lookup::Stale(job)) => (job, true),
            Some(Lookup::NotFound) | None => {
                return self.refuse(id, Reject::JobNotFound, out, events)
            }
        };
        let sent = sent.expect("looked up above");
        let rules = ShareRules {
            // The mask the job was sent under: a narrowed mask applies to work sent after it.
            version_mask: sent.version_mask,
            now: (ctx.now_ms / 1000) as u32,
            share_target: sent.target,
        };
        let verdict = self
            .shares
            .validate_submit(job, stale, &self.extranonce1, submit, &rules);

        if let Some(proof) = verdict.block() {
            events.push(Event::Block(Box::new(BlockFound {
                job: Arc::clone(job),
                header: proof.header,
                hash: proof.hash,
                extranonce1: self.extranonce1,
                extranonce2: proof.extranonce2().to_vec(),
                worker: Arc::clone(&worker),
            })));
        }
        events.push(Event::Share(ShareRecord {
            worker,
            job_id: Some(job.id),
            height: Some(job.height),
            assigned_difficulty: sent.difficulty,
            share_difficulty: verdict
                .proof()
                .and_then(|p| Difficulty::new(p.difficulty()).ok()),
            result: verdict.result(),
            is_block: verdict.is_block(),
            hash: verdict.proof().map(|p| p.hash),
        }));
        match verdict.result() {
            Ok(()) => {
                message::write_true(out, id);
                self.accepted += 1;
                self.invalid_streak = 0;
                if let Some(vd) = &self.config.vardiff {
                    self.vardiff.record(sent.difficulty.get(), ctx.now_ms, vd);
                }
                self.retarget(ctx.now_ms, events);
                self.maybe_save(ctx.now_ms, events);
                Flow::Continue
            }
            Err(Reject::Stale) => {
                self.rejected += 1;
                message::write_error(out, id, Reject::Stale.stratum_error());
                Flow::Continue
            }
            Err(reject) => {
                self.rejected += 1;
                message::write_error(out, id, reject.stratum_error());
                self.count_invalid()
            }
        }
    }

    /// Refuses a submit that names no job of this session or no worker of it: metrics only.
    fn refuse(
        &mut self,
        id: Id<'_>,
        reject: Reject,
        out: &mut Vec<u8>,
        events: &mut Vec<Event>,
    ) -> Flow {
        events.push(Event::Refused(reject));
        self.rejected += 1;
        message::write_error(out, id, reject.stratum_error());
        self.count_invalid()
    }

    fn retarget(&mut self, now_ms: u64, events: &mut Vec<Event>) {
        let Some(vd) = &self.config.vardiff else {
            return;
        };
        if let Some(d) =
            self.vardiff
                .retarget(self.difficulty, self.floor, self.ceiling(), now_ms, vd)
        {
            self.difficulty = d;
            self.difficulty_pending = true;
            self.vardiff_chose = true;
            self.save_due = true;
            events.push(Event::Difficulty(d));
        }
    }

    /// Advances the clock: timeouts, and vardiff for miners that have gone quiet. A changed
    /// difficulty is sent with the next job.
    pub fn tick(&mut self, now_ms: u64, events: &mut Vec<Event>) -> Flow {
        let limits = &self.config.limits;
        if !self.is_authorized()
            && now_ms.saturating_sub(self.connected_ms) >= limits.unauthenticated_timeout_ms
        {
            return Flow::Close(CloseReason::UnauthenticatedTimeout);
        }
        if now_ms.saturating_sub(self.last_request_ms) >= limits.idle_timeout_ms {
            return Flow::Close(CloseReason::IdleTimeout);
        }
        if self.is_authorized() {
            self.retarget(now_ms, events);
        }
        self.maybe_save(now_ms, events);
        Flow::Continue
    }
}

/// A session id as miners see it: 16 lowercase hex digits.
/// The answer to an accepted submit whose share the log could not keep, when its `true` was held
/// for durable acknowledgement: the miner may send the share again.
pub const NOT_RECORDED: StratumError =
    StratumError::new(ErrorCode::Other, "share not recorded, try again");

/// Writes [`NOT_RECORDED`] for the submit a held `true` reply answered (the I/O layer holds
/// replies; what they become is decided here). False when `true_reply` is not such a reply.
pub fn write_not_recorded(true_reply: &[u8], out: &mut Vec<u8>) -> bool {
    message::write_error_for_true(out, true_reply, NOT_RECORDED)
}

pub fn format_session_id(id: u64) -> String {
    format!("{id:016x}")
}

/// A session id as a miner sent it back: 1 to 16 hex digits, either case.
pub fn parse_session_id(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

/// The longest user agent kept, in bytes.
pub const MAX_USER_AGENT_LENGTH: usize = 64;

#[cfg(test)]
mod test_fixture;
#[cfg(test)]
mod tests;

fn clamp(d: Difficulty, min: Difficulty, max: Difficulty) -> Difficulty {
    if d < min {
        min
    } else if d > max {
        max
    } else {
        d
    }
}

#[cfg(test)]
mod state_tests;
