//! `session`: one miner connection's state machine (`sluice_stratum::session::Session`), sans-IO, driven by
//! a sequence of operations, and held to its invariants.
//!
//! Input layout: byte 0 picks the configuration (bit 0: vardiff on, with a fast retarget; bit 1:
//! free worker names; bit 2: extranonces 2 + 8 instead of 4 + 4; bit 3: a job history of 4 instead
//! of 3; bit 4: the first job on regtest bits `207fffff`, else `1d00ffff`). The rest is up to 300
//! operations, each an opcode byte (`% 16`) and the bytes it reads (zeros once the input ends):
//!
//! - `0`, `1`: raw bytes (a length byte, then that many), framed as the I/O layer does (split at
//!   `\n`, trimmed, empty lines dropped), each line to `handle_line`;
//! - `2`: `mining.configure` (version-rolling mask, min-bit-count, optional minimum difficulty);
//! - `3`: `mining.subscribe` with a user agent, with or without a session id;
//! - `4`, `5`: `mining.authorize`: the regtest worker `<address>.rig`, `.rig2`, the bare address, or
//!   junk; a password with or without a difficulty;
//! - `6`: `mining.suggest_difficulty` with a fuzzed number (a table, any f64 bits, quoted, a power
//!   of two);
//! - `7`, `8`, `9`: `mining.submit` with fuzzed fields on a job of the book (or a junk job id):
//!   extranonce2 from one byte (so shares collide), ntime near the job's, nonce from a byte or four,
//!   optional version bits;
//! - `10`: a share accepted earlier in this session's lineage, submitted again (its job under its
//!   current id);
//! - `11`: a tick, the clock advanced by a fuzzed amount (up to about 65 s, or up to 18 h);
//! - `12`: a new job (ids increase; optionally on a new previous block, so older jobs go stale);
//! - `13`: `apply_config` with a narrowed version mask (and a minimum difficulty from a table);
//! - `14`: `Session::export`, then `Session::resume` into a fresh session (on this engine's book,
//!   or on another engine's, which holds the same jobs under new ids), optionally with a configure
//!   before the resume;
//! - `15`: other requests (`mining.extranonce.subscribe`, an unknown method), or, with the high
//!   bit, a new connection (a fresh session with a new extranonce1).
//!
//! Invariants: no panic; every output is whole lines of JSON, a request's reply first (its id
//! echoed exactly), then notifications (`"id":null`); `Event::Share` names only workers the session
//! authorized (an authorize answered `true`, or a worker carried by the resume, which must be one of
//! those); once `Flow::Close` comes back, the session is not fed again (only released); an
//! `Event::SessionChanged` comes only for an authorized session, at least `session_save_interval_ms` after the
//! previous save (the first authorize's excepted), so at most 2 in any such interval; a share is
//! accepted for a header at most once, in the session and in the sessions resumed from it (every
//! accepted hash is remembered, and accepted shares are re-submitted); a `true` submit reply comes
//! with exactly one accepted `Event::Share`, and a found block assembles.

#![no_main]

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use bitcoin::Network;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

use sluice_core::chain::{Job, JobBook, JobParts};
use sluice_core::share::{parse_job_id, DuplicateLimits};
use sluice_core::units::{Difficulty, Extranonce1, ExtranonceSizes, JobId};
use sluice_fuzz::{check_notification, check_reply, REGTEST_ADDRESS};
use sluice_stratum::codec::{parse, Request};
use sluice_stratum::session::vardiff::VardiffConfig;
use sluice_stratum::session::Session;
use sluice_stratum::session::{
    Context, Event, Flow, SessionConfig, SessionLimits, DEFAULT_VERSION_MASK,
};

const NOW_MS: u64 = 1_750_000_000_000;
const MAX_OPS: usize = 300;
const SAVE_INTERVAL_MS: u64 = 1000;

/// Reads the input, zeros once it ends.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }
    fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        (u64::from(self.u32()) << 32) | u64::from(self.u32())
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let start = self.pos.min(self.data.len());
        let end = (self.pos + n).min(self.data.len());
        self.pos += n;
        &self.data[start..end]
    }
}

/// What a job is made from, so that another engine can hold the same job under another id.
#[derive(Clone, Copy)]
struct Spec {
    serial: u32,
    prev: u8,
    nbits: u32,
}

fn build_job(id: u64, spec: Spec, extranonce: ExtranonceSizes) -> Arc<Job> {
    let ntime = (NOW_MS / 1000) as u32 + spec.serial;
    let mut coinb2 = vec![0x02; 60];
    coinb2[..4].copy_from_slice(&spec.serial.to_le_bytes());
    let txids = (0..spec.serial % 3).map(|i| [7 + i as u8; 32]).collect();
    let parts = JobParts {
        height: 500 + u64::from(spec.serial),
        prev_hash: [spec.prev; 32],
        version: 0x2000_0000,
        nbits: spec.nbits,
        ntime,
        mintime: ntime - 600,
        coinb1: vec![0x01; 47],
        coinb2,
        extranonce,
        txids,
        transactions: Vec::new(),
        witness_reserved_value: None,
    };
    Arc::new(Job::new(JobId(id), parts, true).expect("valid job parts"))
}

/// An accepted share, by what it hashes (its job by spec, since ids are an engine's own).
#[derive(Clone)]
struct Accepted {
    serial: u32,
    worker: String,
    extranonce2: String,
    ntime: String,
    nonce: String,
    version_bits: Option<String>,
}

/// One connection.
struct Conn {
    session: Session,
    closed: bool,
    /// Workers the session may credit shares to.
    authorized: HashSet<String>,
    /// When each `Event::SessionChanged` came.
    saves: Vec<u64>,
}

struct World {
    config: Arc<SessionConfig>,
    book: JobBook,
    /// The book's jobs, oldest first, with their specs.
    jobs: VecDeque<(JobId, Spec)>,
    next_id: u64,
    next_serial: u32,
    prev: u8,
    now: u64,
    next_extranonce1: u64,
    next_request: u64,
    conn: Conn,
    /// Every header hash accepted in this input (extranonce1s of fresh sessions never repeat, so a
    /// header can only come back in the same session or one resumed from it).
    accepted_hashes: HashSet<[u8; 32]>,
    /// The shares accepted in the current session's lineage.
    accepted: Vec<Accepted>,
}

impl World {
    fn fresh_extranonce1(&mut self) -> Extranonce1 {
        self.next_extranonce1 += 1;
        let n = self.config.extranonce.extranonce1();
        let b = self.next_extranonce1.to_be_bytes();
        Extranonce1::new(&b[8 - n..]).expect("extranonce1 size")
    }

    fn new_conn(&mut self) {
        let en1 = self.fresh_extranonce1();
        let session = Session::new(
            Arc::clone(&self.config),
            en1,
            self.next_extranonce1,
            self.now,
        );
        self.conn = Conn {
            session,
            closed: false,
            authorized: HashSet::new(),
            saves: Vec::new(),
        };
        self.accepted.clear();
    }

    fn push_spec(&mut self, spec: Spec) -> Arc<Job> {
        self.next_id += 1 + u64::from(spec.serial % 5);
        let job = build_job(self.next_id, spec, self.config.extranonce);
        self.book.push(Arc::clone(&job));
        if self.jobs.len() == self.book.capacity() {
            self.jobs.pop_front();
        }
        self.jobs.push_back((job.id, spec));
        assert_eq!(self.jobs.len(), self.book.len());
        job
    }

    fn id_of(&self, serial: u32) -> Option<JobId> {
        self.jobs
            .iter()
            .find(|(_, s)| s.serial == serial)
            .map(|(id, _)| *id)
    }

    fn request_id(&mut self) -> String {
        self.next_request += 1;
        self.next_request.to_string()
    }

    /// Records the events of one call and checks them. `exempt_first` says the call was an
    /// authorize that gave the session its first worker (whose save is not rate-limited).
    fn events(&mut self, events: &[Event], exempt_first: bool) -> usize {
        let mut accepted = 0;
        for e in events {
            match e {
                Event::Share(record) => {
                    assert!(
                        self.conn.authorized.contains(&*record.worker),
                        "a share for a worker the session never authorized: {:?} (authorized {:?})",
                        record.worker,
                        self.conn.authorized
                    );
                    if record.result.is_ok() {
                        accepted += 1;
                        let hash = record.hash.expect("an accepted share was hashed");
                        assert!(
                            self.accepted_hashes.insert(hash.0),
                            "a header accepted twice: {record:?}"
                        );
                    }
                }
                Event::Block(block) => {
                    let bytes = block.assemble();
                    assert!(bytes.len() > 80, "a block is more than its header");
                    assert_eq!(
                        bytes[..80],
                        block.header,
                        "the block starts with its header"
                    );
                    assert!(self.conn.authorized.contains(&*block.worker));
                }
                Event::UnknownSessionId => {
                    panic!(
                        "a resume is only asked for when allowed, and this target never allows one"
                    )
                }
                Event::SessionChanged => {
                    assert!(
                        self.conn.session.is_authorized(),
                        "a save for a session without a worker"
                    );
                    let exempt = exempt_first;
                    if let Some(&last) = self.conn.saves.last() {
                        assert!(
                            exempt
                                || self.now - last >= self.config.limits.session_save_interval_ms,
                            "saves {} ms apart (at {:?}, now {})",
                            self.now - last,
                            self.conn.saves,
                            self.now
                        );
                    }
                    self.conn.saves.push(self.now);
                    let n = self.conn.saves.len();
                    if n >= 3 {
                        assert!(
                            self.conn.saves[n - 1] - self.conn.saves[n - 3]
                                >= self.config.limits.session_save_interval_ms,
                            "three saves within one save interval: {:?}",
                            self.conn.saves
                        );
                    }
                }
                Event::Refused(_) | Event::Difficulty(_) => {}
            }
        }
        accepted
    }

    /// One line to the session, with every check. Returns the reply (when representable).
    fn line(&mut self, line: &[u8]) -> Option<Value> {
        if self.conn.closed {
            return None;
        }
        let (id_json, authorize) = match parse(line) {
            Ok(m) => {
                let worker = match &m.request {
                    Request::Authorize { worker, .. } => Some(worker.to_string()),
                    _ => None,
                };
                (m.id.json().to_owned(), worker)
            }
            Err(e) => (e.id.json().to_owned(), None),
        };
        let had_worker = self.conn.session.is_authorized();
        let mut out = Vec::new();
        let mut events = Vec::new();
        let ctx = Context {
            book: &self.book,
            now_ms: self.now,
            policies: None,
        };
        let flow = self
            .conn
            .session
            .handle_line(line, &ctx, &mut out, &mut events);
        let reply = check_output(&out, Some(&id_json));
        let reply_true = reply.as_ref().is_some_and(|r| r["result"] == true);
        if let Some(worker) = authorize {
            if reply_true {
                self.conn.authorized.insert(worker);
            }
        }
        let exempt = !had_worker && self.conn.session.is_authorized();
        let accepted = self.events(&events, exempt);
        assert!(accepted <= 1, "one line, one share");
        if accepted == 1 {
            assert!(reply_true, "an accepted share answered with {reply:?}");
        }
        if let Flow::Close(_) = flow {
            self.conn.closed = true;
        }
        reply
    }

    fn tick(&mut self, ms: u64) {
        self.now += ms;
        if self.conn.closed {
            return;
        }
        let mut events = Vec::new();
        let flow = self.conn.session.tick(self.now, &mut events);
        self.events(&events, false);
        if let Flow::Close(_) = flow {
            self.conn.closed = true;
        }
    }
}

/// Checks bytes the session wrote: whole lines of JSON, the reply to `reply_id` first when given,
/// then notifications. Returns the reply as a `Value` when serde_json can represent it.
fn check_output(out: &[u8], reply_id: Option<&str>) -> Option<Value> {
    if out.is_empty() {
        assert!(reply_id.is_none(), "a request without a reply");
        return None;
    }
    assert_eq!(out.last(), Some(&b'\n'), "output ends mid-line: {out:?}");
    let mut reply = None;
    let mut start = 0;
    let mut first = true;
    for end in out
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .map(|(i, _)| i + 1)
    {
        let line = &out[start..end];
        start = end;
        assert!(line.len() > 1, "an empty line in the output");
        match reply_id {
            Some(id) if first => reply = Some(check_reply(line, id)),
            _ => {
                let v: Value = serde_json::from_slice(line).unwrap_or_else(|e| {
                    panic!(
                        "a notification is not JSON: {e}: {:?}",
                        String::from_utf8_lossy(line)
                    )
                });
                let method = v["method"].as_str().unwrap_or_else(|| {
                    panic!(
                        "a line after the reply is not a notification: {:?}",
                        String::from_utf8_lossy(line)
                    )
                });
                assert!(
                    matches!(
                        method,
                        "mining.notify"
                            | "mining.set_difficulty"
                            | "mining.set_version_mask"
                            | "mining.set_extranonce"
                    ),
                    "unexpected notification {method}"
                );
                check_notification(line, method);
            }
        }
        first = false;
    }
    reply.flatten()
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string")
}

/// A number for a difficulty, as JSON (or quoted, which the parser also reads).
fn fuzzed_number(c: &mut Cursor<'_>) -> String {
    const TABLE: [&str; 10] = [
        "1e-12", "0.000001", "0.001", "1", "1024", "0", "-1", "1e300", "1e-320", "5e-13",
    ];
    let b = c.u8();
    let n = match b % 4 {
        0 => TABLE[usize::from(c.u8()) % TABLE.len()].to_owned(),
        1 => {
            let f = f64::from_bits(c.u64());
            if f.is_finite() {
                format!("{f:e}")
            } else {
                format!("\"{f}\"")
            }
        }
        2 => format!("\"{:e}\"", f64::from(c.u16()) / 256.0),
        _ => format!("{:e}", 2f64.powi(i32::from(c.u8() as i8) / 2)),
    };
    if b & 0x80 != 0 && !n.starts_with('"') {
        format!("\"{n}\"")
    } else {
        n
    }
}

fn worker_name(c: &mut Cursor<'_>) -> String {
    match c.u8() % 5 {
        0 | 1 => format!("{REGTEST_ADDRESS}.rig"),
        2 => format!("{REGTEST_ADDRESS}.rig2"),
        3 => REGTEST_ADDRESS.to_owned(),
        _ => {
            let n = usize::from(c.u8() % 24);
            String::from_utf8_lossy(c.bytes(n)).into_owned()
        }
    }
}

fn configure_line(id: &str, c: &mut Cursor<'_>) -> String {
    let mask = match c.u8() % 4 {
        0 => DEFAULT_VERSION_MASK.0,
        1 => 0x00ff_e000,
        2 => u32::MAX,
        _ => c.u32(),
    };
    let min_bits = c.u8() % 20;
    let flags = c.u8();
    let mut names = vec!["\"version-rolling\""];
    let mut params = vec![
        format!("\"version-rolling.mask\":\"{mask:08x}\""),
        format!("\"version-rolling.min-bit-count\":{min_bits}"),
    ];
    if flags & 1 != 0 {
        names.push("\"minimum-difficulty\"");
        params.push(format!("\"minimum-difficulty.value\":{}", fuzzed_number(c)));
    }
    if flags & 2 != 0 {
        names.push("\"subscribe-extranonce\"");
    }
    format!(
        r#"{{"id":{id},"method":"mining.configure","params":[[{}],{{{}}}]}}"#,
        names.join(","),
        params.join(",")
    )
}

fn submit_line(id: &str, a: &Accepted, job_id: &str) -> String {
    let mut params = vec![
        json_string(&a.worker),
        json_string(job_id),
        json_string(&a.extranonce2),
        json_string(&a.ntime),
        json_string(&a.nonce),
    ];
    if let Some(v) = &a.version_bits {
        params.push(json_string(v));
    }
    format!(
        r#"{{"id":{id},"method":"mining.submit","params":[{}]}}"#,
        params.join(",")
    )
}

fn config_from(flags: u8) -> SessionConfig {
    let tiny = Difficulty::new(1e-12).expect("positive");
    let job_history = if flags & 8 != 0 { 4 } else { 3 };
    SessionConfig {
        extranonce: if flags & 4 != 0 {
            ExtranonceSizes::new(2, 8).expect("valid sizes")
        } else {
            ExtranonceSizes::default()
        },
        start_difficulty: tiny,
        min_difficulty: tiny,
        vardiff: (flags & 1 != 0).then(|| VardiffConfig {
            retarget_shares: 4,
            retarget_interval_ms: 2_000,
            ..VardiffConfig::default()
        }),
        allow_free_worker_names: flags & 2 != 0,
        limits: SessionLimits {
            max_workers: 3,
            max_invalid_streak: 20,
            max_failed_authorize: 5,
            unauthenticated_timeout_ms: 30_000,
            idle_timeout_ms: 120_000,
            max_suggestions_per_minute: 3,
            session_save_interval_ms: SAVE_INTERVAL_MS,
        },
        duplicate_limits: DuplicateLimits {
            max_jobs: job_history,
            max_shares_per_job: 8,
        },
        job_history,
        ..SessionConfig::new(Network::Regtest)
    }
}

fuzz_target!(|data: &[u8]| {
    let mut c = Cursor { data, pos: 0 };
    let flags = c.u8();
    let config = Arc::new(config_from(flags));
    let en1 = Extranonce1::new(&vec![0; config.extranonce.extranonce1()]).expect("size");
    let mut w = World {
        book: JobBook::new(config.job_history),
        jobs: VecDeque::new(),
        next_id: 0,
        next_serial: 0,
        prev: 0xaa,
        now: NOW_MS,
        next_extranonce1: 0,
        next_request: 0,
        conn: Conn {
            session: Session::new(Arc::clone(&config), en1, 0, NOW_MS),
            closed: false,
            authorized: HashSet::new(),
            saves: Vec::new(),
        },
        config,
        accepted_hashes: HashSet::new(),
        accepted: Vec::new(),
    };
    w.new_conn();
    let nbits = if flags & 0x10 != 0 {
        0x207f_ffff
    } else {
        0x1d00_ffff
    };
    w.push_spec(Spec {
        serial: 0,
        prev: w.prev,
        nbits,
    });
    w.next_serial = 1;

    for _ in 0..MAX_OPS {
        if c.done() {
            break;
        }
        let op = c.u8();
        match op % 16 {
            0 | 1 => {
                let n = usize::from(c.u8());
                let raw = c.bytes(n).to_vec();
                for line in raw.split(|&b| b == b'\n') {
                    let line = line.trim_ascii();
                    if !line.is_empty() {
                        w.line(line);
                    }
                }
            }
            2 => {
                let id = w.request_id();
                let line = configure_line(&id, &mut c);
                w.line(line.as_bytes());
            }
            3 => {
                let id = w.request_id();
                let ua = json_string(&String::from_utf8_lossy(c.bytes(usize::from(op >> 4))));
                let line = if op & 0x80 != 0 {
                    let sid = if op & 0x40 != 0 {
                        w.conn.session.session_id()
                    } else {
                        format!("{:x}", c.u32())
                    };
                    format!(r#"{{"id":{id},"method":"mining.subscribe","params":[{ua},"{sid}"]}}"#)
                } else {
                    format!(r#"{{"id":{id},"method":"mining.subscribe","params":[{ua}]}}"#)
                };
                w.line(line.as_bytes());
            }
            4 | 5 => {
                let id = w.request_id();
                let worker = json_string(&worker_name(&mut c));
                let password = match c.u8() % 4 {
                    0 => "\"x\"".to_owned(),
                    1 => format!("\"d={}\"", fuzzed_number(&mut c).trim_matches('"')),
                    2 => "null".to_owned(),
                    _ => format!("\"x,diff={}\"", c.u16()),
                };
                let line = format!(
                    r#"{{"id":{id},"method":"mining.authorize","params":[{worker},{password}]}}"#
                );
                w.line(line.as_bytes());
            }
            6 => {
                let id = w.request_id();
                let d = fuzzed_number(&mut c);
                let line =
                    format!(r#"{{"id":{id},"method":"mining.suggest_difficulty","params":[{d}]}}"#);
                w.line(line.as_bytes());
            }
            7..=9 => {
                let id = w.request_id();
                let worker = worker_name(&mut c);
                let pick = c.u8();
                let (job_id, serial, ntime) = match w.jobs.get(usize::from(pick % 8)) {
                    Some((jid, spec)) => (
                        jid.to_string(),
                        Some(spec.serial),
                        (NOW_MS / 1000) as u32 + spec.serial,
                    ),
                    None => {
                        // Junk, which may still name a job of the book.
                        let junk = format!("{:x}", c.u16());
                        let serial = parse_job_id(&junk).and_then(|jid| {
                            w.jobs
                                .iter()
                                .find(|(id, _)| *id == jid)
                                .map(|(_, s)| s.serial)
                        });
                        (junk, serial, (NOW_MS / 1000) as u32)
                    }
                };
                let en2_len = w.config.extranonce.extranonce2();
                let en2_len = match c.u8() % 8 {
                    0 => en2_len - 1,
                    1 => en2_len + 1,
                    _ => en2_len,
                };
                let v = c.u8();
                let mut en2 = vec![0u8; en2_len];
                if let Some(last) = en2.last_mut() {
                    *last = v;
                }
                let t = c.u8();
                let ntime = if t == 0xff {
                    c.u32()
                } else {
                    ntime.wrapping_add_signed(i32::from(t as i8) * 8)
                };
                let nb = c.u8();
                let nonce = if nb & 0x80 != 0 {
                    c.u32()
                } else {
                    u32::from(nb)
                };
                let vb = c.u8();
                let version_bits = match vb % 4 {
                    0 | 1 => None,
                    2 => Some(format!("{:08x}", c.u32() & w.conn.session.version_mask().0)),
                    _ => Some(format!("{:x}", c.u32())),
                };
                let a = Accepted {
                    serial: serial.unwrap_or(u32::MAX),
                    worker,
                    extranonce2: sluice_fuzz::hex(&en2),
                    ntime: format!("{ntime:08x}"),
                    nonce: format!("{nonce:08x}"),
                    version_bits,
                };
                let line = submit_line(&id, &a, &job_id);
                let reply = w.line(line.as_bytes());
                if reply.is_some_and(|r| r["result"] == true) {
                    assert!(
                        serial.is_some(),
                        "a share accepted on an unknown job: {line}"
                    );
                    w.accepted.push(a);
                }
            }
            10 => {
                if w.accepted.is_empty() {
                    continue;
                }
                let a = w.accepted[usize::from(c.u8()) % w.accepted.len()].clone();
                let Some(job_id) = w.id_of(a.serial) else {
                    continue;
                };
                let id = w.request_id();
                let line = submit_line(&id, &a, &job_id.to_string());
                let reply = w.line(line.as_bytes());
                assert!(
                    reply.is_none_or(|r| r["result"] != true),
                    "an accepted share accepted again: {line}"
                );
            }
            11 => {
                let n = u64::from(c.u16());
                let ms = if op & 0x80 != 0 { n * 1000 } else { n };
                w.tick(ms);
            }
            12 => {
                if op & 0x80 != 0 {
                    w.prev = w.prev.wrapping_add(1);
                }
                let nbits = if op & 0x40 != 0 {
                    0x207f_ffff
                } else {
                    0x1d00_ffff
                };
                let spec = Spec {
                    serial: w.next_serial,
                    prev: w.prev,
                    nbits,
                };
                w.next_serial += 1;
                let job = w.push_spec(spec);
                if !w.conn.closed {
                    let mut out = Vec::new();
                    w.conn.session.push_job(&job, &mut out);
                    check_output(&out, None);
                }
            }
            13 => {
                let mask = w
                    .config
                    .version_mask
                    .within(sluice_core::units::VersionMask(c.u32()));
                let min = match c.u8() % 4 {
                    0 => w.config.min_difficulty,
                    1 => Difficulty::new(1e-12).expect("positive"),
                    2 => Difficulty::new(1e-9).expect("positive"),
                    _ => Difficulty::new(2f64.powi(-20)).expect("positive"),
                };
                let config = Arc::new(SessionConfig {
                    version_mask: mask,
                    min_difficulty: min,
                    start_difficulty: min,
                    ..(*w.config).clone()
                });
                w.config = Arc::clone(&config);
                if !w.conn.closed {
                    let mut out = Vec::new();
                    w.conn.session.apply_config(config, &mut out);
                    check_output(&out, None);
                    assert!(
                        mask.contains(w.conn.session.version_mask()),
                        "the mask narrowed"
                    );
                }
            }
            14 => {
                let Ok(saved) = w.conn.session.export(&w.book) else {
                    w.new_conn();
                    continue;
                };
                assert_eq!(
                    &saved.extranonce1[..],
                    w.conn.session.extranonce1().as_bytes()
                );
                for name in &saved.workers {
                    assert!(
                        w.conn.authorized.contains(name),
                        "a saved worker the session never authorized: {name:?}"
                    );
                }
                if op & 0x80 != 0 {
                    // Another engine: the same jobs under its own (new, increasing) ids.
                    let specs: Vec<Spec> = w.jobs.iter().map(|(_, s)| *s).collect();
                    w.book = JobBook::new(w.config.job_history);
                    w.jobs.clear();
                    w.next_id += 1000;
                    for spec in specs {
                        w.push_spec(spec);
                    }
                }
                let en1 = w.fresh_extranonce1();
                let sid = c.u64();
                w.conn = Conn {
                    session: Session::new(Arc::clone(&w.config), en1, sid, w.now),
                    closed: false,
                    authorized: saved.workers.iter().cloned().collect(),
                    saves: Vec::new(),
                };
                if op & 0x40 != 0 {
                    let id = w.request_id();
                    let line = configure_line(&id, &mut c);
                    w.line(line.as_bytes());
                }
                if let Err(e) = w.conn.session.resume(sid, &saved, &w.book) {
                    panic!("resuming a released session failed: {e}");
                }
                assert_eq!(
                    w.conn.session.extranonce1().as_bytes(),
                    &saved.extranonce1[..]
                );
                assert_eq!(w.conn.session.raw_session_id(), sid);
            }
            _ => {
                if op & 0x80 != 0 {
                    w.new_conn();
                } else {
                    let id = w.request_id();
                    let line = if op & 0x40 != 0 {
                        format!(
                            r#"{{"id":{id},"method":"mining.extranonce.subscribe","params":[]}}"#
                        )
                    } else {
                        format!(r#"{{"id":{id},"method":"mining.ping","params":[]}}"#)
                    };
                    w.line(line.as_bytes());
                }
            }
        }
    }
});
