//! Found blocks across the fleet: an engine appends each block it finds to the stream
//! `P:blocks:found`; the leading jobmanager reads that stream from `P:blocks:cursor`, submits each
//! block to every node, and appends the block with every node's answer to `P:blocks`.
//!
//! An engine keeps a block it could not hand over (Redis away) and tries again until it can: a
//! block is worth far more than the rest of the traffic. A standby taking over reads on from the
//! cursor its predecessor left, so a block is submitted at least once; a second submission is
//! harmless (the nodes answer `duplicate`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::hex;
use crate::plane::keys::BLOCK_STREAM_MAXLEN;
use crate::plane::lease::Leadership;
use crate::plane::{connected, pause, Keys, PlaneSettings};
use crate::server::jobmanager::{BlockRecord, CandidateBlock};
use crate::session::BlockFound;

/// How long a stopping engine keeps trying to hand over the blocks it holds.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Blocks an engine holds while Redis is away, beyond which the oldest is logged in full and
/// dropped (each is logged with its hex when found, so an operator can still submit it by hand).
pub const MAX_HELD_BLOCKS: usize = 1024;

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
        .arg("hash")
        .arg(&block.hash)
        .arg("height")
        .arg(block.height)
        .arg("worker")
        .arg(&block.worker)
        .arg("engine")
        .arg(engine)
        .arg("block")
        .arg(hex::encode(&block.raw))
        .query(con)
}

/// The engine side: assembles each found block off the cores and appends it to `P:blocks:found`.
pub fn spawn_forwarder(
    settings: PlaneSettings,
    blocks: Receiver<Box<BlockFound>>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("sluice-plane-blocks".into())
        .spawn(move || {
            let keys = Keys::new(&settings.prefix);
            let mut held: VecDeque<CandidateBlock> = VecDeque::new();
            let mut con = None;
            // Set once the cores are gone (shutdown): held blocks get a last while, then the log.
            let mut giving_up_at: Option<std::time::Instant> = None;
            loop {
                if giving_up_at.is_some_and(|t| std::time::Instant::now() >= t) {
                    for block in held.drain(..) {
                        tracing::error!(hash = %block.hash, block = %hex::encode(&block.raw), "shutting down with Redis away: this block never reached the jobmanager (submit it by hand)");
                    }
                    return;
                }
                match blocks.recv_timeout(Duration::from_millis(500)) {
                    Ok(found) => {
                        let block = CandidateBlock::assemble(&found);
                        tracing::info!(hash = %block.hash, height = block.height, "block found; handing it to the jobmanager through Redis");
                        if held.len() == MAX_HELD_BLOCKS {
                            let dropped = held.pop_front().expect("full");
                            tracing::error!(hash = %dropped.hash, block = %hex::encode(&dropped.raw), "too many blocks held while Redis is away: dropped this one (submit it by hand)");
                        }
                        held.push_back(block);
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) if held.is_empty() => return,
                    Err(RecvTimeoutError::Disconnected) => {
                        giving_up_at.get_or_insert_with(|| {
                            std::time::Instant::now() + SHUTDOWN_GRACE
                        });
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
                while let Some(block) = held.front() {
                    let Some(c) = connected(&mut con, &settings.url) else {
                        break;
                    };
                    match xadd_found(c, &keys, &settings.id, block) {
                        Ok(_) => {
                            held.pop_front();
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, hash = %block.hash, "cannot hand the block to Redis yet");
                            con = None;
                            break;
                        }
                    }
                }
            }
        })
}

/// The jobmanager side: while this process leads, reads `P:blocks:found` on from the cursor and
/// passes each block to the submitter.
pub fn spawn_reader(
    settings: PlaneSettings,
    leadership: Arc<Leadership>,
    submit: Sender<CandidateBlock>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("sluice-plane-found".into())
        .spawn(move || {
            let keys = Keys::new(&settings.prefix);
            let mut con = None;
            while !stop.load(Ordering::Relaxed) {
                if leadership.token().is_none() {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                let Some(c) = connected(&mut con, &settings.url) else {
                    pause(Duration::from_millis(200), &stop);
                    continue;
                };
                if let Err(e) = read_batch(c, &keys, &submit) {
                    tracing::warn!(error = %e, "cannot read found blocks from Redis");
                    con = None;
                }
            }
        })
}

type StreamReply = Option<Vec<(String, Vec<(String, Vec<(String, Vec<u8>)>)>)>>;

fn read_batch(
    con: &mut redis::Connection,
    keys: &Keys,
    submit: &Sender<CandidateBlock>,
) -> Result<(), String> {
    let cursor: Option<String> = redis::cmd("GET")
        .arg(keys.blocks_cursor())
        .query(con)
        .map_err(|e| e.to_string())?;
    let cursor = cursor.unwrap_or_else(|| "0-0".to_owned());
    let reply: StreamReply = redis::cmd("XREAD")
        .arg("COUNT")
        .arg(16)
        .arg("BLOCK")
        .arg(200)
        .arg("STREAMS")
        .arg(keys.blocks_found())
        .arg(&cursor)
        .query(con)
        .map_err(|e| e.to_string())?;
    for (_, entries) in reply.unwrap_or_default() {
        for (id, fields) in entries {
            let field = |name: &str| {
                fields
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_slice())
                    .unwrap_or_default()
            };
            let text = |name: &str| String::from_utf8_lossy(field(name)).into_owned();
            match hex::decode_vec(&text("block")) {
                Ok(raw) => {
                    let block = CandidateBlock {
                        hash: text("hash"),
                        height: text("height").parse().unwrap_or(0),
                        worker: text("worker"),
                        raw,
                    };
                    tracing::info!(hash = %block.hash, engine = %text("engine"), "found block from the fleet");
                    if submit.send(block).is_err() {
                        return Err("the submitter stopped".into());
                    }
                }
                Err(_) => tracing::error!(%id, "a found-block entry without valid hex: skipped"),
            }
            redis::cmd("SET")
                .arg(keys.blocks_cursor())
                .arg(&id)
                .query::<()>(con)
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Appends a submitted block with every node's answer to `P:blocks`.
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
    redis::cmd("XADD")
        .arg(keys.blocks())
        .arg("MAXLEN")
        .arg("~")
        .arg(BLOCK_STREAM_MAXLEN)
        .arg("*")
        .arg("hash")
        .arg(&record.hash)
        .arg("height")
        .arg(record.height)
        .arg("worker")
        .arg(&record.worker)
        .arg("accepted")
        .arg(u8::from(record.accepted()))
        .arg("found_ms")
        .arg(record.found_ms)
        .arg("results")
        .arg(serde_json::Value::Array(results).to_string())
        .query(con)
}
