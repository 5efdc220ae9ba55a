//! Criterion benchmarks of the share path and of job building (DESIGN.md section 8).
//!
//! Run pinned to one core (another core may be busy):
//!
//! ```text
//! taskset -c 1 cargo bench --bench share_validation
//! ```
//!
//! Every benchmark checks once, outside its timed loop, that what it times gives the expected answer
//! (verdict, merkle-cache hits or misses, parsed fields, job shape), so that none of them can measure an
//! error path without anyone noticing. The figures and the machine they were taken on are in
//! `BENCHMARKS.md`.
//!
//! The job used for validation is built from the same 3,000-transaction template as the job benches:
//! 3,000 other transactions give a 12-level merkle branch (2,048 to 4,095 other txids), and the pool's
//! coinbase tag is sized so that `coinb1 + extranonce1 (4) + extranonce2 (8) + coinb2` is 220 bytes.

mod fixture;

use std::borrow::Cow;
use std::hint::black_box;
use std::time::{Duration, Instant};

use bitcoin::hashes::{sha256d, Hash};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use fixture::*;
use sluice_core::chain::merkle;
use sluice_core::chain::{BlockTemplate, CoinbaseConfig, Job};
use sluice_core::hash::{header_hash, merkle_parent, Midstate, Sha256};
use sluice_core::share::{DuplicateLimits, Reject, SessionShares, ShareRules, Verdict};
use sluice_core::units::{Difficulty, Extranonce1, Target};
use sluice_stratum::codec::{self as stratum, Request, Submit};
use sluice_stratum::share::ValidateSubmit;

/// Levels of the coinbase's merkle branch for [`TEMPLATE_TXS`] other transactions.
const BRANCH_LEVELS: usize = 12;
/// Distinct submits prepared per benchmark; the timed loops cycle through them.
const SUBMITS: usize = 1024;
/// Shares a session has accepted on one job before the accepted-path benches start a new session.
const SHARES_PER_SESSION: usize = 256;

struct Fixture {
    json: Vec<u8>,
    template: BlockTemplate,
    config: CoinbaseConfig,
    job: Job,
    extranonce1: Extranonce1,
}

fn fixture() -> Fixture {
    let json = template_json();
    let template = BlockTemplate::from_json(&json).expect("template");
    let config = sized_coinbase_config(&template);
    let job = Job::new(
        JOB_ID,
        template.job_parts(&config).expect("job parts"),
        true,
    )
    .expect("job");
    assert_eq!(job.merkle_branch.len(), BRANCH_LEVELS);
    assert_eq!(job.transaction_count(), TEMPLATE_TXS + 1);
    let extranonce1 = Extranonce1::from_counter(0x0a0b_0c0d, EXTRANONCE1_SIZE).expect("en1");
    assert_eq!(
        job.coinbase(extranonce1.as_bytes(), &[0; EXTRANONCE2_SIZE])
            .len(),
        COINBASE_SIZE
    );
    Fixture {
        json,
        template,
        config,
        job,
        extranonce1,
    }
}

/// The text fields of one `mining.submit`, owned so that [`Submit`]s can borrow them.
struct SubmitText {
    extranonce2: String,
    ntime: String,
    nonce: String,
    version_bits: String,
}

/// `SUBMITS + 1` distinct submits, with version rolling (six parameters, as ASICs send them). With
/// `roll_extranonce2` each has its own extranonce2; without, they share one and differ in nonce and
/// version bits.
fn submit_texts(roll_extranonce2: bool) -> Vec<SubmitText> {
    let mut rng = Rng(0xc0ffee);
    (0..=SUBMITS as u64)
        .map(|i| {
            let en2 = if roll_extranonce2 { i + 1 } else { 7 };
            SubmitText {
                extranonce2: format!("{en2:016x}"),
                ntime: format!("{:08x}", CURTIME + (i as u32 % 60)),
                nonce: format!("{:08x}", rng.next() as u32),
                version_bits: format!("{:08x}", (rng.next() as u32) & VERSION_MASK),
            }
        })
        .collect()
}

fn submits(texts: &[SubmitText]) -> Vec<Submit<'_>> {
    texts
        .iter()
        .map(|t| Submit {
            worker: Cow::Borrowed("bc1qexampleworkeraddress0000000000000000.rig01"),
            job_id: "1a2b",
            extranonce2: &t.extranonce2,
            ntime: &t.ntime,
            nonce: &t.nonce,
            version_bits: Some(&t.version_bits),
        })
        .collect()
}

fn rules(share_target: Target) -> ShareRules {
    ShareRules {
        version_mask: sluice_core::units::VersionMask(VERSION_MASK),
        now: CURTIME + 30,
        share_target,
    }
}

/// A share target no hash meets (difficulty ~1.8e308, target 1): every share is judged
/// `LowDifficulty`, which is decided after the full hashing and never touches the duplicate set, so
/// the verdict cannot change however many iterations criterion runs.
fn unreachable_target() -> Target {
    Difficulty::new(f64::MAX).expect("difficulty").target()
}

/// Recomputes a share's header independently (with `bitcoin`'s hashes) and checks the validator's.
fn check_proof(f: &Fixture, submit: &Submit<'_>, verdict: &Verdict) {
    let proof = verdict.proof().expect("the share was hashed");
    assert!(!verdict.is_block());
    let en2 = sluice_core::hex::decode_vec(submit.extranonce2).expect("hex");
    let coinbase = f.job.coinbase(f.extranonce1.as_bytes(), &en2);
    let mut level = vec![sha256d::Hash::hash(&coinbase).to_byte_array()];
    level.extend(f.template.transactions.iter().map(|t| {
        let mut id: [u8; 32] = sluice_core::hex::decode_vec(t.txid.as_deref().expect("txid"))
            .expect("hex")
            .try_into()
            .expect("32 bytes");
        id.reverse();
        id
    }));
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| {
                let mut both = pair[0].to_vec();
                both.extend_from_slice(pair.get(1).unwrap_or(&pair[0]));
                sha256d::Hash::hash(&both).to_byte_array()
            })
            .collect();
    }
    assert_eq!(proof.header[36..68], level[0], "merkle root");
    assert_eq!(
        proof.hash.0,
        sha256d::Hash::hash(&proof.header).to_byte_array(),
        "header hash"
    );
}

fn bench_validate(c: &mut Criterion) {
    let f = fixture();
    let rolled_texts = submit_texts(true);
    let rolled = submits(&rolled_texts);
    let fixed_texts = submit_texts(false);
    let fixed = submits(&fixed_texts);
    let low = rules(unreachable_target());
    let any = rules(Target::MAX);

    let mut group = c.benchmark_group("validate");

    // Full path: a new extranonce2 every share, so the session's merkle cache always misses:
    // coinbase hash from the coinb1 midstate, 12 merkle levels, header. Judged LowDifficulty.
    group.bench_function("full_path", |b| {
        let mut session = SessionShares::new(DuplicateLimits::default());
        for s in &rolled[..2] {
            let v = session.validate_submit(&f.job, false, &f.extranonce1, s, &low);
            assert_eq!(v.result(), Err(Reject::LowDifficulty));
            check_proof(&f, s, &v);
        }
        assert_eq!(session.merkle_cache_hits(), 0);
        let mut i = 0usize;
        b.iter(|| {
            let s = &rolled[i % SUBMITS];
            i += 1;
            black_box(session.validate_submit(
                black_box(&f.job),
                false,
                black_box(&f.extranonce1),
                black_box(s),
                black_box(&low),
            ))
        });
        assert_eq!(
            session.merkle_cache_hits(),
            0,
            "every share missed the cache"
        );
        let v = session.validate_submit(&f.job, false, &f.extranonce1, &rolled[SUBMITS], &low);
        assert_eq!(v.result(), Err(Reject::LowDifficulty));
    });

    // Cached path: the same extranonce2 every share, nonce and version bits rolled: the merkle root
    // comes from the session's cache and only the header is hashed. Judged LowDifficulty.
    group.bench_function("cached_merkle", |b| {
        let mut session = SessionShares::new(DuplicateLimits::default());
        let v = session.validate_submit(&f.job, false, &f.extranonce1, &fixed[SUBMITS], &low);
        assert_eq!(v.result(), Err(Reject::LowDifficulty));
        check_proof(&f, &fixed[SUBMITS], &v);
        let v = session.validate_submit(&f.job, false, &f.extranonce1, &fixed[0], &low);
        assert_eq!(v.result(), Err(Reject::LowDifficulty));
        check_proof(&f, &fixed[0], &v);
        assert_eq!(session.merkle_cache_hits(), 1);
        let mut i = 0usize;
        b.iter(|| {
            let s = &fixed[i % SUBMITS];
            i += 1;
            black_box(session.validate_submit(
                black_box(&f.job),
                false,
                black_box(&f.extranonce1),
                black_box(s),
                black_box(&low),
            ))
        });
        assert_eq!(
            session.merkle_cache_hits(),
            1 + i as u64,
            "every share hit the cache"
        );
    });

    // The same two paths for shares that are credited, so each also takes a place in the duplicate
    // set. A session accepts SHARES_PER_SESSION distinct shares on the job, then the bench starts a
    // new session outside the timed part; the set never fills, and each share's verdict is counted.
    for (name, list, warm) in [
        ("full_path_accepted", &rolled, false),
        ("cached_merkle_accepted", &fixed, true),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                let mut done = 0u64;
                while done < iters {
                    let n = (iters - done).min(SHARES_PER_SESSION as u64) as usize;
                    let mut session = SessionShares::new(DuplicateLimits::default());
                    if warm {
                        // Fill the merkle cache with this extranonce2 first.
                        let v = session.validate_submit(
                            &f.job,
                            false,
                            &f.extranonce1,
                            &list[SUBMITS],
                            &any,
                        );
                        assert_eq!(v.result(), Ok(()));
                    }
                    let mut accepted = 0usize;
                    let start = Instant::now();
                    for s in &list[..n] {
                        let v = session.validate_submit(
                            black_box(&f.job),
                            false,
                            black_box(&f.extranonce1),
                            black_box(s),
                            black_box(&any),
                        );
                        accepted += usize::from(black_box(v).result().is_ok());
                    }
                    elapsed += start.elapsed();
                    assert_eq!(accepted, n, "every share accepted");
                    let hits = if warm { n as u64 } else { 0 };
                    assert_eq!(session.merkle_cache_hits(), hits);
                    done += n as u64;
                }
                elapsed
            })
        });
    }
    group.finish();
}

fn bench_parse(c: &mut Criterion) {
    // As cgminer-derived firmware writes them: params first, a long worker name.
    let five = br#"{"params": ["bc1qexampleworkeraddress0000000000000000.rig01", "1a2b", "000000000000002a", "6926f1b4", "9e1f0b3a"], "id": 1234, "method": "mining.submit"}"#;
    let six = br#"{"params": ["bc1qexampleworkeraddress0000000000000000.rig01", "1a2b", "000000000000002a", "6926f1b4", "9e1f0b3a", "0c3fe000"], "id": 1235, "method": "mining.submit"}"#;

    let mut group = c.benchmark_group("parse");
    for (name, line, version_bits) in [
        ("5_params", &five[..], None),
        ("6_params", &six[..], Some("0c3fe000")),
    ] {
        let m = stratum::parse(line).expect("parses");
        let Request::Submit(s) = m.request else {
            panic!("not a submit")
        };
        assert!(matches!(s.worker, Cow::Borrowed(_)), "worker borrowed");
        assert_eq!(
            (s.job_id, s.extranonce2, s.ntime, s.nonce, s.version_bits),
            (
                "1a2b",
                "000000000000002a",
                "6926f1b4",
                "9e1f0b3a",
                version_bits
            )
        );
        group.bench_with_input(BenchmarkId::new("submit", name), line, |b, line| {
            b.iter(|| black_box(stratum::parse(black_box(line))))
        });
    }
    group.finish();
}

fn bench_job(c: &mut Criterion) {
    let f = fixture();
    let check = |job: &Job| {
        assert_eq!(job.merkle_branch, f.job.merkle_branch);
        assert_eq!(job.transaction_count(), TEMPLATE_TXS + 1);
    };
    let build_from_json = |json: &[u8]| {
        let template = BlockTemplate::from_json(json).expect("template");
        let parts = template.job_parts(&f.config).expect("job parts");
        Job::new(JOB_ID, parts, true).expect("job")
    };
    let build_from_template = |template: &BlockTemplate| {
        let parts = template.job_parts(&f.config).expect("job parts");
        Job::new(JOB_ID, parts, true).expect("job")
    };
    check(&build_from_json(&f.json));
    check(&build_from_template(&f.template));

    let mut group = c.benchmark_group("job");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function(
        BenchmarkId::new("from_template_3000_tx", "json_parse+job_parts+new"),
        |b| b.iter(|| black_box(build_from_json(black_box(&f.json)))),
    );
    group.bench_function(
        BenchmarkId::new("from_template_3000_tx", "job_parts+new"),
        |b| b.iter(|| black_box(build_from_template(black_box(&f.template)))),
    );
    group.finish();
}

fn bench_hash(c: &mut Criterion) {
    let f = fixture();
    let mut rng = Rng(0xabc);
    let header: [u8; 80] = rng.bytes(80).try_into().expect("80 bytes");
    let left: [u8; 32] = rng.bytes(32).try_into().expect("32 bytes");
    let right: [u8; 32] = rng.bytes(32).try_into().expect("32 bytes");
    assert_eq!(
        header_hash(&header),
        sha256d::Hash::hash(&header).to_byte_array()
    );
    let mut pair = left.to_vec();
    pair.extend_from_slice(&right);
    assert_eq!(
        merkle_parent(&left, &right),
        sha256d::Hash::hash(&pair).to_byte_array()
    );

    // The coinbase hash as the full path computes it (a copy of the validator's private
    // `coinbase_txid`, with the same public pieces): from the coinb1 midstate, the tail of coinb1,
    // both extranonces and coinb2, then the second hash.
    let (midstate, tail) = Midstate::of_prefix(&f.job.coinb1);
    let en1 = f.extranonce1;
    let en2 = [0x2a; EXTRANONCE2_SIZE];
    let coinbase_txid = |en2: &[u8]| {
        let mut sha = Sha256::from_midstate(midstate);
        sha.update(tail);
        sha.update(en1.as_bytes());
        sha.update(en2);
        sha.update(&f.job.coinb2);
        sha.finalize_double()
    };
    let txid = coinbase_txid(&en2);
    assert_eq!(
        txid,
        sha256d::Hash::hash(&f.job.coinbase(en1.as_bytes(), &en2)).to_byte_array()
    );

    let mut group = c.benchmark_group("hash");
    group.bench_function("header_sha256d", |b| {
        b.iter(|| black_box(header_hash(black_box(&header))))
    });
    group.bench_function("merkle_parent", |b| {
        b.iter(|| black_box(merkle_parent(black_box(&left), black_box(&right))))
    });
    group.bench_function("coinbase_txid_220B", |b| {
        b.iter(|| black_box(coinbase_txid(black_box(&en2))))
    });
    // Raw compression cost: Midstate::of_prefix compresses whole blocks one call each, as the share
    // path does; bitcoin_hashes' own SHA-NI code on the same 16 blocks for comparison.
    let blocks = rng.bytes(16 * 64);
    assert_eq!(Midstate::of_prefix(&blocks).1.len(), 0);
    group.bench_function("compress_16_blocks_sha2", |b| {
        b.iter(|| black_box(Midstate::of_prefix(black_box(&blocks))))
    });
    group.bench_function("sha256_1024B_bitcoin_hashes", |b| {
        b.iter(|| black_box(bitcoin::hashes::sha256::Hash::hash(black_box(&blocks))))
    });
    group.bench_function("merkle_fold_12_levels", |b| {
        b.iter(|| {
            black_box(merkle::fold(
                black_box(txid),
                black_box(&f.job.merkle_branch),
            ))
        })
    });

    // Is a lone hash chain bound by the latency of the SHA rounds rather than by the core's
    // throughput? Two independent chains, interleaved step by step, in one iteration: if this takes
    // well under twice the single chain, the core has room for a second share's hashing in parallel.
    let other_txid = coinbase_txid(&[0x2b; EXTRANONCE2_SIZE]);
    let other_header: [u8; 80] = rng.bytes(80).try_into().expect("80 bytes");
    let branch = &f.job.merkle_branch;
    let fold_two = |mut x: [u8; 32], mut y: [u8; 32], branch: &[[u8; 32]]| {
        for sibling in branch {
            x = merkle_parent(&x, sibling);
            y = merkle_parent(&y, sibling);
        }
        (x, y)
    };
    assert_eq!(
        fold_two(txid, other_txid, branch),
        (merkle::fold(txid, branch), merkle::fold(other_txid, branch))
    );
    group.bench_function("header_sha256d_x2_interleaved", |b| {
        b.iter(|| {
            black_box((
                header_hash(black_box(&header)),
                header_hash(black_box(&other_header)),
            ))
        })
    });
    group.bench_function("merkle_fold_12_levels_x2_interleaved", |b| {
        b.iter(|| {
            black_box(fold_two(
                black_box(txid),
                black_box(other_txid),
                black_box(branch),
            ))
        })
    });
    group.finish();
}

criterion_group!(benches, bench_validate, bench_parse, bench_job, bench_hash);
criterion_main!(benches);
