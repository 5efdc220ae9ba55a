//! The test miner both suites drive engines with (`tests/` and `ctl/tests/`): Stratum V1 over a
//! real TCP socket, blocking, one JSON line at a time. It keeps the notifications a test has not
//! taken yet, follows `mining.set_difficulty` and `mining.notify`, and mines real shares: headers
//! from the notified work, built and hashed with `sluice-core`'s `HeaderFields` and double
//! SHA-256, the way the load generator builds them.
//!
//! Building headers with the engine's own core is a choice: what checks the engine's encoding
//! against an independent reading is the reference miner of `tests/reference.rs` (the `bitcoin`
//! crate) and `scripts/pyminer.py`, which stay apart from this one on purpose.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_core::chain::HeaderFields;
use sluice_core::hash::{header_hash, merkle_parent, sha256d};
use sluice_core::units::{Difficulty, HeaderHash, Target};

/// The worker [`Miner::handshake`] authorizes and [`Miner::submit`] submits as.
pub const WORKER: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080.rig";

/// What [`Miner::subscribe`] says it is.
const USER_AGENT: &str = "sluice-test-miner/1.0";

/// How many of the last lines received a miner keeps for failure messages.
const RECENT_LINES: usize = 16;

/// What a miner takes from `mining.notify`, read as cgminer-family miners read it.
#[derive(Debug, Clone)]
pub struct Work {
    pub job_id: String,
    /// The previous block hash in header (internal) byte order: the notify's words swapped back.
    pub prev_hash: [u8; 32],
    pub coinb1: Vec<u8>,
    pub coinb2: Vec<u8>,
    pub branch: Vec<[u8; 32]>,
    pub version: u32,
    pub nbits: u32,
    pub ntime: u32,
    pub clean: bool,
}

fn unhex(v: &Value) -> Vec<u8> {
    let text = v
        .as_str()
        .unwrap_or_else(|| panic!("not a hex string: {v}"));
    sluice_core::hex::decode_vec(text).unwrap_or_else(|e| panic!("not hex ({e:?}): {v}"))
}

fn be_u32(v: &Value) -> u32 {
    u32::from_str_radix(v.as_str().unwrap_or(""), 16)
        .unwrap_or_else(|e| panic!("not a 32-bit hex field ({e}): {v}"))
}

impl Work {
    /// The work of a `mining.notify` message; panics on anything else.
    pub fn from_notify(v: &Value) -> Work {
        assert_eq!(v["method"], "mining.notify", "{v}");
        let p = v["params"].as_array().expect("notify params");
        let mut prev: [u8; 32] = unhex(&p[1]).try_into().expect("a 32-byte prev_hash");
        for word in prev.chunks_exact_mut(4) {
            word.reverse();
        }
        Work {
            job_id: p[0].as_str().expect("a job id").to_owned(),
            prev_hash: prev,
            coinb1: unhex(&p[2]),
            coinb2: unhex(&p[3]),
            branch: p[4]
                .as_array()
                .expect("a merkle branch")
                .iter()
                .map(|h| unhex(h).try_into().expect("32-byte branch hashes"))
                .collect(),
            version: be_u32(&p[5]),
            nbits: be_u32(&p[6]),
            ntime: be_u32(&p[7]),
            clean: p[8].as_bool().expect("clean_jobs"),
        }
    }

    /// The merkle root of the block with these extranonces: the coinbase `coinb1 + extranonce1 +
    /// extranonce2 + coinb2`, double SHA-256, folded up the branch.
    pub fn merkle_root(&self, extranonce1: &[u8], extranonce2: &[u8]) -> [u8; 32] {
        let mut coinbase = self.coinb1.clone();
        coinbase.extend_from_slice(extranonce1);
        coinbase.extend_from_slice(extranonce2);
        coinbase.extend_from_slice(&self.coinb2);
        self.branch
            .iter()
            .fold(sha256d(&coinbase), |node, sibling| {
                merkle_parent(&node, sibling)
            })
    }

    /// The 80-byte header for these extranonces, version and nonce, at the notified ntime.
    pub fn header(
        &self,
        extranonce1: &[u8],
        extranonce2: &[u8],
        version: u32,
        nonce: u32,
    ) -> [u8; 80] {
        HeaderFields {
            version,
            prev_hash: &self.prev_hash,
            merkle_root: &self.merkle_root(extranonce1, extranonce2),
            ntime: self.ntime,
            nbits: self.nbits,
            nonce,
        }
        .serialize()
    }
}

/// A share ready to submit (the `mining.submit` fields but the worker's name), kept so it can be
/// sent again.
#[derive(Debug, Clone)]
pub struct Share {
    pub job_id: String,
    pub extranonce2: String,
    pub ntime: String,
    pub nonce: String,
    /// Present when the share rolls version bits.
    pub version_bits: Option<String>,
    /// What was hashed; its `Display` is the form the engine logs and sluicectl prints.
    pub hash: HeaderHash,
}

/// How a connection ended, if it did (see [`Miner::end_within`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// A read returned 0 bytes: the engine closed it.
    Eof,
    /// The engine reset it.
    Reset,
    /// Reading failed otherwise.
    Error(ErrorKind),
    /// Still open at the deadline.
    Open,
}

/// What one attempt to read a line came to.
enum LineRead {
    Line(String),
    Timeout,
    Ended(End),
}

/// A Stratum V1 miner on one TCP connection. Every method panics on what a test did not expect,
/// except the reads that say in their type that the connection may end.
pub struct Miner {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    /// A line read in part when a read timed out; the rest comes with the next read.
    partial: String,
    next_id: u64,
    /// Notifications not yet taken by the test.
    pub notifications: VecDeque<Value>,
    pub extranonce1: Vec<u8>,
    pub extranonce2_size: usize,
    /// The last `mining.set_difficulty` (0 before the first).
    pub difficulty: f64,
    /// The last `mining.notify`.
    pub work: Option<Work>,
    /// The mask `mining.configure` answered (0 without version rolling).
    pub version_mask: u32,
    extranonce2: u64,
    recent: VecDeque<String>,
}

impl Miner {
    pub fn connect(addr: impl ToSocketAddrs + Debug) -> Miner {
        let stream = TcpStream::connect(&addr).unwrap_or_else(|e| panic!("connect {addr:?}: {e}"));
        Self::from_stream(stream)
    }

    /// Connects from a chosen loopback source address (each 127.0.0.x is its own client IP).
    pub fn connect_from(addr: SocketAddr, source: &str) -> std::io::Result<Miner> {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        let src: SocketAddr = format!("{source}:0")
            .parse()
            .unwrap_or_else(|e| panic!("source address {source:?}: {e}"));
        socket.bind(&src.into())?;
        socket.connect(&addr.into())?;
        Ok(Self::from_stream(socket.into()))
    }

    pub fn from_stream(stream: TcpStream) -> Miner {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Miner {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
            partial: String::new(),
            next_id: 1,
            notifications: VecDeque::new(),
            extranonce1: Vec::new(),
            extranonce2_size: 0,
            difficulty: 0.0,
            work: None,
            version_mask: 0,
            extranonce2: 0,
            recent: VecDeque::new(),
        }
    }

    /// The last few lines received, oldest first, for failure messages.
    pub fn recent(&self) -> &VecDeque<String> {
        &self.recent
    }

    pub fn send_raw(&mut self, line: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(line)
    }

    fn read_line(&mut self, timeout: Duration) -> LineRead {
        // A zero timeout would mean "block forever" to the socket.
        let timeout = timeout.max(Duration::from_millis(1));
        self.reader
            .get_ref()
            .set_read_timeout(Some(timeout))
            .unwrap();
        match self.reader.read_line(&mut self.partial) {
            Ok(0) => LineRead::Ended(End::Eof),
            Ok(_) if self.partial.ends_with('\n') => {
                let line = std::mem::take(&mut self.partial);
                if self.recent.len() == RECENT_LINES {
                    self.recent.pop_front();
                }
                self.recent.push_back(line.trim_end().to_owned());
                LineRead::Line(line)
            }
            Ok(_) => LineRead::Timeout,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                LineRead::Timeout
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => LineRead::Ended(End::Reset),
            Err(e) => LineRead::Ended(End::Error(e.kind())),
        }
    }

    /// Reads one message, or `None` on timeout; `Err` when the connection is closed.
    pub fn read_message(&mut self, timeout: Duration) -> Result<Option<Value>, String> {
        match self.read_line(timeout) {
            LineRead::Line(line) => {
                let v: Value =
                    serde_json::from_str(&line).map_err(|e| format!("bad JSON {line:?}: {e}"))?;
                self.observe(&v);
                Ok(Some(v))
            }
            LineRead::Timeout => Ok(None),
            LineRead::Ended(End::Eof) => Err("closed".into()),
            LineRead::Ended(end) => Err(format!("{end:?}")),
        }
    }

    fn observe(&mut self, v: &Value) {
        match v["method"].as_str() {
            Some("mining.set_difficulty") => {
                self.difficulty = v["params"][0]
                    .as_f64()
                    .unwrap_or_else(|| panic!("a difficulty: {v}"));
            }
            Some("mining.notify") => self.work = Some(Work::from_notify(v)),
            _ => {}
        }
    }

    /// Reads (keeping notifications) until the connection ends or `timeout` passes, and says how
    /// it ended.
    pub fn end_within(&mut self, timeout: Duration) -> End {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.read_line(Duration::from_millis(100)) {
                LineRead::Line(line) => {
                    // Anything but JSON is kept in `recent` only, for the failure message.
                    if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        self.observe(&v);
                        self.notifications.push_back(v);
                    }
                }
                LineRead::Timeout => {}
                LineRead::Ended(end) => return end,
            }
        }
        End::Open
    }

    /// Whether the engine has closed the connection (reads until EOF, an error, or `timeout`).
    pub fn is_closed_within(&mut self, timeout: Duration) -> bool {
        self.end_within(timeout) != End::Open
    }

    /// Sends a request and waits for its answer, keeping notifications that arrive meanwhile.
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let line = json!({"id": id, "method": method, "params": params}).to_string() + "\n";
        self.writer.write_all(line.as_bytes()).unwrap();
        loop {
            match self.read_message(Duration::from_secs(10)) {
                Ok(Some(v)) if v["id"] == json!(id) => return v,
                Ok(Some(v)) => self.notifications.push_back(v),
                Ok(None) => panic!(
                    "no answer to {method} within 10 s; received {:?}",
                    self.recent
                ),
                Err(e) => panic!(
                    "connection ended waiting for {method}: {e}; received {:?}",
                    self.recent
                ),
            }
        }
    }

    /// The next notification with this method (one kept earlier first).
    pub fn wait_for(&mut self, method: &str, timeout: Duration) -> Option<Value> {
        if let Some(i) = self
            .notifications
            .iter()
            .position(|v| v["method"] == method)
        {
            return self.notifications.remove(i);
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.read_message(Duration::from_millis(100)) {
                Ok(Some(v)) if v["method"] == method => return Some(v),
                Ok(Some(v)) => self.notifications.push_back(v),
                Ok(None) => {}
                Err(_) => return None,
            }
        }
        None
    }

    /// Every message received (answers too) up to and including the first with this method,
    /// which must come within `timeout`: what a miner sees before its first job, say.
    pub fn messages_until(&mut self, method: &str, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            match self.read_message(Duration::from_millis(100)) {
                Ok(Some(v)) => {
                    let last = v["method"] == method;
                    seen.push(v);
                    if last {
                        return seen;
                    }
                }
                Ok(None) => {}
                Err(e) => panic!("the connection ended ({e}) before {method}; received {seen:?}"),
            }
        }
        panic!("no {method} within {timeout:?}; received {seen:?}");
    }

    /// Reads until the work is on another previous block than `old_prev` (after a block was
    /// found); false if none came within `timeout`.
    pub fn wait_for_new_block(&mut self, old_prev: [u8; 32], timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.work.as_ref().is_none_or(|w| w.prev_hash == old_prev) {
            if Instant::now() >= deadline {
                return false;
            }
            match self.read_message(Duration::from_millis(100)) {
                Ok(Some(v)) => self.notifications.push_back(v),
                Ok(None) => {}
                Err(_) => return false,
            }
        }
        true
    }

    pub fn subscribe(&mut self) -> Value {
        self.subscribe_with(json!([USER_AGENT]))
    }

    /// Subscribes asking to resume the session `id`; takes whatever extranonce1 the answer
    /// gives (its own back, or a fresh one).
    pub fn subscribe_resuming(&mut self, id: &str) -> Value {
        self.subscribe_with(json!([USER_AGENT, id]))
    }

    fn subscribe_with(&mut self, params: Value) -> Value {
        let r = self.request("mining.subscribe", params);
        let result = &r["result"];
        self.extranonce1 = unhex(&result[1]);
        self.extranonce2_size = result[2]
            .as_u64()
            .unwrap_or_else(|| panic!("an extranonce2 size: {r}"))
            as usize;
        r
    }

    pub fn configure_version_rolling(&mut self, mask: &str) -> Value {
        let r = self.request(
            "mining.configure",
            json!([["version-rolling"], {"version-rolling.mask": mask, "version-rolling.min-bit-count": 2}]),
        );
        if let Some(m) = r["result"]["version-rolling.mask"].as_str() {
            self.version_mask = u32::from_str_radix(m, 16).unwrap();
        }
        r
    }

    pub fn authorize(&mut self, worker: &str, password: &str) -> Value {
        self.request("mining.authorize", json!([worker, password]))
    }

    /// Subscribe, authorize [`WORKER`], and wait for the first job.
    pub fn handshake(&mut self) {
        self.handshake_as(WORKER);
    }

    /// Subscribe, authorize `worker`, and wait for the first job and a difficulty (the first job
    /// is taken: [`Miner::wait_for`] gives the next one).
    pub fn handshake_as(&mut self, worker: &str) {
        self.subscribe();
        let r = self.authorize(worker, "x");
        assert_eq!(r["result"], true, "authorize {worker}: {r}");
        self.wait_for("mining.notify", Duration::from_secs(10))
            .unwrap_or_else(|| panic!("no first job within 10 s; received {:?}", self.recent));
        if self.difficulty == 0.0 {
            self.wait_for("mining.set_difficulty", Duration::from_secs(10))
                .unwrap_or_else(|| panic!("no difficulty within 10 s; received {:?}", self.recent));
        }
    }

    /// Finds a share on the current work whose hash meets (or, with `meets = false`, misses) the
    /// target of `difficulty`, with these version bits rolled.
    pub fn find_share(&mut self, difficulty: f64, meets: bool, version_bits: Option<u32>) -> Share {
        let work = self.work.as_ref().expect("work");
        self.extranonce2 += 1;
        let en2 = &self.extranonce2.to_be_bytes()[8 - self.extranonce2_size.min(8)..];
        let mut en2 = en2.to_vec();
        en2.resize(self.extranonce2_size, 0);
        let target = Difficulty::new(difficulty)
            .unwrap_or_else(|e| panic!("difficulty {difficulty}: {e}"))
            .target();
        let version = match version_bits {
            None => work.version,
            Some(bits) => (work.version & !self.version_mask) | (bits & self.version_mask),
        };
        for nonce in 0u32.. {
            let hash = HeaderHash(header_hash(&work.header(
                &self.extranonce1,
                &en2,
                version,
                nonce,
            )));
            if target.is_met_by(&hash) == meets {
                return Share {
                    job_id: work.job_id.clone(),
                    extranonce2: sluice_core::hex::encode(&en2),
                    ntime: format!("{:08x}", work.ntime),
                    nonce: format!("{nonce:08x}"),
                    version_bits: version_bits.map(|b| format!("{:08x}", b & self.version_mask)),
                    hash,
                };
            }
        }
        unreachable!("no nonce gives such a share")
    }

    /// Mines on the current work until a share is a block, submitting (and checking) the ones
    /// before it that are not; the block is returned unsubmitted.
    pub fn mine_until_block(&mut self) -> Share {
        loop {
            let share = self.find_share(self.difficulty, true, None);
            if self.is_block(&share) {
                return share;
            }
            assert_eq!(self.submit(&share)["result"], true);
        }
    }

    /// Whether a share's hash meets the current work's network target.
    pub fn is_block(&self, share: &Share) -> bool {
        let work = self.work.as_ref().expect("work");
        Target::from_compact(work.nbits).is_ok_and(|t| t.is_met_by(&share.hash))
    }

    pub fn submit(&mut self, share: &Share) -> Value {
        self.submit_as(WORKER, share)
    }

    pub fn submit_as(&mut self, worker: &str, share: &Share) -> Value {
        let mut params = vec![
            json!(worker),
            json!(share.job_id),
            json!(share.extranonce2),
            json!(share.ntime),
            json!(share.nonce),
        ];
        if let Some(v) = &share.version_bits {
            params.push(json!(v));
        }
        self.request("mining.submit", Value::Array(params))
    }

    /// The hash of a share in the display form the engine logs.
    pub fn hash_hex(share: &Share) -> String {
        share.hash.to_string()
    }

    /// The hash of a share in header byte order (as a next block's prev_hash holds it).
    pub fn hash_bytes(share: &Share) -> [u8; 32] {
        share.hash.0
    }
}

/// The error code of a refused request's answer; panics on an answer that is not an error.
pub fn error_code(v: &Value) -> i64 {
    v["error"][0]
        .as_i64()
        .unwrap_or_else(|| panic!("expected an error, got {v}"))
}
