//! The share log: every share verdict of an engine goes to the stream `P:shares` in pipelined
//! batches, with per-minute rollups per worker, and nothing is lost or counted twice while Redis is
//! away.
//!
//! Cores hand records to the writer over a bounded channel (a full channel drops the record and
//! counts it; a core never waits). The writer cuts a batch at `batch_size` records or
//! `batch_interval`, whichever comes first, and numbers it: `(engine id, epoch, sequence)`, where
//! the epoch is the writer's start time. One Lua script writes a batch: it skips a batch whose
//! sequence is not above the high-water mark `P:shares:hwm:ENGINE:EPOCH`, else appends every record,
//! updates the rollups `P:roll:MINUTE` and raises the mark, all at once. So a batch sent twice (a
//! reply lost, a replay after a crash) is written once.
//!
//! When a batch cannot be written, it and every later batch go to the spool file, appended and
//! fsynced per batch, up to `max_spool_bytes` (beyond it a batch is dropped and counted, loudly).
//! Once a second the writer tries Redis again; when it answers, the spool is replayed in order and
//! truncated, and batches go straight to Redis again. A spool left by an earlier run is replayed at
//! start.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use serde::{Deserialize, Serialize};

use crate::plane::{connect, Keys, PlaneSettings};
use crate::server::now_ms;
use crate::session::ShareRecord;
use crate::units::Extranonce1;

/// Records queued between the cores and the writer.
pub const SHARE_QUEUE: usize = 65_536;

/// How often the writer tries Redis again while spooling.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// One share as the engine hands it to the log.
#[derive(Debug, Clone)]
pub struct LoggedShare {
    pub record: ShareRecord,
    pub session: Extranonce1,
    pub client: IpAddr,
    pub user_agent: Option<Arc<str>>,
    pub at_ms: u64,
}

/// The settings of the share log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareLogSettings {
    pub batch_size: usize,
    pub batch_interval: Duration,
    /// `P:shares` is trimmed to about this many entries.
    pub stream_maxlen: usize,
    pub spool_path: PathBuf,
    pub max_spool_bytes: u64,
}

/// The stream entry's fields, in the order records carry their values. The rollups read `ts`,
/// `verdict`, `worker` and `assigned` at offsets 0, 3, 5 and 6.
pub const FIELDS: [&str; 15] = [
    "ts", "engine", "batch", "verdict", "reason", "worker", "assigned", "actual", "job", "height",
    "session", "client", "agent", "block", "hash",
];

/// A numbered batch, as spooled (one JSON line) and as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Batch {
    epoch: u64,
    seq: u64,
    /// Each record's values, in the order of [`FIELDS`].
    records: Vec<Vec<String>>,
}

/// Writes a batch unless its sequence is at or below the high-water mark: every record to the
/// stream, then the batch's rollups, summed per (minute, worker, counter) before they are sent.
/// Rollup hashes live two days, high-water marks a week (longer than any spool waits).
///
/// ARGV: seq, maxlen, prefix, field count F, record count R, rollup count U, the F field names,
/// the R records of F values each, then U rollups of (minute, field, increment).
const WRITE_BATCH: &str = r#"
local hwm = tonumber(redis.call('GET', KEYS[2]) or '0')
local seq = tonumber(ARGV[1])
if seq <= hwm then return -1 end
local f = tonumber(ARGV[4])
local records = tonumber(ARGV[5])
local rollups = tonumber(ARGV[6])
local base = 7 + f
local args = {'XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*'}
for j = 1, f do
  args[6 + 2 * j - 1] = ARGV[6 + j]
end
for i = 0, records - 1 do
  for j = 1, f do
    args[6 + 2 * j] = ARGV[base + i * f + j - 1]
  end
  redis.call(unpack(args))
end
local at = base + records * f
for u = 0, rollups - 1 do
  local key = ARGV[3] .. ':roll:' .. ARGV[at + 3 * u]
  redis.call('HINCRBYFLOAT', key, ARGV[at + 3 * u + 1], ARGV[at + 3 * u + 2])
  redis.call('EXPIRE', key, 172800)
end
redis.call('SET', KEYS[2], seq, 'EX', 604800)
return records
"#;

/// A batch's rollup increments: (minute, `worker|counter`) → increment.
fn rollups(batch: &Batch) -> std::collections::BTreeMap<(u64, String), f64> {
    let mut sums = std::collections::BTreeMap::new();
    for r in &batch.records {
        let minute = r[0].parse::<u64>().unwrap_or(0) / 60_000;
        let worker = &r[5];
        if r[3] == "accepted" {
            *sums
                .entry((minute, format!("{worker}|accepted")))
                .or_insert(0.0) += 1.0;
            *sums
                .entry((minute, format!("{worker}|difficulty")))
                .or_insert(0.0) += r[6].parse::<f64>().unwrap_or(0.0);
        } else {
            *sums
                .entry((minute, format!("{worker}|rejected")))
                .or_insert(0.0) += 1.0;
        }
    }
    sums
}

/// Counters of the share log, for metrics and tests.
#[derive(Debug, Default)]
pub struct ShareLogStats {
    pub written: AtomicU64,
    pub spooled_batches: AtomicU64,
    pub replayed_batches: AtomicU64,
    /// Records lost: the channel was full, or the spool was at its limit.
    pub dropped: AtomicU64,
}

fn fields_of(share: &LoggedShare, engine: &str, batch: &str) -> Vec<String> {
    let r = &share.record;
    let (verdict, reason) = match r.result {
        Ok(()) => ("accepted", ""),
        Err(reject) => ("rejected", reject.reason()),
    };
    vec![
        share.at_ms.to_string(),
        engine.to_owned(),
        batch.to_owned(),
        verdict.to_owned(),
        reason.to_owned(),
        r.worker.to_string(),
        r.assigned_difficulty.to_string(),
        r.share_difficulty.to_string(),
        r.job_id.map_or(String::new(), |j| j.to_string()),
        r.height.map_or(String::new(), |h| h.to_string()),
        crate::hex::encode(share.session.as_bytes()),
        share.client.to_string(),
        share.user_agent.as_deref().unwrap_or("").to_owned(),
        u8::from(r.is_block).to_string(),
        r.hash.map_or(String::new(), |h| h.to_string()),
    ]
}

struct Writer {
    settings: PlaneSettings,
    log: ShareLogSettings,
    script: redis::Script,
    con: Option<redis::Connection>,
    spool: Option<File>,
    spool_bytes: u64,
    stats: Arc<ShareLogStats>,
    next_retry: Instant,
}

impl Writer {
    fn hwm_key(&self, epoch: u64) -> String {
        format!(
            "{}:shares:hwm:{}:{epoch}",
            self.settings.prefix, self.settings.id
        )
    }

    /// Writes one batch to Redis (idempotently).
    fn write(&mut self, batch: &Batch) -> Result<(), String> {
        if self.con.is_none() {
            self.con = Some(connect(&self.settings.url).map_err(|e| e.to_string())?);
        }
        let sums = rollups(batch);
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(Keys::new(&self.settings.prefix).shares())
            .key(self.hwm_key(batch.epoch))
            .arg(batch.seq)
            .arg(self.log.stream_maxlen)
            .arg(&self.settings.prefix)
            .arg(FIELDS.len())
            .arg(batch.records.len())
            .arg(sums.len());
        for name in FIELDS {
            invocation.arg(name);
        }
        for record in &batch.records {
            for value in record {
                invocation.arg(value);
            }
        }
        for ((minute, field), increment) in &sums {
            invocation.arg(minute).arg(field).arg(increment);
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
                Err(e.to_string())
            }
        }
    }

    fn open_spool(&mut self) -> std::io::Result<&mut File> {
        if self.spool.is_none() {
            if let Some(dir) = self.log.spool_path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .open(&self.log.spool_path)?;
            self.spool_bytes = file.metadata()?.len();
            self.spool = Some(file);
        }
        Ok(self.spool.as_mut().expect("opened above"))
    }

    fn spool(&mut self, batch: &Batch) {
        let mut line = serde_json::to_vec(batch).expect("a batch serializes");
        line.push(b'\n');
        let limit = self.log.max_spool_bytes;
        if let Err(e) = self.open_spool() {
            self.stats
                .dropped
                .fetch_add(batch.records.len() as u64, Ordering::Relaxed);
            tracing::error!(error = %e, path = %self.log.spool_path.display(), "cannot open the share spool: batch dropped");
            return;
        }
        if self.spool_bytes + line.len() as u64 > limit {
            self.stats
                .dropped
                .fetch_add(batch.records.len() as u64, Ordering::Relaxed);
            tracing::error!(
                limit,
                "share spool is full (share_log.max_spool_bytes): batch dropped"
            );
            return;
        }
        let file = self.spool.as_mut().expect("opened above");
        match file.write_all(&line).and_then(|()| file.sync_data()) {
            Ok(()) => {
                self.spool_bytes += line.len() as u64;
                self.stats.spooled_batches.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.stats
                    .dropped
                    .fetch_add(batch.records.len() as u64, Ordering::Relaxed);
                tracing::error!(error = %e, "cannot write the share spool: batch dropped");
            }
        }
    }

    /// Replays the spool in order; on success truncates it. A torn last line (a crash while
    /// appending) is ignored: its batch was never acknowledged to anyone.
    fn replay(&mut self) -> Result<(), String> {
        let path = self.log.spool_path.clone();
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        let mut replayed = 0u64;
        for line in BufReader::new(file).split(b'\n') {
            let line = line.map_err(|e| e.to_string())?;
            let Ok(batch) = serde_json::from_slice::<Batch>(&line) else {
                tracing::warn!("skipping an unreadable line of the share spool");
                continue;
            };
            self.write(&batch)?;
            replayed += 1;
        }
        if replayed > 0 {
            tracing::info!(batches = replayed, "share spool replayed into Redis");
        }
        self.stats
            .replayed_batches
            .fetch_add(replayed, Ordering::Relaxed);
        self.spool = None;
        File::create(&path)
            .and_then(|f| f.sync_all())
            .map_err(|e| e.to_string())?;
        self.spool_bytes = 0;
        Ok(())
    }

    fn spooling(&self) -> bool {
        self.spool_bytes > 0
    }

    /// Sends a batch: straight to Redis when nothing is spooled, else to the spool (order is kept).
    fn send(&mut self, batch: Batch) {
        if !self.spooling() {
            match self.write(&batch) {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "Redis is unreachable: spooling shares to {}", self.log.spool_path.display());
                    self.next_retry = Instant::now() + RETRY_INTERVAL;
                }
            }
        }
        self.spool(&batch);
    }

    /// While spooling, once a second: try to replay.
    fn maybe_replay(&mut self) {
        if self.spooling() && Instant::now() >= self.next_retry {
            if let Err(e) = self.replay() {
                tracing::debug!(error = %e, "Redis still away; the spool waits");
                self.next_retry = Instant::now() + RETRY_INTERVAL;
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
    assert!(log.batch_size > 0, "a batch holds at least one share");
    let mut writer = Writer {
        script: redis::Script::new(WRITE_BATCH),
        settings,
        log,
        con: None,
        spool: None,
        spool_bytes: 0,
        stats,
        next_retry: Instant::now(),
    };
    // A spool left by an earlier run goes first.
    writer.spool_bytes = std::fs::metadata(&writer.log.spool_path).map_or(0, |m| m.len());
    std::thread::Builder::new()
        .name("sluice-sharelog".into())
        .spawn(move || {
            let epoch = now_ms();
            let mut seq = 0u64;
            let batch_name = |seq: u64| format!("{epoch}:{seq}");
            let mut records = Vec::with_capacity(writer.log.batch_size);
            let mut deadline = Instant::now() + writer.log.batch_interval;
            let mut open = true;
            while open || !records.is_empty() {
                match shares.recv_deadline(deadline) {
                    Ok(share) => {
                        records.push(fields_of(&share, &writer.settings.id, &batch_name(seq + 1)))
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => open = false,
                }
                let full = records.len() >= writer.log.batch_size;
                if full || Instant::now() >= deadline || !open {
                    if !records.is_empty() {
                        seq += 1;
                        let batch = Batch {
                            epoch,
                            seq,
                            records: std::mem::replace(
                                &mut records,
                                Vec::with_capacity(writer.log.batch_size),
                            ),
                        };
                        writer.send(batch);
                    }
                    deadline = Instant::now() + writer.log.batch_interval;
                    writer.maybe_replay();
                }
                if stop.load(Ordering::Relaxed) && shares.is_empty() && records.is_empty() {
                    break;
                }
            }
            // Last chance for the spool while stopping; what stays spooled is replayed next start.
            writer.maybe_replay();
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
        assert_eq!(sums[&(1, "w|accepted".into())], 2.0);
        assert_eq!(sums[&(1, "w|difficulty".into())], 5.0);
        assert_eq!(sums[&(1, "w|rejected".into())], 1.0);
        assert_eq!(sums[&(2, "w|difficulty".into())], 5.0);
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
