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

mod fixture;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use fixture::*;
use serde_json::Value;
use sluice_core::chain::{BlockTemplate, Job, JobBook};
use sluice_core::units::{Difficulty, Extranonce1, ExtranonceSizes};
use sluice_stratum::session::{Context, Event, Flow, Session, SessionConfig, SessionLimits};

/// The session's clock: 30 s after the template's time.
const NOW_MS: u64 = (CURTIME as u64 + 30) * 1000;
/// Distinct shares one session accepts in the timed part before the bench starts a new session
/// (outside it): below `DuplicateLimits`' default bound of 4,096 shares per job, with room for the
/// share that fills the merkle cache.
const SHARES_PER_SESSION: usize = 4_000;
/// Duplicates submitted to one session between two clearings of its output.
const DUPLICATES_PER_BATCH: usize = 4_096;

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
        version_mask: sluice_core::units::VersionMask(VERSION_MASK),
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
        policies: None,
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
        policies: None,
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
                    policies: None,
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
                    policies: None,
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
