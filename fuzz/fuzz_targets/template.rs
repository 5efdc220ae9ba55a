//! Block templates: `getblocktemplate` JSON -> `BlockTemplate` -> `JobParts` -> `Job` -> notify line
//! and assembled block.
//!
//! Byte 0 picks the mode. Even: the rest is the template JSON as is, read with one of four coinbase
//! configurations (bits 1-2). Odd: the rest drives `arbitrary` to build a template from fields (real
//! rust-bitcoin transactions or raw ones, bits, height, times, witness commitment) and a coinbase
//! configuration, so most inputs get past JSON parsing.
//!
//! Checks, for every template the engine turns into job parts:
//! - the parts are the template's fields (previous hash, bits, txids, transaction bytes), `Job::new`
//!   accepts them, and the network target is the one rust-bitcoin decodes from the bits;
//! - the notify line is one line of JSON with Stratum's nine params matching the job;
//! - the coinbase decodes with rust-bitcoin and re-encodes to the same bytes, is a coinbase, carries the
//!   BIP34 height push Bitcoin Core writes, the extranonce push and the tag within 100 bytes, pays the
//!   coinbase value split by weight, and ends with the witness commitment when there is one;
//! - the merkle branch folds the coinbase txid to the root rust-bitcoin computes over all txids;
//! - the assembled block (zero header) has exactly the expected length; when every template transaction
//!   is real and its txid true, the block with a real header decodes with rust-bitcoin, its merkle root
//!   checks, and its witness commitment checks whenever the template's commitment is the right one.
//!
//! In the structured mode the outcome is predicted too: the JSON must parse, and `job_parts` must
//! succeed exactly when the fields are valid (bits a valid compact target, times within u32, the
//! commitment well formed, every txid and data valid hex, the scriptSig within 100 bytes).

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash;
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

use sluice_core::chain::coinbase::MAX_COINBASE_SCRIPT_SIZE;
use sluice_core::chain::{merkle, BlockTemplate, CoinbaseConfig, Job, JobParts, Payout};
use sluice_core::units::{ExtranonceSizes, JobId};
use sluice_fuzz::{
    core_compact, default_coinbase_config, height_push, hex, merkle_root, sha256d, template_value,
    witness_commitment_script, TemplateTx, WITNESS_COMMITMENT_PREFIX,
};
use sluice_stratum::codec::message::notify_line;
use sluice_stratum::codec::message::stratum_prev_hash;

fn config(which: u8) -> CoinbaseConfig {
    let mut c = default_coinbase_config();
    match which & 3 {
        0 => {}
        1 => {
            c.extranonce = ExtranonceSizes::new(8, 16).expect("valid");
            c.tag = vec![b'x'; 60];
        }
        2 => {
            c.extranonce = ExtranonceSizes::new(1, 1).expect("valid");
            c.tag.clear();
            c.tx_version = 2;
            c.payouts.push(Payout {
                script_pubkey: ScriptBuf::from_bytes(vec![0x51]),
                weight: 3,
            });
        }
        _ => c.tag = vec![b'/'; 81],
    }
    c
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

fn unhex_u32(v: &Value) -> u32 {
    let s = v.as_str().expect("hex string");
    assert_eq!(s.len(), 8, "u32 fields are 8 hex digits");
    u32::from_str_radix(s, 16).expect("hex")
}

/// The template's transactions as the engine should read them, and whether all of them are real
/// transactions whose txid is true.
fn template_txs(t: &BlockTemplate) -> (Vec<[u8; 32]>, Vec<u8>, Option<Vec<TemplateTx>>) {
    let mut txids = Vec::new();
    let mut data = Vec::new();
    let mut real = Some(Vec::new());
    for tx in &t.transactions {
        let id = tx.txid.as_deref().or(tx.hash.as_deref()).expect("txid");
        let mut id: [u8; 32] = unhex(id).expect("hex").try_into().expect("32 bytes");
        id.reverse();
        txids.push(id);
        let bytes = unhex(&tx.data).expect("hex");
        data.extend_from_slice(&bytes);
        let decoded = bitcoin::consensus::deserialize::<Transaction>(&bytes).ok();
        match (decoded, &mut real) {
            (Some(d), Some(list))
                if d.compute_txid().to_byte_array() == id
                    && bitcoin::consensus::serialize(&d) == bytes =>
            {
                list.push(TemplateTx::real(&d))
            }
            _ => real = None,
        }
    }
    (txids, data, real)
}

fn check(t: &BlockTemplate, config: &CoinbaseConfig, id: u64, clean: bool) -> bool {
    let Ok(parts) = t.job_parts(config) else {
        return false;
    };
    check_parts(t, config, &parts);
    let job = Job::new(JobId(id), parts.clone(), clean)
        .unwrap_or_else(|e| panic!("job parts from a template must make a job: {e}"));
    check_notify(&job, &parts);

    let en1: Vec<u8> = (0..config.extranonce.extranonce1())
        .map(|i| 0xa0 | i as u8)
        .collect();
    let en2: Vec<u8> = (0..config.extranonce.extranonce2())
        .map(|i| 0xb0 | i as u8)
        .collect();
    let coinbase = job.coinbase(&en1, &en2);
    assert_eq!(
        coinbase,
        [&parts.coinb1[..], &en1, &en2, &parts.coinb2].concat()
    );
    check_coinbase(t, config, &coinbase, &en1, &en2);

    // The branch folds to the root over all txids.
    let cb_txid = sha256d(&coinbase);
    let root = merkle_root(cb_txid, &parts.txids);
    assert_eq!(
        merkle::fold(cb_txid, &job.merkle_branch),
        root,
        "merkle branch"
    );
    let n = parts.txids.len();
    let levels = if n == 0 {
        0
    } else {
        (usize::BITS - n.leading_zeros()) as usize
    };
    assert_eq!(job.merkle_branch.len(), levels, "one branch node per level");
    assert_eq!(job.transaction_count(), n + 1);

    // Block assembly with a zero header: exact length.
    let block = job.assemble_block(&[0u8; 80], &en1, &en2);
    let compact = match n + 1 {
        0..=0xfc => 1,
        0xfd..=0xffff => 3,
        _ => 5,
    };
    let witness = if parts.witness_reserved_value.is_some() {
        2 + 2 + 32
    } else {
        0
    };
    assert!(block.len() >= 80 + coinbase.len());
    assert_eq!(
        block.len(),
        80 + compact + coinbase.len() + witness + parts.transactions.len(),
        "assembled block length"
    );
    assert_eq!(&block[..80], &[0u8; 80]);
    assert!(block.ends_with(&parts.transactions));

    // With real transactions, the block with a real header is a valid block to rust-bitcoin.
    let (_, _, real) = template_txs(t);
    if let Some(real) = real {
        let mut header = [0u8; 80];
        header[0..4].copy_from_slice(&job.version.to_le_bytes());
        header[4..36].copy_from_slice(&job.prev_hash);
        header[36..68].copy_from_slice(&root);
        header[68..72].copy_from_slice(&job.ntime.to_le_bytes());
        header[72..76].copy_from_slice(&job.nbits.to_le_bytes());
        let raw = job.assemble_block(&header, &en1, &en2);
        let block: bitcoin::Block = bitcoin::consensus::deserialize(&raw)
            .unwrap_or_else(|e| panic!("assembled block does not decode: {e}"));
        assert_eq!(
            bitcoin::consensus::serialize(&block),
            raw,
            "canonical encoding"
        );
        assert_eq!(block.txdata.len(), n + 1);
        assert!(block.txdata[0].is_coinbase());
        assert!(block.check_merkle_root(), "merkle root");
        let expected = witness_commitment_script(&real).expect("all real");
        let any_witness = real.iter().any(|t| t.has_witness);
        let commitment = t.default_witness_commitment.as_deref().and_then(unhex);
        if commitment.as_deref() == Some(&expected[..]) || (!any_witness && commitment.is_none()) {
            assert!(block.check_witness_commitment(), "witness commitment");
        }
        if block.header.version.to_consensus() >= 2 && (17..1 << 31).contains(&t.height) {
            assert_eq!(block.bip34_block_height().ok(), Some(t.height), "BIP34");
        }
    }
    true
}

fn check_parts(t: &BlockTemplate, config: &CoinbaseConfig, parts: &JobParts) {
    let mut prev: [u8; 32] = unhex(&t.previousblockhash)
        .expect("hex")
        .try_into()
        .expect("32 bytes");
    prev.reverse();
    assert_eq!(parts.prev_hash, prev);
    assert_eq!(parts.height, t.height);
    assert_eq!(parts.version, t.version);
    assert_eq!(parts.nbits, u32::from_str_radix(&t.bits, 16).expect("bits"));
    assert_eq!(u64::from(parts.ntime), t.curtime);
    assert_eq!(u64::from(parts.mintime), t.mintime.unwrap_or(0));
    assert_eq!(parts.extranonce, config.extranonce);
    let (txids, data, _) = template_txs(t);
    assert_eq!(parts.txids, txids);
    assert_eq!(parts.transactions, data);
    assert_eq!(
        parts.witness_reserved_value.is_some(),
        t.default_witness_commitment.is_some()
    );
    // The network target is what rust-bitcoin reads from the bits.
    let (negative, overflow, zero) = core_compact(parts.nbits);
    assert!(!negative && !overflow, "bits {:08x} accepted", parts.nbits);
    let ours = sluice_core::units::Target::from_compact(parts.nbits).expect("accepted");
    sluice_fuzz::check_to_compact(ours);
    if zero {
        // Zero targets: rust-bitcoin keeps the sign bit in small mantissas, Core and the engine do not.
        assert_eq!(ours.to_le_bytes(), [0; 32], "zero target");
    } else {
        let theirs =
            bitcoin::Target::from_compact(bitcoin::CompactTarget::from_consensus(parts.nbits));
        assert_eq!(ours.to_le_bytes(), theirs.to_le_bytes(), "network target");
    }
}

fn check_notify(job: &Job, parts: &JobParts) {
    let line = notify_line(&job);
    let v = sluice_fuzz::check_notification(line, "mining.notify");
    let p = v["params"].as_array().expect("params");
    assert_eq!(p.len(), 9, "mining.notify has nine params");
    assert_eq!(p[0], Value::from(job.id.to_string()));
    let prev: [u8; 32] = unhex(p[1].as_str().expect("prevhash"))
        .expect("hex")
        .try_into()
        .expect("32 bytes");
    assert_eq!(stratum_prev_hash(&prev), parts.prev_hash, "prevhash words");
    assert_eq!(p[2], Value::from(hex(&parts.coinb1)));
    assert_eq!(p[3], Value::from(hex(&parts.coinb2)));
    let branch: Vec<String> = job.merkle_branch.iter().map(|n| hex(n)).collect();
    assert_eq!(p[4], serde_json::json!(branch));
    assert_eq!(unhex_u32(&p[5]), parts.version);
    assert_eq!(unhex_u32(&p[6]), parts.nbits);
    assert_eq!(unhex_u32(&p[7]), parts.ntime);
    assert_eq!(p[8], Value::Bool(job.clean));
}

fn check_coinbase(
    t: &BlockTemplate,
    config: &CoinbaseConfig,
    coinbase: &[u8],
    en1: &[u8],
    en2: &[u8],
) {
    let tx: Transaction = bitcoin::consensus::deserialize(coinbase)
        .unwrap_or_else(|e| panic!("coinbase does not decode: {e}: {}", hex(coinbase)));
    assert_eq!(
        bitcoin::consensus::serialize(&tx),
        coinbase,
        "canonical coinbase"
    );
    assert!(tx.is_coinbase());
    assert_eq!(tx.version.0, config.tx_version);
    assert_eq!(tx.lock_time, LockTime::ZERO);
    assert_eq!(tx.input.len(), 1);
    assert_eq!(tx.input[0].sequence, Sequence::MAX);
    let script = tx.input[0].script_sig.as_bytes();
    assert!(script.len() <= MAX_COINBASE_SCRIPT_SIZE, "scriptSig size");
    let push = height_push(t.height).unwrap_or_else(|| {
        // Past i64::MAX: eight little-endian bytes and a zero sign byte.
        let mut p = vec![9];
        p.extend_from_slice(&t.height.to_le_bytes());
        p.push(0);
        p
    });
    assert!(script.starts_with(&push), "BIP34 height push");
    let rest = &script[push.len()..];
    assert_eq!(usize::from(rest[0]), en1.len() + en2.len());
    assert_eq!(&rest[1..1 + en1.len()], en1);
    assert_eq!(&rest[1 + en1.len()..1 + en1.len() + en2.len()], en2);
    let tag_push = &rest[1 + en1.len() + en2.len()..];
    let tag_len = config.tag.len();
    let expected_tag: Vec<u8> = match tag_len {
        0 => Vec::new(),
        1..=75 => [&[tag_len as u8][..], &config.tag].concat(),
        _ => [&[0x4c, tag_len as u8][..], &config.tag].concat(),
    };
    assert_eq!(tag_push, expected_tag, "tag push");

    let commitment = t
        .default_witness_commitment
        .as_deref()
        .map(|h| unhex(h).expect("hex"));
    let payouts = config.payouts.len();
    assert_eq!(tx.output.len(), payouts + usize::from(commitment.is_some()));
    let total: u128 = config.payouts.iter().map(|p| u128::from(p.weight)).sum();
    let mut sum = 0u128;
    for (i, (out, payout)) in tx.output.iter().zip(&config.payouts).enumerate() {
        assert_eq!(out.script_pubkey, payout.script_pubkey);
        let share = u128::from(t.coinbasevalue) * u128::from(payout.weight) / total;
        if i > 0 {
            assert_eq!(u128::from(out.value.to_sat()), share, "payout {i}");
        } else {
            assert!(u128::from(out.value.to_sat()) >= share, "first payout");
        }
        sum += u128::from(out.value.to_sat());
    }
    assert_eq!(sum, u128::from(t.coinbasevalue), "payouts add up");
    if let Some(c) = commitment {
        let last = tx.output.last().expect("commitment output");
        assert_eq!(last.value, Amount::ZERO);
        assert_eq!(last.script_pubkey.as_bytes(), &c[..]);
    }
}

// ---- The structured mode ------------------------------------------------------------------------

#[derive(Arbitrary, Debug)]
struct InputSpec {
    prev_txid: [u8; 32],
    vout: u32,
    script_sig: Vec<u8>,
    sequence: u32,
    witness: Vec<Vec<u8>>,
}

#[derive(Arbitrary, Debug)]
enum TxSpec {
    Real {
        version: i32,
        lock_time: u32,
        inputs: Vec<InputSpec>,
        outputs: Vec<(u64, Vec<u8>)>,
    },
    /// Arbitrary bytes with an arbitrary txid.
    Raw { data: Vec<u8>, txid: [u8; 32] },
    /// Text fields, mostly not hex.
    Text { data: String, txid: String },
    /// No txid and no hash.
    NoTxid { data: Vec<u8> },
}

#[derive(Arbitrary, Debug)]
enum BitsSpec {
    Regtest,
    Mainnet,
    Raw(u32),
    Text(String),
}

#[derive(Arbitrary, Debug)]
enum HeightSpec {
    Small(u8),
    Real(u32),
    Raw(u64),
}

#[derive(Arbitrary, Debug)]
enum CommitmentSpec {
    None,
    Correct,
    AfterPrefix(Vec<u8>),
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Spec {
    en1: u8,
    en2: u8,
    tag: Vec<u8>,
    tx_version: i32,
    payouts: Vec<(Vec<u8>, u32)>,
    version: u32,
    prev_hash: [u8; 32],
    bits: BitsSpec,
    height: HeightSpec,
    curtime: Result<u32, u64>,
    mintime: Option<Result<u32, u64>>,
    coinbasevalue: u64,
    txs: Vec<TxSpec>,
    commitment: CommitmentSpec,
    id: u64,
    clean: bool,
    /// BIP22 style: the txid in `hash`, no `txid` field.
    bip22: bool,
    upper_case: bool,
}

fn real_tx(
    version: i32,
    lock_time: u32,
    inputs: &[InputSpec],
    outputs: &[(u64, Vec<u8>)],
) -> Transaction {
    let mut input: Vec<TxIn> = inputs
        .iter()
        .take(3)
        .map(|i| TxIn {
            previous_output: OutPoint {
                txid: Txid::from_byte_array(i.prev_txid),
                vout: i.vout,
            },
            script_sig: ScriptBuf::from_bytes(i.script_sig.iter().copied().take(80).collect()),
            sequence: Sequence(i.sequence),
            witness: Witness::from_slice(&i.witness.iter().take(4).collect::<Vec<_>>()),
        })
        .collect();
    if input.is_empty() {
        // No inputs would read as a segwit marker.
        input.push(TxIn::default());
    }
    Transaction {
        version: Version(version),
        lock_time: LockTime::from_consensus(lock_time),
        input,
        output: outputs
            .iter()
            .take(3)
            .map(|(v, s)| TxOut {
                value: Amount::from_sat(*v),
                script_pubkey: ScriptBuf::from_bytes(s.iter().copied().take(40).collect()),
            })
            .collect(),
    }
}

fn valid_hex(s: &str, bytes: Option<usize>) -> bool {
    unhex(s).is_some_and(|b| bytes.is_none_or(|n| b.len() == n))
}

fn structured(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let spec: Spec = u.arbitrary()?;
    let mut reasons: Vec<&str> = Vec::new();

    let mut config = default_coinbase_config();
    config.extranonce = ExtranonceSizes::new(
        1 + usize::from(spec.en1 % 8),
        1 + usize::from(spec.en2 % 16),
    )
    .expect("in range");
    config.tag = spec.tag.iter().copied().take(100).collect();
    config.tx_version = spec.tx_version;
    if !spec.payouts.is_empty() {
        // Weight zero is refused by `Payout::to_address`; keep to that contract.
        config.payouts = spec
            .payouts
            .iter()
            .take(3)
            .map(|(s, w)| Payout {
                script_pubkey: ScriptBuf::from_bytes(s.iter().copied().take(40).collect()),
                weight: (*w).max(1),
            })
            .collect();
    }

    let height = match spec.height {
        HeightSpec::Small(h) => u64::from(h),
        HeightSpec::Real(h) => u64::from(h % 2_000_000),
        HeightSpec::Raw(h) => h,
    };
    let push_len = height_push(height).map_or(10, |p| p.len());
    let tag_push = match config.tag.len() {
        0 => 0,
        n @ 1..=75 => 1 + n,
        n => 2 + n,
    };
    if push_len + 1 + config.extranonce.total() + tag_push > MAX_COINBASE_SCRIPT_SIZE {
        reasons.push("scriptSig too long");
    }

    let bits = match spec.bits {
        BitsSpec::Regtest => "207fffff".to_owned(),
        BitsSpec::Mainnet => "17034219".to_owned(),
        BitsSpec::Raw(b) => format!("{b:08x}"),
        BitsSpec::Text(s) => s,
    };
    let mut bits_zero_target = false;
    match (bits.len(), u32::from_str_radix(&bits, 16)) {
        (8, Ok(n)) if bits.bytes().all(|b| b.is_ascii_hexdigit()) => {
            let (negative, overflow, zero) = core_compact(n);
            if negative || overflow {
                reasons.push("bits not a valid compact target");
            }
            // Bitcoin Core reads some "negative zero" encodings as a zero target; either answer is
            // acceptable for those.
            bits_zero_target = zero;
        }
        _ => reasons.push("bits not 8 hex digits"),
    }
    let curtime = match spec.curtime {
        Ok(t) => u64::from(t),
        Err(t) => t,
    };
    if curtime > u64::from(u32::MAX) {
        reasons.push("curtime");
    }
    let mintime = spec.mintime.map(|m| match m {
        Ok(t) => u64::from(t),
        Err(t) => t,
    });
    if mintime.is_some_and(|m| m > u64::from(u32::MAX)) {
        reasons.push("mintime");
    }

    let mut txs = Vec::new();
    let mut text_txs = Vec::new();
    for (i, tx) in spec.txs.iter().take(8).enumerate() {
        match tx {
            TxSpec::Real {
                version,
                lock_time,
                inputs,
                outputs,
            } => txs.push(TemplateTx::real(&real_tx(
                *version, *lock_time, inputs, outputs,
            ))),
            TxSpec::Raw { data, txid } => txs.push(TemplateTx {
                data: data.clone(),
                txid: *txid,
                wtxid: None,
                has_witness: false,
            }),
            TxSpec::Text { data, txid } => {
                if !valid_hex(data, None) || !valid_hex(txid, Some(32)) {
                    reasons.push("transaction text not hex");
                }
                text_txs.push((i, data.clone(), Some(txid.clone())));
                txs.push(TemplateTx {
                    data: Vec::new(),
                    txid: [0; 32],
                    wtxid: None,
                    has_witness: false,
                });
            }
            TxSpec::NoTxid { data } => {
                reasons.push("missing txid");
                text_txs.push((i, hex(data), None));
                txs.push(TemplateTx {
                    data: Vec::new(),
                    txid: [0; 32],
                    wtxid: None,
                    has_witness: false,
                });
            }
        }
    }

    let commitment = match spec.commitment {
        CommitmentSpec::None => None,
        CommitmentSpec::Correct => {
            Some(witness_commitment_script(&txs).unwrap_or_else(|| {
                // Not all real: a well-formed commitment to something else.
                [&WITNESS_COMMITMENT_PREFIX[..], &[0x5a; 32]].concat()
            }))
        }
        CommitmentSpec::AfterPrefix(b) => Some([&WITNESS_COMMITMENT_PREFIX[..], &b].concat()),
        CommitmentSpec::Raw(b) => Some(b),
    };
    if let Some(c) = &commitment {
        if c.len() < 38 || !c.starts_with(&WITNESS_COMMITMENT_PREFIX) {
            reasons.push("witness commitment malformed");
        }
    }

    let mut v = template_value(
        spec.version,
        &spec.prev_hash,
        &txs,
        spec.coinbasevalue,
        &bits,
        height,
        curtime,
        mintime,
        commitment.as_deref(),
    );
    let list = v["transactions"].as_array_mut().expect("array");
    for (i, data, txid) in text_txs {
        let entry = list[i].as_object_mut().expect("object");
        entry.insert("data".into(), data.into());
        entry.remove("hash");
        match txid {
            Some(t) => entry.insert("txid".into(), t.into()),
            None => entry.remove("txid"),
        };
    }
    if spec.bip22 {
        for entry in list.iter_mut() {
            let entry = entry.as_object_mut().expect("object");
            if let Some(txid) = entry.remove("txid") {
                entry.insert("hash".into(), txid);
            }
        }
    }
    let json = if spec.upper_case {
        upper_values(&v)
    } else {
        v.to_string()
    };

    let t = BlockTemplate::from_json(json.as_bytes())
        .unwrap_or_else(|e| panic!("generated template must parse: {e}: {json}"));
    let ok = check(&t, &config, spec.id, spec.clean);
    if !(bits_zero_target && reasons.is_empty()) {
        assert_eq!(
            ok,
            reasons.is_empty(),
            "job_parts outcome; expected failures: {reasons:?}; got {:?}",
            t.job_parts(&config).err()
        );
    }
    Ok(())
}

/// The template with every hex string value in upper case (keys untouched).
fn upper_values(v: &Value) -> String {
    fn up(v: &Value) -> Value {
        match v {
            Value::String(s) if s.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Value::String(s.to_ascii_uppercase())
            }
            Value::Array(a) => Value::Array(a.iter().map(up).collect()),
            Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), up(v))).collect()),
            other => other.clone(),
        }
    }
    up(v).to_string()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        if let Ok(t) = BlockTemplate::from_json(rest) {
            let id = u64::from(mode >> 3);
            check(&t, &config(mode >> 1), id, mode & 0x80 != 0);
        }
    } else {
        let _ = structured(&mut Unstructured::new(rest));
    }
});
