//! The share log: every share verdict of an engine goes to the stream `P:shares` in pipelined
//! batches, with per-minute rollups per worker, and nothing is lost or counted twice while Redis is
//! away; what cannot be kept is counted and reported, never dropped silently.
//!
//! Cores hand records to the writer through a [`ShareQueue`], a bounded channel in which accepted
//! shares have priority: rejected records are queued only while the queue is below its high-water
//! mark, so a flood of rejects cannot take the room honest shares need. A core never waits; an
//! accepted record that finds the queue full is an error (counted, logged at most once a second,
//! published in the engine's service hash and shown by `sluicectl stats`).
//!
//! The writer cuts a batch at `batch_size` records or `batch_interval`, whichever comes first, and
//! numbers it: `(engine id, epoch, sequence)`, where the epoch is the writer's start time. One Lua
//! script writes a batch: it skips a batch whose sequence is not above the high-water mark
//! `P:shares:hwm:ENGINE:EPOCH`, else appends every record, updates the rollups `P:roll:MINUTE` and
//! raises the mark, all at once. So a batch sent twice (a reply lost, a replay after a crash) is
//! written once. The script also caps each minute's rollup at `max_rollup_workers` named workers,
//! counted in the hash itself, so no number of engines together can pass it; later workers of that
//! minute are summed under [`OTHER_WORKERS`].
//!
//! When a batch cannot be written, it and every later batch go to the spool file, appended and
//! fsynced per batch, up to `max_spool_bytes` (beyond it a batch is dropped and counted, loudly).
//! Once a second the writer tries Redis again; when it answers, the spool is replayed in order a
//! bounded slice at a time (a read offset in the file), going back to the queue in between, so the
//! cores' queue keeps draining however long the spool is. New batches keep going to the end of the
//! spool until the replay catches up; then the spool is truncated and batches go straight to Redis
//! again. A spool left by an earlier run is replayed at start, from its beginning (the high-water
//! marks skip what had landed); a torn last line (a crash while appending) is cut off first.
//!
//! With `share_log.durable_ack`, an accepted share's `true` waits until its batch is kept (the
//! script returned, or its spool line is fsynced). Each core numbers the accepts it logs (a
//! sequence of its own, carried in [`LoggedShare::durable`]); a channel keeps each producer's
//! order, so after each batch the writer publishes, per core, the highest number it has settled
//! and the highest it could not keep ([`DurableMarks`]), and wakes that core. A batch holding an
//! accept goes out at most `durable_commit_ms` after it (the group commit).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

// Its counters live with the metrics, which read them (and which the plane threads use).
pub use crate::metrics::ShareLogStats;
use serde::{Deserialize, Serialize};
use sluice_layout::shares::{ShareEntry, Verdict};

use crate::clock::UnixMillis;
use crate::plane::{connect, Keys, PlaneSettings};
use crate::session::ShareRecord;
use crate::units::{Difficulty, Extranonce1};

/// Records queued between the cores and the writer.
pub const SHARE_QUEUE: usize = 65_536;

/// Rejected records are queued only while fewer than this many records wait: the last quarter of
/// [`SHARE_QUEUE`] is kept for accepted shares.
pub const SHARE_QUEUE_REJECTED_HIGH_WATER: usize = SHARE_QUEUE / 4 * 3;

pub use crate::config::DEFAULT_MAX_ROLLUP_WORKERS;

pub use sluice_layout::shares::{FIELDS, OTHER_WORKERS, ROLLUP_WORKER_COUNT};

/// How often the writer tries Redis again while spooling.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// A replay turn writes at most this many spooled batches ...
const REPLAY_TURN_BATCHES: usize = 64;
/// ... or for at most about this long, before the writer goes back to the queue.
const REPLAY_TURN_TIME: Duration = Duration::from_millis(50);

/// One share as the engine hands it to the log.
#[derive(Debug, Clone)]
pub struct LoggedShare {
    pub record: ShareRecord,
    pub session: Extranonce1,
    pub client: IpAddr,
    pub user_agent: Option<Arc<str>>,
    pub at_ms: u64,
    /// With durable acknowledgement, an accepted share's place among its core's accepts, for
    /// [`DurableMarks`].
    pub durable: Option<DurableSeq>,
}

pub use crate::config::{DurableAck, ShareLogSettings};

/// An accepted share's number among the accepts its core logged (from 1, in the order pushed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurableSeq {
    pub core: usize,
    pub seq: u64,
}

/// One core's marks, written by the writer only.
#[derive(Debug, Default)]
struct CoreMarks {
    /// Every accept numbered at most this has its outcome.
    settled: AtomicU64,
    /// The highest accept the log could not keep (0: none yet).
    lost: AtomicU64,
    /// Wakes the core's task that answers held replies.
    wake: tokio::sync::Notify,
}

/// What the writer has settled of one core's accepts, as the core reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Settled {
    pub upto: u64,
    pub lost_upto: u64,
}

impl Settled {
    /// `None`: still waiting; `Some(true)`: kept (in Redis or the fsynced spool); `Some(false)`:
    /// not, or not known to be. Only the last lost number is published, so an accept settled
    /// kept just before a lost batch, read after both, counts as lost: an error the miner
    /// retries (a duplicate then, no credit lost to the pool), never a `true` for a share the
    /// log dropped.
    pub fn kept(&self, seq: u64) -> Option<bool> {
        (seq <= self.upto).then_some(seq > self.lost_upto)
    }
}

/// Per core, how far the writer has settled its numbered accepts: the durable
/// acknowledgement's watermarks. Shared by the cores (readers) and the writer (the one writer).
#[derive(Debug)]
pub struct DurableMarks {
    cores: Box<[CoreMarks]>,
}

impl DurableMarks {
    pub fn new(cores: usize) -> DurableMarks {
        DurableMarks {
            cores: (0..cores).map(|_| CoreMarks::default()).collect(),
        }
    }

    pub fn cores(&self) -> usize {
        self.cores.len()
    }

    /// What is settled of `core`'s accepts.
    pub fn settled(&self, core: usize) -> Settled {
        let marks = &self.cores[core];
        // Settled is raised after lost: the lost mark read after it covers what it settled.
        let upto = marks.settled.load(Ordering::Acquire);
        Settled {
            upto,
            lost_upto: marks.lost.load(Ordering::Acquire),
        }
    }

    /// Waits until the writer settles more of `core`'s accepts (or settled some since the last
    /// wait).
    pub async fn changed(&self, core: usize) {
        self.cores[core].wake.notified().await;
    }

    /// The writer: `core`'s accepts up to `seq` are settled, kept or not.
    fn settle(&self, core: usize, seq: u64, kept: bool) {
        let Some(marks) = self.cores.get(core) else {
            return;
        };
        if !kept {
            marks.lost.fetch_max(seq, Ordering::AcqRel);
        }
        marks.settled.fetch_max(seq, Ordering::AcqRel);
        marks.wake.notify_one();
    }
}

/// What became of a record handed to the [`ShareQueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    Yes,
    /// A rejected record refused: the queue was at its high-water mark.
    DroppedRejected,
    /// An accepted record refused: the queue was full (or the writer gone). An error.
    DroppedAccepted,
}

/// The cores' side of the share log: a bounded channel to the writer in which accepted shares
/// have priority. Rejected records are admitted only below the high-water mark. Cores check the
/// length and then send without a lock, so with N cores rejected records can pass the mark by at
/// most N - 1: the room kept for accepted ones is the capacity less the mark, less that.
#[derive(Debug, Clone)]
pub struct ShareQueue {
    tx: Sender<LoggedShare>,
    high_water: usize,
    stats: Arc<ShareLogStats>,
    /// Set with durable acknowledgement: the cores hold each accept until it is settled here.
    durable: Option<(Arc<DurableMarks>, DurableAck)>,
}

impl ShareQueue {
    /// The engine's queue: [`SHARE_QUEUE`] records, rejected ones up to
    /// [`SHARE_QUEUE_REJECTED_HIGH_WATER`].
    pub fn new(stats: Arc<ShareLogStats>) -> (ShareQueue, Receiver<LoggedShare>) {
        ShareQueue::with_capacity(SHARE_QUEUE, SHARE_QUEUE_REJECTED_HIGH_WATER, stats)
    }

    pub fn with_capacity(
        capacity: usize,
        high_water: usize,
        stats: Arc<ShareLogStats>,
    ) -> (ShareQueue, Receiver<LoggedShare>) {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        (
            ShareQueue {
                tx,
                high_water: high_water.min(capacity),
                stats,
                durable: None,
            },
            rx,
        )
    }

    /// With durable acknowledgement: the cores hold accepts until `marks` settles them (the
    /// writer gets the same marks).
    pub fn with_durable_ack(mut self, marks: Arc<DurableMarks>, ack: DurableAck) -> ShareQueue {
        self.durable = Some((marks, ack));
        self
    }

    /// The marks and settings of durable acknowledgement, when it is on.
    pub fn durable(&self) -> Option<(&DurableMarks, &DurableAck)> {
        self.durable.as_ref().map(|(m, a)| (&**m, a))
    }

    /// Queues a record without waiting; what cannot be queued is counted (and an accepted one
    /// logged).
    pub fn push(&self, share: LoggedShare) -> Queued {
        let accepted = share.record.result.is_ok();
        if !accepted && self.tx.len() >= self.high_water {
            self.stats.drop_rejected(1);
            return Queued::DroppedRejected;
        }
        match self.tx.try_send(share) {
            Ok(()) => Queued::Yes,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) if accepted => {
                self.stats.drop_accepted(1, "the share queue is full");
                Queued::DroppedAccepted
            }
            Err(_) => {
                self.stats.drop_rejected(1);
                Queued::DroppedRejected
            }
        }
    }

    /// Records waiting now.
    pub fn len(&self) -> usize {
        self.tx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tx.is_empty()
    }
}

/// A numbered batch, as spooled (one JSON line) and as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Batch {
    epoch: u64,
    seq: u64,
    /// Each record's values, in the order of [`FIELDS`].
    records: Vec<Vec<String>>,
}

impl Batch {
    /// (accepted, rejected) records.
    fn verdicts(&self) -> (u64, u64) {
        let accepted = self.records.iter().filter(|r| r[3] == "accepted").count() as u64;
        (accepted, self.records.len() as u64 - accepted)
    }
}

/// Writes a batch unless its sequence is at or below the high-water mark: every record to the
/// stream, then the batch's rollups, summed per (minute, worker) before they are sent. A worker
/// new to a minute's hash takes one of its `cap` places, counted in the hash's field COUNT; once
/// they are taken, new workers are summed under OTHER. Checked here, inside one script, so engines
/// writing at once cannot pass the cap between them. Rollup hashes live two days, high-water marks
/// a week (longer than any spool waits). Returns the records written (-1: a batch already
/// written).
///
/// KEYS: the stream, the high-water mark, then the rollup hash of each minute the batch covers
/// (a script names only keys it is given, so the writer names the minutes' hashes; a batch spans
/// one or two minutes). ARGV: seq, maxlen, field count F, record count R, rollup count U, cap,
/// OTHER, COUNT, the F field names, the R records of F values each, then U rollups of (k, worker,
/// accepted, rejected, difficulty), whose hash is KEYS[k].
const WRITE_BATCH: &str = r#"
local hwm = tonumber(redis.call('GET', KEYS[2]) or '0')
local seq = tonumber(ARGV[1])
if seq <= hwm then return -1 end
local f = tonumber(ARGV[3])
local records = tonumber(ARGV[4])
local rollups = tonumber(ARGV[5])
local cap = tonumber(ARGV[6])
local other = ARGV[7]
local count = ARGV[8]
local names = 8
local base = names + 1 + f
local args = {'XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*'}
for j = 1, f do
  args[6 + 2 * j - 1] = ARGV[names + j]
end
for i = 0, records - 1 do
  for j = 1, f do
    args[6 + 2 * j] = ARGV[base + i * f + j - 1]
  end
  redis.call(unpack(args))
end
local at = base + records * f
for u = 0, rollups - 1 do
  local i = at + 5 * u
  local key = KEYS[tonumber(ARGV[i])]
  local worker = ARGV[i + 1]
  if redis.call('HEXISTS', key, worker .. '|accepted') == 0
    and redis.call('HEXISTS', key, worker .. '|rejected') == 0 then
    if tonumber(redis.call('HGET', key, count) or '0') >= cap then
      worker = other
    else
      redis.call('HINCRBY', key, count, 1)
    end
  end
  local accepted = tonumber(ARGV[i + 2])
  local rejected = tonumber(ARGV[i + 3])
  if accepted > 0 then
    redis.call('HINCRBY', key, worker .. '|accepted', accepted)
    redis.call('HINCRBYFLOAT', key, worker .. '|difficulty', ARGV[i + 4])
  end
  if rejected > 0 then
    redis.call('HINCRBY', key, worker .. '|rejected', rejected)
  end
  redis.call('EXPIRE', key, 172800)
end
redis.call('SET', KEYS[2], seq, 'EX', 604800)
return records
"#;

/// One worker's sums in one minute of a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Rollup {
    accepted: u64,
    rejected: u64,
    /// The accepted shares' assigned difficulty.
    difficulty: f64,
}

/// A batch's rollups: (minute, worker) → sums.
fn rollups(batch: &Batch) -> std::collections::BTreeMap<(u64, &str), Rollup> {
    let mut sums = std::collections::BTreeMap::<(u64, &str), Rollup>::new();
    for r in &batch.records {
        let minute = r[0].parse::<u64>().unwrap_or(0) / 60_000;
        let sum = sums.entry((minute, r[5].as_str())).or_default();
        if r[3] == "accepted" {
            sum.accepted += 1;
            sum.difficulty += r[6].parse::<f64>().unwrap_or(0.0);
        } else {
            sum.rejected += 1;
        }
    }
    sums
}

fn fields_of(share: &LoggedShare, engine: &str, batch: &str) -> Vec<String> {
    let r = &share.record;
    let (verdict, reason) = match r.result {
        Ok(()) => (Verdict::Accepted, None),
        Err(reject) => (Verdict::Rejected, Some(reject.reason().to_owned())),
    };
    ShareEntry {
        ts: share.at_ms,
        engine: engine.to_owned(),
        batch: batch.to_owned(),
        verdict,
        reason,
        worker: r.worker.to_string(),
        assigned: r.assigned_difficulty.get(),
        actual: r.share_difficulty.map_or(0.0, Difficulty::get),
        job: r.job_id.map(|j| j.to_string()),
        height: r.height,
        session: crate::hex::encode(share.session.as_bytes()),
        client: share.client.to_string(),
        agent: share.user_agent.as_deref().map(str::to_owned),
        block: r.is_block,
        hash: r.hash.map(|h| h.to_string()),
    }
    .into_values()
}

/// Reads a file from `pos` to `end` by `pread`, leaving the append handle's offset alone.
struct SpoolReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for SpoolReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf.len().min(self.end.saturating_sub(self.pos) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Cuts a torn last line (bytes after the last `\n`) off the spool; returns the new length and
/// the bytes cut.
fn cut_torn_tail(file: &File) -> std::io::Result<(u64, u64)> {
    let len = file.metadata()?.len();
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    let keep = loop {
        if end == 0 {
            break 0;
        }
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            break start + i as u64 + 1;
        }
        end = start;
    };
    if keep < len {
        file.set_len(keep)?;
        file.sync_all()?;
    }
    Ok((keep, len - keep))
}

/// Why a batch did not reach Redis, or a replay turn stopped: the writer spools meanwhile, and
/// logs it.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("cannot reach Redis (check redis.url and that Redis is up): {0}")]
    Connect(#[source] redis::RedisError),
    #[error("Redis did not take the share batch: {0}")]
    Redis(#[source] redis::RedisError),
    #[error("the share spool (share_log.spool_path): {0}")]
    Spool(#[from] std::io::Error),
    #[error("fewer replicas than share_log.durable_replicas confirmed the replayed batches: the spool keeps them")]
    Unreplicated,
}

struct Writer {
    settings: PlaneSettings,
    log: ShareLogSettings,
    script: redis::Script,
    con: Option<redis::Connection>,
    spool: Option<File>,
    /// Bytes in the spool, whole lines only.
    spool_bytes: u64,
    /// Bytes at the start of the spool already replayed into Redis (this run).
    replay_at: u64,
    stats: Arc<ShareLogStats>,
    next_retry: Instant,
}

impl Writer {
    fn new(settings: PlaneSettings, log: ShareLogSettings, stats: Arc<ShareLogStats>) -> Writer {
        let mut writer = Writer {
            script: redis::Script::new(WRITE_BATCH),
            settings,
            log,
            con: None,
            spool: None,
            spool_bytes: 0,
            replay_at: 0,
            stats,
            next_retry: Instant::now(),
        };
        // A spool left by an earlier run goes first (and its torn tail goes now).
        if writer.log.spool_path.exists() {
            if let Err(e) = writer.open_spool() {
                tracing::error!(error = %e, path = %writer.log.spool_path.display(), "cannot open the share spool left by an earlier run (share_log.spool_path)");
            }
        }
        writer
    }

    fn hwm_key(&self, epoch: u64) -> String {
        Keys::new(&self.settings.prefix).shares_hwm(&self.settings.id, epoch)
    }

    /// Writes one batch to Redis (idempotently).
    fn write(&mut self, batch: &Batch) -> Result<(), WriteError> {
        if self.con.is_none() {
            self.con = Some(connect(&self.settings.url).map_err(WriteError::Connect)?);
        }
        let sums = rollups(batch);
        let keys = Keys::new(&self.settings.prefix);
        let mut invocation = self.script.prepare_invoke();
        invocation.key(keys.shares()).key(self.hwm_key(batch.epoch));
        // The sums come sorted by minute: each new minute is the next key, from KEYS[3].
        let mut last = None;
        for &(minute, _) in sums.keys() {
            if last != Some(minute) {
                invocation.key(keys.rollup(minute));
                last = Some(minute);
            }
        }
        invocation
            .arg(batch.seq)
            .arg(self.log.stream_maxlen)
            .arg(FIELDS.len())
            .arg(batch.records.len())
            .arg(sums.len())
            .arg(self.log.max_rollup_workers)
            .arg(OTHER_WORKERS)
            .arg(ROLLUP_WORKER_COUNT);
        for name in FIELDS {
            invocation.arg(name);
        }
        for record in &batch.records {
            for value in record {
                invocation.arg(value);
            }
        }
        let (mut k, mut last) = (2, None);
        for ((minute, worker), sum) in &sums {
            if last != Some(*minute) {
                k += 1;
                last = Some(*minute);
            }
            invocation
                .arg(k)
                .arg(*worker)
                .arg(sum.accepted)
                .arg(sum.rejected)
                .arg(sum.difficulty);
        }
        let con = self.con.as_mut().expect("connected above");
        match invocation.invoke::<i64>(con) {
            Ok(n) => {
                if n >= 0 {
                    self.stats
                        .written
                        .fetch_add(batch.records.len() as u64, Ordering::Relaxed);
                }
                Ok(())
            }
            Err(e) => {
                self.con = None;
                Err(WriteError::Redis(e))
            }
        }
    }

    /// Opens the spool if it is not open; a torn last line is cut off first.
    fn open_spool(&mut self) -> std::io::Result<&mut File> {
        if self.spool.is_none() {
            if let Some(dir) = self.log.spool_path.parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir)?;
                }
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .open(&self.log.spool_path)?;
            let (len, torn) = cut_torn_tail(&file)?;
            if torn > 0 {
                self.stats.spool_torn_lines.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    bytes = torn,
                    path = %self.log.spool_path.display(),
                    "cut a torn last line off the share spool (a crash while appending; its batch was never acknowledged)"
                );
            }
            self.spool_bytes = len;
            self.replay_at = 0;
            self.spool = Some(file);
        }
        Ok(self.spool.as_mut().expect("opened above"))
    }

    /// Counts a batch the spool could not take, by verdict.
    fn lost(&self, batch: &Batch, why: &'static str) {
        let (accepted, rejected) = batch.verdicts();
        self.stats.drop_rejected(rejected);
        self.stats.drop_accepted(accepted, why);
    }

    /// Appends a batch to the spool and fsyncs it; false: dropped (counted and logged).
    fn spool(&mut self, batch: &Batch) -> bool {
        let mut line = serde_json::to_vec(batch).expect("a batch serializes");
        line.push(b'\n');
        let limit = self.log.max_spool_bytes;
        if let Err(e) = self.open_spool() {
            tracing::error!(error = %e, path = %self.log.spool_path.display(), "cannot open the share spool (share_log.spool_path): batch dropped");
            self.lost(batch, "cannot open the share spool (share_log.spool_path)");
            return false;
        }
        if self.spool_bytes + line.len() as u64 > limit {
            tracing::error!(
                limit,
                "share spool is full (share_log.max_spool_bytes): batch dropped"
            );
            self.lost(batch, "the share spool is full (share_log.max_spool_bytes)");
            return false;
        }
        let kept = self.spool_bytes;
        let file = self.spool.as_mut().expect("opened above");
        match file.write_all(&line).and_then(|()| file.sync_data()) {
            Ok(()) => {
                self.spool_bytes += line.len() as u64;
                self.stats.spooled_batches.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(e) => {
                // A part of the line may be on disk: cut it, so the next batch starts a clean line.
                let _ = file.set_len(kept);
                tracing::error!(error = %e, "cannot write the share spool (share_log.spool_path): batch dropped");
                self.lost(batch, "cannot write the share spool (share_log.spool_path)");
                false
            }
        }
    }

    /// One replay turn: writes spooled batches from the read offset, at most
    /// [`REPLAY_TURN_BATCHES`] or for about [`REPLAY_TURN_TIME`]. Once it has caught up, the
    /// spool is truncated.
    fn replay_turn(&mut self) -> Result<(), WriteError> {
        self.open_spool()?;
        let started = Instant::now();
        let mut turn = 0usize;
        while self.replay_at < self.spool_bytes
            && turn < REPLAY_TURN_BATCHES
            && started.elapsed() < REPLAY_TURN_TIME
        {
            let file = self.spool.as_ref().expect("opened above");
            let mut reader = BufReader::new(SpoolReader {
                file,
                pos: self.replay_at,
                end: self.spool_bytes,
            });
            let mut line = Vec::new();
            let mut batches = Vec::new();
            // Read ahead a few lines at most: their batches are written before the next read.
            while batches.len() < (REPLAY_TURN_BATCHES - turn).min(8) {
                line.clear();
                let n = reader.read_until(b'\n', &mut line)?;
                if n == 0 || line.last() != Some(&b'\n') {
                    break;
                }
                batches.push((n as u64, serde_json::from_slice::<Batch>(&line[..n - 1])));
            }
            if batches.is_empty() {
                // Only a line without its end left (cannot happen: the spool holds whole lines).
                self.replay_at = self.spool_bytes;
                break;
            }
            for (n, batch) in batches {
                match batch {
                    Ok(batch) => {
                        self.write(&batch)?;
                        self.stats.replayed_batches.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        self.stats
                            .spool_unreadable_lines
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::error!(error = %e, bytes = n, "skipping an unreadable line of the share spool: its shares are lost");
                    }
                }
                self.replay_at += n;
                turn += 1;
            }
        }
        if self.replay_at >= self.spool_bytes {
            if !self.replicated() {
                // One WAIT covers every write of this connection, so the next turn replays the
                // whole spool again (the high-water marks skip what landed) and asks again.
                self.replay_at = 0;
                return Err(WriteError::Unreplicated);
            }
            let file = self.spool.as_ref().expect("opened above");
            file.set_len(0).and_then(|()| file.sync_all())?;
            tracing::info!("share spool replayed into Redis; batches go straight to Redis again");
            self.spool_bytes = 0;
            self.replay_at = 0;
        }
        Ok(())
    }

    /// With `share_log.durable_replicas`: whether enough replicas confirmed what this connection
    /// wrote (Redis `WAIT`); without it, always. An error counts as not confirmed.
    fn replicated(&mut self) -> bool {
        let Some(want) = self.log.durable_replicas else {
            return true;
        };
        let Some(con) = self.con.as_mut() else {
            return false;
        };
        let confirmed: Result<i64, _> = redis::cmd("WAIT")
            .arg(want.replicas)
            .arg(want.timeout.as_millis() as u64)
            .query(con);
        match confirmed {
            Ok(n) => n >= i64::from(want.replicas),
            Err(e) => {
                tracing::debug!(error = %e, "WAIT for replicas failed");
                self.con = None;
                false
            }
        }
    }

    fn spooling(&self) -> bool {
        self.spool_bytes > 0
    }

    /// A replay turn is waiting: something is spooled and Redis is due to be tried.
    fn replay_due(&self) -> bool {
        self.spooling() && Instant::now() >= self.next_retry
    }

    /// Sends a batch: straight to Redis when nothing is spooled, else to the spool (order is kept).
    /// True when it is kept: in Redis, or fsynced in the spool.
    fn send(&mut self, batch: Batch) -> bool {
        if !self.spooling() {
            match self.write(&batch) {
                Ok(()) if self.replicated() => return true,
                Ok(()) => {
                    // In the master only: a failover now could lose it, so the spool keeps it
                    // too until a replay (the high-water mark skips it where it landed).
                    self.stats
                        .unreplicated_batches
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("a share batch reached fewer replicas than share_log.durable_replicas in time: spooling it too, and what follows until the spool is replayed");
                    self.next_retry = Instant::now() + RETRY_INTERVAL;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Redis is unreachable: spooling shares to {}", self.log.spool_path.display());
                    self.next_retry = Instant::now() + RETRY_INTERVAL;
                }
            }
        }
        self.spool(&batch)
    }

    /// While spooling: a replay turn when one is due.
    fn maybe_replay(&mut self) {
        if self.replay_due() {
            if let Err(e) = self.replay_turn() {
                tracing::debug!(error = %e, "Redis still away; the spool waits");
                self.next_retry = Instant::now() + RETRY_INTERVAL;
            }
        }
    }
}

/// The batch being filled, numbered `epoch:seq`.
struct Batcher {
    epoch: u64,
    seq: u64,
    records: Vec<Vec<String>>,
    /// With durable acknowledgement, the marks to settle after each batch and, per core, the
    /// highest accept numbered in the batch being filled (0: none).
    durable: Option<(Arc<DurableMarks>, Vec<u64>)>,
}

impl Batcher {
    /// Adds a record; true when it is a numbered accept (the batch then waits for it, at most the
    /// commit interval).
    fn push(&mut self, share: &LoggedShare, engine: &str) -> bool {
        let name = format!("{}:{}", self.epoch, self.seq + 1);
        self.records.push(fields_of(share, engine, &name));
        match (share.durable, &mut self.durable) {
            (Some(d), Some((_, highest))) => {
                if let Some(h) = highest.get_mut(d.core) {
                    *h = (*h).max(d.seq);
                }
                true
            }
            _ => false,
        }
    }

    /// Sends the records gathered so far as the next batch.
    fn cut(&mut self, writer: &mut Writer) {
        if self.records.is_empty() {
            return;
        }
        self.seq += 1;
        let records =
            std::mem::replace(&mut self.records, Vec::with_capacity(writer.log.batch_size));
        let kept = writer.send(Batch {
            epoch: self.epoch,
            seq: self.seq,
            records,
        });
        if let Some((marks, highest)) = &mut self.durable {
            for (core, h) in highest.iter_mut().enumerate() {
                if *h > 0 {
                    marks.settle(core, *h, kept);
                    *h = 0;
                }
            }
        }
    }
}

/// Starts the writer thread. It ends when every sender is gone, after writing (or spooling) the
/// last batch.
pub fn spawn_writer(
    settings: PlaneSettings,
    log: ShareLogSettings,
    shares: Receiver<LoggedShare>,
    stats: Arc<ShareLogStats>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    spawn_durable_writer(settings, log, shares, stats, stop, None)
}

/// [`spawn_writer`], settling the cores' numbered accepts in `marks` (durable acknowledgement).
pub fn spawn_durable_writer(
    settings: PlaneSettings,
    log: ShareLogSettings,
    shares: Receiver<LoggedShare>,
    stats: Arc<ShareLogStats>,
    stop: Arc<AtomicBool>,
    marks: Option<Arc<DurableMarks>>,
) -> std::io::Result<JoinHandle<()>> {
    assert!(log.batch_size > 0, "a batch holds at least one share");
    std::thread::Builder::new()
        .name("sluice-sharelog".into())
        .spawn(move || {
            let mut writer = Writer::new(settings, log, stats);
            let engine = writer.settings.id.clone();
            let batch_size = writer.log.batch_size;
            // A batch holding an accept goes out this soon after it (the group commit).
            let commit = writer
                .log
                .durable_ack
                .map_or(writer.log.batch_interval, |d| d.commit);
            let mut batch = Batcher {
                epoch: UnixMillis::now().as_millis(),
                seq: 0,
                records: Vec::with_capacity(batch_size),
                durable: marks.map(|m| {
                    let cores = m.cores();
                    (m, vec![0; cores])
                }),
            };
            let mut deadline = Instant::now() + writer.log.batch_interval;
            let mut open = true;
            while open || !batch.records.is_empty() {
                // Wait for a record until the batch is due, or not at all while a replay turn
                // waits.
                let wait_until = if writer.replay_due() {
                    Instant::now()
                } else {
                    deadline
                };
                match shares.recv_deadline(wait_until) {
                    Ok(share) => {
                        if batch.push(&share, &engine) {
                            deadline = deadline.min(Instant::now() + commit);
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => open = false,
                }
                // Then everything already queued, cutting batches as they fill: the queue
                // empties between replay turns however long the spool is.
                for _ in 0..shares.len() {
                    if batch.records.len() >= batch_size {
                        batch.cut(&mut writer);
                    }
                    match shares.try_recv() {
                        Ok(share) => {
                            if batch.push(&share, &engine) {
                                deadline = deadline.min(Instant::now() + commit);
                            }
                        }
                        Err(_) => break,
                    }
                }
                if batch.records.len() >= batch_size || Instant::now() >= deadline || !open {
                    batch.cut(&mut writer);
                    deadline = Instant::now() + writer.log.batch_interval;
                }
                writer.maybe_replay();
                writer.stats.log_drops("dropped since the last line");
                if stop.load(Ordering::Relaxed) && shares.is_empty() && batch.records.is_empty() {
                    break;
                }
            }
            // Last chance for the spool while stopping (a few seconds at most); what stays
            // spooled is replayed at the next start.
            writer.next_retry = Instant::now();
            let until = Instant::now() + Duration::from_secs(5);
            while writer.replay_due() && Instant::now() < until {
                writer.maybe_replay();
            }
            writer.stats.log_drops("dropped since the last line");
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollups_read_the_fields_where_they_are_and_sum_per_minute() {
        assert_eq!(
            [FIELDS[0], FIELDS[3], FIELDS[5], FIELDS[6]],
            ["ts", "verdict", "worker", "assigned"]
        );
        let record = |ts: u64, verdict: &str, worker: &str, assigned: f64| {
            let mut r = vec![String::new(); FIELDS.len()];
            r[0] = ts.to_string();
            r[3] = verdict.into();
            r[5] = worker.into();
            r[6] = assigned.to_string();
            r
        };
        let batch = Batch {
            epoch: 1,
            seq: 1,
            records: vec![
                record(60_000, "accepted", "w", 2.0),
                record(119_999, "accepted", "w", 3.0),
                record(120_000, "accepted", "w", 5.0),
                record(60_001, "rejected", "w", 2.0),
            ],
        };
        let sums = rollups(&batch);
        assert_eq!(
            sums[&(1, "w")],
            Rollup {
                accepted: 2,
                rejected: 1,
                difficulty: 5.0
            }
        );
        assert_eq!(sums[&(2, "w")].difficulty, 5.0);
        assert_eq!(sums.len(), 2);
    }

    fn share(accepted: bool) -> LoggedShare {
        LoggedShare {
            record: crate::session::ShareRecord {
                worker: Arc::from("w"),
                job_id: None,
                height: None,
                assigned_difficulty: Difficulty::ONE,
                share_difficulty: Some(Difficulty::ONE),
                result: if accepted {
                    Ok(())
                } else {
                    Err(crate::share::Reject::LowDifficulty)
                },
                is_block: false,
                hash: None,
            },
            session: Extranonce1::new(&[0, 0, 0, 1]).unwrap(),
            client: "10.0.0.1".parse().unwrap(),
            user_agent: None,
            at_ms: 0,
            durable: None,
        }
    }

    fn accept(core: usize, seq: u64) -> LoggedShare {
        LoggedShare {
            durable: Some(DurableSeq { core, seq }),
            ..share(true)
        }
    }

    /// A writer whose Redis is unreachable: batches go to the spool, bounded by `max_spool_bytes`.
    fn spooling_writer(name: &str, max_spool_bytes: u64) -> (Writer, Batcher, Arc<DurableMarks>) {
        let dir = crate::plane::test_redis::temp_dir(name);
        let mut log = crate::config::FileConfig::default().share_log().unwrap();
        log.spool_path = dir.join("spool");
        log.max_spool_bytes = max_spool_bytes;
        let writer = Writer::new(
            crate::plane::test_redis::plane("redis://127.0.0.1:1", "e"),
            log,
            Arc::default(),
        );
        let marks = Arc::new(DurableMarks::new(3));
        let batcher = Batcher {
            epoch: 1,
            seq: 0,
            records: Vec::new(),
            durable: Some((Arc::clone(&marks), vec![0; 3])),
        };
        (writer, batcher, marks)
    }

    #[test]
    fn each_cores_accepts_are_settled_by_the_batch_that_holds_them_interleaved_or_not() {
        let (mut writer, mut batch, marks) = spooling_writer("marks", 1 << 20);
        // Cores 0 and 2 interleave in one batch, a rejected record between; core 1 is idle.
        assert!(batch.push(&accept(0, 1), "e"));
        assert!(batch.push(&accept(2, 1), "e"));
        assert!(!batch.push(&share(false), "e"));
        assert!(batch.push(&accept(0, 2), "e"));
        assert!(batch.push(&accept(2, 2), "e"));
        assert_eq!(
            marks.settled(0).kept(1),
            None,
            "nothing settles before the batch is kept"
        );
        batch.cut(&mut writer);
        for core in [0, 2] {
            let s = marks.settled(core);
            assert_eq!(
                (s.kept(1), s.kept(2), s.kept(3)),
                (Some(true), Some(true), None)
            );
        }
        assert_eq!(marks.settled(1), Settled::default());
        // The next batch raises core 0 only.
        batch.push(&accept(0, 3), "e");
        batch.cut(&mut writer);
        assert_eq!(marks.settled(0).upto, 3);
        assert_eq!(marks.settled(2).upto, 2);
        assert_eq!(writer.stats.spooled_batches.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_dropped_batch_settles_its_accepts_as_lost_never_as_kept() {
        // Room in the spool for one small batch, not for the next.
        let line = serde_json::to_vec(&Batch {
            epoch: 1,
            seq: 1,
            records: vec![fields_of(&accept(0, 1), "e", "1:1")],
        })
        .unwrap();
        let (mut writer, mut batch, marks) = spooling_writer("marks-lost", line.len() as u64 + 10);
        batch.push(&accept(0, 1), "e");
        batch.cut(&mut writer);
        assert_eq!(marks.settled(0).kept(1), Some(true));
        batch.push(&accept(0, 2), "e");
        batch.push(&accept(1, 1), "e");
        batch.push(&accept(0, 3), "e");
        batch.cut(&mut writer);
        let (zero, one) = (marks.settled(0), marks.settled(1));
        assert_eq!(
            (zero.kept(2), zero.kept(3), one.kept(1)),
            (Some(false), Some(false), Some(false))
        );
        assert_eq!(writer.stats.dropped_accepted.load(Ordering::Relaxed), 3);
        // Read now, the earlier accept counts as lost too: conservative, never a false `true`.
        assert_eq!(zero.kept(1), Some(false));
        // Room again (the spool replayed elsewhere): later accepts are kept, earlier stay lost.
        writer.spool_bytes = 0;
        batch.push(&accept(0, 4), "e");
        batch.cut(&mut writer);
        let zero = marks.settled(0);
        assert_eq!((zero.kept(3), zero.kept(4)), (Some(false), Some(true)));
    }

    #[test]
    fn rejected_records_stop_at_the_high_water_mark_and_accepted_ones_fill_the_rest() {
        let stats = Arc::new(ShareLogStats::default());
        let (queue, rx) = ShareQueue::with_capacity(8, 6, Arc::clone(&stats));
        for _ in 0..6 {
            assert_eq!(queue.push(share(false)), Queued::Yes);
        }
        assert_eq!(queue.push(share(false)), Queued::DroppedRejected);
        assert_eq!(stats.dropped_rejected.load(Ordering::Relaxed), 1);
        assert_eq!(queue.push(share(true)), Queued::Yes);
        assert_eq!(queue.push(share(true)), Queued::Yes);
        assert_eq!(queue.push(share(true)), Queued::DroppedAccepted);
        assert_eq!(stats.dropped_accepted.load(Ordering::Relaxed), 1);
        assert_eq!(stats.dropped(), 2);
        // Below the mark again, a rejected record gets in.
        for _ in 0..3 {
            rx.recv().unwrap();
        }
        assert_eq!(queue.push(share(false)), Queued::Yes);
        assert_eq!(queue.push(share(false)), Queued::DroppedRejected);
    }

    #[test]
    fn with_the_engine_queue_full_of_rejected_records_accepted_ones_still_get_in() {
        let stats = Arc::new(ShareLogStats::default());
        let (queue, _rx) = ShareQueue::new(Arc::clone(&stats));
        for _ in 0..SHARE_QUEUE_REJECTED_HIGH_WATER {
            assert_eq!(queue.push(share(false)), Queued::Yes);
        }
        for _ in 0..1000 {
            assert_eq!(queue.push(share(false)), Queued::DroppedRejected);
        }
        for _ in SHARE_QUEUE_REJECTED_HIGH_WATER..SHARE_QUEUE {
            assert_eq!(queue.push(share(true)), Queued::Yes);
        }
        assert_eq!(queue.len(), SHARE_QUEUE);
        assert_eq!(queue.push(share(true)), Queued::DroppedAccepted);
        assert_eq!(stats.dropped_rejected.load(Ordering::Relaxed), 1000);
        assert_eq!(stats.dropped_accepted.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn an_accepted_record_the_writer_is_gone_for_is_counted() {
        let stats = Arc::new(ShareLogStats::default());
        let (queue, rx) = ShareQueue::with_capacity(8, 6, Arc::clone(&stats));
        drop(rx);
        assert_eq!(queue.push(share(true)), Queued::DroppedAccepted);
        assert_eq!(queue.push(share(false)), Queued::DroppedRejected);
        assert_eq!(stats.dropped(), 2);
    }

    #[test]
    fn batches_survive_the_spool_format() {
        let batch = Batch {
            epoch: 1,
            seq: 2,
            records: vec![(0..FIELDS.len())
                .map(|i| format!("v{i}\n\"quoted\""))
                .collect()],
        };
        let line = serde_json::to_vec(&batch).unwrap();
        assert!(!line.contains(&b'\n'), "one batch is one line");
        assert_eq!(serde_json::from_slice::<Batch>(&line).unwrap(), batch);
    }
}

/// The share log against a real `redis-server` (started per test, as the integration tests do:
/// a free port, a temporary directory, no persistence).
#[cfg(test)]
mod redis_tests {
    use std::path::PathBuf;

    use super::*;
    use crate::plane::test_redis::{plane, temp_dir, TestRedis};
    use crate::session::ShareRecord;
    use crate::share::Reject;

    fn settings(spool: PathBuf, max_rollup_workers: usize) -> ShareLogSettings {
        ShareLogSettings {
            batch_size: 500,
            batch_interval: Duration::from_millis(20),
            stream_maxlen: 10_000_000,
            spool_path: spool,
            max_spool_bytes: 1 << 30,
            max_rollup_workers,
            durable_ack: None,
            durable_replicas: None,
        }
    }

    /// A minute well inside the rollups' TTL, fixed so tests can read its hash.
    const AT_MS: u64 = 1_795_000_020_000;
    const MINUTE: u64 = AT_MS / 60_000;

    fn share(worker: &str, accepted: bool) -> LoggedShare {
        LoggedShare {
            record: ShareRecord {
                worker: Arc::from(worker),
                job_id: None,
                height: Some(1),
                assigned_difficulty: Difficulty::new(2.0).unwrap(),
                share_difficulty: Difficulty::new(3.0).ok(),
                result: if accepted {
                    Ok(())
                } else {
                    Err(Reject::LowDifficulty)
                },
                is_block: false,
                hash: None,
            },
            session: Extranonce1::new(&[1, 2, 3, 4]).unwrap(),
            client: "10.0.0.1".parse().unwrap(),
            user_agent: None,
            at_ms: AT_MS,
            durable: None,
        }
    }

    fn batch(epoch: u64, seq: u64, workers: &[&str]) -> Batch {
        Batch {
            epoch,
            seq,
            records: workers
                .iter()
                .map(|w| fields_of(&share(w, true), "e", &format!("{epoch}:{seq}")))
                .collect(),
        }
    }

    fn rollup(con: &mut redis::Connection) -> std::collections::HashMap<String, String> {
        redis::cmd("HGETALL")
            .arg(Keys::new("t").rollup(MINUTE))
            .query(con)
            .unwrap()
    }

    fn stream_batches(con: &mut redis::Connection) -> Vec<String> {
        let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg(Keys::new("t").shares())
            .arg("-")
            .arg("+")
            .query(con)
            .unwrap();
        entries
            .into_iter()
            .map(|(_, f)| f.into_iter().find(|(k, _)| k == "batch").unwrap().1)
            .collect()
    }

    #[test]
    fn a_minute_holds_max_rollup_workers_named_workers_across_engines_and_sums_the_rest() {
        let redis = TestRedis::start();
        let dir = temp_dir("cap");
        let mut one = Writer::new(
            plane(&redis.url(), "e1"),
            settings(dir.join("one.spool"), 3),
            Arc::default(),
        );
        let mut two = Writer::new(
            plane(&redis.url(), "e2"),
            settings(dir.join("two.spool"), 3),
            Arc::default(),
        );
        // Two workers from each engine: the third place goes to the first to write, the fourth
        // worker is past the cap.
        one.write(&batch(1, 1, &["a", "b"])).unwrap();
        two.write(&batch(1, 1, &["c", "d", "d"])).unwrap();
        // A named worker keeps its name; another new one is summed too.
        one.write(&batch(1, 2, &["a", "e"])).unwrap();
        let mut con = redis.con();
        let r = rollup(&mut con);
        assert_eq!(r[ROLLUP_WORKER_COUNT], "3");
        assert_eq!(r["a|accepted"], "2");
        assert_eq!(r["a|difficulty"], "4");
        assert_eq!(r["b|accepted"], "1");
        assert_eq!(r["c|accepted"], "1");
        assert!(!r.contains_key("d|accepted") && !r.contains_key("e|accepted"));
        assert_eq!(r[&format!("{OTHER_WORKERS}|accepted")], "3");
        assert_eq!(r[&format!("{OTHER_WORKERS}|difficulty")], "6");
        // 3 named workers × 2 fields, ~ other's 2, the count.
        assert_eq!(r.len(), 9, "{r:?}");
        // The stream keeps every record under its own name.
        assert_eq!(stream_batches(&mut con).len(), 7);
        let ttl: i64 = redis::cmd("TTL")
            .arg(Keys::new("t").rollup(MINUTE))
            .query(&mut con)
            .unwrap();
        assert!(ttl > 172_000, "the rollup keeps its two-day TTL: {ttl}");
    }

    #[test]
    fn the_default_cap_takes_10_000_workers_and_not_one_more() {
        let redis = TestRedis::start();
        let dir = temp_dir("cap-default");
        let mut w = Writer::new(
            plane(&redis.url(), "e1"),
            settings(dir.join("spool"), DEFAULT_MAX_ROLLUP_WORKERS),
            Arc::default(),
        );
        let names: Vec<String> = (0..=DEFAULT_MAX_ROLLUP_WORKERS)
            .map(|i| format!("w{i:05}"))
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let (first, second) = names.split_at(DEFAULT_MAX_ROLLUP_WORKERS - 1);
        w.write(&batch(1, 1, first)).unwrap();
        let mut con = redis.con();
        assert!(!rollup(&mut con).contains_key(&format!("{OTHER_WORKERS}|accepted")));
        // The 10,000th worker takes the last place, the 10,001st is summed.
        w.write(&batch(1, 2, second)).unwrap();
        let r = rollup(&mut con);
        assert_eq!(r[ROLLUP_WORKER_COUNT], "10000");
        assert_eq!(r["w09999|accepted"], "1");
        assert!(!r.contains_key("w10000|accepted"));
        assert_eq!(r[&format!("{OTHER_WORKERS}|accepted")], "1");
    }

    /// A spool holding `n` batches of one record each, written by an earlier run (epoch 7).
    fn spool_of(path: &std::path::Path, n: u64) {
        let mut text = Vec::new();
        for seq in 1..=n {
            text.extend(serde_json::to_vec(&batch(7, seq, &["old"])).unwrap());
            text.push(b'\n');
        }
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn a_torn_last_line_is_cut_off_counted_and_the_next_batches_append_on_a_clean_line() {
        let redis = TestRedis::start();
        let dir = temp_dir("torn");
        let path = dir.join("spool");
        spool_of(&path, 2);
        let whole = std::fs::metadata(&path).unwrap().len();
        // A crash in the middle of appending the third batch.
        let third = serde_json::to_vec(&batch(7, 3, &["old"])).unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&third[..third.len() / 2]).unwrap();
        drop(f);
        let stats = Arc::new(ShareLogStats::default());
        // Redis is not reachable yet: the new batch goes to the spool behind the old ones.
        let mut w = Writer::new(
            plane("redis://127.0.0.1:1", "e"),
            settings(path.clone(), 100),
            Arc::clone(&stats),
        );
        assert_eq!(stats.spool_torn_lines.load(Ordering::Relaxed), 1);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), whole);
        w.send(batch(8, 1, &["new"]));
        assert_eq!(stats.spooled_batches.load(Ordering::Relaxed), 1);
        let text = std::fs::read(&path).unwrap();
        assert_eq!(text.iter().filter(|&&b| b == b'\n').count(), 3);
        assert!(text.ends_with(b"\n"));
        // Every whole batch replays.
        w.settings.url = redis.url().into();
        w.next_retry = Instant::now();
        w.maybe_replay();
        let mut con = redis.con();
        assert_eq!(stream_batches(&mut con), ["7:1", "7:2", "8:1"]);
        assert_eq!(stats.spool_unreadable_lines.load(Ordering::Relaxed), 0);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        assert!(!w.spooling());
    }

    #[test]
    fn a_replay_turn_is_bounded_new_batches_queue_behind_it_and_a_crash_replays_once() {
        let redis = TestRedis::start();
        let dir = temp_dir("replay");
        let path = dir.join("spool");
        spool_of(&path, 200);
        let stats = Arc::new(ShareLogStats::default());
        let mut w = Writer::new(
            plane(&redis.url(), "e"),
            settings(path.clone(), 100),
            Arc::clone(&stats),
        );
        assert!(w.replay_due(), "a spool from an earlier run goes first");
        w.maybe_replay();
        let first = stats.replayed_batches.load(Ordering::Relaxed);
        assert!(
            (1..=REPLAY_TURN_BATCHES as u64).contains(&first),
            "one turn writes a bounded slice: {first}"
        );
        assert!(w.spooling());
        // A new batch while the replay is under way goes behind it, not straight to Redis.
        w.send(batch(8, 1, &["new"]));
        assert_eq!(stats.spooled_batches.load(Ordering::Relaxed), 1);
        let mut con = redis.con();
        assert_eq!(stream_batches(&mut con).len() as u64, first);

        // A crash now: the next run replays from the start and the high-water marks skip what
        // landed.
        drop(w);
        let stats = Arc::new(ShareLogStats::default());
        let mut w = Writer::new(
            plane(&redis.url(), "e"),
            settings(path.clone(), 100),
            Arc::clone(&stats),
        );
        let mut turns = 0;
        while w.spooling() {
            w.maybe_replay();
            turns += 1;
            assert!(turns < 100, "the replay does not finish");
        }
        assert!(turns >= 201 / REPLAY_TURN_BATCHES, "{turns} turns");
        assert_eq!(stats.replayed_batches.load(Ordering::Relaxed), 201);
        let mut expected: Vec<String> = (1..=200).map(|s| format!("7:{s}")).collect();
        expected.push("8:1".into());
        assert_eq!(
            stream_batches(&mut con),
            expected,
            "each batch once, in order"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        // Caught up: batches go straight to Redis again.
        w.send(batch(8, 2, &["new"]));
        assert_eq!(stats.spooled_batches.load(Ordering::Relaxed), 0);
        assert_eq!(stream_batches(&mut con).len(), 202);
    }

    #[test]
    fn the_writer_keeps_taking_new_shares_while_a_long_spool_replays() {
        let redis = TestRedis::start();
        let dir = temp_dir("drain");
        let path = dir.join("spool");
        const SPOOLED: u64 = 20_000;
        spool_of(&path, SPOOLED);
        let stats = Arc::new(ShareLogStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (queue, rx) = ShareQueue::with_capacity(64, 48, Arc::clone(&stats));
        let writer = spawn_writer(
            plane(&redis.url(), "e"),
            settings(path.clone(), 100),
            rx,
            Arc::clone(&stats),
            Arc::clone(&stop),
        )
        .unwrap();
        let replayed = || stats.replayed_batches.load(Ordering::Relaxed);
        while replayed() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Shares queued once the replay is under way leave the queue before it ends (a replay
        // that held the writer until the spool was done would leave them there).
        let mut taken_during_replay = 0;
        for _ in 0..10 {
            assert_eq!(queue.push(share("live", true)), Queued::Yes);
            while !queue.is_empty() {
                std::thread::sleep(Duration::from_micros(200));
            }
            if replayed() < SPOOLED {
                taken_during_replay += 1;
            }
        }
        assert!(
            taken_during_replay > 0,
            "no share left the queue while the spool replayed"
        );
        // A stop ends a replay where it is (the rest waits on disk for the next start), so let
        // this one finish first: on a slow machine the ten live shares are through long before.
        let deadline = Instant::now() + Duration::from_secs(120);
        while std::fs::metadata(&path).map_or(0, |m| m.len()) > 0 {
            assert!(Instant::now() < deadline, "the replay does not finish");
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::Relaxed);
        drop(queue);
        writer.join().unwrap();
        assert_eq!(stats.dropped(), 0);
        // The live shares went to the end of the spool, and replayed from there.
        let spooled = stats.spooled_batches.load(Ordering::Relaxed);
        assert!(spooled > 0);
        assert_eq!(replayed(), SPOOLED + spooled);
        let batches = stream_batches(&mut redis.con());
        assert_eq!(batches.len() as u64, SPOOLED + 10);
        // Order is kept: the old run's batches first, the live ones behind them.
        let old = SPOOLED as usize;
        assert!(batches[..old].iter().all(|b| b.starts_with("7:")));
        assert!(batches[old..].iter().all(|b| !b.starts_with("7:")));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }
}
