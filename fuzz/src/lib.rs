//! Helpers shared by the Sluice fuzz targets: checking the JSON lines the pool writes, building real
//! Bitcoin transactions and templates for the chain targets, and independent (rust-bitcoin) oracles
//! for what the engine computes by itself.

use bitcoin::hashes::{sha256d, Hash};
use bitcoin::{Transaction, Txid, Wtxid};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use sluice_core::chain::{CoinbaseConfig, Payout};
use sluice_core::units::ExtranonceSizes;

/// The regtest address of the pool's default payout.
pub const REGTEST_ADDRESS: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";

/// The prefix of a witness commitment output script: OP_RETURN, push 36, `aa21a9ed`.
pub const WITNESS_COMMITMENT_PREFIX: [u8; 6] = [0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed];

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        write!(s, "{b:02x}").expect("String write");
    }
    s
}

/// Hex in the byte order nodes print hashes (reversed).
pub fn display_hex(bytes: &[u8; 32]) -> String {
    let mut b = *bytes;
    b.reverse();
    hex(&b)
}

/// Double SHA-256 by rust-bitcoin, independent of the engine's own SHA-256 and midstates.
pub fn sha256d(data: &[u8]) -> [u8; 32] {
    sha256d::Hash::hash(data).to_byte_array()
}

/// The coinbase configuration of the brief: one regtest payout, tag `/sluice/`, extranonces 4 + 8.
pub fn default_coinbase_config() -> CoinbaseConfig {
    CoinbaseConfig {
        payouts: vec![
            Payout::to_address(REGTEST_ADDRESS, bitcoin::Network::Regtest, 1)
                .expect("valid regtest address"),
        ],
        tag: b"/sluice/".to_vec(),
        extranonce: ExtranonceSizes::new(4, 8).expect("valid extranonce sizes"),
        tx_version: 1,
    }
}

/// A reply or notification as the pool writes it, read back with the id kept raw.
#[derive(Deserialize)]
struct Reply<'a> {
    #[serde(borrow)]
    id: &'a RawValue,
}

/// Checks one line the pool wrote: a single line ending in `\n`, valid JSON whose `"id"` is the
/// request's id byte for byte. Returns the line as a `Value` when serde_json can represent it (it
/// cannot when the echoed id is a number out of f64 range or a string with a lone surrogate escape,
/// both of which are valid JSON and echoed verbatim).
pub fn check_reply(buf: &[u8], id_json: &str) -> Option<Value> {
    assert_eq!(buf.last(), Some(&b'\n'), "reply must end in a newline");
    assert!(
        !buf[..buf.len() - 1].contains(&b'\n'),
        "reply must be exactly one line: {:?}",
        String::from_utf8_lossy(buf)
    );
    let reply: Reply = serde_json::from_slice(buf).unwrap_or_else(|e| {
        panic!(
            "reply is not a JSON object with an id: {e}: {:?}",
            String::from_utf8_lossy(buf)
        )
    });
    assert_eq!(reply.id.get(), id_json, "the id must be echoed exactly");
    match serde_json::from_str::<Value>(id_json) {
        Ok(id) => {
            let v: Value = serde_json::from_slice(buf).unwrap_or_else(|e| {
                panic!(
                    "reply with a representable id must parse as a Value: {e}: {:?}",
                    String::from_utf8_lossy(buf)
                )
            });
            assert_eq!(v["id"], id, "the id must round-trip as JSON");
            Some(v)
        }
        Err(_) => None,
    }
}

/// Checks a line the pool writes on its own (a notification, `"id":null`) and returns it.
pub fn check_notification(buf: &[u8], method: &str) -> Value {
    let v = check_reply(buf, "null").expect("a notification is representable JSON");
    assert_eq!(v["method"], method);
    assert!(v["params"].is_array(), "params must be an array");
    v
}

/// Whether two floats are the same number, allowing for serde_json's float parsing (which is not
/// correctly rounded without its `float_roundtrip` feature).
pub fn close(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a == b {
        return true;
    }
    let scale = a.abs().max(b.abs());
    (a - b).abs() <= scale * 1e-14 || (a - b).abs() <= f64::MIN_POSITIVE
}

/// A template transaction, with what an honest node says of it.
#[derive(Debug, Clone)]
pub struct TemplateTx {
    pub data: Vec<u8>,
    pub txid: [u8; 32],
    /// Set when `data` is a real transaction (so `txid` is its true txid).
    pub wtxid: Option<[u8; 32]>,
    /// The transaction carries witness data.
    pub has_witness: bool,
}

impl TemplateTx {
    pub fn real(tx: &Transaction) -> TemplateTx {
        TemplateTx {
            data: bitcoin::consensus::serialize(tx),
            txid: tx.compute_txid().to_byte_array(),
            wtxid: Some(tx.compute_wtxid().to_byte_array()),
            has_witness: tx.input.iter().any(|i| !i.witness.is_empty()),
        }
    }
}

/// The witness commitment output script for these transactions (the coinbase counts as zero), with
/// an all-zero witness reserved value, as `getblocktemplate` computes it. `None` when a transaction is
/// not real.
pub fn witness_commitment_script(txs: &[TemplateTx]) -> Option<Vec<u8>> {
    let mut wtxids = vec![Wtxid::all_zeros()];
    for tx in txs {
        wtxids.push(Wtxid::from_byte_array(tx.wtxid?));
    }
    let root = bitcoin::merkle_tree::calculate_root(wtxids.into_iter().map(|w| w.to_raw_hash()))
        .expect("not empty");
    let root = bitcoin::WitnessMerkleNode::from_raw_hash(root);
    let commitment = bitcoin::Block::compute_witness_commitment(&root, &[0u8; 32]);
    let mut script = WITNESS_COMMITMENT_PREFIX.to_vec();
    script.extend_from_slice(commitment.as_byte_array());
    Some(script)
}

/// The merkle root of a block whose coinbase has `coinbase_txid`, computed by rust-bitcoin.
pub fn merkle_root(coinbase_txid: [u8; 32], txids: &[[u8; 32]]) -> [u8; 32] {
    let all = std::iter::once(coinbase_txid)
        .chain(txids.iter().copied())
        .map(|t| Txid::from_byte_array(t).to_raw_hash());
    bitcoin::merkle_tree::calculate_root(all)
        .expect("not empty")
        .to_byte_array()
}

/// Renders a `getblocktemplate` result as Bitcoin Core prints it (txids and hashes byte-reversed).
#[allow(clippy::too_many_arguments)]
pub fn template_value(
    version: u32,
    prev_hash: &[u8; 32],
    txs: &[TemplateTx],
    coinbasevalue: u64,
    bits: &str,
    height: u64,
    curtime: u64,
    mintime: Option<u64>,
    witness_commitment: Option<&[u8]>,
) -> Value {
    let transactions: Vec<Value> = txs
        .iter()
        .map(|t| {
            serde_json::json!({
                "data": hex(&t.data),
                "txid": display_hex(&t.txid),
                "hash": display_hex(&t.wtxid.unwrap_or(t.txid)),
                "depends": [],
                "fee": 1000,
                "sigops": 4,
                "weight": 4 * t.data.len(),
            })
        })
        .collect();
    let mut v = serde_json::json!({
        "capabilities": ["proposal"],
        "version": version,
        "rules": ["csv", "!segwit", "taproot"],
        "vbavailable": {},
        "vbrequired": 0,
        "previousblockhash": display_hex(prev_hash),
        "transactions": transactions,
        "coinbaseaux": {},
        "coinbasevalue": coinbasevalue,
        "longpollid": format!("{}{}", display_hex(prev_hash), height),
        "target": "7fffff0000000000000000000000000000000000000000000000000000000000",
        "mutable": ["time", "transactions", "prevblock"],
        "noncerange": "00000000ffffffff",
        "sigoplimit": 80000,
        "sizelimit": 4000000,
        "weightlimit": 4000000,
        "curtime": curtime,
        "bits": bits,
        "height": height,
    });
    if let Some(m) = mintime {
        v["mintime"] = m.into();
    }
    if let Some(c) = witness_commitment {
        v["default_witness_commitment"] = hex(c).into();
    }
    v
}

/// Bitcoin Core's reading of a compact target (`arith_uint256::SetCompact`): whether it is negative,
/// whether it overflows 256 bits, and whether the target is zero.
pub fn core_compact(nbits: u32) -> (bool, bool, bool) {
    let size = nbits >> 24;
    let mut word = nbits & 0x007f_ffff;
    if size <= 3 {
        word >>= 8 * (3 - size);
    }
    let zero = word == 0;
    let negative = word != 0 && nbits & 0x0080_0000 != 0;
    let overflow =
        word != 0 && (size > 34 || (word > 0xff && size > 33) || (word > 0xffff && size > 32));
    (negative, overflow, zero)
}

/// Checks `Target::to_compact`: the compact form decodes, is canonical (decoding and encoding it again
/// gives it back) and is the target rounded down to its leading mantissa bytes (three, or two when the
/// first has its top bit set, which would read as a sign).
pub fn check_to_compact(target: sluice_core::units::Target) {
    let bits = target.to_compact();
    let back = sluice_core::units::Target::from_compact(bits)
        .unwrap_or_else(|e| panic!("to_compact gave {bits:08x}, which does not decode: {e}"));
    assert_eq!(back.to_compact(), bits, "to_compact is canonical");
    let be = target.to_be_bytes();
    let mut expected = be;
    if let Some(first) = be.iter().position(|&b| b != 0) {
        let window = if be[first] & 0x80 != 0 { 2 } else { 3 };
        for b in expected.iter_mut().skip(first + window) {
            *b = 0;
        }
    }
    assert_eq!(
        back.to_be_bytes(),
        expected,
        "to_compact of {target:?} ({bits:08x}) rounds down to its mantissa"
    );
}

/// The length of the BIP34 height push, as rust-bitcoin's `push_int` (Bitcoin Core's `CScript() <<
/// height`) writes it. `None` past `i64::MAX`, where `push_int` does not go.
pub fn height_push(height: u64) -> Option<Vec<u8>> {
    let h = i64::try_from(height).ok()?;
    Some(bitcoin::script::Builder::new().push_int(h).into_bytes())
}
