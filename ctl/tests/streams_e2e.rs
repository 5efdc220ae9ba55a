//! `shares tail`, `blocks ls`, `stats` and `services ls` end to end: a real `sluice jobmanager` on
//! its simulated chain and a real `sluice stratum` on a real Redis, and a miner over TCP that mines
//! real shares (double SHA-256 of the header it builds from `mining.notify`). What sluicectl prints
//! is checked against what the miner submitted and was answered.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice::units::{Difficulty, HeaderHash, Target};
use support::{eventually, sluicectl, RedisServer, SluiceProcess, TempDir};

const PREFIX: &str = "e2e";
const WORKER: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080.rig1";
/// Enough accepted shares to check; the miner goes on until one of them is a block.
const ACCEPTED: usize = 20;
const DUPLICATES: usize = 2;
const GIVE_UP_AFTER: usize = 2000;

/// What a miner takes from `mining.notify` (as cgminer-family miners read it).
struct Work {
    job_id: String,
    /// The previous block hash in header byte order.
    prev_hash: [u8; 32],
    coinb1: Vec<u8>,
    coinb2: Vec<u8>,
    branch: Vec<[u8; 32]>,
    version: u32,
    nbits: u32,
    ntime: u32,
}

fn unhex(v: &Value) -> Vec<u8> {
    sluice::hex::decode_vec(v.as_str().unwrap()).unwrap()
}

fn be_u32(v: &Value) -> u32 {
    u32::from_str_radix(v.as_str().unwrap(), 16).unwrap()
}

impl Work {
    fn from_notify(v: &Value) -> Work {
        let p = v["params"].as_array().unwrap();
        let mut prev: [u8; 32] = unhex(&p[1]).try_into().unwrap();
        for word in prev.chunks_exact_mut(4) {
            word.reverse();
        }
        Work {
            job_id: p[0].as_str().unwrap().to_owned(),
            prev_hash: prev,
            coinb1: unhex(&p[2]),
            coinb2: unhex(&p[3]),
            branch: p[4]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| unhex(h).try_into().unwrap())
                .collect(),
            version: be_u32(&p[5]),
            nbits: be_u32(&p[6]),
            ntime: be_u32(&p[7]),
        }
    }

    /// The 80-byte header for this extranonce and nonce.
    fn header(&self, extranonce1: &[u8], extranonce2: &[u8], nonce: u32) -> [u8; 80] {
        let mut coinbase = self.coinb1.clone();
        coinbase.extend_from_slice(extranonce1);
        coinbase.extend_from_slice(extranonce2);
        coinbase.extend_from_slice(&self.coinb2);
        let mut root = sluice::hash::sha256d(&coinbase);
        for sibling in &self.branch {
            root = sluice::hash::merkle_parent(&root, sibling);
        }
        let mut h = [0u8; 80];
        h[..4].copy_from_slice(&self.version.to_le_bytes());
        h[4..36].copy_from_slice(&self.prev_hash);
        h[36..68].copy_from_slice(&root);
        h[68..72].copy_from_slice(&self.ntime.to_le_bytes());
        h[72..76].copy_from_slice(&self.nbits.to_le_bytes());
        h[76..].copy_from_slice(&nonce.to_le_bytes());
        h
    }
}

/// A share ready to submit.
struct Share {
    params: Value,
    /// As the engine logs it (display order).
    hash: String,
    block: bool,
}

struct Miner {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    next_id: u64,
    extranonce1: Vec<u8>,
    extranonce2_size: usize,
    extranonce2: u64,
    difficulty: Option<f64>,
    work: Option<Work>,
    /// Every line received, for failure messages (the last few are shown).
    seen: Vec<String>,
}

impl Miner {
    fn connect(addr: &str) -> Miner {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Miner {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
            next_id: 1,
            extranonce1: Vec::new(),
            extranonce2_size: 0,
            extranonce2: 0,
            difficulty: None,
            work: None,
            seen: Vec::new(),
        }
    }

    fn recent(&self) -> &[String] {
        &self.seen[self.seen.len().saturating_sub(8)..]
    }

    /// The next message (notifications are taken in on the way), or None at the deadline.
    fn message(&mut self, deadline: Instant) -> Option<Value> {
        let mut line = String::new();
        while Instant::now() < deadline {
            match self.reader.read_line(&mut line) {
                Ok(0) => panic!(
                    "the engine closed the connection; received {:?}",
                    self.recent()
                ),
                Ok(_) if line.ends_with('\n') => {
                    let v: Value = serde_json::from_str(line.trim_end())
                        .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
                    self.seen.push(line.trim_end().to_owned());
                    match v["method"].as_str() {
                        Some("mining.set_difficulty") => {
                            self.difficulty = v["params"][0].as_f64();
                        }
                        Some("mining.notify") => self.work = Some(Work::from_notify(&v)),
                        _ => {}
                    }
                    return Some(v);
                }
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("reading the miner's socket: {e}"),
            }
        }
        None
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let line = json!({"id": id, "method": method, "params": params}).to_string() + "\n";
        self.writer.write_all(line.as_bytes()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.message(deadline) {
                Some(v) if v["id"] == json!(id) => return v,
                Some(_) => {}
                None => panic!(
                    "no answer to {method} within 10 s; received {:?}",
                    self.recent()
                ),
            }
        }
    }

    /// Subscribes, authorizes WORKER and waits for a difficulty and a job.
    fn handshake(&mut self) {
        let r = self.request("mining.subscribe", json!(["sluicectl-e2e/1"]));
        self.extranonce1 = unhex(&r["result"][1]);
        self.extranonce2_size = r["result"][2].as_u64().unwrap() as usize;
        let r = self.request("mining.authorize", json!([WORKER, "x"]));
        assert_eq!(r["result"], true, "authorize: {r}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.work.is_none() || self.difficulty.is_none() {
            if self.message(deadline).is_none() {
                panic!(
                    "no job and difficulty within 10 s; received {:?}",
                    self.recent()
                );
            }
        }
    }

    /// Waits until a job on another previous block arrives (after a block of ours).
    fn wait_for_new_block(&mut self, old_prev: [u8; 32]) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.work.as_ref().unwrap().prev_hash == old_prev {
            if self.message(deadline).is_none() {
                panic!(
                    "no job on the new block within 10 s of finding one; received {:?}",
                    self.recent()
                );
            }
        }
    }

    /// Mines a share meeting the current difficulty on the current job.
    fn mine(&mut self) -> Share {
        let work = self.work.as_ref().unwrap();
        let share_target = Difficulty::new(self.difficulty.unwrap()).unwrap().target();
        let network = Target::from_compact(work.nbits).unwrap();
        self.extranonce2 += 1;
        let mut en2 = self.extranonce2.to_le_bytes().to_vec();
        en2.resize(self.extranonce2_size, 0);
        for nonce in 0u32.. {
            let hash = HeaderHash(sluice::hash::header_hash(&work.header(
                &self.extranonce1,
                &en2,
                nonce,
            )));
            if share_target.is_met_by(&hash) {
                return Share {
                    params: json!([
                        WORKER,
                        work.job_id,
                        sluice::hex::encode(&en2),
                        format!("{:08x}", work.ntime),
                        format!("{nonce:08x}"),
                    ]),
                    hash: hash.to_string(),
                    block: network.is_met_by(&hash),
                };
            }
        }
        unreachable!("no nonce meets the share target")
    }

    fn submit(&mut self, share: &Share) -> Value {
        self.request("mining.submit", share.params.clone())
    }
}

fn strings(v: &Value, field: &str) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x[field].as_str().unwrap_or("").to_owned())
        .collect()
}

#[test]
fn shares_blocks_and_stats_come_from_a_real_engine() {
    let redis = RedisServer::start();
    let _jm = SluiceProcess::jobmanager_with(
        &redis,
        PREFIX,
        "jm-a",
        &["--block-interval", "0", "--network-difficulty", "0.00001"],
    );
    let dir = TempDir::new("spool");
    let config = format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\nstart_difficulty = 0.000001\n\
         min_difficulty = 0.000001\n\n[vardiff]\nenabled = false\n\n\
         [share_log]\nbatch_interval_ms = 50\nspool_path = {:?}\n",
        dir.path().join("spool").to_str().unwrap()
    );
    let engine = SluiceProcess::stratum_with_config(&redis, PREFIX, "engine-1", &config);
    let addr = engine.field("stratum");
    assert!(addr.starts_with("127.0.0.1:"), "{}", engine.ready);

    // Mine: ACCEPTED shares, DUPLICATES resubmitted, and on until one share is a block.
    let mut miner = Miner::connect(&addr);
    miner.handshake();
    let mut accepted: BTreeSet<String> = BTreeSet::new();
    let mut blocks: Vec<String> = Vec::new();
    let mut duplicates = 0;
    let mut submitted = 0;
    while accepted.len() < ACCEPTED || blocks.is_empty() || duplicates < DUPLICATES {
        assert!(
            submitted < GIVE_UP_AFTER,
            "{submitted} shares submitted ({} accepted) and none was a block at network \
             difficulty 0.00001: is the jobmanager's --network-difficulty applied?",
            accepted.len()
        );
        let share = miner.mine();
        let r = miner.submit(&share);
        submitted += 1;
        assert_eq!(
            r["result"], true,
            "share {} (block: {}) was not accepted: {r}",
            share.hash, share.block
        );
        assert!(accepted.insert(share.hash.clone()), "hash mined twice");
        if share.block {
            blocks.push(share.hash.clone());
            let old = miner.work.as_ref().unwrap().prev_hash;
            miner.wait_for_new_block(old);
        } else if duplicates < DUPLICATES && accepted.len() >= 5 * (duplicates + 1) {
            let r = miner.submit(&share);
            submitted += 1;
            assert_eq!(r["error"][0], 22, "a resubmitted share: {r}");
            duplicates += 1;
        }
    }
    let accepted_count = accepted.len();

    // The share log: every accepted hash, the two duplicates, nothing else.
    let tail = || {
        sluicectl(
            &redis,
            PREFIX,
            &["shares", "tail", "--count", "100", "--json"],
        )
        .json()
    };
    let want = accepted_count + DUPLICATES;
    let doc = eventually(Duration::from_secs(5), || {
        let doc = tail();
        (doc["shares"].as_array().unwrap().len() >= want).then_some(doc)
    })
    .unwrap_or_else(|| {
        panic!(
            "the share log did not reach {want} shares in 5 s: {}",
            tail()
        )
    });
    let shares = doc["shares"].as_array().unwrap();
    assert_eq!(shares.len(), want, "{doc}");
    for s in shares {
        assert_eq!(s["engine"], "engine-1", "{s}");
        assert_eq!(s["worker"], WORKER, "{s}");
    }
    let logged: BTreeSet<String> = shares
        .iter()
        .filter(|s| s["verdict"] == "accepted")
        .map(|s| s["hash"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(logged, accepted, "accepted hashes in the share log");
    let rejected: Vec<&Value> = shares
        .iter()
        .filter(|s| s["verdict"] == "rejected")
        .collect();
    assert_eq!(rejected.len(), DUPLICATES, "{doc}");
    for s in &rejected {
        assert_eq!(s["reason"], "duplicate", "{s}");
    }
    let logged_blocks: BTreeSet<String> = shares
        .iter()
        .filter(|s| s["block"] == true)
        .map(|s| s["hash"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        logged_blocks,
        blocks.iter().cloned().collect(),
        "block shares in the share log"
    );

    let doc = sluicectl(
        &redis,
        PREFIX,
        &["shares", "tail", "--verdict", "rejected", "--json"],
    )
    .json();
    let only = doc["shares"].as_array().unwrap();
    assert_eq!(only.len(), DUPLICATES, "{doc}");
    assert!(only.iter().all(|s| s["reason"] == "duplicate"), "{doc}");

    // The block log: each block the miner found, accepted by the simulated chain. The jobmanager
    // records it after the chain answers, so allow it a moment.
    let ls = || sluicectl(&redis, PREFIX, &["blocks", "ls", "--json"]).json();
    let doc = eventually(Duration::from_secs(5), || {
        let doc = ls();
        let listed = strings(&doc["blocks"], "hash");
        blocks.iter().all(|b| listed.contains(b)).then_some(doc)
    })
    .unwrap_or_else(|| panic!("blocks {blocks:?} were not all listed in 5 s: {}", ls()));
    for hash in &blocks {
        let b = doc["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["hash"] == hash.as_str())
            .unwrap();
        assert_eq!(b["accepted"], true, "{b}");
        assert_eq!(b["worker"], WORKER, "{b}");
        assert_eq!(
            b["results"],
            json!([{"node": "simulated chain", "result": "accepted", "reason": null}]),
            "{b}"
        );
    }

    // The rollups: the worker's accepted and rejected counts.
    let doc = sluicectl(&redis, PREFIX, &["stats", "--json"]).json();
    let row = doc["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["worker"] == WORKER)
        .unwrap_or_else(|| panic!("{WORKER} is not in stats: {doc}"))
        .clone();
    assert_eq!(row["accepted"], accepted_count, "{doc}");
    assert_eq!(row["rejected"], DUPLICATES, "{doc}");
    assert_eq!(doc["rejects_by_reason"]["duplicate"], DUPLICATES, "{doc}");

    // The registry: the engine that served the miner.
    let doc = sluicectl(&redis, PREFIX, &["services", "ls", "--json"]).json();
    let svc = doc["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "engine-1")
        .unwrap_or_else(|| panic!("engine-1 is not registered: {doc}"))
        .clone();
    assert_eq!(svc["role"], "stratum", "{svc}");
}
