//! Criterion benchmarks of a share's whole way through the session state machine: the submit line
//! parsed, worker and job looked up, the share validated and recorded, the answer written and the
//! share's event pushed, through `Session::handle_line` as a connection calls it.
//!
//! Run pinned to one core (another core may be busy):
//!
//! ```text
//! taskset -c 1 cargo bench --bench session_share
//! ```
//!
//! The job is built from the same 3,000-transaction template as `benches/share_validation.rs` (a
//! 12-level merkle branch, a 220-byte coinbase). The session negotiates version rolling, subscribes
//! and authorizes a regtest worker at a difficulty so low that every hash is a share, with vardiff
//! off, so every distinct share is accepted. Its shares keep one extranonce2 and roll nonce and
//! version bits, as an ASIC's do: the merkle root comes from the session's cache (filled by a share
//! submitted before the timing) and each share hashes its header. Every benchmark checks, outside
//! its timed part, that each line it timed got the expected answer. The figures are in
//! `BENCHMARKS.md`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoin::hashes::{sha256d, Hash};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};
use sluice::chain::{BlockTemplate, CoinbaseConfig, Job, JobBook, Payout};
use sluice::session::{Context, Event, Flow, Session, SessionConfig, SessionLimits};
use sluice::units::{Difficulty, Extranonce1, ExtranonceSizes, JobId};

/// Transactions in the template, besides the coinbase.
const TEMPLATE_TXS: usize = 3_000;
/// The coinbase size the design's target is stated for.
const COINBASE_SIZE: usize = 220;
const EXTRANONCE1_SIZE: usize = 4;
const EXTRANONCE2_SIZE: usize = 8;
const REGTEST_ADDRESS: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";
/// A mainnet-like compact target: no share here can be a block.
const NBITS_HEX: &str = "17030ecd";
const CURTIME: u32 = 1_764_115_200;
/// The session's clock: 30 s after the template's time.
const NOW_MS: u64 = (CURTIME as u64 + 30) * 1000;
const JOB_ID: JobId = JobId(0x1a2b);
/// The version-rolling mask most ASICs negotiate (BIP310).
const VERSION_MASK: u32 = 0x1fff_e000;
/// Distinct shares one session accepts in the timed part before the bench starts a new session
/// (outside it): below `DuplicateLimits`' default bound of 4,096 shares per job, with room for the
/// share that fills the merkle cache.
const SHARES_PER_SESSION: usize = 4_000;
/// Duplicates submitted to one session between two clearings of its output.
const DUPLICATES_PER_BATCH: usize = 4_096;

/// splitmix64: a small deterministic generator, so that every run benches the same bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn hex(bytes: &[u8]) -> String {
    sluice::hex::encode(bytes)
}

/// A hash as nodes print it (byte-reversed).
fn display_hex(internal: &[u8; 32]) -> String {
    let mut b = *internal;
    b.reverse();
    hex(&b)
}

/// A `getblocktemplate` result with `TEMPLATE_TXS` transactions, shaped like Bitcoin Core's (the
/// same as `benches/share_validation.rs`'s).
fn template_json() -> Vec<u8> {
    let mut rng = Rng(0x5eed);
    let transactions: Vec<Value> = (0..TEMPLATE_TXS)
        .map(|i| {
            let len = 200 + (rng.next() % 101) as usize;
            let data = rng.bytes(len);
            let txid = sha256d::Hash::hash(&data).to_byte_array();
            let mut wtxid_input = data.clone();
            wtxid_input.push(0x01);
            let wtxid = sha256d::Hash::hash(&wtxid_input).to_byte_array();
            json!({
                "data": hex(&data),
                "txid": display_hex(&txid),
                "hash": display_hex(&wtxid),
                "depends": if i % 10 == 9 { json!([i]) } else { json!([]) },
                "fee": 1_000 + rng.next() % 50_000,
                "sigops": 1 + rng.next() % 8,
                "weight": 4 * len as u64 - 3 * (rng.next() % 100),
            })
        })
        .collect();
    let prev: [u8; 32] = rng.bytes(32).try_into().expect("32 bytes");
    let commitment = format!("6a24aa21a9ed{}", hex(&rng.bytes(32)));
    let template = json!({
        "capabilities": ["proposal"],
        "version": 0x2000_0000u32,
        "rules": ["csv", "!segwit", "taproot"],
        "vbavailable": {},
        "vbrequired": 0,
        "previousblockhash": format!("00000000000000000001{}", &display_hex(&prev)[20..]),
        "transactions": transactions,
        "coinbaseaux": {},
        "coinbasevalue": 312_500_000u64 + 12_345_678,
        "longpollid": format!("{}1234", display_hex(&prev)),
        "target": "0000000000000000000307a40000000000000000000000000000000000000000",
        "mintime": CURTIME - 3_600,
        "mutable": ["time", "transactions", "prevblock"],
        "noncerange": "00000000ffffffff",
        "sigoplimit": 80_000,
        "sizelimit": 4_000_000,
        "weightlimit": 4_000_000,
        "curtime": CURTIME,
        "bits": NBITS_HEX,
        "height": 925_000,
        "default_witness_commitment": commitment,
    });
    serde_json::to_vec(&template).expect("JSON")
}

fn coinbase_config(tag_len: usize) -> CoinbaseConfig {
    CoinbaseConfig {
        payouts: vec![
            Payout::to_address(REGTEST_ADDRESS, bitcoin::Network::Regtest, 1)
                .expect("regtest address"),
        ],
        tag: vec![b's'; tag_len],
        extranonce: ExtranonceSizes::new(EXTRANONCE1_SIZE, EXTRANONCE2_SIZE).expect("sizes"),
        tx_version: 1,
    }
}

/// The pool's coinbase config, with the tag sized so that the coinbase is `COINBASE_SIZE` bytes.
fn sized_coinbase_config(template: &BlockTemplate) -> CoinbaseConfig {
    let untagged = template.job_parts(&coinbase_config(0)).expect("job parts");
    let size = untagged.coinb1.len() + EXTRANONCE1_SIZE + EXTRANONCE2_SIZE + untagged.coinb2.len();
    // A tag of n bytes (n <= 75) adds a one-byte push and its n bytes.
    let tag_len = COINBASE_SIZE - size - 1;
    assert!((1..=75).contains(&tag_len), "tag of {tag_len} bytes");
    coinbase_config(tag_len)
}

struct Fixture {
    config: Arc<SessionConfig>,
    book: JobBook,
    extranonce1: Extranonce1,
}

fn fixture() -> Fixture {
    let template = BlockTemplate::from_json(&template_json()).expect("template");
    let coinbase = sized_coinbase_config(&template);
    let job = Job::new(
        JOB_ID,
        template.job_parts(&coinbase).expect("job parts"),
        true,
    )
    .expect("job");
    assert_eq!(job.transaction_count(), TEMPLATE_TXS + 1);
    let tiny = Difficulty::new(1e-12).expect("difficulty");
    let config = SessionConfig {
        extranonce: ExtranonceSizes::new(EXTRANONCE1_SIZE, EXTRANONCE2_SIZE).expect("sizes"),
        version_mask: VERSION_MASK,
        start_difficulty: tiny,
        min_difficulty: tiny,
        vardiff: None,
        limits: SessionLimits {
            // The duplicate bench rejects every line; the session must not count towards closing.
            max_invalid_streak: u32::MAX,
            ..SessionLimits::default()
        },
        ..SessionConfig::new(bitcoin::Network::Regtest)
    };
    let mut book = JobBook::new(config.job_history);
    book.push(Arc::new(job));
    Fixture {
        config: Arc::new(config),
        book,
        extranonce1: Extranonce1::from_counter(0x0a0b_0c0d, EXTRANONCE1_SIZE).expect("en1"),
    }
}

/// `SHARES_PER_SESSION + 1` distinct submit lines for the job, as an ASIC sends them (six
/// parameters): one extranonce2, nonce and version bits rolled, ids counting up.
fn submit_lines() -> Vec<Vec<u8>> {
    let mut rng = Rng(0xc0ffee);
    (0..=SHARES_PER_SESSION)
        .map(|i| {
            let nonce = rng.next() as u32;
            let version_bits = (rng.next() as u32) & VERSION_MASK;
            format!(
                r#"{{"id":{},"method":"mining.submit","params":["{REGTEST_ADDRESS}.rig","{}","{:016x}","{CURTIME:08x}","{nonce:08x}","{version_bits:08x}"]}}"#,
                100 + i,
                JOB_ID,
                7u64,
            )
            .into_bytes()
        })
        .collect()
}

fn lines(out: &[u8]) -> Vec<Value> {
    out.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("JSON line"))
        .collect()
}

/// A session that has negotiated version rolling, subscribed and authorized, and been sent the job;
/// its output and events are cleared.
fn session(f: &Fixture, out: &mut Vec<u8>, events: &mut Vec<Event>) -> Session {
    let mut session = Session::new(Arc::clone(&f.config), f.extranonce1, 0x0a0b_0c0d, NOW_MS);
    let ctx = Context {
        book: &f.book,
        now_ms: NOW_MS,
    };
    let handshake = [
        r#"{"id":1,"method":"mining.configure","params":[["version-rolling"],{"version-rolling.mask":"1fffe000","version-rolling.min-bit-count":2}]}"#.to_string(),
        r#"{"id":2,"method":"mining.subscribe","params":["bench/1.0"]}"#.to_string(),
        format!(r#"{{"id":3,"method":"mining.authorize","params":["{REGTEST_ADDRESS}.rig","x"]}}"#),
    ];
    out.clear();
    for line in &handshake {
        let flow = session.handle_line(line.as_bytes(), &ctx, out, events);
        assert_eq!(flow, Flow::Continue);
    }
    let answers = lines(out);
    assert_eq!(answers[0]["result"]["version-rolling"], true, "{answers:?}");
    assert_eq!(
        answers.last().expect("answers")["method"],
        "mining.notify",
        "{answers:?}"
    );
    assert!(session.is_authorized());
    out.clear();
    events.clear();
    session
}

/// Submits `line`, and returns the answer.
fn submit_once(
    session: &mut Session,
    f: &Fixture,
    line: &[u8],
    out: &mut Vec<u8>,
    events: &mut Vec<Event>,
) -> Value {
    out.clear();
    events.clear();
    let ctx = Context {
        book: &f.book,
        now_ms: NOW_MS,
    };
    assert_eq!(session.handle_line(line, &ctx, out, events), Flow::Continue);
    let mut answers = lines(out);
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(events.len(), 1, "one share event");
    out.clear();
    events.clear();
    answers.pop().expect("one answer")
}

/// Answers in `out` with `result: true`, checked to be all of them.
fn count_true(out: &[u8]) -> usize {
    let answers = lines(out);
    assert!(
        answers.iter().all(|a| a["result"] == true),
        "{:?}",
        answers.iter().find(|a| a["result"] != true)
    );
    answers.len()
}

fn bench_session(c: &mut Criterion) {
    let f = fixture();
    let submits = submit_lines();
    let warm = &submits[SHARES_PER_SESSION];
    let mut out = Vec::new();
    let mut events = Vec::new();

    // The shares are accepted, and a resubmitted one is a duplicate (code 22).
    {
        let mut s = session(&f, &mut out, &mut events);
        let a = submit_once(&mut s, &f, warm, &mut out, &mut events);
        assert_eq!(a["result"], true, "{a}");
        let a = submit_once(&mut s, &f, &submits[0], &mut out, &mut events);
        assert_eq!(a["result"], true, "{a}");
        let a = submit_once(&mut s, &f, &submits[0], &mut out, &mut events);
        assert_eq!(a["result"], Value::Null, "{a}");
        assert_eq!(a["error"][0], 22, "{a}");
        assert_eq!(s.accepted(), 2);
    }

    let mut group = c.benchmark_group("session");

    // Each iteration one distinct share, accepted: the line's answer and share event are kept
    // (in buffers sized beforehand) and checked after the timed part.
    group.bench_function("submit_accepted", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut done = 0u64;
            while done < iters {
                let n = (iters - done).min(SHARES_PER_SESSION as u64) as usize;
                let mut out = Vec::with_capacity(64 * n);
                let mut events = Vec::with_capacity(n);
                let mut s = session(&f, &mut out, &mut events);
                let a = submit_once(&mut s, &f, warm, &mut out, &mut events);
                assert_eq!(a["result"], true, "{a}");
                let ctx = Context {
                    book: &f.book,
                    now_ms: NOW_MS,
                };
                let start = Instant::now();
                for line in &submits[..n] {
                    black_box(s.handle_line(black_box(line), &ctx, &mut out, &mut events));
                }
                elapsed += start.elapsed();
                assert_eq!(count_true(&out), n, "every share accepted");
                assert_eq!(events.len(), n, "one event a share");
                assert_eq!(s.accepted(), n as u64 + 1);
                done += n as u64;
            }
            elapsed
        })
    });

    // Each iteration the same accepted share again: hashed, found in the duplicate set, refused
    // with code 22.
    group.bench_function("submit_duplicate", |b| {
        let mut out = Vec::with_capacity(128 * DUPLICATES_PER_BATCH);
        let mut events = Vec::with_capacity(DUPLICATES_PER_BATCH);
        let mut s = session(&f, &mut out, &mut events);
        let a = submit_once(&mut s, &f, warm, &mut out, &mut events);
        assert_eq!(a["result"], true, "{a}");
        let line = &submits[0];
        let a = submit_once(&mut s, &f, line, &mut out, &mut events);
        assert_eq!(a["result"], true, "{a}");
        let rejected = s.rejected();
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut done = 0u64;
            while done < iters {
                let n = (iters - done).min(DUPLICATES_PER_BATCH as u64) as usize;
                out.clear();
                events.clear();
                let ctx = Context {
                    book: &f.book,
                    now_ms: NOW_MS,
                };
                let start = Instant::now();
                for _ in 0..n {
                    black_box(s.handle_line(black_box(line), &ctx, &mut out, &mut events));
                }
                elapsed += start.elapsed();
                assert_eq!(events.len(), n, "one event a share");
                done += n as u64;
            }
            elapsed
        });
        let answers = lines(&out);
        assert!(
            answers.iter().all(|a| a["error"][0] == 22),
            "all duplicates"
        );
        assert_eq!(s.accepted(), 2, "no duplicate accepted");
        assert!(s.rejected() > rejected);
    });
    group.finish();
}

criterion_group!(benches, bench_session);
criterion_main!(benches);
