//! Shared test support: the recorded blocks in `tests/data/`, a job built from a block's own parts,
//! and a reference miner that rebuilds a header from `mining.notify` using only `serde_json` and the
//! `bitcoin` crate, so that the engine's encoding is checked against an independent reading.

#![allow(dead_code, unused_imports)]

pub mod engine;
pub mod fleet;
pub mod leadership;
pub mod miner;
pub mod node;
pub mod plane;
pub mod redis_server;

use std::path::PathBuf;

use bitcoin::consensus::{deserialize, serialize};
use bitcoin::hashes::Hash;
use bitcoin::{Block, Transaction};
use sluice::chain::{Job, JobParts};
use sluice::units::{ExtranonceSizes, JobId};

pub fn data_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// The three recorded blocks, by name, as raw bytes.
pub fn recorded_blocks() -> Vec<(&'static str, Vec<u8>)> {
    let hex_block = std::fs::read_to_string(data_path("block_13b8a.hex")).unwrap();
    vec![
        (
            "mainnet 80,778 (pre-segwit)",
            bitcoin::hex::FromHex::from_hex(hex_block.trim()).unwrap(),
        ),
        (
            "testnet 000000000000045e…",
            std::fs::read(data_path(
                "testnet_block_000000000000045e0b1660b6445b5e5c5ab63c9a4f956be7e1e69be04fa4497b.raw",
            ))
            .unwrap(),
        ),
        (
            "mainnet 000000000000000000000c83… (segwit)",
            std::fs::read(data_path(
                "mainnet_block_000000000000000000000c835b2adcaedc20fdf6ee440009c249452c726dafae.raw",
            ))
            .unwrap(),
        ),
    ]
}

/// A block's coinbase split around an extranonce position.
pub struct SplitCoinbase {
    pub coinb1: Vec<u8>,
    pub extranonce1: Vec<u8>,
    pub extranonce2: Vec<u8>,
    pub coinb2: Vec<u8>,
}

/// The coinbase without its witness (the bytes behind the txid).
pub fn stripped(tx: &Transaction) -> Vec<u8> {
    let mut tx = tx.clone();
    for input in &mut tx.input {
        input.witness.clear();
    }
    serialize(&tx)
}

/// Splits the block's coinbase after its BIP34 height push (or at the start of the scriptSig for
/// blocks before BIP34), taking up to 4 bytes of extranonce1 and up to 8 of extranonce2.
pub fn split_coinbase(block: &Block) -> SplitCoinbase {
    let coinbase = stripped(&block.txdata[0]);
    let script = block.txdata[0].input[0].script_sig.as_bytes();
    assert!(script.len() < 0xfd);
    // version 4, input count 1, prevout 36, script length 1.
    let script_start = 42;
    assert_eq!(&coinbase[script_start..script_start + script.len()], script);
    let height_push = if block.bip34_block_height().is_ok() {
        usize::from(script[0]) + 1
    } else {
        0
    };
    let start = script_start + height_push;
    let room = script.len() - height_push;
    assert!(room >= 2, "no room for an extranonce");
    let n1 = (room - 1).min(4);
    let n2 = (room - n1).min(8);
    SplitCoinbase {
        coinb1: coinbase[..start].to_vec(),
        extranonce1: coinbase[start..start + n1].to_vec(),
        extranonce2: coinbase[start + n1..start + n1 + n2].to_vec(),
        coinb2: coinbase[start + n1 + n2..].to_vec(),
    }
}

/// The pool's version-rolling mask used with blocks whose version has BIP320 bits set.
pub const VERSION_MASK: u32 = 0x1fff_e000;

/// A job made of the block's own parts, with the rolled version bits taken out of the job's version.
pub fn job_from_block(block: &Block, split: &SplitCoinbase) -> Job {
    let version = block.header.version.to_consensus() as u32;
    let txids = block.txdata[1..]
        .iter()
        .map(|tx| tx.compute_txid().to_byte_array())
        .collect();
    let transactions = block.txdata[1..].iter().flat_map(serialize).collect();
    let witness = &block.txdata[0].input[0].witness;
    let witness_reserved_value = (!witness.is_empty()).then(|| {
        assert_eq!(witness.len(), 1);
        witness.nth(0).unwrap().try_into().unwrap()
    });
    Job::new(
        JobId(1),
        JobParts {
            height: block.bip34_block_height().unwrap_or(0),
            prev_hash: block.header.prev_blockhash.to_byte_array(),
            version: version & !VERSION_MASK,
            nbits: block.header.bits.to_consensus(),
            ntime: block.header.time,
            mintime: block.header.time - 600,
            coinb1: split.coinb1.clone(),
            coinb2: split.coinb2.clone(),
            extranonce: ExtranonceSizes::new(split.extranonce1.len(), split.extranonce2.len())
                .unwrap(),
            txids,
            transactions,
            witness_reserved_value,
        },
        true,
    )
    .unwrap()
}

pub fn parse_block(raw: &[u8]) -> Block {
    deserialize(raw).unwrap()
}

/// What a miner takes from `mining.notify`.
pub struct NotifiedWork {
    pub job_id: String,
    pub prev_hash: [u8; 32],
    pub coinb1: Vec<u8>,
    pub coinb2: Vec<u8>,
    pub branch: Vec<[u8; 32]>,
    pub version: u32,
    pub nbits: u32,
    pub ntime: u32,
    pub clean: bool,
}

fn unhex(s: &serde_json::Value) -> Vec<u8> {
    bitcoin::hex::FromHex::from_hex(s.as_str().unwrap()).unwrap()
}

fn be_u32(s: &serde_json::Value) -> u32 {
    u32::from_str_radix(s.as_str().unwrap(), 16).unwrap()
}

/// Reads a `mining.notify` line the way cgminer-family miners do.
pub fn read_notify(line: &[u8]) -> NotifiedWork {
    let v: serde_json::Value = serde_json::from_slice(line).unwrap();
    assert_eq!(v["method"], "mining.notify");
    let p = v["params"].as_array().unwrap();
    let mut prev: [u8; 32] = unhex(&p[1]).try_into().unwrap();
    for word in prev.chunks_exact_mut(4) {
        word.reverse();
    }
    NotifiedWork {
        job_id: p[0].as_str().unwrap().to_owned(),
        prev_hash: prev,
        coinb1: unhex(&p[2]),
        coinb2: unhex(&p[3]),
        branch: p[4]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| unhex(h).try_into().unwrap())
            .collect(),
        version: be_u32(&p[5]),
        nbits: be_u32(&p[6]),
        ntime: be_u32(&p[7]),
        clean: p[8].as_bool().unwrap(),
    }
}

/// The header a miner builds from notified work, computed with the `bitcoin` crate's types.
pub fn reference_header(
    work: &NotifiedWork,
    extranonce1: &[u8],
    extranonce2: &[u8],
    version: u32,
    ntime: u32,
    nonce: u32,
) -> bitcoin::block::Header {
    use bitcoin::hashes::sha256d;
    let mut coinbase = work.coinb1.clone();
    coinbase.extend_from_slice(extranonce1);
    coinbase.extend_from_slice(extranonce2);
    coinbase.extend_from_slice(&work.coinb2);
    let mut node = sha256d::Hash::hash(&coinbase).to_byte_array();
    for sibling in &work.branch {
        let mut pair = [0u8; 64];
        pair[..32].copy_from_slice(&node);
        pair[32..].copy_from_slice(sibling);
        node = sha256d::Hash::hash(&pair).to_byte_array();
    }
    bitcoin::block::Header {
        version: bitcoin::block::Version::from_consensus(version as i32),
        prev_blockhash: bitcoin::BlockHash::from_byte_array(work.prev_hash),
        merkle_root: bitcoin::TxMerkleNode::from_byte_array(node),
        time: ntime,
        bits: bitcoin::CompactTarget::from_consensus(work.nbits),
        nonce,
    }
}

pub const REGTEST_ADDRESS: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";

pub fn coinbase_config(extranonce1: usize, extranonce2: usize) -> sluice::chain::CoinbaseConfig {
    sluice::chain::CoinbaseConfig {
        payouts: vec![sluice::chain::Payout::to_address(
            REGTEST_ADDRESS,
            bitcoin::Network::Regtest,
            1,
        )
        .unwrap()],
        tag: b"/sluice-test/".to_vec(),
        extranonce: ExtranonceSizes::new(extranonce1, extranonce2).unwrap(),
        tx_version: 1,
    }
}

/// A `getblocktemplate` result with `tx_count` synthetic transactions (distinct, valid serializations)
/// on top of `prev` (display hex), with the given compact target.
pub fn template_json(
    prev: &str,
    height: u64,
    bits: u32,
    curtime: u32,
    tx_count: usize,
    segwit: bool,
) -> String {
    use bitcoin::hashes::sha256d;
    let mut txs = Vec::new();
    for i in 0..tx_count {
        // A one-input, one-output transaction spending a made-up outpoint.
        let mut tx = Vec::new();
        tx.extend_from_slice(&2u32.to_le_bytes());
        tx.push(1);
        tx.extend_from_slice(&sha256d::Hash::hash(&(i as u64).to_le_bytes()).to_byte_array());
        tx.extend_from_slice(&0u32.to_le_bytes());
        tx.push(0);
        tx.extend_from_slice(&u32::MAX.to_le_bytes());
        tx.push(1);
        tx.extend_from_slice(&1000u64.to_le_bytes());
        tx.push(1);
        tx.push(0x51);
        tx.extend_from_slice(&0u32.to_le_bytes());
        let txid = sha256d::Hash::hash(&tx);
        txs.push(serde_json::json!({
            "data": bitcoin::hex::DisplayHex::to_lower_hex_string(&tx[..]),
            "txid": txid.to_string(),
            "hash": txid.to_string(),
            "fee": 100,
            "weight": tx.len() * 4,
        }));
    }
    let mut t = serde_json::json!({
        "version": 0x2000_0000u32,
        "rules": ["csv", "segwit"],
        "previousblockhash": prev,
        "transactions": txs,
        "coinbasevalue": 5_000_000_000u64,
        "bits": format!("{bits:08x}"),
        "height": height,
        "curtime": curtime,
        "mintime": curtime - 3600,
        "target": "7fffff0000000000000000000000000000000000000000000000000000000000",
    });
    if segwit {
        t["default_witness_commitment"] =
            "6a24aa21a9ede2f61c3f71d1defd3fa999dfa36953755c690689799962b48bebd836974e8cf9".into();
    }
    t.to_string()
}

/// A job from [`template_json`].
pub fn template_job(id: u64, prev: &str, bits: u32, curtime: u32, tx_count: usize) -> Job {
    let json = template_json(prev, 1000, bits, curtime, tx_count, true);
    let template = sluice::chain::BlockTemplate::from_json(json.as_bytes()).unwrap();
    Job::new(
        JobId(id),
        template.job_parts(&coinbase_config(4, 8)).unwrap(),
        true,
    )
    .unwrap()
}

pub const PREV_A: &str = "00000000000000000001a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7";
pub const PREV_B: &str = "0000000000000000000b1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f";
/// Regtest's easy target: about every other hash is a block.
pub const EASY_BITS: u32 = 0x207f_ffff;
/// Mainnet-like: no test share is ever a block.
pub const HARD_BITS: u32 = 0x1703_4219;
pub const CURTIME: u32 = 1_750_000_000;
