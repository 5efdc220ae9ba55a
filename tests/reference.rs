//! Property tests: the share path agrees with a plain reference built on the `bitcoin` crate's types
//! (its transaction hashing, merkle root, header hashing and targets) for random jobs and shares.

mod support;

use bitcoin::hashes::{sha256d, Hash};
use proptest::prelude::*;
use sluice::chain::{Job, JobParts};
use sluice::share::{DuplicateLimits, Reject, SessionShares, ShareRules};
use sluice::stratum::{parse, Request};
use sluice::units::{Difficulty, Extranonce1, ExtranonceSizes, JobId, Target, VersionMask};
use sluice_stratum::share::ValidateSubmit;

#[derive(Debug, Clone)]
struct Case {
    coinb1: Vec<u8>,
    coinb2: Vec<u8>,
    extranonce1: Vec<u8>,
    extranonce2: Vec<u8>,
    txids: Vec<[u8; 32]>,
    prev_hash: [u8; 32],
    job_version: u32,
    version_mask: u32,
    rolled_bits: Option<u32>,
    nbits: u32,
    ntime: u32,
    nonce: u32,
    difficulty: f64,
    upper_case: bool,
}

fn case() -> impl Strategy<Value = Case> {
    (
        (
            proptest::collection::vec(any::<u8>(), 42..200),
            proptest::collection::vec(any::<u8>(), 9..140),
            proptest::collection::vec(any::<u8>(), 1..=8),
            proptest::collection::vec(any::<u8>(), 1..=16),
            proptest::collection::vec(any::<[u8; 32]>(), 0..70),
            any::<[u8; 32]>(),
        ),
        (
            any::<u32>(),
            prop_oneof![Just(0u32), Just(0x1fff_e000), any::<u32>()],
            proptest::option::of(any::<u32>()),
            prop_oneof![
                Just(0x207f_ffffu32),
                Just(0x1d00_ffff),
                Just(0x1703_4219),
                Just(0x2100_ffff)
            ],
            any::<u32>(),
            any::<u32>(),
            prop_oneof![1e-9f64..1e-3, 1e-3f64..4.0, Just(1.0)],
            any::<bool>(),
        ),
    )
        .prop_map(
            |((coinb1, coinb2, extranonce1, extranonce2, txids, prev_hash), rest)| {
                let (
                    job_version,
                    version_mask,
                    rolled,
                    nbits,
                    ntime,
                    nonce,
                    difficulty,
                    upper_case,
                ) = rest;
                Case {
                    coinb1,
                    coinb2,
                    extranonce1,
                    extranonce2,
                    txids,
                    prev_hash,
                    job_version,
                    version_mask,
                    rolled_bits: rolled.map(|b| b & version_mask),
                    nbits,
                    ntime,
                    nonce,
                    difficulty,
                    upper_case,
                }
            },
        )
}

fn job(c: &Case) -> Job {
    Job::new(
        JobId(7),
        JobParts {
            height: 1,
            prev_hash: c.prev_hash,
            version: c.job_version,
            nbits: c.nbits,
            ntime: c.ntime,
            mintime: 0,
            coinb1: c.coinb1.clone(),
            coinb2: c.coinb2.clone(),
            extranonce: ExtranonceSizes::new(c.extranonce1.len(), c.extranonce2.len()).unwrap(),
            txids: c.txids.clone(),
            transactions: Vec::new(),
            witness_reserved_value: None,
        },
        false,
    )
    .unwrap()
}

/// The reference: the header a share makes, and its hash, with the `bitcoin` crate alone.
fn reference(c: &Case) -> (bitcoin::block::Header, bitcoin::BlockHash) {
    let coinbase = [&c.coinb1[..], &c.extranonce1, &c.extranonce2, &c.coinb2].concat();
    let txids = std::iter::once(bitcoin::Txid::from_byte_array(
        sha256d::Hash::hash(&coinbase).to_byte_array(),
    ))
    .chain(c.txids.iter().map(|t| bitcoin::Txid::from_byte_array(*t)));
    let root: bitcoin::hash_types::TxMerkleNode =
        bitcoin::merkle_tree::calculate_root(txids.map(|t| t.to_raw_hash()))
            .map(bitcoin::hash_types::TxMerkleNode::from_raw_hash)
            .unwrap();
    let version = match c.rolled_bits {
        None => c.job_version,
        Some(bits) => (c.job_version & !c.version_mask) | bits,
    };
    let header = bitcoin::block::Header {
        version: bitcoin::block::Version::from_consensus(version as i32),
        prev_blockhash: bitcoin::BlockHash::from_byte_array(c.prev_hash),
        merkle_root: root,
        time: c.ntime,
        bits: bitcoin::CompactTarget::from_consensus(c.nbits),
        nonce: c.nonce,
    };
    (header, header.block_hash())
}

fn hex(bytes: &[u8], upper: bool) -> String {
    if upper {
        bitcoin::hex::DisplayHex::to_upper_hex_string(bytes)
    } else {
        bitcoin::hex::DisplayHex::to_lower_hex_string(bytes)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn share_path_agrees_with_the_bitcoin_crate(c in case()) {
        let job = job(&c);
        let version = c.rolled_bits.map(|b| format!(r#","{b:08x}""#)).unwrap_or_default();
        let line = format!(
            r#"{{"id":1,"method":"mining.submit","params":["w","{}","{}","{}","{}"{}]}}"#,
            job.id,
            hex(&c.extranonce2, c.upper_case),
            hex(&c.ntime.to_be_bytes(), c.upper_case),
            hex(&c.nonce.to_be_bytes(), c.upper_case),
            version,
        );
        let Request::Submit(submit) = parse(line.as_bytes()).unwrap().request else { panic!() };
        let share_target = Difficulty::new(c.difficulty).unwrap().target();
        let rules = ShareRules { version_mask: VersionMask(c.version_mask), now: c.ntime, share_target };
        let en1 = Extranonce1::new(&c.extranonce1).unwrap();
        let mut shares = SessionShares::new(DuplicateLimits::default());
        let verdict = shares.validate_submit(&job, false, &en1, &submit, &rules);

        let (header, hash) = reference(&c);
        let proof = verdict.proof().expect("well-formed shares are hashed");
        prop_assert_eq!(proof.hash.0, hash.to_byte_array());
        prop_assert_eq!(&proof.header[..], &bitcoin::consensus::serialize(&header)[..]);
        let network = bitcoin::Target::from_compact(bitcoin::CompactTarget::from_consensus(c.nbits));
        prop_assert_eq!(verdict.is_block(), network.is_met_by(hash));
        let meets_share = bitcoin::Target::from_le_bytes(share_target.to_le_bytes()).is_met_by(hash);
        prop_assert_eq!(verdict.result(), if meets_share { Ok(()) } else { Err(Reject::LowDifficulty) });

        // The cached path (same extranonce2, another nonce) agrees too.
        let c2 = Case { nonce: c.nonce ^ 1, ..c.clone() };
        let line2 = line.replace(&hex(&c.nonce.to_be_bytes(), c.upper_case), &hex(&c2.nonce.to_be_bytes(), c.upper_case));
        let Request::Submit(submit2) = parse(line2.as_bytes()).unwrap().request else { panic!() };
        let hits = shares.merkle_cache_hits();
        let verdict2 = shares.validate_submit(&job, false, &en1, &submit2, &rules);
        prop_assert_eq!(shares.merkle_cache_hits(), hits + 1);
        prop_assert_eq!(verdict2.proof().unwrap().hash.0, reference(&c2).1.to_byte_array());
    }

    #[test]
    fn difficulty_targets_are_exact_floors(m in 1u64..(1 << 53), k in 0u32..80) {
        // d = m / 2^k exactly; the target must be floor(DIFF1 * 2^k / m).
        let d = m as f64 / 2f64.powi(k as i32);
        let target = Difficulty::new(d).unwrap().target();
        let t = limbs(target);
        let diff1_shifted = shl(limbs(Target::DIFF1), k);
        if target == Target::MAX {
            // Clamped: DIFF1 * 2^k / m must not fit in 256 bits.
            prop_assert!(cmp(&mul(&t, m), &diff1_shifted) == std::cmp::Ordering::Less);
        } else {
            prop_assert!(cmp(&mul(&t, m), &diff1_shifted) != std::cmp::Ordering::Greater, "target * d <= DIFF1");
            let next = add_one(&t);
            prop_assert!(cmp(&mul(&next, m), &diff1_shifted) == std::cmp::Ordering::Greater, "(target + 1) * d > DIFF1");
        }
    }
}

// Just enough 384-bit arithmetic for the reference above: limbs little-endian.
type Big = [u64; 6];

fn limbs(t: Target) -> Big {
    let b = t.to_le_bytes();
    let mut out = [0u64; 6];
    for (i, chunk) in b.chunks_exact(8).enumerate() {
        out[i] = u64::from_le_bytes(chunk.try_into().unwrap());
    }
    out
}

fn mul(a: &Big, m: u64) -> Big {
    let mut out = [0u64; 6];
    let mut carry = 0u128;
    for i in 0..6 {
        let v = u128::from(a[i]) * u128::from(m) + carry;
        out[i] = v as u64;
        carry = v >> 64;
    }
    assert_eq!(carry, 0);
    out
}

fn shl(a: Big, k: u32) -> Big {
    let mut out = a;
    for _ in 0..k {
        let mut carry = 0;
        for limb in &mut out {
            let next = *limb >> 63;
            *limb = (*limb << 1) | carry;
            carry = next;
        }
    }
    out
}

fn add_one(a: &Big) -> Big {
    let mut out = *a;
    for limb in &mut out {
        let (v, overflow) = limb.overflowing_add(1);
        *limb = v;
        if !overflow {
            break;
        }
    }
    out
}

fn cmp(a: &Big, b: &Big) -> std::cmp::Ordering {
    a.iter().rev().cmp(b.iter().rev())
}
