//! Found blocks across the fleet: an engine appends each block it finds to the stream
//! `P:blocks:found`; the leading jobmanager reads that stream from `P:blocks:cursor`, submits each
//! block to every node, and appends the block with every node's answer to `P:blocks`.
//!
//! A block is worth far more than the rest of the traffic, so every step is at least once:
//! - an engine writes each found block to its held-blocks file (fsynced) before it hands it to
//!   Redis, and takes it out of the file only once `XADD` answered; while Redis is away the file
//!   holds it, so an engine that dies (or stops) with Redis away sends it at its next start;
//! - the leader takes one entry at a time and moves the cursor past it only in the same script that
//!   records the block's outcome in `P:blocks`, and only forwards (set if greater), so a leader
//!   that dies before the outcome is known leaves the entry for the next one, which resubmits it
//!   (the nodes answer `duplicate` to a block they have: harmless).

use std::collections::{HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde::{Deserialize, Serialize};
use sluice_layout::blocks as field;

use crate::chain::{BlockRecord, CandidateBlock};
use crate::hex;
use crate::plane::keys::BLOCK_STREAM_MAXLEN;
use crate::plane::lease::Leadership;
use crate::plane::{connected, spawn_loop, Backoff, Keys, PlaneLoop, PlaneSettings, StepError};
use crate::session::BlockFound;
use crate::units::{BlockHash, BlockHashError};

/// How long a stopping engine keeps trying to hand over the blocks it holds (they stay in the
/// held-blocks file after it, for the next start).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Blocks an engine holds while Redis is away (in memory and in its held-blocks file), beyond
/// which the oldest is logged in full and dropped: the oldest is the likeliest to be stale, and
/// each was logged with its hex when it was held, so an operator can still submit it by hand.
pub const MAX_HELD_BLOCKS: usize = 1024;

/// How long the leader waits for the outcome of a block it took before it reads the entry again
/// (and so submits it again): far longer than every node's tries take (`jobs.submit_attempts`
/// times `jobs.rpc_timeout_secs`), so it only fires if the outcome was lost.
pub const OUTCOME_WAIT: Duration = Duration::from_secs(120);

/// The held-blocks file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum HeldBlocksError {
    #[error("blocks.held_path {path}: {source} (set blocks.held_path to a writable file)")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("blocks.held_path {path}: another running engine holds this file; give each engine its own blocks.held_path")]
    InUse { path: String },
}

/// Why a line of the held-blocks file or a `P:blocks:found` entry is not a block. The entry is
/// logged in full and skipped: an operator can still submit its block by hand.
#[derive(Debug, thiserror::Error)]
pub enum UnreadableBlock {
    /// Not one JSON object of a held block (its hash is parsed with it, so a hash that is not 64
    /// hex digits is this too).
    #[error("not a held block: {0}")]
    Line(#[from] serde_json::Error),
    #[error("the {name} field: {0}", name = field::HASH)]
    Hash(#[from] BlockHashError),
    #[error("the {name} field is not the block's hex", name = field::BLOCK)]
    BlockHex,
    #[error("the {name} field is empty", name = field::BLOCK)]
    EmptyBlock,
}

/// One line of the held-blocks file.
#[derive(Debug, Serialize, Deserialize)]
struct HeldLine {
    hash: BlockHash,
    height: u64,
    worker: String,
    block: String,
}

impl HeldLine {
    fn of(block: &CandidateBlock) -> HeldLine {
        HeldLine {
            hash: block.hash,
            height: block.height,
            worker: block.worker.clone(),
            block: hex::encode(&block.raw),
        }
    }

    fn into_block(self) -> Result<CandidateBlock, UnreadableBlock> {
        Ok(CandidateBlock {
            raw: hex::decode_vec(&self.block).map_err(|_| UnreadableBlock::BlockHex)?,
            hash: self.hash,
            height: self.height,
            worker: self.worker,
            entry: None,
        })
    }
}

/// The blocks an engine has not yet handed to Redis, oldest first, mirrored in a file: one JSON
/// line per block, appended and fsynced as each is held, rewritten whole (temporary file, fsync,
/// rename) when one leaves. A lock file beside it keeps a second engine off it.
pub struct HeldBlocks {
    path: PathBuf,
    blocks: VecDeque<CandidateBlock>,
    cap: usize,
    file: Option<File>,
    /// Held open for the lock (`flock` goes with the descriptor).
    _lock: File,
}

impl HeldBlocks {
    /// Opens (or creates) the file at `path` and reads the blocks an earlier run left in it. A torn
    /// last line (a crash while appending) is cut off and logged; an unreadable line is logged in
    /// full and dropped; past `cap`, the oldest are logged and dropped.
    pub fn open(path: &Path, cap: usize) -> Result<HeldBlocks, HeldBlocksError> {
        let io = |source| HeldBlocksError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let lock = OpenOptions::new()
            .create(true)
            .append(true)
            .open(lock_path(path))
            .map_err(io)?;
        // SAFETY: flock on a descriptor we own; non-blocking, so it cannot hang.
        if unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&lock),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        } != 0
        {
            return Err(HeldBlocksError::InUse {
                path: path.display().to_string(),
            });
        }
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(e)),
        };
        let mut blocks = VecDeque::new();
        let mut rewrite = false;
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if complete < bytes.len() {
            tracing::error!(path = %path.display(), torn = %String::from_utf8_lossy(&bytes[complete..]), "the held-blocks file ends in a torn line (a crash while writing it): cut off");
            rewrite = true;
        }
        for line in bytes[..complete].split(|&b| b == b'\n') {
            if line.is_empty() {
                continue;
            }
            match serde_json::from_slice::<HeldLine>(line)
                .map_err(UnreadableBlock::Line)
                .and_then(HeldLine::into_block)
            {
                Ok(block) => blocks.push_back(block),
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, line = %String::from_utf8_lossy(line), "an unreadable line in the held-blocks file: dropped (submit its block by hand if it is one)");
                    rewrite = true;
                }
            }
        }
        while blocks.len() > cap {
            let dropped = blocks.pop_front().expect("over the cap");
            tracing::error!(hash = %dropped.hash, block = %hex::encode(&dropped.raw), "more held blocks than MAX_HELD_BLOCKS: dropped this one (submit it by hand)");
            rewrite = true;
        }
        let mut held = HeldBlocks {
            path: path.to_owned(),
            blocks,
            cap,
            file: None,
            _lock: lock,
        };
        if rewrite {
            held.rewrite().map_err(io)?;
        }
        held.append_handle().map_err(io)?;
        Ok(held)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    pub fn front(&self) -> Option<&CandidateBlock> {
        self.blocks.front()
    }

    fn append_handle(&mut self) -> std::io::Result<&mut File> {
        if self.file.is_none() {
            self.file = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            );
        }
        Ok(self.file.as_mut().expect("opened above"))
    }

    /// Holds `block` at the back, in memory and (fsynced) in the file; at the cap, the oldest
    /// goes first and is returned. A file that cannot be written is an error for the caller to
    /// log: the block is still held in memory.
    pub fn hold(&mut self, block: CandidateBlock) -> (Option<CandidateBlock>, std::io::Result<()>) {
        let mut line = serde_json::to_vec(&HeldLine::of(&block)).expect("a block serializes");
        line.push(b'\n');
        let dropped = (self.blocks.len() >= self.cap)
            .then(|| self.blocks.pop_front())
            .flatten();
        self.blocks.push_back(block);
        let written = if dropped.is_some() {
            self.rewrite()
        } else {
            self.append_handle()
                .and_then(|f| f.write_all(&line).and_then(|()| f.sync_data()))
        };
        if written.is_err() {
            // A half-written append must not stay in the file: put back what is held.
            let _ = self.rewrite();
        }
        (dropped, written)
    }

    /// Drops the oldest block with this hash (it reached Redis) and rewrites the file with the
    /// rest; nothing to do if it is gone already (dropped at the cap meanwhile).
    pub fn release(&mut self, hash: BlockHash) -> std::io::Result<()> {
        match self.blocks.iter().position(|b| b.hash == hash) {
            Some(i) => {
                self.blocks.remove(i);
                self.rewrite()
            }
            None => Ok(()),
        }
    }

    /// Replaces the file atomically with what is held now.
    fn rewrite(&mut self) -> std::io::Result<()> {
        self.file = None;
        let mut tmp_name = self.path.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        let mut file = File::create(&tmp)?;
        for block in &self.blocks {
            let mut line = serde_json::to_vec(&HeldLine::of(block)).expect("a block serializes");
            line.push(b'\n');
            file.write_all(&line)?;
        }
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, &self.path)?;
        // The rename itself must survive a crash too.
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        self.append_handle()?;
        Ok(())
    }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

fn xadd_found(
    con: &mut redis::Connection,
    keys: &Keys,
    engine: &str,
    block: &CandidateBlock,
) -> redis::RedisResult<String> {
    redis::cmd("XADD")
        .arg(keys.blocks_found())
        .arg("MAXLEN")
        .arg("~")
        .arg(BLOCK_STREAM_MAXLEN)
        .arg("*")
        .arg(field::HASH)
        .arg(block.hash.to_string())
        .arg(field::HEIGHT)
        .arg(block.height)
        .arg(field::WORKER)
        .arg(&block.worker)
        .arg(field::ENGINE)
        .arg(engine)
        .arg(field::BLOCK)
        .arg(hex::encode(&block.raw))
        .query(con)
}

/// The engine side: assembles each found block off the cores, passes it at once to `direct` (the
/// engine's own submitter, when it has nodes) and to the held-blocks file at `held_path`; a second
/// thread hands the held blocks to Redis (`P:blocks:found`), oldest first, blocks an earlier run
/// left there included. Two threads, so that a hung Redis delays neither the nodes nor the file.
pub fn spawn_forwarder(
    settings: PlaneSettings,
    held_path: &Path,
    blocks: Receiver<Box<BlockFound>>,
    direct: Option<Sender<CandidateBlock>>,
) -> Result<JoinHandle<()>, HeldBlocksError> {
    let held = HeldBlocks::open(held_path, MAX_HELD_BLOCKS)?;
    if !held.is_empty() {
        tracing::warn!(blocks = held.len(), path = %held.path().display(), "blocks held by an earlier run: handing them to Redis");
    }
    let spawn_error = |source| HeldBlocksError::Io {
        path: held_path.display().to_string(),
        source,
    };
    let state = Arc::new(Mutex::new(Held {
        blocks: held,
        announced: HashSet::new(),
        away: false,
    }));
    let (wake_tx, wake_rx) = crossbeam_channel::bounded::<()>(1);
    // What an earlier run left goes at once.
    let _ = wake_tx.try_send(());
    let handover = {
        let state = Arc::clone(&state);
        std::thread::Builder::new()
            .name("sluice-plane-handover".into())
            .spawn(move || hand_over(settings, state, wake_rx))
            .map_err(spawn_error)?
    };
    std::thread::Builder::new()
        .name("sluice-plane-blocks".into())
        .spawn(move || {
            for found in blocks {
                let block = CandidateBlock::assemble(&found);
                tracing::info!(hash = %block.hash, height = block.height, "block found; handing it to the jobmanager through Redis");
                if let Some(direct) = &direct {
                    if direct.try_send(block.clone()).is_err() {
                        tracing::error!(hash = %block.hash, "the engine's own submitter is not taking blocks: this one goes through Redis only");
                    }
                }
                let mut held = lock(&state);
                let (hash, height, hex) = (block.hash, block.height, hex::encode(&block.raw));
                let (dropped, written) = held.blocks.hold(block);
                if let Some(dropped) = dropped {
                    held.announced.remove(&dropped.hash);
                    tracing::error!(hash = %dropped.hash, block = %hex::encode(&dropped.raw), "too many blocks held while Redis is away (MAX_HELD_BLOCKS): dropped this one (submit it by hand)");
                }
                if let Err(e) = written {
                    tracing::error!(error = %e, path = %held.blocks.path().display(), %hash, block = %hex, "cannot write the held-blocks file: this block is held in memory only");
                }
                if held.away {
                    tracing::error!(%hash, height, block = %hex, path = %held.blocks.path().display(), "Redis is away: block held in the held-blocks file until it answers (or submit it by hand)");
                    held.announced.insert(hash);
                }
                drop(held);
                let _ = wake_tx.try_send(());
            }
            // The cores are gone: the hand-over gets its last while, then ends.
            drop(wake_tx);
            let _ = handover.join();
        })
        .map_err(spawn_error)
}

/// What the two forwarder threads share.
struct Held {
    blocks: HeldBlocks,
    /// Blocks already logged in full as held (each is logged once).
    announced: HashSet<BlockHash>,
    /// The last hand-over failed.
    away: bool,
}

fn lock(state: &Mutex<Held>) -> std::sync::MutexGuard<'_, Held> {
    // A panic on the other thread must not cost the blocks held here.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Hands the held blocks to Redis, oldest first, whenever woken and every half second while any
/// is held; once the intake is gone, for [`SHUTDOWN_GRACE`] more.
fn hand_over(settings: PlaneSettings, state: Arc<Mutex<Held>>, wake: Receiver<()>) {
    let keys = Keys::new(&settings.prefix);
    let mut con = None;
    let mut giving_up_at: Option<Instant> = None;
    loop {
        match wake.recv_timeout(Duration::from_millis(500)) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                if lock(&state).blocks.is_empty() {
                    return;
                }
                let t = *giving_up_at.get_or_insert_with(|| Instant::now() + SHUTDOWN_GRACE);
                if Instant::now() >= t {
                    let held = lock(&state);
                    for block in &held.blocks.blocks {
                        tracing::error!(hash = %block.hash, block = %hex::encode(&block.raw), path = %held.blocks.path().display(), "shutting down with Redis away: this block stays in the held-blocks file for the next start (or submit it by hand)");
                    }
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        loop {
            // Not locked while Redis is asked: the intake must never wait for Redis.
            let Some(block) = lock(&state).blocks.front().cloned() else {
                lock(&state).away = false;
                break;
            };
            let sent = match connected(&mut con, &settings.url) {
                Some(c) => xadd_found(c, &keys, &settings.id, &block).map_err(StepError::Redis),
                None => Err(StepError::Unreachable),
            };
            let mut held = lock(&state);
            match sent {
                Ok(_) => {
                    tracing::info!(hash = %block.hash, "block handed to Redis");
                    held.away = false;
                    held.announced.remove(&block.hash);
                    if let Err(e) = held.blocks.release(block.hash) {
                        tracing::error!(error = %e, path = %held.blocks.path().display(), "cannot rewrite the held-blocks file: the next start hands its blocks over again (harmless)");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, hash = %block.hash, "cannot hand the block to Redis yet");
                    con = None;
                    held.away = true;
                    let Held {
                        blocks, announced, ..
                    } = &mut *held;
                    for b in &blocks.blocks {
                        if announced.insert(b.hash) {
                            tracing::error!(hash = %b.hash, height = b.height, block = %hex::encode(&b.raw), path = %blocks.path().display(), "Redis is away: block held in the held-blocks file until it answers (or submit it by hand)");
                        }
                    }
                    break;
                }
            }
        }
    }
}

/// The jobmanager side: while this process leads, takes one entry of `P:blocks:found` at a time
/// from the cursor, passes it to the submitter, and waits for `outcomes` to name it (the recorder
/// has written it to `P:blocks` and moved the cursor past it) before it takes the next.
pub fn spawn_reader(
    settings: PlaneSettings,
    leadership: Arc<Leadership>,
    submit: Sender<CandidateBlock>,
    outcomes: Receiver<String>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    let keys = Keys::new(&settings.prefix);
    let wait = Duration::from_millis(200);
    let body = Reader {
        keys,
        leadership,
        submit,
        outcomes,
    };
    spawn_loop(
        "sluice-plane-found",
        settings.url,
        Backoff::fixed(wait),
        stop,
        body,
    )
}

struct Reader {
    keys: Keys,
    leadership: Arc<Leadership>,
    submit: Sender<CandidateBlock>,
    outcomes: Receiver<String>,
}

impl PlaneLoop for Reader {
    fn step(
        &mut self,
        c: &mut redis::Connection,
        stop: &AtomicBool,
    ) -> Result<Duration, StepError> {
        if self.leadership.token().is_none() {
            return Ok(Duration::from_millis(50));
        }
        if let Some((id, hash)) = take_one(c, &self.keys, &self.submit)? {
            wait_for_outcome(&id, hash, &self.outcomes, stop);
        }
        Ok(Duration::ZERO)
    }

    fn failed(&mut self, error: &StepError) {
        if !matches!(error, StepError::Unreachable) {
            tracing::warn!(error = %error, "cannot read found blocks from Redis");
        }
    }
}

/// The jobmanager side: writes each block record (a block's outcome at every node) to Redis,
/// waiting for Redis as long as it takes, and names on `outcomes` each fleet block whose outcome
/// it wrote (the reader waits for it).
pub fn spawn_recorder(
    settings: PlaneSettings,
    records: Receiver<BlockRecord>,
    outcomes: Sender<String>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    let body = Recorder {
        keys: Keys::new(&settings.prefix),
        records,
        outcomes,
        pending: None,
    };
    let wait = Backoff::fixed(Duration::from_millis(200));
    spawn_loop("sluice-plane-record", settings.url, wait, stop, body)
}

struct Recorder {
    keys: Keys,
    records: Receiver<BlockRecord>,
    outcomes: Sender<String>,
    /// The record being written. It waits for Redis as long as it takes: for a fleet block it is
    /// what moves the cursor, and without it the next leader submits again.
    pending: Option<BlockRecord>,
}

impl PlaneLoop for Recorder {
    fn step(&mut self, c: &mut redis::Connection, _: &AtomicBool) -> Result<Duration, StepError> {
        if self.pending.is_none() {
            match self.records.recv_timeout(Duration::from_millis(100)) {
                Ok(r) => self.pending = Some(r),
                Err(_) => return Ok(Duration::ZERO),
            }
        }
        let Some(pending) = &self.pending else {
            return Ok(Duration::ZERO);
        };
        record(c, &self.keys, pending)?;
        if let Some(entry) = &pending.entry {
            let _ = self.outcomes.try_send(entry.clone());
        }
        self.pending = None;
        Ok(Duration::ZERO)
    }

    fn failed(&mut self, error: &StepError) {
        if let (Some(record), false) = (&self.pending, matches!(error, StepError::Unreachable)) {
            tracing::warn!(error = %error, hash = %record.hash, "cannot record the block's outcome in Redis yet");
        }
    }

    fn finish(&mut self, _: Option<&mut redis::Connection>) {
        if let Some(record) = &self.pending {
            tracing::error!(hash = %record.hash, entry = ?record.entry, "stopping before the block's outcome reached Redis: the next leader submits it again");
        }
    }
}

fn wait_for_outcome(id: &str, hash: BlockHash, outcomes: &Receiver<String>, stop: &AtomicBool) {
    let deadline = Instant::now() + OUTCOME_WAIT;
    while !stop.load(Ordering::Relaxed) {
        match outcomes.recv_timeout(Duration::from_millis(100)) {
            // An older entry's outcome (one taken again after OUTCOME_WAIT) is not this one's.
            Ok(done) if done == id => return,
            Ok(_) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if Instant::now() >= deadline {
            tracing::warn!(%id, %hash, "no outcome recorded for this block within OUTCOME_WAIT: taking it again");
            return;
        }
    }
}

type StreamReply = Option<Vec<(String, Vec<(String, Vec<(String, Vec<u8>)>)>)>>;

/// A stream entry id, `MS-SEQ`.
fn parse_stream_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// Reads the entry after the cursor; a valid block goes to the submitter (its id and hash are
/// returned), an invalid one is logged and the cursor moved past it.
fn take_one(
    con: &mut redis::Connection,
    keys: &Keys,
    submit: &Sender<CandidateBlock>,
) -> Result<Option<(String, BlockHash)>, StepError> {
    let cursor: Option<String> = redis::cmd("GET")
        .arg(keys.blocks_cursor())
        .query(con)
        .map_err(StepError::Redis)?;
    let cursor = match cursor {
        None => "0-0".to_owned(),
        Some(c) if parse_stream_id(&c).is_some() => c,
        Some(c) => {
            // At least once: reading from the start resubmits old blocks (harmless), skipping
            // could lose one.
            tracing::error!(cursor = %c, "P:blocks:cursor is not a stream id: reading found blocks from the start");
            "0-0".to_owned()
        }
    };
    let reply: StreamReply = redis::cmd("XREAD")
        .arg("COUNT")
        .arg(1)
        .arg("BLOCK")
        .arg(200)
        .arg("STREAMS")
        .arg(keys.blocks_found())
        .arg(&cursor)
        .query(con)
        .map_err(StepError::Redis)?;
    let Some((id, fields)) = reply
        .unwrap_or_default()
        .into_iter()
        .flat_map(|(_, entries)| entries)
        .next()
    else {
        return Ok(None);
    };
    match found_block(&fields, &id) {
        Ok(block) => {
            let hash = block.hash;
            tracing::info!(%hash, engine = %text_of(&fields, field::ENGINE), entry = %id, "took a found block from the fleet; submitting it");
            if submit.send(block).is_err() {
                return Err(StepError::SubmitterStopped);
            }
            Ok(Some((id, hash)))
        }
        Err(e) => {
            tracing::error!(%id, error = %e, hash = %text_of(&fields, field::HASH), "a found-block entry that is not a block: skipped");
            advance_cursor(con, keys, &id).map_err(StepError::Redis)?;
            Ok(None)
        }
    }
}

/// A stream entry's field as text (empty if absent).
fn text_of(fields: &[(String, Vec<u8>)], name: &str) -> String {
    let value = fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_slice())
        .unwrap_or_default();
    String::from_utf8_lossy(value).into_owned()
}

/// The block a `P:blocks:found` entry holds; an entry whose hash or block is not what an engine
/// writes is refused, whatever else it holds.
fn found_block(fields: &[(String, Vec<u8>)], id: &str) -> Result<CandidateBlock, UnreadableBlock> {
    let raw =
        hex::decode_vec(&text_of(fields, field::BLOCK)).map_err(|_| UnreadableBlock::BlockHex)?;
    if raw.is_empty() {
        return Err(UnreadableBlock::EmptyBlock);
    }
    Ok(CandidateBlock {
        hash: text_of(fields, field::HASH)
            .parse()
            .map_err(UnreadableBlock::Hash)?,
        height: text_of(fields, field::HEIGHT).parse().unwrap_or(0),
        worker: text_of(fields, field::WORKER),
        raw,
        entry: Some(id.to_owned()),
    })
}

/// Lua: `greater(a, b)` for two stream ids (an id that does not parse is below every other, so a
/// garbled cursor is replaced).
macro_rules! greater_lua {
    () => {
        r#"
local function parse(id)
  if not id then return nil end
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  if not ms then return nil end
  return tonumber(ms), tonumber(seq)
end
local function advance(key, id)
  local nm, ns = parse(id)
  if not nm then return 0 end
  local cm, cs = parse(redis.call('GET', key))
  if cm and (cm > nm or (cm == nm and cs >= ns)) then return 0 end
  redis.call('SET', key, id)
  return 1
end
"#
    };
}

/// KEYS[1] the cursor; ARGV[1] the entry id. 1 if the cursor moved.
const ADVANCE: &str = concat!(greater_lua!(), "return advance(KEYS[1], ARGV[1])\n");

/// KEYS[1] `P:blocks`, KEYS[2] the cursor; ARGV[1] MAXLEN, ARGV[2] the entry id or '', then the
/// record's fields and values. The record and the cursor move together or not at all.
const RECORD: &str = concat!(
    greater_lua!(),
    r#"
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 3))
if ARGV[2] ~= '' then advance(KEYS[2], ARGV[2]) end
return id
"#
);

/// Moves `P:blocks:cursor` to `id` if that is past it (never backwards); true if it moved.
pub fn advance_cursor(
    con: &mut redis::Connection,
    keys: &Keys,
    id: &str,
) -> redis::RedisResult<bool> {
    let moved: i64 = redis::Script::new(ADVANCE)
        .key(keys.blocks_cursor())
        .arg(id)
        .invoke(con)?;
    Ok(moved == 1)
}

/// Appends a submitted block with every node's answer to `P:blocks` and, for a block read from
/// `P:blocks:found`, moves the cursor past its entry in the same script (never backwards).
pub fn record(
    con: &mut redis::Connection,
    keys: &Keys,
    record: &BlockRecord,
) -> redis::RedisResult<String> {
    let results: Vec<_> = record
        .results
        .iter()
        .map(
            |(node, r)| serde_json::json!({"node": node, "result": r.kind(), "reason": r.reason()}),
        )
        .collect();
    redis::Script::new(RECORD)
        .key(keys.blocks())
        .key(keys.blocks_cursor())
        .arg(BLOCK_STREAM_MAXLEN)
        .arg(record.entry.as_deref().unwrap_or(""))
        .arg(field::HASH)
        .arg(record.hash.to_string())
        .arg(field::HEIGHT)
        .arg(record.height)
        .arg(field::WORKER)
        .arg(&record.worker)
        .arg(field::ACCEPTED)
        .arg(u8::from(record.accepted()))
        .arg(field::FOUND_MS)
        .arg(record.found_ms)
        .arg(field::RESULTS)
        .arg(serde_json::Value::Array(results).to_string())
        .invoke(con)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "sluice-held-{tag}-{}-{}",
            std::process::id(),
            crate::clock::UnixMillis::now().as_millis()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("held.blocks")
    }

    fn remove(path: &Path) {
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    fn block(n: u64) -> CandidateBlock {
        CandidateBlock {
            hash: format!("{n:064x}").parse().unwrap(),
            height: n,
            worker: "w".into(),
            raw: n.to_le_bytes().to_vec(),
            entry: None,
        }
    }

    #[test]
    fn held_blocks_survive_a_reopen_and_leave_once_released() {
        let path = temp_path("reopen");
        let mut held = HeldBlocks::open(&path, MAX_HELD_BLOCKS).unwrap();
        for n in 0..3 {
            assert!(held.hold(block(n)).1.is_ok());
        }
        held.release(block(0).hash).unwrap();
        drop(held);
        let held = HeldBlocks::open(&path, MAX_HELD_BLOCKS).unwrap();
        let heights: Vec<_> = held.blocks.iter().map(|b| b.height).collect();
        assert_eq!(heights, [1, 2]);
        assert_eq!(held.front(), Some(&block(1)));
        remove(&path);
    }

    #[test]
    fn a_torn_last_line_is_cut_off_and_the_rest_kept() {
        let path = temp_path("torn");
        let mut held = HeldBlocks::open(&path, MAX_HELD_BLOCKS).unwrap();
        held.hold(block(7)).1.unwrap();
        drop(held);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"hash\":\"00ab").unwrap();
        drop(file);
        let held = HeldBlocks::open(&path, MAX_HELD_BLOCKS).unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!(held.front(), Some(&block(7)));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with('\n') && !text.contains("00ab\""), "{text}");
        assert_eq!(text.lines().count(), 1);
        remove(&path);
    }

    #[test]
    fn held_blocks_limit_at_its_edge() {
        let path = temp_path("bound");
        let mut held = HeldBlocks::open(&path, MAX_HELD_BLOCKS).unwrap();
        for n in 0..MAX_HELD_BLOCKS as u64 {
            let (dropped, written) = held.hold(block(n));
            assert!(dropped.is_none(), "nothing dropped up to the limit");
            written.unwrap();
        }
        assert_eq!(held.len(), MAX_HELD_BLOCKS);
        let (dropped, written) = held.hold(block(MAX_HELD_BLOCKS as u64));
        written.unwrap();
        assert_eq!(
            dropped,
            Some(block(0)),
            "one past the limit drops the oldest"
        );
        drop(held);
        let held = HeldBlocks::open(&path, MAX_HELD_BLOCKS).unwrap();
        assert_eq!(held.len(), MAX_HELD_BLOCKS);
        assert_eq!(held.front(), Some(&block(1)));
        remove(&path);
    }

    #[test]
    fn a_held_line_whose_hash_is_not_64_hex_digits_is_dropped_and_the_rest_kept() {
        let path = temp_path("badhash");
        let mut held = HeldBlocks::open(&path, MAX_HELD_BLOCKS).unwrap();
        held.hold(block(1)).1.unwrap();
        drop(held);
        let good = std::fs::read_to_string(&path).unwrap();
        let digits = format!("{:064x}", 1);
        let mut text = good.replace(&digits, &digits[1..]);
        text.push_str(&good.replace(&digits, &format!("{}zz", &digits[2..])));
        text.push_str(&good.replace(&block(1).hash.to_string(), &block(2).hash.to_string()));
        std::fs::write(&path, text).unwrap();
        let held = HeldBlocks::open(&path, MAX_HELD_BLOCKS).unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!(held.front().map(|b| b.hash), Some(block(2).hash));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines().count(),
            1,
            "the file is rewritten without them: {text}"
        );
        remove(&path);
    }

    #[test]
    fn a_held_line_is_the_same_json_as_before_blockhash() {
        let line = serde_json::to_string(&HeldLine::of(&block(0x2a))).unwrap();
        assert_eq!(
            line,
            format!(
                r#"{{"hash":"{:064x}","height":42,"worker":"w","block":"2a00000000000000"}}"#,
                0x2a
            )
        );
    }

    fn entry(hash: &str, block: &str) -> Vec<(String, Vec<u8>)> {
        [
            (field::HASH, hash),
            (field::HEIGHT, "7"),
            (field::WORKER, "w"),
            (field::ENGINE, "e"),
            (field::BLOCK, block),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.as_bytes().to_vec()))
        .collect()
    }

    #[test]
    fn a_found_block_entry_is_read_by_the_layouts_field_names() {
        let hash = format!("{:064x}", 9);
        let block = found_block(&entry(&hash, "00ff"), "1-0").unwrap();
        assert_eq!(block.hash.to_string(), hash);
        assert_eq!(
            (block.height, block.worker.as_str(), block.raw.as_slice()),
            (7, "w", &[0, 0xff][..])
        );
        assert_eq!(block.entry.as_deref(), Some("1-0"));
    }

    #[test]
    fn a_found_block_entry_with_a_bad_hash_or_block_is_refused_not_a_panic() {
        let hash = format!("{:064x}", 9);
        for bad in [&hash[1..], &format!("{}zz", &hash[2..]), "", "\u{e9}"] {
            assert!(
                matches!(
                    found_block(&entry(bad, "00ff"), "1-0"),
                    Err(UnreadableBlock::Hash(_))
                ),
                "{bad:?}"
            );
        }
        let mut fields = entry(&hash, "00ff");
        fields[0].1 = vec![0xff; 64];
        assert!(matches!(
            found_block(&fields, "1-0"),
            Err(UnreadableBlock::Hash(_))
        ));
        assert!(matches!(
            found_block(&entry(&hash, "0g"), "1-0"),
            Err(UnreadableBlock::BlockHex)
        ));
        assert!(matches!(
            found_block(&entry(&hash, ""), "1-0"),
            Err(UnreadableBlock::EmptyBlock)
        ));
        assert!(found_block(&[], "1-0").is_err());
        let e = found_block(&entry(&hash[1..], "00"), "1-0").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("the hash field: a block hash is 64 hex digits"),
            "{e}"
        );
    }

    #[test]
    fn a_second_engine_on_the_same_file_is_refused() {
        let path = temp_path("lock");
        let _first = HeldBlocks::open(&path, MAX_HELD_BLOCKS).unwrap();
        let second = HeldBlocks::open(&path, MAX_HELD_BLOCKS);
        assert!(matches!(second, Err(HeldBlocksError::InUse { .. })));
        assert!(second
            .err()
            .unwrap()
            .to_string()
            .starts_with("blocks.held_path"));
        remove(&path);
    }

    /// The block streams against a real `redis-server`.
    mod with_redis {
        use super::*;
        use crate::plane::test_redis::TestRedis;

        #[test]
        fn a_found_block_entry_with_a_bad_hash_is_skipped_and_the_next_one_taken() {
            let server = TestRedis::start();
            let mut con = server.con();
            let keys = Keys::new("t");
            let raw: &str = "00ff";
            let hash = format!("{:064x}", 5);
            for bad in [&hash[1..], &format!("{}zz", &hash[2..])] {
                redis::cmd("XADD")
                    .arg(keys.blocks_found())
                    .arg("*")
                    .arg(field::HASH)
                    .arg(bad)
                    .arg(field::HEIGHT)
                    .arg(5)
                    .arg(field::BLOCK)
                    .arg(raw)
                    .query::<String>(&mut con)
                    .unwrap();
            }
            let good = CandidateBlock {
                hash: hash.parse().unwrap(),
                height: 5,
                worker: "w".into(),
                raw: vec![0, 0xff],
                entry: None,
            };
            let id = xadd_found(&mut con, &keys, "e1", &good).unwrap();
            let (tx, rx) = crossbeam_channel::unbounded();
            for _ in 0..2 {
                assert_eq!(take_one(&mut con, &keys, &tx).unwrap(), None, "skipped");
            }
            assert_eq!(
                take_one(&mut con, &keys, &tx).unwrap(),
                Some((id.clone(), good.hash))
            );
            let taken = rx.try_recv().unwrap();
            assert_eq!(
                taken,
                CandidateBlock {
                    entry: Some(id),
                    ..good
                }
            );
            let fields: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
                .arg(keys.blocks_found())
                .arg("-")
                .arg("+")
                .query(&mut con)
                .unwrap();
            let written: Vec<&str> = fields[2].1.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(
                written,
                field::FOUND_FIELDS,
                "written by the layout's names, in order"
            );
            assert_eq!(fields[2].1[0].1, hash, "the same hex as before BlockHash");
        }
    }
}
