//! The session state machine, driven line by line with no socket.

use super::test_fixture::{job, ADDRESS, NOW_MS};
use super::*;
use serde_json::{json, Value};
use sluice_core::hash::header_hash;
use sluice_core::units::HeaderHash;

struct Harness {
    session: Session,
    book: JobBook,
    now: u64,
    events: Vec<Event>,
}

impl Harness {
    fn new(config: SessionConfig) -> Harness {
        let mut book = JobBook::new(config.job_history);
        book.push(job(1, 0xaa, 0x1d00_ffff));
        Harness {
            session: Session::new(
                Arc::new(config),
                Extranonce1::new(&[0, 0, 0, 42]).unwrap(),
                0xabc,
                NOW_MS,
            ),
            book,
            now: NOW_MS,
            events: Vec::new(),
        }
    }

    fn default() -> Harness {
        Harness::new(SessionConfig::new(Network::Regtest))
    }

    fn send(&mut self, line: &str) -> (Vec<Value>, Flow) {
        let mut out = Vec::new();
        let ctx = Context {
            book: &self.book,
            now_ms: self.now,
            policies: None,
        };
        let flow = self
            .session
            .handle_line(line.as_bytes(), &ctx, &mut out, &mut self.events);
        (lines(&out), flow)
    }

    fn push(&mut self, job: Arc<Job>) -> Vec<Value> {
        self.book.push(Arc::clone(&job));
        let mut out = Vec::new();
        self.session.push_job(&job, &mut out);
        lines(&out)
    }

    fn handshake(&mut self) -> Vec<Value> {
        let (r, _) = self.send(r#"{"id":1,"method":"mining.subscribe","params":["test/1.0"]}"#);
        assert_eq!(r[0]["result"][1], "0000002a");
        let (r, _) = self.send(&format!(
            r#"{{"id":2,"method":"mining.authorize","params":["{ADDRESS}.rig","x"]}}"#
        ));
        assert_eq!(r[0]["result"], true, "{r:?}");
        r
    }

    /// A share for the current job: scans nonces until one meets `target` (or, with `meets = false`,
    /// one that does not).
    fn share(&self, job: &Job, extranonce2: u32, target: Target, meets: bool) -> String {
        let en2 = extranonce2.to_be_bytes();
        let root = job.merkle_root(self.session.extranonce1().as_bytes(), &en2);
        for nonce in 0u32.. {
            let header = job.header(job.version, &root, job.ntime, nonce);
            if target.is_met_by(&HeaderHash(header_hash(&header))) == meets {
                return format!(
                    r#"{{"id":9,"method":"mining.submit","params":["{ADDRESS}.rig","{}","{}","{:08x}","{nonce:08x}"]}}"#,
                    job.id,
                    sluice_core::hex::encode(&en2),
                    job.ntime
                );
            }
        }
        unreachable!()
    }
}

/// A config whose start difficulty is so low that any hash is a share.
fn tiny() -> SessionConfig {
    SessionConfig {
        start_difficulty: Difficulty::new(1e-12).unwrap(),
        min_difficulty: Difficulty::new(1e-12).unwrap(),
        ..SessionConfig::new(Network::Regtest)
    }
}

fn lines(out: &[u8]) -> Vec<Value> {
    out.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

fn error_code(v: &Value) -> i64 {
    v["error"][0]
        .as_i64()
        .unwrap_or_else(|| panic!("no error in {v}"))
}

#[test]
fn handshake_sends_difficulty_then_work() {
    let mut h = Harness::default();
    let r = h.handshake();
    assert_eq!(r[1]["method"], "mining.set_difficulty");
    assert_eq!(r[1]["params"][0].as_f64(), Some(1.0));
    assert_eq!(r[2]["method"], "mining.notify");
    assert_eq!(r[2]["params"][0], "1");
    assert_eq!(h.session.user_agent(), Some("test/1.0"));
}

#[test]
fn methods_before_subscribe_and_unknown_methods() {
    let mut h = Harness::default();
    let (r, _) = h.send(&format!(
        r#"{{"id":1,"method":"mining.authorize","params":["{ADDRESS}","x"]}}"#
    ));
    assert_eq!(error_code(&r[0]), 25);
    let (r, _) = h.send(
        r#"{"id":2,"method":"mining.submit","params":["w","1","00000000","00000000","00000000"]}"#,
    );
    assert_eq!(error_code(&r[0]), 25);
    let (r, _) = h.send(r#"{"id":3,"method":"mining.ping","params":[]}"#);
    assert_eq!((error_code(&r[0]), r[0]["id"].clone()), (20, json!(3)));
    let (r, _) = h.send("{not json");
    assert_eq!((error_code(&r[0]), r[0]["id"].clone()), (20, Value::Null));
    let (r, _) = h.send(r#"{"id":4,"method":"mining.extranonce.subscribe","params":[]}"#);
    assert_eq!(r[0]["result"], true);
}

#[test]
fn every_submit_error_code() {
    let mut h = Harness::default();
    h.handshake();
    let job1 = Arc::clone(h.book.current().unwrap());
    let easy = Difficulty::new(1e-12).unwrap().target();

    let (r, _) = h.send(
        &h.share(&job1, 1, Target::MAX, true)
            .replace(".rig\"", ".other\""),
    );
    assert_eq!(error_code(&r[0]), 24, "unknown worker");
    let (r, _) = h.send(
        &h.share(&job1, 1, Target::MAX, true)
            .replace(r#""1","#, r#""77","#),
    );
    assert_eq!(error_code(&r[0]), 21, "unknown job");
    let low = h.share(&job1, 1, Difficulty::ONE.target(), false);
    let (r, _) = h.send(&low);
    assert_eq!(error_code(&r[0]), 23, "low difficulty");
    // Difficulty 1 on a test job: find a share that meets it (about 2^32 tries) is too slow, so use
    // a session whose difficulty is tiny.
    let mut h = Harness::new(tiny());
    h.handshake();
    let good = h.share(&job1, 1, easy, true);
    let (r, _) = h.send(&good);
    assert_eq!(r[0]["result"], true, "{r:?}");
    let (r, _) = h.send(&good);
    assert_eq!(error_code(&r[0]), 22, "duplicate");
    let r = h.push(job(2, 0xbb, 0x1d00_ffff));
    assert_eq!(r[0]["params"][0], "2");
    let (r, _) = h.send(&h.share(&job1, 2, easy, true));
    assert_eq!(error_code(&r[0]), 21, "stale");
    assert_eq!(r[0]["error"][1], "Stale share");
    let records: Vec<_> = h
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Share(s) => Some(s.result),
            _ => None,
        })
        .collect();
    assert_eq!(
        records,
        vec![Ok(()), Err(Reject::Duplicate), Err(Reject::Stale)]
    );
}

#[test]
fn new_difficulty_applies_to_new_jobs_only() {
    let config = SessionConfig {
        vardiff: None,
        ..tiny()
    };
    let mut h = Harness::new(config);
    h.handshake();
    let job1 = Arc::clone(h.book.current().unwrap());
    // The miner asks for more: the difficulty changes, but job 1 keeps its own.
    let (r, _) = h.send(r#"{"id":5,"method":"mining.suggest_difficulty","params":[0.001]}"#);
    assert_eq!(r[0]["result"], true);
    assert_eq!(r[1]["params"][0].as_f64(), Some(0.001));
    let below_new = h.share(&job1, 3, Difficulty::new(0.001).unwrap().target(), false);
    let (r, _) = h.send(&below_new);
    assert_eq!(
        r[0]["result"], true,
        "job 1 is judged at the difficulty it was sent with"
    );
    let r = h.push(job(2, 0xaa, 0x1d00_ffff));
    assert_eq!(r.len(), 1, "difficulty was already sent");
    let job2 = Arc::clone(h.book.current().unwrap());
    let (r, _) = h.send(&h.share(&job2, 3, Difficulty::new(0.001).unwrap().target(), false));
    assert_eq!(
        error_code(&r[0]),
        23,
        "job 2 is judged at the new difficulty"
    );
    let shares: Vec<_> = h
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Share(s) => Some(s.assigned_difficulty.get()),
            _ => None,
        })
        .collect();
    assert_eq!(shares, vec![1e-12, 0.001]);
}

#[test]
fn password_difficulty_and_configure() {
    let mut h = Harness::default();
    let (r, _) = h.send(r#"{"id":1,"method":"mining.configure","params":[["version-rolling","minimum-difficulty"],{"version-rolling.mask":"ffffffff","version-rolling.min-bit-count":2,"minimum-difficulty.value":8}]}"#);
    assert_eq!(r[0]["result"]["version-rolling"], true);
    assert_eq!(r[0]["result"]["version-rolling.mask"], "1fffe000");
    assert_eq!(r[0]["result"]["minimum-difficulty"], true);
    assert_eq!(h.session.version_mask(), VersionMask(0x1fff_e000));
    h.send(r#"{"id":2,"method":"mining.subscribe","params":[]}"#);
    let (r, _) = h.send(&format!(
        r#"{{"id":3,"method":"mining.authorize","params":["{ADDRESS}.a","d=64"]}}"#
    ));
    assert_eq!(r[1]["params"][0].as_f64(), Some(64.0));
    assert_eq!(h.session.difficulty().get(), 64.0);
    // Too many version bits asked as a minimum: refused.
    let mut h = Harness::default();
    let (r, _) = h.send(r#"{"id":1,"method":"mining.configure","params":[["version-rolling"],{"version-rolling.mask":"00006000","version-rolling.min-bit-count":4}]}"#);
    assert_eq!(r[0]["result"]["version-rolling"], false);
    assert_eq!(h.session.version_mask(), VersionMask(0));
}

#[test]
fn several_workers_and_their_limit() {
    let mut config = SessionConfig::new(Network::Regtest);
    config.limits.max_workers = 2;
    let mut h = Harness::new(config);
    h.handshake();
    let (r, _) = h.send(&format!(
        r#"{{"id":3,"method":"mining.authorize","params":["{ADDRESS}.two",""]}}"#
    ));
    assert_eq!(r[0]["result"], true);
    assert_eq!(r.len(), 1, "work is sent once, on the first worker");
    let (r, _) = h.send(&format!(
        r#"{{"id":4,"method":"mining.authorize","params":["{ADDRESS}.three",""]}}"#
    ));
    assert_eq!(error_code(&r[0]), 24);
    let (r, _) = h.send(&format!(
        r#"{{"id":5,"method":"mining.authorize","params":["{ADDRESS}.two",""]}}"#
    ));
    assert_eq!(
        r[0]["result"], true,
        "re-authorizing a known worker is fine"
    );
    assert_eq!(h.session.workers().len(), 2);
}

#[test]
fn failed_authorize_backs_off_then_disconnects() {
    let mut config = SessionConfig::new(Network::Regtest);
    config.limits.max_failed_authorize = 3;
    let mut h = Harness::new(config);
    h.send(r#"{"id":1,"method":"mining.subscribe","params":[]}"#);
    let bad = r#"{"id":2,"method":"mining.authorize","params":["not-an-address","x"]}"#;
    let (r, flow) = h.send(bad);
    assert_eq!((error_code(&r[0]), flow), (24, Flow::Continue));
    // Within the one-second backoff even a good name is refused.
    let good = format!(r#"{{"id":3,"method":"mining.authorize","params":["{ADDRESS}","x"]}}"#);
    h.now += 999;
    let (r, _) = h.send(&good);
    assert_eq!(
        r[0]["error"][1],
        "Too many failed authorizations; retry later"
    );
    h.now += 1;
    let (_, flow) = h.send(bad);
    assert_eq!(flow, Flow::Continue);
    h.now += 2000;
    let (_, flow) = h.send(bad);
    assert_eq!(
        flow,
        Flow::Close(CloseReason::FailedAuthorize),
        "the third failure closes"
    );
}

#[test]
fn invalid_streak_at_its_edge() {
    let mut config = SessionConfig::new(Network::Regtest);
    config.limits.max_invalid_streak = 3;
    let mut h = Harness::new(config);
    h.handshake();
    let job1 = Arc::clone(h.book.current().unwrap());
    let low = h.share(&job1, 1, Difficulty::ONE.target(), false);
    assert_eq!(h.send(&low).1, Flow::Continue);
    assert_eq!(h.send("garbage").1, Flow::Continue);
    assert_eq!(h.send(&low).1, Flow::Close(CloseReason::InvalidStreak));
}

#[test]
fn stale_shares_do_not_count_toward_the_streak() {
    let mut config = tiny();
    config.limits.max_invalid_streak = 2;
    let mut h = Harness::new(config);
    h.handshake();
    let job1 = Arc::clone(h.book.current().unwrap());
    h.push(job(2, 0xbb, 0x1d00_ffff));
    for en2 in 0..5 {
        let (r, flow) = h.send(&h.share(&job1, en2, Target::MAX, true));
        assert_eq!((error_code(&r[0]), flow), (21, Flow::Continue));
    }
}

#[test]
fn timeouts_at_their_edges() {
    let limits = SessionLimits::default();
    let mut h = Harness::default();
    let mut events = Vec::new();
    assert_eq!(
        h.session
            .tick(NOW_MS + limits.unauthenticated_timeout_ms - 1, &mut events),
        Flow::Continue
    );
    assert_eq!(
        h.session
            .tick(NOW_MS + limits.unauthenticated_timeout_ms, &mut events),
        Flow::Close(CloseReason::UnauthenticatedTimeout)
    );
    let mut h = Harness::default();
    h.handshake();
    assert_eq!(
        h.session
            .tick(NOW_MS + limits.unauthenticated_timeout_ms, &mut events),
        Flow::Continue
    );
    assert_eq!(
        h.session
            .tick(NOW_MS + limits.idle_timeout_ms - 1, &mut events),
        Flow::Continue
    );
    assert_eq!(
        h.session.tick(NOW_MS + limits.idle_timeout_ms, &mut events),
        Flow::Close(CloseReason::IdleTimeout)
    );
}

#[test]
fn blocks_are_reported_with_what_assembly_needs() {
    let mut h = Harness::new(tiny());
    let easy_job = job(2, 0xaa, 0x207f_ffff);
    h.book.push(Arc::clone(&easy_job));
    h.handshake();
    let line = h.share(&easy_job, 5, easy_job.network_target, true);
    let (r, _) = h.send(&line);
    assert_eq!(r[0]["result"], true);
    let block = h
        .events
        .iter()
        .find_map(|e| match e {
            Event::Block(b) => Some(b),
            _ => None,
        })
        .expect("a block event");
    assert_eq!(&*block.worker, &*format!("{ADDRESS}.rig"));
    let raw = block.assemble();
    assert_eq!(&raw[..80], &block.header[..]);
    assert_eq!(HeaderHash(header_hash(&block.header)), block.hash);
}

/// A simulated miner with a fixed hashrate, mining real hashes against the session's difficulty in
/// simulated time: vardiff must bring it near 18 shares a minute from far too low and far too high.
#[test]
fn vardiff_converges_through_the_session() {
    // 200 hashes a (simulated) second: the ideal difficulty is 200 * 60 / 18 / 2^32.
    let hashrate = 200.0;
    let ideal = hashrate * 60.0 / 18.0 / 4_294_967_296.0;
    for start in [ideal / 100.0, ideal * 100.0] {
        let mut config = tiny();
        config.start_difficulty = Difficulty::new(start).unwrap();
        let mut h = Harness::new(config);
        h.handshake();
        let mut en2 = 0u32;
        let mut job_id = 1;
        let mut nonce_time = 0.0f64;
        let end = NOW_MS + 30 * 60_000;
        while h.now < end {
            // Fresh work every 30 s (and so the new difficulty applies).
            if (h.now - NOW_MS) / 30_000 >= job_id {
                job_id += 1;
                h.push(job(job_id, 0xaa, 0x1d00_ffff));
            }
            let current = Arc::clone(h.book.current().unwrap());
            let target = h.session.sent.back().unwrap().target;
            en2 += 1;
            let root = current.merkle_root(h.session.extranonce1().as_bytes(), &en2.to_be_bytes());
            // Hash until a share is found or a simulated second passes.
            let mut found = None;
            for nonce in 0..hashrate as u32 {
                let header = current.header(current.version, &root, current.ntime, nonce);
                nonce_time += 1000.0 / hashrate;
                if target.is_met_by(&HeaderHash(header_hash(&header))) {
                    found = Some(nonce);
                    break;
                }
            }
            h.now = NOW_MS + nonce_time as u64;
            let mut events = Vec::new();
            let mut out = Vec::new();
            h.session.tick(h.now, &mut events);
            if let Some(nonce) = found {
                let line = format!(
                    r#"{{"id":9,"method":"mining.submit","params":["{ADDRESS}.rig","{}","{}","{:08x}","{nonce:08x}"]}}"#,
                    current.id,
                    sluice_core::hex::encode(&en2.to_be_bytes()),
                    current.ntime
                );
                let ctx = Context {
                    book: &h.book,
                    now_ms: h.now,
                    policies: None,
                };
                h.session
                    .handle_line(line.as_bytes(), &ctx, &mut out, &mut events);
                assert_eq!(lines(&out)[0]["result"], true);
            }
        }
        let d = h.session.difficulty().get();
        assert!(
            (d / ideal - 1.0).abs() < 0.5,
            "from {start}: {d} vs ideal {ideal}"
        );
    }
}

#[test]
fn refusals_before_a_worker_is_known_carry_no_name() {
    let mut h = Harness::default();
    let name = "x".repeat(4000);
    let submit = format!(
        r#"{{"id":2,"method":"mining.submit","params":["{name}","1","00000000","00000000","00000000"]}}"#
    );
    let (r, _) = h.send(&submit);
    assert_eq!(error_code(&r[0]), 25);
    h.handshake();
    let (r, _) = h.send(&submit);
    assert_eq!(error_code(&r[0]), 24);
    let job1 = Arc::clone(h.book.current().unwrap());
    let (r, _) = h.send(
        &h.share(&job1, 1, Target::MAX, true)
            .replace(r#""1","#, r#""77","#),
    );
    assert_eq!(error_code(&r[0]), 21);
    let refused: Vec<_> = h
        .events
        .iter()
        .map(|e| match e {
            Event::Refused(r) => Some(*r),
            Event::Share(_) => panic!("a refusal reached the share log: {e:?}"),
            _ => None,
        })
        .collect::<Vec<_>>()
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(
        refused,
        [
            Reject::NotSubscribed,
            Reject::UnauthorizedWorker,
            Reject::JobNotFound
        ]
    );
}

#[test]
fn every_refused_request_counts_in_the_invalid_streak() {
    let config = SessionConfig {
        limits: SessionLimits {
            max_invalid_streak: 4,
            ..SessionLimits::default()
        },
        ..SessionConfig::new(Network::Regtest)
    };
    let mut h = Harness::new(config);
    let authorize = format!(r#"{{"id":1,"method":"mining.authorize","params":["{ADDRESS}","x"]}}"#);
    assert_eq!(h.send(&authorize).1, Flow::Continue, "before subscribe");
    assert_eq!(
        h.send(r#"{"id":2,"method":"mining.ping","params":[]}"#).1,
        Flow::Continue
    );
    h.send(r#"{"id":3,"method":"mining.subscribe","params":[]}"#);
    assert_eq!(
        h.send(r#"{"id":4,"method":"mining.subscribe","params":[]}"#)
            .1,
        Flow::Continue,
        "subscribing twice"
    );
    assert_eq!(
        h.send(r#"{"id":5,"method":"mining.ping","params":[]}"#).1,
        Flow::Close(CloseReason::InvalidStreak)
    );
}

#[test]
fn suggestions_are_rate_limited_at_their_edge() {
    let config = SessionConfig {
        limits: SessionLimits {
            max_suggestions_per_minute: 3,
            ..SessionLimits::default()
        },
        ..tiny()
    };
    let mut h = Harness::new(config);
    h.handshake();
    for n in 1..=3 {
        let (r, _) = h.send(&format!(
            r#"{{"id":{n},"method":"mining.suggest_difficulty","params":[{n}]}}"#
        ));
        assert_eq!(r[0]["result"], true, "suggestion {n}");
    }
    let (r, _) = h.send(r#"{"id":4,"method":"mining.suggest_difficulty","params":[0.5]}"#);
    assert_eq!(error_code(&r[0]), 20, "the fourth in one minute");
    assert_eq!(h.session.difficulty().get(), 3.0);
    h.now += 60_000;
    let (r, _) = h.send(r#"{"id":5,"method":"mining.suggest_difficulty","params":[4]}"#);
    assert_eq!(r[0]["result"], true, "a new minute");
}

#[test]
fn a_suggestion_cannot_hold_the_difficulty_below_vardiffs_choice() {
    let mut h = Harness::new(tiny());
    h.handshake();
    let job1 = Arc::clone(h.book.current().unwrap());
    // Shares far faster than vardiff's target: it raises the difficulty.
    let mut en2 = 0;
    while h.session.difficulty().get() == 1e-12 {
        en2 += 1;
        let target = h.session.difficulty().target();
        let share = h.share(&job1, en2, target, true);
        h.send(&share);
        h.now += 100;
        assert!(en2 < 1000, "vardiff never moved");
    }
    let chosen = h.session.difficulty();
    let (r, _) = h.send(r#"{"id":7,"method":"mining.suggest_difficulty","params":[1e-12]}"#);
    assert_eq!(r[0]["result"], true);
    assert_eq!(h.session.difficulty(), chosen, "not lowered");
    let higher = chosen.get() * 4.0;
    let (r, _) = h.send(&format!(
        r#"{{"id":8,"method":"mining.suggest_difficulty","params":[{higher}]}}"#
    ));
    assert_eq!(r[0]["result"], true);
    assert_eq!(h.session.difficulty().get(), higher, "raising is fine");
}

#[test]
fn saves_are_rate_limited_but_the_first_is_at_once() {
    let config = SessionConfig {
        vardiff: None,
        ..tiny()
    };
    let mut h = Harness::new(config);
    h.handshake();
    let saves = |h: &Harness| {
        h.events
            .iter()
            .filter(|e| matches!(e, Event::SessionChanged))
            .count()
    };
    assert_eq!(saves(&h), 1, "the first authorize saves");
    for n in 0..20 {
        h.send(&format!(
            r#"{{"id":{n},"method":"mining.suggest_difficulty","params":[0.{n}1]}}"#
        ));
    }
    assert_eq!(saves(&h), 1, "changes within the interval wait");
    h.now += SessionLimits::default().session_save_interval_ms;
    let mut events = Vec::new();
    h.session.tick(h.now, &mut events);
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::SessionChanged))
            .count(),
        1,
        "the tick saves what waited"
    );
    h.session.tick(h.now + 1, &mut events);
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::SessionChanged))
            .count(),
        1
    );
}

#[test]
fn a_narrowed_mask_is_announced_and_applies_to_work_sent_after_it() {
    let mut h = Harness::new(tiny());
    h.send(r#"{"id":1,"method":"mining.configure","params":[["version-rolling"],{"version-rolling.mask":"1fffe000","version-rolling.min-bit-count":2}]}"#);
    h.handshake();
    let job1 = Arc::clone(h.book.current().unwrap());
    let narrow = Arc::new(SessionConfig {
        version_mask: VersionMask(0x00ff_e000),
        ..(**h.session.config()).clone()
    });
    let mut out = Vec::new();
    h.session.apply_config(narrow, &mut out);
    let r = lines(&out);
    assert_eq!(r[0]["method"], "mining.set_version_mask", "{r:?}");
    assert_eq!(r[0]["params"][0], "00ffe000");
    assert_eq!(h.session.version_mask(), VersionMask(0x00ff_e000));
    // Any hash is a share at this difficulty: only the version bits decide.
    let rolled = |job: &Job, en2: u32, bits: u32| {
        let en2b = en2.to_be_bytes();
        format!(
            r#"{{"id":9,"method":"mining.submit","params":["{ADDRESS}.rig","{}","{}","{:08x}","00000000","{bits:08x}"]}}"#,
            job.id,
            sluice_core::hex::encode(&en2b),
            job.ntime
        )
    };
    // Job 1 was sent under the wide mask: a share rolling bit 28 on it is still judged.
    let (r, _) = h.send(&rolled(&job1, 1, 0x1000_0000));
    assert_eq!(r[0]["result"], true, "{r:?}");
    let r = h.push(job(2, 0xaa, 0x1d00_ffff));
    assert_eq!(r[0]["method"], "mining.notify");
    let job2 = Arc::clone(h.book.current().unwrap());
    let (r, _) = h.send(&rolled(&job2, 1, 0x1000_0000));
    assert_eq!(error_code(&r[0]), 20, "outside the new mask on new work");
    let (r, _) = h.send(&rolled(&job2, 2, 0x0010_0000));
    assert_eq!(r[0]["result"], true, "inside the new mask: {r:?}");
}

#[test]
fn a_resumed_session_keeps_its_shares_as_duplicates() {
    let mut h = Harness::new(tiny());
    h.handshake();
    let job1 = Arc::clone(h.book.current().unwrap());
    let share = h.share(&job1, 1, Target::MAX, true);
    assert_eq!(h.send(&share).0[0]["result"], true);
    let saved = h.session.export(&h.book).expect("fits");
    assert_eq!(saved.duplicates.len(), 1);

    let mut again = Harness::new(tiny());
    again.book = JobBook::new(16);
    // Another engine: the same job under another id.
    let same_job = job(40, 0xaa, 0x1d00_ffff);
    assert_eq!(same_job.fingerprint, job1.fingerprint);
    again.book.push(Arc::clone(&same_job));
    again.session.resume(0x1234, &saved, &again.book).unwrap();
    assert_eq!(again.session.session_id(), "0000000000001234");
    let (r, _) = again.send(r#"{"id":1,"method":"mining.subscribe","params":["x","1234"]}"#);
    assert_eq!(r[0]["result"][0][0][1], "0000000000001234");
    assert_eq!(r.last().unwrap()["method"], "mining.notify");
    let resubmit = share.replace(r#""1","#, &format!(r#""{}","#, same_job.id));
    let (r, _) = again.send(&resubmit);
    assert_eq!(error_code(&r[0]), 22, "still a duplicate after the resume");
    let other = again.share(&same_job, 2, Target::MAX, true);
    assert_eq!(again.send(&other).0[0]["result"], true);
}

#[test]
fn a_resumed_mask_narrowed_by_this_listener_is_announced_and_a_fresh_configure_wins() {
    let mut h = Harness::new(tiny());
    h.send(r#"{"id":1,"method":"mining.configure","params":[["version-rolling"],{"version-rolling.mask":"1fffe000","version-rolling.min-bit-count":2}]}"#);
    h.handshake();
    let saved = h.session.export(&h.book).unwrap();
    assert_eq!(saved.version_mask, VersionMask(0x1fff_e000));

    let narrow = SessionConfig {
        version_mask: VersionMask(0x00ff_e000),
        ..tiny()
    };
    let mut again = Harness::new(narrow.clone());
    again.session.resume(7, &saved, &again.book).unwrap();
    let (r, _) = again.send(r#"{"id":1,"method":"mining.subscribe","params":["x","7"]}"#);
    assert_eq!(r[1]["method"], "mining.set_version_mask", "{r:?}");
    assert_eq!(r[1]["params"][0], "00ffe000");

    // A miner that configured on the new connection keeps the mask it was answered.
    let mut third = Harness::new(narrow);
    third.send(r#"{"id":1,"method":"mining.configure","params":[["version-rolling"],{"version-rolling.mask":"0000e000","version-rolling.min-bit-count":2}]}"#);
    third.session.resume(7, &saved, &third.book).unwrap();
    assert_eq!(third.session.version_mask(), VersionMask(0x0000_e000));
    let (r, _) = third.send(r#"{"id":2,"method":"mining.subscribe","params":["x","7"]}"#);
    assert!(
        r.iter().all(|m| m["method"] != "mining.set_version_mask"),
        "{r:?}"
    );
}

#[test]
fn a_subscribe_naming_a_session_asks_to_resume_it_and_is_answered_once_resumed() {
    let mut h = Harness::new(tiny());
    h.handshake();
    let saved = h.session.export(&h.book).unwrap();

    let mut again = Harness::new(tiny());
    again.session.allow_resume();
    let (r, flow) =
        again.send(r#"{"id":5,"method":"mining.subscribe","params":["x/1","00000000000000AB"]}"#);
    assert_eq!(flow, Flow::Resume(0xab));
    assert!(r.is_empty(), "nothing answered before the lookup: {r:?}");
    again.session.resume(0xab, &saved, &again.book).unwrap();
    let mut out = Vec::new();
    let ctx = Context::new(&again.book, again.now);
    let flow = again
        .session
        .answer_subscribe(&ctx, &mut out, &mut again.events);
    assert_eq!(flow, Flow::Continue);
    let r = lines(&out);
    assert_eq!(r[0]["id"], 5, "the kept subscribe's id: {r:?}");
    assert_eq!(r[0]["result"][0][0][1], "00000000000000ab");
    assert_eq!(r[0]["result"][1], "0000002a", "the saved extranonce1");
    assert_eq!(
        r.last().unwrap()["method"],
        "mining.notify",
        "authorized: work at once"
    );
    assert_eq!(again.session.user_agent(), Some("x/1"));
    // Asked once: a second subscribe is refused as before.
    let (r, flow) = again.send(r#"{"id":6,"method":"mining.subscribe","params":["x","ab"]}"#);
    assert_eq!((error_code(&r[0]), flow), (20, Flow::Continue));
}

#[test]
fn a_session_not_found_gets_a_fresh_subscribe_and_a_bad_id_is_reported() {
    let mut h = Harness::default();
    h.session.allow_resume();
    let (_, flow) = h.send(r#"{"id":1,"method":"mining.subscribe","params":["x","99"]}"#);
    assert_eq!(flow, Flow::Resume(0x99));
    let mut out = Vec::new();
    let ctx = Context::new(&h.book, h.now);
    h.session.answer_subscribe(&ctx, &mut out, &mut h.events);
    let r = lines(&out);
    assert_eq!(r[0]["result"][0][0][1], "0000000000000abc", "its own id");

    let mut bad = Harness::default();
    bad.session.allow_resume();
    let (r, flow) = bad.send(r#"{"id":1,"method":"mining.subscribe","params":["x","not-hex"]}"#);
    assert_eq!(flow, Flow::Continue);
    assert_eq!(r[0]["result"][1], "0000002a", "answered at once");
    assert!(bad
        .events
        .iter()
        .any(|e| matches!(e, Event::UnknownSessionId)));

    // Without a store (no allow_resume) the id is ignored.
    let mut alone = Harness::default();
    let (r, flow) = alone.send(r#"{"id":1,"method":"mining.subscribe","params":["x","99"]}"#);
    assert_eq!(flow, Flow::Continue);
    assert_eq!(r[0]["result"][0][0][1], "0000000000000abc");
}

#[test]
fn the_first_workers_policy_applies_before_its_authorize_is_answered() {
    use policy::{Policy, PolicyScope, PolicySet};
    let base = Arc::new(SessionConfig::new(Network::Regtest));
    let set = PolicySet {
        generation: 1,
        policies: vec![(
            "vip".into(),
            Policy::parse(r#"{"start_difficulty":8}"#).unwrap(),
        )],
    };
    let scope = PolicyScope {
        set: &set,
        base: &base,
        port: 3333,
    };
    let mut h = Harness::default();
    h.send(r#"{"id":1,"method":"mining.subscribe","params":["x"]}"#);
    let mut out = Vec::new();
    let ctx = Context {
        book: &h.book,
        now_ms: h.now,
        policies: Some(&scope),
    };
    let line = format!(r#"{{"id":2,"method":"mining.authorize","params":["{ADDRESS}.rig","x"]}}"#);
    h.session
        .handle_line(line.as_bytes(), &ctx, &mut out, &mut h.events);
    let r = lines(&out);
    assert_eq!(r[0]["result"], true);
    assert_eq!(r[1]["method"], "mining.set_difficulty");
    assert_eq!(
        r[1]["params"][0], 8.0,
        "the first job carries the policy's difficulty"
    );
    assert_eq!(h.session.config().start_difficulty.get(), 8.0);
}
