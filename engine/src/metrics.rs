//! Engine metrics: counters per core (written only by their core, read by anyone), latency
//! histograms per core (hdrhistogram, merged when read), the plane's Redis health
//! ([`RedisHealth`], both fleet roles), and the Prometheus and JSON renderings the admin listener
//! serves: an engine's page ([`Metrics::prometheus`]) and a jobmanager's
//! ([`Metrics::jobmanager_prometheus`], on a [`JobmanagerView`] the admin listener reads from the
//! plane, so this module names no plane type).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::clock::UnixMillis;
use crate::session::CloseReason;
use crate::share::Reject;

/// One core's counters.
pub struct CoreMetrics {
    pub connections: AtomicU64,
    pub connections_accepted: AtomicU64,
    pub shares_accepted: AtomicU64,
    pub shares_rejected: [AtomicU64; Reject::ALL.len()],
    /// Sum of the difficulty credited to accepted shares, as `f64` bits (only its core writes it).
    accepted_difficulty: AtomicU64,
    pub blocks_found: AtomicU64,
    /// Nanoseconds from a submit line to its reply.
    pub submit_latency_ns: Mutex<Histogram<u64>>,
    /// Microseconds to push one new job to every connection of the core.
    pub notify_fanout_us: Mutex<Histogram<u64>>,
    /// Durable acknowledgement: microseconds an accept's reply was held for its batch.
    pub durable_wait_us: Mutex<Histogram<u64>>,
}

impl CoreMetrics {
    fn new() -> CoreMetrics {
        CoreMetrics {
            connections: AtomicU64::new(0),
            connections_accepted: AtomicU64::new(0),
            shares_accepted: AtomicU64::new(0),
            shares_rejected: std::array::from_fn(|_| AtomicU64::new(0)),
            accepted_difficulty: AtomicU64::new(0f64.to_bits()),
            blocks_found: AtomicU64::new(0),
            submit_latency_ns: Mutex::new(
                Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds"),
            ),
            notify_fanout_us: Mutex::new(
                Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            ),
            durable_wait_us: Mutex::new(
                Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            ),
        }
    }

    /// Credits an accepted share (called by the owning core only).
    pub fn credit(&self, difficulty: f64) {
        self.shares_accepted.fetch_add(1, Relaxed);
        let sum = f64::from_bits(self.accepted_difficulty.load(Relaxed)) + difficulty;
        self.accepted_difficulty.store(sum.to_bits(), Relaxed);
    }

    pub fn reject(&self, reason: Reject) {
        self.shares_rejected[reason.index()].fetch_add(1, Relaxed);
    }
}

/// Why a resume gave a fresh session instead (`sessions::Claim::refusal`, and `invalid`: the
/// saved session does not fit this listener).
pub const RESUME_REFUSALS: [&str; 5] = ["held", "unknown", "lapsed", "unavailable", "invalid"];

/// Every metric of one engine process.
pub struct Metrics {
    pub cores: Vec<CoreMetrics>,
    pub blocks_accepted: AtomicU64,
    pub blocks_rejected: AtomicU64,
    pub jobs_published: AtomicU64,
    /// Jobs from Redis refused: a fencing token below the highest seen, or a malformed message.
    pub jobs_refused: AtomicU64,
    /// Sessions resumed from the fleet's store.
    pub sessions_resumed: AtomicU64,
    /// Resumes refused, by [`RESUME_REFUSALS`].
    pub resumes_refused: [AtomicU64; RESUME_REFUSALS.len()],
    /// Jobs from Redis: publish (jobmanager's clock) to applied here, in µs.
    pub plane_job_latency_us: Mutex<Histogram<u64>>,
    /// The share log's counters (stratum role only).
    pub share_log: Arc<ShareLogStats>,
    /// Whether the plane reaches Redis, and how fast (fleet roles only).
    pub redis: Arc<RedisHealth>,
    /// `getblocktemplate` answers used, and calls that failed (a node's source only).
    pub templates_fetched: AtomicU64,
    pub templates_failed: AtomicU64,
    /// Connections closed or refused by the engine, by [`CloseReason::COUNTED`].
    pub closed: [AtomicU64; CloseReason::COUNTED.len()],
    pub started: Instant,
    /// (seconds since start, total accepted difficulty) samples for the hashrate estimate.
    samples: Mutex<std::collections::VecDeque<(f64, f64)>>,
}

/// One metric in the text exposition: its help and type lines, then a line per (labels, value).
fn write_metric(out: &mut String, name: &str, kind: &str, help: &str, lines: &[(String, String)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in lines {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

/// A sample without labels.
fn one(value: String) -> Vec<(String, String)> {
    vec![(String::new(), value)]
}

/// A label value as the text format wants it: backslash, quote and newline escaped.
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// What a jobmanager's pages show beside its [`Metrics`]: read from the lease, the job sink and
/// the job source by the admin listener at each request.
#[derive(Debug, Clone, Default)]
pub struct JobmanagerView {
    /// The fencing token while this process leads.
    pub token: Option<u64>,
    /// Jobs published to Redis, and publishes Redis refused (fenced).
    pub published: u64,
    pub fenced: u64,
    /// (name, up) per configured node.
    pub nodes: Vec<(String, bool)>,
}

/// Whether the plane's last Redis call worked and how long it took: the registry heartbeat, a
/// call every fleet process makes every third of `redis.service_ttl_secs`, records both. Nothing
/// is shown until a heartbeat has run, so `sluice run`, which has no Redis, shows no Redis metric.
#[derive(Debug, Default)]
pub struct RedisHealth {
    watched: AtomicBool,
    up: AtomicBool,
    /// The last good call's round trip, in µs.
    roundtrip_us: AtomicU64,
}

impl RedisHealth {
    /// A call that worked and took `took`.
    pub fn ok(&self, took: Duration) {
        self.roundtrip_us
            .store(took.as_micros().min(u128::from(u64::MAX)) as u64, Relaxed);
        self.up.store(true, Relaxed);
        self.watched.store(true, Relaxed);
    }

    /// A call that failed, or Redis could not be reached.
    pub fn failed(&self) {
        self.up.store(false, Relaxed);
        self.watched.store(true, Relaxed);
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Relaxed)
    }

    fn write(&self, out: &mut String) {
        if !self.watched.load(Relaxed) {
            return;
        }
        write_metric(
            out,
            "sluice_redis_up",
            "gauge",
            "1 when this process's last Redis call (the registry heartbeat) worked, else 0.",
            &one(u8::from(self.is_up()).to_string()),
        );
        write_metric(
            out,
            "sluice_redis_roundtrip_seconds",
            "gauge",
            "Round trip of the last registry heartbeat that worked (one pipelined transaction).",
            &one(format!(
                "{:.6}",
                self.roundtrip_us.load(Relaxed) as f64 / 1e6
            )),
        );
    }

    fn to_json(&self) -> serde_json::Value {
        if !self.watched.load(Relaxed) {
            return serde_json::Value::Null;
        }
        serde_json::json!({ "up": self.is_up(),
            "roundtrip_seconds": self.roundtrip_us.load(Relaxed) as f64 / 1e6 })
    }
}

/// The window of the hashrate estimate.
const HASHRATE_WINDOW_SECS: f64 = 300.0;

impl Metrics {
    pub fn new(cores: usize) -> Metrics {
        Metrics {
            cores: (0..cores).map(|_| CoreMetrics::new()).collect(),
            blocks_accepted: AtomicU64::new(0),
            blocks_rejected: AtomicU64::new(0),
            jobs_published: AtomicU64::new(0),
            jobs_refused: AtomicU64::new(0),
            sessions_resumed: AtomicU64::new(0),
            resumes_refused: std::array::from_fn(|_| AtomicU64::new(0)),
            plane_job_latency_us: Mutex::new(
                Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
            ),
            share_log: Arc::default(),
            redis: Arc::default(),
            templates_fetched: AtomicU64::new(0),
            templates_failed: AtomicU64::new(0),
            closed: std::array::from_fn(|_| AtomicU64::new(0)),
            started: Instant::now(),
            samples: Mutex::new(Default::default()),
        }
    }

    /// Counts a close the engine decided; the others are not counted (see [`CloseReason::COUNTED`]).
    pub fn count_close(&self, reason: CloseReason) {
        if let Some(i) = reason.counted_index() {
            self.closed[i].fetch_add(1, Relaxed);
        }
    }

    pub fn count_resume_refused(&self, reason: &str) {
        if let Some(i) = RESUME_REFUSALS.iter().position(|r| *r == reason) {
            self.resumes_refused[i].fetch_add(1, Relaxed);
        }
    }

    fn sum(&self, f: impl Fn(&CoreMetrics) -> u64) -> u64 {
        self.cores.iter().map(f).sum()
    }

    pub fn connections(&self) -> u64 {
        self.sum(|c| c.connections.load(Relaxed))
    }

    pub fn shares_accepted(&self) -> u64 {
        self.sum(|c| c.shares_accepted.load(Relaxed))
    }

    pub fn shares_rejected(&self, reason: Reject) -> u64 {
        self.sum(|c| c.shares_rejected[reason.index()].load(Relaxed))
    }

    fn accepted_difficulty(&self) -> f64 {
        self.cores
            .iter()
            .map(|c| f64::from_bits(c.accepted_difficulty.load(Relaxed)))
            .sum()
    }

    /// Hashes per second over the last few minutes, from the difficulty of accepted shares.
    pub fn hashrate(&self) -> f64 {
        let now = self.started.elapsed().as_secs_f64();
        let total = self.accepted_difficulty();
        let mut samples = self.samples.lock().expect("metrics lock");
        samples.push_back((now, total));
        while samples.len() > 2 && now - samples[1].0 > HASHRATE_WINDOW_SECS {
            samples.pop_front();
        }
        // Bounded: at most one sample per read; drop the oldest beyond a thousand.
        while samples.len() > 1000 {
            samples.pop_front();
        }
        let (t0, d0) = samples[0];
        if now - t0 < 1.0 {
            return if now > 1.0 {
                total * 4_294_967_296.0 / now
            } else {
                0.0
            };
        }
        (total - d0) * 4_294_967_296.0 / (now - t0)
    }

    fn merged(&self, pick: impl Fn(&CoreMetrics) -> &Mutex<Histogram<u64>>) -> Histogram<u64> {
        let mut all = pick(&self.cores[0]).lock().expect("metrics lock").clone();
        for c in &self.cores[1..] {
            all.add(&*pick(c).lock().expect("metrics lock"))
                .expect("same bounds");
        }
        all
    }

    /// Jobmanager-to-engine latency of jobs from Redis in seconds: (p50, p99, max, count).
    pub fn plane_job_latency(&self) -> (f64, f64, f64, u64) {
        let h = self.plane_job_latency_us.lock().expect("metrics lock");
        let s = |v: u64| v as f64 / 1e6;
        (
            s(h.value_at_quantile(0.5)),
            s(h.value_at_quantile(0.99)),
            s(h.max()),
            h.len(),
        )
    }

    /// Submit latency quantiles in seconds: (p50, p99, p999, count).
    pub fn submit_latency(&self) -> (f64, f64, f64, u64) {
        let h = self.merged(|c| &c.submit_latency_ns);
        let s = |q| h.value_at_quantile(q) as f64 / 1e9;
        (s(0.5), s(0.99), s(0.999), h.len())
    }

    /// Prometheus text exposition.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, lines: &[(String, String)]| {
            write_metric(&mut out, name, kind, help, lines)
        };
        metric(
            "sluice_connections",
            "gauge",
            "Miner connections open now.",
            &one(self.connections().to_string()),
        );
        metric(
            "sluice_connections_accepted_total",
            "counter",
            "Miner connections accepted.",
            &one(self
                .sum(|c| c.connections_accepted.load(Relaxed))
                .to_string()),
        );
        metric(
            "sluice_connections_closed_total",
            "counter",
            "Connections closed or refused by the engine, by reason.",
            &CloseReason::COUNTED
                .iter()
                .zip(&self.closed)
                .map(|(r, c)| {
                    (
                        format!("{{reason=\"{}\"}}", r.as_str()),
                        c.load(Relaxed).to_string(),
                    )
                })
                .collect::<Vec<_>>(),
        );
        let mut shares = vec![(
            "{verdict=\"accepted\"}".to_owned(),
            self.shares_accepted().to_string(),
        )];
        for r in Reject::ALL {
            shares.push((
                format!("{{verdict=\"{}\"}}", r.reason()),
                self.shares_rejected(r).to_string(),
            ));
        }
        metric(
            "sluice_shares_total",
            "counter",
            "Shares by verdict.",
            &shares,
        );
        metric(
            "sluice_hashrate",
            "gauge",
            "Estimated hashes per second from accepted shares.",
            &one(format!("{:.0}", self.hashrate())),
        );
        let (p50, p99, p999, n) = self.submit_latency();
        metric(
            "sluice_submit_latency_seconds",
            "summary",
            "Time from a submit line to its reply, inside the engine.",
            &[
                ("{quantile=\"0.5\"}".into(), format!("{p50:.9}")),
                ("{quantile=\"0.99\"}".into(), format!("{p99:.9}")),
                ("{quantile=\"0.999\"}".into(), format!("{p999:.9}")),
                ("_count".into(), n.to_string()),
            ],
        );
        let fan = self.merged(|c| &c.notify_fanout_us);
        metric(
            "sluice_notify_fanout_seconds",
            "summary",
            "Time for one core to queue a new job to all of its connections.",
            &[
                (
                    "{quantile=\"0.5\"}".into(),
                    format!("{:.6}", fan.value_at_quantile(0.5) as f64 / 1e6),
                ),
                (
                    "{quantile=\"0.99\"}".into(),
                    format!("{:.6}", fan.value_at_quantile(0.99) as f64 / 1e6),
                ),
                ("_count".into(), fan.len().to_string()),
            ],
        );
        let held = self.merged(|c| &c.durable_wait_us);
        metric(
            "sluice_durable_ack_wait_seconds",
            "summary",
            "With share_log.durable_ack: how long an accepted share's answer waited for its batch to be in Redis or the fsynced spool.",
            &[
                (
                    "{quantile=\"0.5\"}".into(),
                    format!("{:.6}", held.value_at_quantile(0.5) as f64 / 1e6),
                ),
                (
                    "{quantile=\"0.99\"}".into(),
                    format!("{:.6}", held.value_at_quantile(0.99) as f64 / 1e6),
                ),
                ("_count".into(), held.len().to_string()),
            ],
        );
        metric(
            "sluice_blocks_total",
            "counter",
            "Blocks found by miners, and what the chain said.",
            &[
                (
                    "{result=\"found\"}".into(),
                    self.sum(|c| c.blocks_found.load(Relaxed)).to_string(),
                ),
                (
                    "{result=\"accepted\"}".into(),
                    self.blocks_accepted.load(Relaxed).to_string(),
                ),
                (
                    "{result=\"rejected\"}".into(),
                    self.blocks_rejected.load(Relaxed).to_string(),
                ),
            ],
        );
        metric(
            "sluice_jobs_published_total",
            "counter",
            "Jobs published to the engine.",
            &one(self.jobs_published.load(Relaxed).to_string()),
        );
        metric(
            "sluice_jobs_refused_total",
            "counter",
            "Jobs from Redis refused: a stale fencing token or a malformed message.",
            &one(self.jobs_refused.load(Relaxed).to_string()),
        );
        let (p50, p99, max, count) = self.plane_job_latency();
        metric(
            "sluice_plane_job_latency_seconds",
            "summary",
            "Jobs from Redis: from the jobmanager's publish to this engine's feed.",
            &[
                ("{quantile=\"0.5\"}".into(), p50.to_string()),
                ("{quantile=\"0.99\"}".into(), p99.to_string()),
                ("{quantile=\"1\"}".into(), max.to_string()),
                ("_count".into(), count.to_string()),
            ],
        );
        metric(
            "sluice_sessions_resumed_total",
            "counter",
            "Sessions resumed from the fleet's session store.",
            &one(self.sessions_resumed.load(Relaxed).to_string()),
        );
        metric(
            "sluice_session_resumes_refused_total",
            "counter",
            "Resumes that gave the miner a fresh session: held by a live connection, unknown, lapsed with a dead engine, store unavailable, or invalid here.",
            &RESUME_REFUSALS
                .iter()
                .zip(&self.resumes_refused)
                .map(|(r, n)| (format!("{{reason=\"{r}\"}}"), n.load(Relaxed).to_string()))
                .collect::<Vec<_>>(),
        );
        let log = &self.share_log;
        metric(
            "sluice_share_log_total",
            "counter",
            "Share log: records written to Redis, batches spooled and replayed, batches spooled because too few replicas confirmed them (share_log.durable_replicas), records dropped (dropped = dropped_accepted + dropped_rejected; dropped_accepted is an error), torn and unreadable spool lines.",
            &[
                (
                    "{kind=\"written\"}".into(),
                    log.written.load(Relaxed).to_string(),
                ),
                (
                    "{kind=\"spooled_batches\"}".into(),
                    log.spooled_batches.load(Relaxed).to_string(),
                ),
                (
                    "{kind=\"replayed_batches\"}".into(),
                    log.replayed_batches.load(Relaxed).to_string(),
                ),
                (
                    "{kind=\"unreplicated_batches\"}".into(),
                    log.unreplicated_batches.load(Relaxed).to_string(),
                ),
                ("{kind=\"dropped\"}".into(), log.dropped().to_string()),
                (
                    "{kind=\"dropped_accepted\"}".into(),
                    log.dropped_accepted.load(Relaxed).to_string(),
                ),
                (
                    "{kind=\"dropped_rejected\"}".into(),
                    log.dropped_rejected.load(Relaxed).to_string(),
                ),
                (
                    "{kind=\"spool_torn_lines\"}".into(),
                    log.spool_torn_lines.load(Relaxed).to_string(),
                ),
                (
                    "{kind=\"spool_unreadable_lines\"}".into(),
                    log.spool_unreadable_lines.load(Relaxed).to_string(),
                ),
            ],
        );
        if let Some(depth) = log.queue_depth() {
            metric(
                "sluice_sharelog_queue_depth",
                "gauge",
                "Share records waiting in the queue from the cores to the share-log writer.",
                &one(depth.to_string()),
            );
        }
        self.redis.write(&mut out);
        out
    }

    /// A jobmanager's Prometheus page: its leadership and publishing, its job source, the blocks
    /// it submitted, and Redis as it sees it.
    pub fn jobmanager_prometheus(&self, view: &JobmanagerView) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, lines: &[(String, String)]| {
            write_metric(&mut out, name, kind, help, lines)
        };
        metric(
            "sluice_jobmanager_leader",
            "gauge",
            "1 while this jobmanager holds the lease and publishes the fleet's jobs, else 0.",
            &one(u8::from(view.token.is_some()).to_string()),
        );
        metric(
            "sluice_jobmanager_fencing_token",
            "gauge",
            "The fencing token of this jobmanager's lease while it leads, else 0.",
            &one(view.token.unwrap_or(0).to_string()),
        );
        metric(
            "sluice_jobmanager_jobs_published_total",
            "counter",
            "Jobs this jobmanager published to Redis while leading.",
            &one(view.published.to_string()),
        );
        metric(
            "sluice_jobmanager_publishes_fenced_total",
            "counter",
            "Publishes Redis refused because the lease or the fleet epoch was no longer this jobmanager's.",
            &one(view.fenced.to_string()),
        );
        metric(
            "sluice_jobmanager_jobs_built_total",
            "counter",
            "Jobs the job source built (a standby builds them too, and publishes none).",
            &one(self.jobs_published.load(Relaxed).to_string()),
        );
        metric(
            "sluice_jobmanager_templates_total",
            "counter",
            "Block templates from the nodes: used, or the call failed.",
            &[
                (
                    "{result=\"fetched\"}".into(),
                    self.templates_fetched.load(Relaxed).to_string(),
                ),
                (
                    "{result=\"failed\"}".into(),
                    self.templates_failed.load(Relaxed).to_string(),
                ),
            ],
        );
        metric(
            "sluice_blocks_total",
            "counter",
            "Blocks this jobmanager submitted, by what the chain said.",
            &[
                (
                    "{result=\"accepted\"}".into(),
                    self.blocks_accepted.load(Relaxed).to_string(),
                ),
                (
                    "{result=\"rejected\"}".into(),
                    self.blocks_rejected.load(Relaxed).to_string(),
                ),
            ],
        );
        metric(
            "sluice_node_up",
            "gauge",
            "1 while the node answers and can give work, else 0, per configured node.",
            &view
                .nodes
                .iter()
                .map(|(name, up)| {
                    (
                        format!("{{node=\"{}\"}}", label_value(name)),
                        u8::from(*up).to_string(),
                    )
                })
                .collect::<Vec<_>>(),
        );
        self.redis.write(&mut out);
        out
    }

    /// A jobmanager's `/status` document; `extra` (its job source) is merged in.
    pub fn jobmanager_status_json(
        &self,
        view: &JobmanagerView,
        extra: serde_json::Value,
    ) -> String {
        let mut doc = serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "role": "jobmanager",
            "uptime_secs": self.started.elapsed().as_secs(),
            "leader": view.token.is_some(),
            "fencing_token": view.token,
            "jobs": { "published": view.published, "fenced": view.fenced,
                "built": self.jobs_published.load(Relaxed) },
            "blocks": {
                "accepted": self.blocks_accepted.load(Relaxed),
                "rejected": self.blocks_rejected.load(Relaxed),
            },
            "redis": self.redis.to_json(),
        });
        if let (Some(doc), serde_json::Value::Object(extra)) = (doc.as_object_mut(), extra) {
            doc.extend(extra);
        }
        doc.to_string()
    }

    /// The `/status` document.
    pub fn status_json(&self, extra: serde_json::Value) -> String {
        let mut rejected = serde_json::Map::new();
        for r in Reject::ALL {
            rejected.insert(r.reason().into(), self.shares_rejected(r).into());
        }
        let (p50, p99, p999, _) = self.submit_latency();
        let mut doc = serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_secs": self.started.elapsed().as_secs(),
            "connections": self.connections(),
            "shares": { "accepted": self.shares_accepted(), "rejected": rejected },
            "hashrate": self.hashrate(),
            "submit_latency_seconds": { "p50": p50, "p99": p99, "p999": p999 },
            "blocks": {
                "found": self.sum(|c| c.blocks_found.load(Relaxed)),
                "accepted": self.blocks_accepted.load(Relaxed),
                "rejected": self.blocks_rejected.load(Relaxed),
            },
            "redis": self.redis.to_json(),
        });
        if let (Some(doc), serde_json::Value::Object(extra)) = (doc.as_object_mut(), extra) {
            doc.extend(extra);
        }
        doc.to_string()
    }
}

/// At most one error line a second about dropped accepted shares.
const DROP_LOG_INTERVAL_MS: u64 = 1_000;

/// Counters of the share log ([`crate::plane::sharelog`]), for metrics and tests: here, so the
/// metrics read them without naming the plane.
#[derive(Debug, Default)]
pub struct ShareLogStats {
    pub written: AtomicU64,
    pub spooled_batches: AtomicU64,
    pub replayed_batches: AtomicU64,
    /// Batches Redis took that fewer than `share_log.durable_replicas` replicas confirmed in
    /// time: each was spooled too.
    pub unreplicated_batches: AtomicU64,
    /// Rejected records lost: the queue was at its high-water mark, or the spool could not take
    /// their batch.
    pub dropped_rejected: AtomicU64,
    /// Accepted records lost: the queue was full, or the spool could not take their batch. Each
    /// is an error the operator sees (log, service hash, `sluicectl stats`).
    pub dropped_accepted: AtomicU64,
    /// Torn last lines cut off the spool when it was opened (a crash while appending).
    pub spool_torn_lines: AtomicU64,
    /// Spool lines that did not parse as a batch, skipped by the replay.
    pub spool_unreadable_lines: AtomicU64,
    /// When the last error line about dropped accepted shares was written (ms).
    last_drop_log_ms: AtomicU64,
    /// Accepted shares dropped since that line.
    unlogged_drops: AtomicU64,
    /// The queue's length, once the share log is running.
    queue: std::sync::OnceLock<QueueDepth>,
}

/// Reads the share queue's length (a bounded channel's `len()`, cheap).
pub struct QueueDepth(pub Box<dyn Fn() -> usize + Send + Sync>);

impl std::fmt::Debug for QueueDepth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QueueDepth({})", (self.0)())
    }
}

impl ShareLogStats {
    /// Where [`ShareLogStats::queue_depth`] reads from (the share log's start sets it once).
    pub fn watch_queue(&self, depth: impl Fn() -> usize + Send + Sync + 'static) {
        let _ = self.queue.set(QueueDepth(Box::new(depth)));
    }

    /// Records waiting for the writer now; `None` without a share log.
    pub fn queue_depth(&self) -> Option<usize> {
        self.queue.get().map(|q| (q.0)())
    }

    /// Records lost, of either verdict.
    pub fn dropped(&self) -> u64 {
        self.dropped_rejected.load(Relaxed) + self.dropped_accepted.load(Relaxed)
    }

    pub fn drop_rejected(&self, n: u64) {
        self.dropped_rejected.fetch_add(n, Relaxed);
    }

    /// Counts accepted records lost and logs at error level, at most once a second with the count
    /// since the last line (a flood of drops must not become a flood of log lines).
    pub fn drop_accepted(&self, n: u64, why: &'static str) {
        if n == 0 {
            return;
        }
        self.dropped_accepted.fetch_add(n, Relaxed);
        self.unlogged_drops.fetch_add(n, Relaxed);
        self.log_drops(why);
    }

    /// Writes the error line for drops not yet logged, if a second has passed since the last.
    pub fn log_drops(&self, why: &'static str) {
        if self.unlogged_drops.load(Relaxed) == 0 {
            return;
        }
        let now = UnixMillis::now().as_millis();
        let last = self.last_drop_log_ms.load(Relaxed);
        if now.saturating_sub(last) < DROP_LOG_INTERVAL_MS
            || self
                .last_drop_log_ms
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_err()
        {
            return;
        }
        let dropped = self.unlogged_drops.swap(0, Relaxed);
        tracing::error!(
            dropped,
            total = self.dropped_accepted.load(Relaxed),
            why,
            "ACCEPTED SHARES LOST: the share log could not keep them; the miners were credited but Redis will not see these shares"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_close_the_engine_decides_is_counted_and_the_miners_end_is_not() {
        let m = Metrics::new(1);
        for reason in [
            CloseReason::Drained,
            CloseReason::Kicked,
            CloseReason::Draining,
            CloseReason::Kicked,
            CloseReason::Eof,
            CloseReason::SocketError,
            CloseReason::Shutdown,
        ] {
            m.count_close(reason);
        }
        let text = m.prometheus();
        for (series, n) in [("drained", 1), ("kicked", 2), ("draining", 1)] {
            let line = format!("sluice_connections_closed_total{{reason=\"{series}\"}} {n}");
            assert!(text.contains(&line), "{line} in:\n{text}");
        }
        assert!(!text.contains("reason=\"eof\""), "{text}");
        assert_eq!(m.closed.iter().map(|c| c.load(Relaxed)).sum::<u64>(), 4);
    }

    #[test]
    fn redis_health_shows_only_once_a_heartbeat_ran_and_follows_the_last_one() {
        let m = Metrics::new(1);
        assert!(
            !m.prometheus().contains("sluice_redis_up"),
            "sluice run has no Redis"
        );
        m.redis.ok(Duration::from_micros(1_500));
        let text = m.prometheus();
        assert!(text.contains("\nsluice_redis_up 1\n"), "{text}");
        assert!(
            text.contains("\nsluice_redis_roundtrip_seconds 0.001500\n"),
            "{text}"
        );
        m.redis.failed();
        assert!(m.prometheus().contains("\nsluice_redis_up 0\n"));
    }

    #[test]
    fn a_jobmanager_page_shows_its_lease_and_nodes_and_no_engine_metric() {
        let m = Metrics::new(1);
        let view = JobmanagerView {
            token: Some(7),
            published: 3,
            fenced: 1,
            nodes: vec![("nodes[0] \"a\"".into(), true), ("nodes[1]".into(), false)],
        };
        let text = m.jobmanager_prometheus(&view);
        for line in [
            "sluice_jobmanager_leader 1",
            "sluice_jobmanager_fencing_token 7",
            "sluice_jobmanager_jobs_published_total 3",
            "sluice_jobmanager_publishes_fenced_total 1",
            "sluice_node_up{node=\"nodes[0] \\\"a\\\"\"} 1",
            "sluice_node_up{node=\"nodes[1]\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
        assert!(!text.contains("sluice_connections"), "{text}");
        let standby = m.jobmanager_prometheus(&JobmanagerView::default());
        assert!(standby.lines().any(|l| l == "sluice_jobmanager_leader 0"));
        assert!(standby
            .lines()
            .any(|l| l == "sluice_jobmanager_fencing_token 0"));
    }

    #[test]
    fn the_share_queue_depth_shows_once_the_share_log_watches_it() {
        let m = Metrics::new(1);
        assert!(!m.prometheus().contains("sluice_sharelog_queue_depth"));
        m.share_log.watch_queue(|| 42);
        assert!(m
            .prometheus()
            .contains("\nsluice_sharelog_queue_depth 42\n"));
    }
}
