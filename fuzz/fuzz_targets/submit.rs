//! Share validation: `mining.submit` fields against fixed jobs, through sessions kept across
//! iterations so that the duplicate filter and the merkle-root cache carry state.
//!
//! Input: a 16-byte header, then the body.
//! - `h[0]`: job (low bits, of three built once) and bit 7: the job is stale;
//! - `h[1]`: bits 0-1 the session (0: default limits, 1: tight limits `max_jobs` 1 and
//!   `max_shares_per_job` 8, 2-3: a fresh one), bit 2 an extranonce1 of the wrong length, bit 3 the
//!   fields come from bytes (structured), bit 4 with version bits (structured), bit 5 upper-case hex;
//! - `h[2]`: the version mask (0, BIP320's `1fffe000`, all bits, or `h[3..7]`);
//! - `h[7]` bit 0: `now` is `h[8..12]` as is, else the job's ntime plus `h[8..10]` as an i16;
//! - `h[12]`, `h[13]`: the share difficulty `2^(h[12] % 48 - 40) * (1 + h[13] / 256)`;
//! - `h[14..16]`: extranonce1 bytes;
//! - body, text mode: lossy UTF-8 `worker|job_id|extranonce2|ntime|nonce[|version_bits]`;
//!   structured mode: extranonce2 (16 bytes), ntime delta (i16), nonce (u32), version bits (u32).
//!
//! Checks: the verdict is what an independent model of the documented rules gives (the order of the
//! field checks, stale before low difficulty before duplicate, a modelled duplicate filter with its
//! per-job bound and eviction of the lowest job id); a hashed share's header is the job's fields with
//! the merkle root that rust-bitcoin computes from the coinbase, and its hash is rust-bitcoin's double
//! SHA-256 of it; `Ok` means the hash meets the share target; `is_block` means it meets the network
//! target (both judged by rust-bitcoin too); re-validating an accepted share gives `Duplicate`; a block
//! assembles into a block rust-bitcoin decodes with a valid merkle root, witness commitment and proof
//! of work. The same fields as a JSON `mining.submit` line parse back to the same `Submit` (or are
//! refused as bad params exactly when a hex field would need a JSON escape) and validate alike.

#![no_main]

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::OnceLock;

use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash;
use bitcoin::transaction::Version;
use bitcoin::{
    Amount, BlockHash, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness,
};
use libfuzzer_sys::fuzz_target;

use sluice_core::chain::{BlockTemplate, Job};
use sluice_core::share::{
    parse_job_id, DuplicateLimits, Reject, SessionShares, ShareRules, Verdict, MAX_NTIME_AHEAD_SECS,
};
use sluice_core::units::{Difficulty, Extranonce1, ExtranonceSizes, JobId, Target};
use sluice_fuzz::{
    default_coinbase_config, merkle_root, sha256d, template_value, witness_commitment_script,
    TemplateTx,
};
use sluice_stratum::codec::request::ParseErrorKind;
use sluice_stratum::codec::{parse, Request, Submit};
use sluice_stratum::share::ValidateSubmit;

const CURTIME: u32 = 1_700_000_000;

struct Fixture {
    job: Job,
    /// The template's txids (internal byte order), for an independent merkle root.
    txids: Vec<[u8; 32]>,
}

fn tx(seed: u8, outputs: usize, witness: bool) -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint {
                txid: bitcoin::Txid::from_byte_array([seed; 32]),
                vout: u32::from(seed),
            },
            script_sig: if witness {
                ScriptBuf::new()
            } else {
                ScriptBuf::from_bytes(vec![0x51, seed])
            },
            sequence: Sequence::MAX,
            witness: if witness {
                Witness::from_slice(&[vec![seed; 71], vec![0x02; 33]])
            } else {
                Witness::new()
            },
        }],
        output: (0..outputs)
            .map(|i| TxOut {
                value: Amount::from_sat(10_000 * (i as u64 + 1)),
                script_pubkey: ScriptBuf::from_bytes(vec![0x00, 0x14, seed, i as u8]),
            })
            .collect(),
    }
}

#[allow(clippy::too_many_arguments)]
fn build(
    id: u64,
    prev: [u8; 32],
    txs: &[Transaction],
    bits: &str,
    mintime: u32,
    extranonce: (usize, usize),
    tag: &[u8],
    segwit: bool,
) -> Fixture {
    let txs: Vec<TemplateTx> = txs.iter().map(TemplateTx::real).collect();
    let commitment = if segwit {
        witness_commitment_script(&txs)
    } else {
        None
    };
    let json = template_value(
        0x2000_0000,
        &prev,
        &txs,
        312_500_000,
        bits,
        1000,
        u64::from(CURTIME),
        Some(u64::from(mintime)),
        commitment.as_deref(),
    )
    .to_string();
    let mut config = default_coinbase_config();
    config.extranonce = ExtranonceSizes::new(extranonce.0, extranonce.1).expect("sizes");
    config.tag = tag.to_vec();
    let parts = BlockTemplate::from_json(json.as_bytes())
        .expect("template")
        .job_parts(&config)
        .expect("job parts");
    Fixture {
        job: Job::new(JobId(id), parts, true).expect("job"),
        txids: txs.iter().map(|t| t.txid).collect(),
    }
}

fn fixtures() -> &'static [Fixture] {
    static JOBS: OnceLock<Vec<Fixture>> = OnceLock::new();
    JOBS.get_or_init(|| {
        vec![
            // Segwit, three transactions, the brief's coinbase, regtest difficulty.
            build(
                1,
                [0x11; 32],
                &[tx(1, 2, false), tx(2, 1, true), tx(3, 3, false)],
                "207fffff",
                CURTIME - 600,
                (4, 8),
                b"/sluice/",
                true,
            ),
            // No transactions: an empty branch, small extranonces, no tag.
            build(2, [0x11; 32], &[], "207fffff", 0, (2, 3), b"", false),
            // Difficulty 1 (no blocks in practice), the largest extranonces, five transactions.
            build(
                0x1f,
                [0x22; 32],
                &[
                    tx(4, 1, true),
                    tx(5, 1, false),
                    tx(6, 2, false),
                    tx(7, 1, true),
                    tx(8, 1, false),
                ],
                "1d00ffff",
                CURTIME,
                (8, 16),
                b"/fuzz/",
                true,
            ),
        ]
    })
}

/// The duplicate filter as documented: per job a set of accepted hashes (keyed on their first eight
/// bytes), at most `max_jobs` sets (the lowest job id's set is reused), at most `max_shares_per_job`
/// hashes in each.
struct Model {
    limits: DuplicateLimits,
    sets: Vec<(JobId, HashSet<u64>)>,
}

impl Model {
    fn new(limits: DuplicateLimits) -> Model {
        Model {
            limits,
            sets: Vec::new(),
        }
    }

    fn insert(&mut self, job: JobId, hash: &[u8; 32]) -> Result<(), Reject> {
        let i = match self.sets.iter().position(|(id, _)| *id == job) {
            Some(i) => i,
            None if self.sets.len() < self.limits.max_jobs => {
                self.sets.push((job, HashSet::new()));
                self.sets.len() - 1
            }
            None => {
                let i = (0..self.sets.len())
                    .min_by_key(|&i| self.sets[i].0)
                    .expect("not empty");
                self.sets[i] = (job, HashSet::new());
                i
            }
        };
        let key = u64::from_le_bytes(hash[..8].try_into().expect("8 bytes"));
        let set = &mut self.sets[i].1;
        if set.contains(&key) {
            Err(Reject::Duplicate)
        } else if set.len() >= self.limits.max_shares_per_job {
            Err(Reject::JobShareLimit)
        } else {
            set.insert(key);
            Ok(())
        }
    }
}

struct Session {
    shares: SessionShares,
    model: Model,
}

impl Session {
    fn new(limits: DuplicateLimits) -> Session {
        Session {
            shares: SessionShares::new(limits),
            model: Model::new(limits),
        }
    }
}

const TIGHT: DuplicateLimits = DuplicateLimits {
    max_jobs: 1,
    max_shares_per_job: 8,
};

thread_local! {
    static SESSIONS: RefCell<[Session; 2]> =
        RefCell::new([Session::new(DuplicateLimits::default()), Session::new(TIGHT)]);
}

fn hex_digits(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The documented field checks, in their documented order. Ok: (version, ntime, nonce, extranonce2).
fn expect_fields(
    job: &Job,
    s: &Submit<'_>,
    rules: &ShareRules,
) -> Result<(u32, u32, u32, Vec<u8>), Reject> {
    let n2 = job.extranonce.extranonce2();
    if !hex_digits(s.extranonce2, 2 * n2, 2 * n2) {
        return Err(Reject::BadExtranonce2);
    }
    let en2 = (0..n2)
        .map(|i| u8::from_str_radix(&s.extranonce2[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    if !hex_digits(s.ntime, 8, 8) {
        return Err(Reject::BadNtime);
    }
    let ntime = u32::from_str_radix(s.ntime, 16).expect("hex");
    if ntime < job.mintime {
        return Err(Reject::NtimeTooOld);
    }
    if u64::from(ntime) > u64::from(rules.now) + u64::from(MAX_NTIME_AHEAD_SECS) {
        return Err(Reject::NtimeTooNew);
    }
    if !hex_digits(s.nonce, 8, 8) {
        return Err(Reject::BadNonce);
    }
    let nonce = u32::from_str_radix(s.nonce, 16).expect("hex");
    let version = match s.version_bits {
        None => job.version,
        Some(v) => {
            if !hex_digits(v, 1, 8) {
                return Err(Reject::BadVersionBits);
            }
            let bits = u32::from_str_radix(v, 16).expect("hex");
            if bits & !rules.version_mask.0 != 0 {
                return Err(Reject::VersionBitsOutsideMask);
            }
            (job.version & !rules.version_mask.0) | (bits & rules.version_mask.0)
        }
    };
    Ok((version, ntime, nonce, en2))
}

/// Validates one share and checks the verdict against the model; returns it.
fn judge(
    session: &mut Session,
    fx: &Fixture,
    stale: bool,
    en1: &Extranonce1,
    s: &Submit<'_>,
    rules: &ShareRules,
) -> Verdict {
    let job = &fx.job;
    let verdict = session.shares.validate_submit(job, stale, en1, s, rules);
    let (version, ntime, nonce, en2) = match expect_fields(job, s, rules) {
        Err(reject) => {
            assert_eq!(verdict.result(), Err(reject), "field checks for {s:?}");
            assert!(
                verdict.proof().is_none() && !verdict.is_block(),
                "refused unhashed"
            );
            return verdict;
        }
        Ok(f) => f,
    };
    let proof = verdict
        .proof()
        .expect("a share past the field checks is hashed");
    assert_eq!(proof.extranonce2(), &en2[..]);

    // The header, field by field, with an independently computed merkle root.
    let coinbase = job.coinbase(en1.as_bytes(), &en2);
    let root = merkle_root(sha256d(&coinbase), &fx.txids);
    assert_eq!(
        job.merkle_root(en1.as_bytes(), &en2),
        root,
        "Job::merkle_root"
    );
    let h = &proof.header;
    assert_eq!(h[0..4], version.to_le_bytes(), "version");
    assert_eq!(h[4..36], job.prev_hash, "prev hash");
    assert_eq!(h[36..68], root, "merkle root (cache or fold)");
    assert_eq!(h[68..72], ntime.to_le_bytes(), "ntime");
    assert_eq!(h[72..76], job.nbits.to_le_bytes(), "nbits");
    assert_eq!(h[76..80], nonce.to_le_bytes(), "nonce");
    assert_eq!(proof.hash.0, sha256d(h), "header hash");
    assert_eq!(*h, job.header(version, &root, ntime, nonce), "Job::header");
    assert!(proof.difficulty() > 0.0);

    let block_hash = BlockHash::from_byte_array(proof.hash.0);
    let network = bitcoin::Target::from_compact(bitcoin::CompactTarget::from_consensus(job.nbits));
    let share = bitcoin::Target::from_le_bytes(rules.share_target.to_le_bytes());
    let is_block = network.is_met_by(block_hash);
    let meets_share = share.is_met_by(block_hash);
    assert_eq!(verdict.is_block(), is_block, "is_block");
    assert_eq!(job.network_target.is_met_by(&proof.hash), is_block);
    assert_eq!(rules.share_target.is_met_by(&proof.hash), meets_share);

    let expected = if stale {
        Err(Reject::Stale)
    } else if !meets_share {
        Err(Reject::LowDifficulty)
    } else {
        session.model.insert(job.id, &proof.hash.0)
    };
    assert_eq!(verdict.result(), expected, "verdict");
    if verdict.result().is_ok() {
        assert!(meets_share, "an accepted share meets the share target");
    }

    if is_block && en1.as_bytes().len() == job.extranonce.extranonce1() {
        check_block(job, h, en1.as_bytes(), &en2, &proof.hash.0);
    }
    verdict
}

fn check_block(job: &Job, header: &[u8; 80], en1: &[u8], en2: &[u8], hash: &[u8; 32]) {
    let raw = job.assemble_block(header, en1, en2);
    let block: bitcoin::Block = bitcoin::consensus::deserialize(&raw)
        .unwrap_or_else(|e| panic!("assembled block does not decode: {e}"));
    assert_eq!(bitcoin::consensus::serialize(&block), raw);
    assert_eq!(block.block_hash().to_byte_array(), *hash);
    assert_eq!(block.txdata.len(), job.transaction_count());
    assert!(block.check_merkle_root(), "block merkle root");
    assert!(block.check_witness_commitment(), "block witness commitment");
    assert!(
        block.header.validate_pow(block.header.target()).is_ok(),
        "block proof of work"
    );
    if block.header.version.to_consensus() >= 2 {
        assert_eq!(block.bip34_block_height().ok(), Some(job.height));
    }
}

fn needs_escape(s: &str) -> bool {
    s.chars().any(|c| c == '"' || c == '\\' || c < ' ')
}

fn hex_case(bytes: &[u8], upper: bool) -> String {
    let s = sluice_fuzz::hex(bytes);
    if upper {
        s.to_ascii_uppercase()
    } else {
        s
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let (h, body) = data.split_at(16);
    let jobs = fixtures();
    let fx = &jobs[usize::from(h[0] & 0x7f) % jobs.len()];
    let job = &fx.job;
    let stale = h[0] & 0x80 != 0;
    let u32_at = |i: usize| u32::from_be_bytes(h[i..i + 4].try_into().expect("4 bytes"));

    let en1_len = if h[1] & 4 != 0 {
        1 + usize::from(h[14] % 8)
    } else {
        job.extranonce.extranonce1()
    };
    let en1_bytes: Vec<u8> = (0..en1_len)
        .map(|i| h[14 + i % 2] ^ (i as u8).wrapping_mul(0x5b))
        .collect();
    let en1 = Extranonce1::new(&en1_bytes).expect("1 to 8 bytes");

    let version_mask = match h[2] % 4 {
        0 => 0,
        1 => 0x1fff_e000,
        2 => u32::MAX,
        _ => u32::from_be_bytes(h[3..7].try_into().expect("4 bytes")),
    };
    let now = if h[7] & 1 != 0 {
        u32_at(8)
    } else {
        let delta = i16::from_be_bytes([h[8], h[9]]);
        job.ntime.wrapping_add_signed(i32::from(delta))
    };
    let exponent = i32::from(h[12] % 48) - 40;
    let difficulty = 2f64.powi(exponent) * (1.0 + f64::from(h[13]) / 256.0);
    let share_target = Target::from_difficulty(Difficulty::new(difficulty).expect("positive"));
    sluice_fuzz::check_to_compact(share_target);
    let rules = ShareRules {
        version_mask: sluice_core::units::VersionMask(version_mask),
        now,
        share_target,
    };

    let upper = h[1] & 0x20 != 0;
    let fields: Vec<String> = if h[1] & 8 != 0 {
        let mut b = [0u8; 26];
        let n = body.len().min(26);
        b[..n].copy_from_slice(&body[..n]);
        let n2 = job.extranonce.extranonce2();
        let delta = i16::from_be_bytes([b[16], b[17]]);
        let ntime = job.ntime.wrapping_add_signed(i32::from(delta));
        let nonce = u32::from_be_bytes(b[18..22].try_into().expect("4 bytes"));
        let mut f = vec![
            "w.0".to_owned(),
            job.id.to_string(),
            hex_case(&b[..n2], upper),
            hex_case(&ntime.to_be_bytes(), upper),
            hex_case(&nonce.to_be_bytes(), upper),
        ];
        if h[1] & 0x10 != 0 {
            let bits = u32::from_be_bytes(b[22..26].try_into().expect("4 bytes")) & version_mask;
            f.push(format!("{bits:x}"));
        }
        f
    } else {
        let text = String::from_utf8_lossy(body);
        let mut f: Vec<String> = text.split('|').take(6).map(str::to_owned).collect();
        while f.len() < 5 {
            f.push(String::new());
        }
        f
    };
    let submit = Submit {
        worker: Cow::Borrowed(&fields[0]),
        job_id: &fields[1],
        extranonce2: &fields[2],
        ntime: &fields[3],
        nonce: &fields[4],
        version_bits: fields.get(5).map(String::as_str),
    };
    // The job id routes the share in a session; here any id validates against the chosen job.
    if let Some(id) = parse_job_id(submit.job_id) {
        assert_eq!(parse_job_id(&id.to_string()), Some(id));
    }

    SESSIONS.with(|sessions| {
        let mut sessions = sessions.borrow_mut();
        let mut fresh;
        let session = match h[1] & 3 {
            0 => &mut sessions[0],
            1 => &mut sessions[1],
            _ => {
                fresh = Session::new(DuplicateLimits::default());
                &mut fresh
            }
        };

        let first = judge(session, fx, stale, &en1, &submit, &rules);
        if first.result().is_ok() {
            let again = session
                .shares
                .validate_submit(job, stale, &en1, &submit, &rules);
            assert_eq!(again.result(), Err(Reject::Duplicate), "resubmitted share");
            assert_eq!(again.is_block(), first.is_block());
            assert_eq!(
                again.proof().map(|p| p.hash),
                first.proof().map(|p| p.hash),
                "same share, same hash"
            );
        }

        // The same fields as a JSON line.
        let mut params: Vec<String> = fields
            .iter()
            .map(|f| serde_json::to_string(f).expect("string"))
            .collect();
        params.truncate(6);
        let line = format!(
            r#"{{"id":7,"method":"mining.submit","params":[{}]}}"#,
            params.join(",")
        );
        let escaped = fields[1..].iter().any(|f| needs_escape(f));
        match parse(line.as_bytes()) {
            Ok(msg) => {
                assert!(
                    !escaped,
                    "a hex field with a JSON escape cannot be borrowed"
                );
                assert_eq!(msg.id.json(), "7");
                let Request::Submit(parsed) = msg.request else {
                    panic!("not a submit: {line}");
                };
                assert_eq!(parsed, submit, "parsed fields");
                let second = judge(session, fx, stale, &en1, &parsed, &rules);
                assert_eq!(second.is_block(), first.is_block());
                assert_eq!(
                    second.proof().map(|p| p.hash),
                    first.proof().map(|p| p.hash)
                );
            }
            Err(e) => {
                assert!(escaped, "submit line refused: {line}: {e:?}");
                assert_eq!(e.id.json(), "7");
                assert_eq!(e.kind, ParseErrorKind::BadParams("mining.submit"));
            }
        }

        // A full job set: start over (a new connection), so accepted shares stay reachable.
        if first.result() == Err(Reject::JobShareLimit) {
            let limits = session.model.limits;
            *session = Session::new(limits);
        }
    });
});
