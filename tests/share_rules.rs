//! Each share rule of design section 4 through the public interface (a parsed `mining.submit` judged
//! by `SessionShares`), with the edge of each limit.

mod support;

use sluice::chain::{JobBook, Lookup};
use sluice::share::{
    DuplicateLimits, Reject, SessionShares, ShareFields, ShareRules, Undecodable, Verdict,
    MAX_NTIME_AHEAD_SECS,
};
use sluice::stratum::{parse, ErrorCode, Request};
use sluice::units::{Difficulty, Extranonce1, Target, VersionMask};
use sluice_stratum::share::RejectAnswer;
use sluice_stratum::share::ValidateSubmit;
use std::sync::Arc;
use support::*;

const EN1: [u8; 4] = [0xde, 0xad, 0xbe, 0xef];

fn rules(share_target: Target) -> ShareRules {
    ShareRules {
        version_mask: VersionMask(0x1fff_e000),
        now: CURTIME,
        share_target,
    }
}

fn submit_line(job: &str, en2: &str, ntime: &str, nonce: &str, version: Option<&str>) -> String {
    let v = version.map(|v| format!(r#","{v}""#)).unwrap_or_default();
    format!(
        r#"{{"id":1,"method":"mining.submit","params":["w","{job}","{en2}","{ntime}","{nonce}"{v}]}}"#
    )
}

fn judge(
    shares: &mut SessionShares,
    job: &sluice::chain::Job,
    stale: bool,
    line: &str,
    rules: &ShareRules,
) -> Verdict {
    let Request::Submit(submit) = parse(line.as_bytes()).unwrap().request else {
        panic!("not a submit")
    };
    shares.validate_submit(job, stale, &Extranonce1::new(&EN1).unwrap(), &submit, rules)
}

fn fresh() -> SessionShares {
    SessionShares::new(DuplicateLimits::default())
}

fn ntime_hex(t: u32) -> String {
    format!("{t:08x}")
}

#[test]
fn field_lengths_are_exact() {
    let job = template_job(1, PREV_A, HARD_BITS, CURTIME, 3);
    let r = rules(Target::MAX);
    let t = ntime_hex(CURTIME);
    let cases = [
        ("0000000000000001", t.as_str(), "00000000", Ok(())),
        (
            "00000000000000",
            t.as_str(),
            "00000000",
            Err(Reject::BadExtranonce2),
        ),
        (
            "000000000000000001",
            t.as_str(),
            "00000000",
            Err(Reject::BadExtranonce2),
        ),
        (
            "000000000000000g",
            t.as_str(),
            "00000000",
            Err(Reject::BadExtranonce2),
        ),
        (
            "0000000000000002",
            &t[1..],
            "00000000",
            Err(Reject::BadNtime),
        ),
        (
            "0000000000000002",
            &format!("0{t}"),
            "00000000",
            Err(Reject::BadNtime),
        ),
        (
            "0000000000000002",
            t.as_str(),
            "0000000",
            Err(Reject::BadNonce),
        ),
        (
            "0000000000000002",
            t.as_str(),
            "000000000",
            Err(Reject::BadNonce),
        ),
        (
            "0000000000000002",
            t.as_str(),
            "0000000x",
            Err(Reject::BadNonce),
        ),
        ("000000000000000A", &t.to_uppercase(), "ABCDEF01", Ok(())),
    ];
    for (en2, ntime, nonce, expected) in cases {
        let v = judge(
            &mut fresh(),
            &job,
            false,
            &submit_line("1", en2, ntime, nonce, None),
            &r,
        );
        assert_eq!(v.result(), expected, "{en2} {ntime} {nonce}");
        assert_eq!(v.proof().is_some(), expected.is_ok());
    }
}

#[test]
fn ntime_window_edges() {
    let job = template_job(1, PREV_A, HARD_BITS, CURTIME, 3);
    let r = rules(Target::MAX);
    let mintime = job.mintime;
    for (ntime, expected) in [
        (mintime, Ok(())),
        (mintime - 1, Err(Reject::NtimeTooOld)),
        (CURTIME + MAX_NTIME_AHEAD_SECS, Ok(())),
        (CURTIME + MAX_NTIME_AHEAD_SECS + 1, Err(Reject::NtimeTooNew)),
    ] {
        let line = submit_line("1", "0000000000000001", &ntime_hex(ntime), "00000001", None);
        assert_eq!(
            judge(&mut fresh(), &job, false, &line, &r).result(),
            expected,
            "ntime {ntime}"
        );
    }
}

/// Fields that fail where they are told to and note each one validation asks for: whatever a front
/// end's encoding, core asks in the contract's order and stops at the first failure.
struct ScriptedFields {
    bad: Option<&'static str>,
    ntime: u32,
    version_bits: Option<u32>,
    asked: std::cell::RefCell<Vec<&'static str>>,
}

impl ScriptedFields {
    fn ask(&self, field: &'static str) -> bool {
        self.asked.borrow_mut().push(field);
        self.bad != Some(field)
    }
}

impl ShareFields for ScriptedFields {
    fn extranonce2_into(&self, out: &mut [u8]) -> bool {
        out.fill(0);
        self.ask("extranonce2")
    }
    fn ntime(&self) -> Option<u32> {
        self.ask("ntime").then_some(self.ntime)
    }
    fn nonce(&self) -> Option<u32> {
        self.ask("nonce").then_some(1)
    }
    fn version_bits(&self) -> Result<Option<u32>, Undecodable> {
        if self.ask("version_bits") {
            Ok(self.version_bits)
        } else {
            Err(Undecodable)
        }
    }
}

#[test]
fn the_first_failing_field_is_the_answer_and_nothing_after_it_is_decoded() {
    let job = template_job(1, PREV_A, HARD_BITS, CURTIME, 3);
    let r = rules(Target::MAX);
    let en1 = Extranonce1::new(&EN1).unwrap();
    let all = ["extranonce2", "ntime", "nonce", "version_bits"];
    let cases = [
        (Some("extranonce2"), CURTIME, Reject::BadExtranonce2, 1),
        (Some("ntime"), CURTIME, Reject::BadNtime, 2),
        // A well-formed ntime outside the window is refused before the nonce is read.
        (None, job.mintime - 1, Reject::NtimeTooOld, 2),
        (
            None,
            CURTIME + MAX_NTIME_AHEAD_SECS + 1,
            Reject::NtimeTooNew,
            2,
        ),
        (Some("nonce"), CURTIME, Reject::BadNonce, 3),
        (Some("version_bits"), CURTIME, Reject::BadVersionBits, 4),
    ];
    for (bad, ntime, expected, asked) in cases {
        let fields = ScriptedFields {
            bad,
            ntime,
            version_bits: None,
            asked: Default::default(),
        };
        let verdict = fresh().validate(&job, false, &en1, &fields, &r);
        assert!(
            matches!(verdict, Verdict::Refused(reject) if reject == expected),
            "{bad:?} at ntime {ntime}: {verdict:?}"
        );
        assert_eq!(fields.asked.into_inner(), &all[..asked], "{bad:?}");
    }
    // Bits outside the mask are refused after every field decoded, unhashed.
    let outside = ScriptedFields {
        bad: None,
        ntime: CURTIME,
        version_bits: Some(0x0000_1000),
        asked: Default::default(),
    };
    let verdict = fresh().validate(&job, false, &en1, &outside, &r);
    assert!(matches!(
        verdict,
        Verdict::Refused(Reject::VersionBitsOutsideMask)
    ));
    assert_eq!(outside.asked.into_inner(), &all[..]);
    // And with every field sound, the share is hashed.
    let sound = ScriptedFields {
        bad: None,
        ntime: CURTIME,
        version_bits: None,
        asked: Default::default(),
    };
    assert!(matches!(
        fresh().validate(&job, false, &en1, &sound, &r),
        Verdict::Hashed { .. }
    ));
}

#[test]
fn version_bits_must_stay_inside_the_mask() {
    let job = template_job(1, PREV_A, HARD_BITS, CURTIME, 3);
    let t = ntime_hex(CURTIME);
    let r = rules(Target::MAX);
    let mut shares = fresh();
    let inside = judge(
        &mut shares,
        &job,
        false,
        &submit_line("1", "0000000000000001", &t, "00000001", Some("1fffe000")),
        &r,
    );
    assert_eq!(inside.result(), Ok(()));
    assert_eq!(
        inside.proof().unwrap().header[..4],
        (0x2000_0000u32 | 0x1fff_e000).to_le_bytes()
    );
    // Short hex (no leading zeros) is read as a number.
    let short = judge(
        &mut shares,
        &job,
        false,
        &submit_line("1", "0000000000000001", &t, "00000002", Some("2000")),
        &r,
    );
    assert_eq!(short.result(), Ok(()));
    assert_eq!(
        short.proof().unwrap().header[..4],
        0x2000_2000u32.to_le_bytes()
    );
    for bits in ["00001000", "20000000", "3fffe000", "zz"] {
        let v = judge(
            &mut shares,
            &job,
            false,
            &submit_line("1", "0000000000000001", &t, "00000003", Some(bits)),
            &r,
        );
        let expected = if bits == "zz" {
            Reject::BadVersionBits
        } else {
            Reject::VersionBitsOutsideMask
        };
        assert_eq!(v.result(), Err(expected), "{bits}");
    }
    // Without a negotiated mask only zero bits pass.
    let no_mask = ShareRules {
        version_mask: VersionMask::NONE,
        ..r
    };
    let zero = judge(
        &mut shares,
        &job,
        false,
        &submit_line("1", "0000000000000002", &t, "00000001", Some("00000000")),
        &no_mask,
    );
    assert_eq!(zero.result(), Ok(()));
    let any = judge(
        &mut shares,
        &job,
        false,
        &submit_line("1", "0000000000000002", &t, "00000009", Some("00002000")),
        &no_mask,
    );
    assert_eq!(any.result(), Err(Reject::VersionBitsOutsideMask));
}

#[test]
fn share_target_is_compared_exactly() {
    let job = template_job(1, PREV_A, HARD_BITS, CURTIME, 3);
    let t = ntime_hex(CURTIME);
    let line = submit_line("1", "0000000000000001", &t, "00000007", None);
    let hash = judge(&mut fresh(), &job, false, &line, &rules(Target::MAX))
        .proof()
        .unwrap()
        .hash;
    let at = Target::from_le_bytes(hash.0);
    assert_eq!(
        judge(&mut fresh(), &job, false, &line, &rules(at)).result(),
        Ok(()),
        "hash == target meets it"
    );
    let mut below = hash.0;
    // One less than the hash, as a little-endian integer.
    let i = below.iter().position(|&b| b != 0).unwrap();
    below[i] -= 1;
    for b in &mut below[..i] {
        *b = 0xff;
    }
    assert_eq!(
        judge(
            &mut fresh(),
            &job,
            false,
            &line,
            &rules(Target::from_le_bytes(below))
        )
        .result(),
        Err(Reject::LowDifficulty)
    );
    // The share's own difficulty sits between the two.
    let d = hash.difficulty();
    assert!(Difficulty::new(d * 0.999)
        .unwrap()
        .target()
        .is_met_by(&hash));
    assert!(!Difficulty::new(d * 1.001)
        .unwrap()
        .target()
        .is_met_by(&hash));
}

#[test]
fn duplicates_are_the_same_header_however_written() {
    let job = template_job(1, PREV_A, HARD_BITS, CURTIME, 3);
    let r = rules(Target::MAX);
    let t = ntime_hex(CURTIME);
    let mut shares = fresh();
    let first = judge(
        &mut shares,
        &job,
        false,
        &submit_line("1", "00000000000000ab", &t, "deadbeef", None),
        &r,
    );
    assert_eq!(first.result(), Ok(()));
    for line in [
        submit_line("1", "00000000000000AB", &t.to_uppercase(), "DEADBEEF", None),
        submit_line("01", "00000000000000ab", &t, "deadbeef", None),
        submit_line("1", "00000000000000ab", &t, "deadbeef", Some("00000000")),
    ] {
        let v = judge(&mut shares, &job, false, &line, &r);
        assert_eq!(v.result(), Err(Reject::Duplicate), "{line}");
        assert_eq!(v.proof().unwrap().hash, first.proof().unwrap().hash);
    }
    // A different nonce is a different share.
    let other = judge(
        &mut shares,
        &job,
        false,
        &submit_line("1", "00000000000000ab", &t, "deadbef0", None),
        &r,
    );
    assert_eq!(other.result(), Ok(()));
}

#[test]
fn duplicate_set_limit_at_its_edge() {
    let job = template_job(1, PREV_A, HARD_BITS, CURTIME, 3);
    let r = rules(Target::MAX);
    let t = ntime_hex(CURTIME);
    let mut shares = SessionShares::new(DuplicateLimits {
        max_jobs: 4,
        max_shares_per_job: 3,
    });
    for nonce in 0..3 {
        let line = submit_line("1", "0000000000000001", &t, &format!("{nonce:08x}"), None);
        assert_eq!(judge(&mut shares, &job, false, &line, &r).result(), Ok(()));
    }
    let line = submit_line("1", "0000000000000001", &t, "00000003", None);
    let full = judge(&mut shares, &job, false, &line, &r);
    assert_eq!(full.result(), Err(Reject::JobShareLimit));
    assert_eq!(Reject::JobShareLimit.stratum_error().code, ErrorCode::Other);
    let dup = submit_line("1", "0000000000000001", &t, "00000000", None);
    assert_eq!(
        judge(&mut shares, &job, false, &dup, &r).result(),
        Err(Reject::Duplicate),
        "still a duplicate when full"
    );
}

#[test]
fn blocks_are_detected_even_when_stale_or_duplicate() {
    // Regtest target: a share is a block about half the time; find one.
    let job = template_job(1, PREV_A, EASY_BITS, CURTIME, 3);
    let r = rules(Target::MAX);
    let t = ntime_hex(CURTIME);
    let mut shares = fresh();
    let (line, verdict) = (0u32..64)
        .map(|n| submit_line("1", "0000000000000001", &t, &format!("{n:08x}"), None))
        .map(|line| {
            let v = judge(&mut fresh(), &job, false, &line, &r);
            (line, v)
        })
        .find(|(_, v)| v.is_block())
        .expect("a regtest block within 64 nonces");
    assert_eq!(verdict.result(), Ok(()));
    assert!(job.network_target.is_met_by(&verdict.proof().unwrap().hash));
    assert_eq!(judge(&mut shares, &job, false, &line, &r).result(), Ok(()));
    let dup = judge(&mut shares, &job, false, &line, &r);
    assert_eq!(
        (dup.result(), dup.is_block()),
        (Err(Reject::Duplicate), true)
    );
    let stale = judge(&mut fresh(), &job, true, &line, &r);
    assert_eq!(
        (stale.result(), stale.is_block()),
        (Err(Reject::Stale), true)
    );
    // Even a share below the pool's own share target is still a block.
    let strict = rules(Target::from_le_bytes([0; 32]));
    let low = judge(&mut fresh(), &job, false, &line, &strict);
    assert_eq!(
        (low.result(), low.is_block()),
        (Err(Reject::LowDifficulty), true)
    );
}

#[test]
fn merkle_cache_gives_the_same_hash_as_the_full_path() {
    let job = template_job(1, PREV_A, HARD_BITS, CURTIME, 40);
    let r = rules(Target::MAX);
    let t = ntime_hex(CURTIME);
    let mut shares = fresh();
    for nonce in 0..4u32 {
        let line = submit_line("1", "0000000000000001", &t, &format!("{nonce:08x}"), None);
        let cached = judge(&mut shares, &job, false, &line, &r)
            .proof()
            .unwrap()
            .hash;
        let full = judge(&mut fresh(), &job, false, &line, &r)
            .proof()
            .unwrap()
            .hash;
        assert_eq!(cached, full);
    }
    assert_eq!(shares.merkle_cache_hits(), 3);
    // Another extranonce2, and the cache is not used.
    let line = submit_line("1", "0000000000000002", &t, "00000000", None);
    judge(&mut shares, &job, false, &line, &r);
    assert_eq!(shares.merkle_cache_hits(), 3);
    // Another extranonce1 (after mining.set_extranonce) must not reuse the root either.
    let Request::Submit(s) = parse(line.as_bytes()).unwrap().request else {
        panic!()
    };
    let other = shares.validate_submit(
        &job,
        false,
        &Extranonce1::new(&[1, 2, 3, 4]).unwrap(),
        &s,
        &r,
    );
    assert_eq!(shares.merkle_cache_hits(), 3);
    let reference = fresh().validate_submit(
        &job,
        false,
        &Extranonce1::new(&[1, 2, 3, 4]).unwrap(),
        &s,
        &r,
    );
    assert_eq!(other.proof().unwrap().hash, reference.proof().unwrap().hash);
}

#[test]
fn job_book_tells_current_stale_and_unknown() {
    let mut book = JobBook::new(3);
    for id in 1..=3 {
        book.push(Arc::new(template_job(id, PREV_A, HARD_BITS, CURTIME, 1)));
    }
    assert!(matches!(
        book.lookup(sluice::units::JobId(2)),
        Lookup::Current(_)
    ));
    book.push(Arc::new(template_job(4, PREV_B, HARD_BITS, CURTIME, 1)));
    assert_eq!(book.len(), 3);
    assert!(
        matches!(book.lookup(sluice::units::JobId(1)), Lookup::NotFound),
        "dropped past capacity"
    );
    assert!(matches!(
        book.lookup(sluice::units::JobId(3)),
        Lookup::Stale(_)
    ));
    assert!(matches!(
        book.lookup(sluice::units::JobId(4)),
        Lookup::Current(_)
    ));
    assert_eq!(
        sluice::share::parse_job_id("4"),
        Some(sluice::units::JobId(4))
    );
    assert_eq!(sluice::share::parse_job_id("not-hex"), None);
    assert_eq!(
        Verdict::job_not_found()
            .result()
            .unwrap_err()
            .stratum_error()
            .code,
        ErrorCode::JobNotFound
    );
}

#[test]
fn rejects_map_to_stratum_codes() {
    assert_eq!(Reject::Stale.stratum_error().code, ErrorCode::JobNotFound);
    assert_eq!(Reject::Duplicate.stratum_error().code, ErrorCode::Duplicate);
    assert_eq!(
        Reject::LowDifficulty.stratum_error().code,
        ErrorCode::LowDifficulty
    );
    assert_eq!(Reject::BadNonce.stratum_error().code, ErrorCode::Other);
}
