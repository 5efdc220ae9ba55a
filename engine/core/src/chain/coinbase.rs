//! The coinbase transaction, split around the extranonce space into `coinb1` and `coinb2`.
//!
//! Layout of the scriptSig: the BIP34 height push, one data push holding extranonce1 then
//! extranonce2, then the pool's tag as a push. `coinb1` ends just before the extranonce bytes and
//! `coinb2` starts just after them, so `coinb1 + extranonce1 + extranonce2 + coinb2` is the coinbase
//! without its witness (the form whose hash is the txid). Outputs: the payouts, then the witness
//! commitment when the template has one.

use bitcoin::address::NetworkUnchecked;
use bitcoin::{Address, Network, ScriptBuf};

use crate::units::ExtranonceSizes;

/// The consensus limit on a coinbase scriptSig.
pub const MAX_COINBASE_SCRIPT_SIZE: usize = 100;
/// The most bytes a tag may push with a single-byte length (OP_PUSHBYTES_75).
const MAX_SINGLE_PUSH: usize = 75;

/// One payout output: an address and its weight in the split of the block reward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payout {
    pub script_pubkey: ScriptBuf,
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoinbaseError {
    #[error("payout address {address:?} is not a valid address: {reason}")]
    BadAddress { address: String, reason: String },
    #[error("payout address {address:?} is not for the {network} network")]
    WrongNetwork { address: String, network: Network },
    #[error("payout weight must be at least 1")]
    ZeroWeight,
    #[error("at least one payout address is needed")]
    NoPayouts,
    #[error("the coinbase scriptSig would be {0} bytes; the limit is {MAX_COINBASE_SCRIPT_SIZE} (shorten the coinbase tag or the extranonces)")]
    ScriptTooLong(usize),
}

impl Payout {
    /// A payout to `address`, which must belong to `network`.
    pub fn to_address(
        address: &str,
        network: Network,
        weight: u32,
    ) -> Result<Payout, CoinbaseError> {
        if weight == 0 {
            return Err(CoinbaseError::ZeroWeight);
        }
        let unchecked: Address<NetworkUnchecked> =
            address.parse().map_err(|e: bitcoin::address::ParseError| {
                CoinbaseError::BadAddress {
                    address: address.to_owned(),
                    reason: e.to_string(),
                }
            })?;
        let checked =
            unchecked
                .require_network(network)
                .map_err(|_| CoinbaseError::WrongNetwork {
                    address: address.to_owned(),
                    network,
                })?;
        Ok(Payout {
            script_pubkey: checked.script_pubkey(),
            weight,
        })
    }
}

/// What the pool puts into every coinbase, whatever the template.
#[derive(Debug, Clone)]
pub struct CoinbaseConfig {
    pub payouts: Vec<Payout>,
    /// Bytes pushed after the extranonce (often the pool's name).
    pub tag: Vec<u8>,
    pub extranonce: ExtranonceSizes,
    /// The coinbase transaction's version (1 or 2).
    pub tx_version: i32,
}

impl CoinbaseConfig {
    /// Checks what can be checked before a template arrives: payouts present and the scriptSig in
    /// bounds at the largest height a height push can take.
    pub fn validate(&self) -> Result<(), CoinbaseError> {
        if self.payouts.is_empty() {
            return Err(CoinbaseError::NoPayouts);
        }
        if self.payouts.iter().any(|p| p.weight == 0) {
            return Err(CoinbaseError::ZeroWeight);
        }
        let size = script_sig_size(u32::MAX.into(), self.tag.len(), self.extranonce);
        if size > MAX_COINBASE_SCRIPT_SIZE {
            return Err(CoinbaseError::ScriptTooLong(size));
        }
        Ok(())
    }
}

/// The two halves of a coinbase around the extranonce space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoinbaseParts {
    pub coinb1: Vec<u8>,
    pub coinb2: Vec<u8>,
}

/// The BIP34 height push, exactly as Bitcoin Core's `CScript() << height` writes it.
pub fn bip34_height_push(height: u64) -> Vec<u8> {
    match height {
        0 => vec![0x00],
        1..=16 => vec![0x50 + height as u8],
        _ => {
            let mut num = Vec::with_capacity(9);
            let mut h = height;
            while h > 0 {
                num.push(h as u8);
                h >>= 8;
            }
            if num.last().is_some_and(|b| b & 0x80 != 0) {
                num.push(0);
            }
            let mut push = Vec::with_capacity(num.len() + 1);
            push.push(num.len() as u8);
            push.extend_from_slice(&num);
            push
        }
    }
}

fn tag_push_size(tag_len: usize) -> usize {
    match tag_len {
        0 => 0,
        1..=MAX_SINGLE_PUSH => 1 + tag_len,
        _ => 2 + tag_len, // OP_PUSHDATA1
    }
}

fn script_sig_size(height: u64, tag_len: usize, sizes: ExtranonceSizes) -> usize {
    bip34_height_push(height).len() + 1 + sizes.total() + tag_push_size(tag_len)
}

/// Appends Bitcoin's CompactSize encoding of `n`.
pub fn write_compact_size(out: &mut Vec<u8>, n: u64) {
    match n {
        0..=0xfc => out.push(n as u8),
        0xfd..=0xffff => {
            out.push(0xfd);
            out.extend_from_slice(&(n as u16).to_le_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(0xfe);
            out.extend_from_slice(&(n as u32).to_le_bytes());
        }
        _ => {
            out.push(0xff);
            out.extend_from_slice(&n.to_le_bytes());
        }
    }
}

/// Builds the coinbase for a block at `height` paying `value` satoshis, split over the payouts by
/// weight (the remainder of the division goes to the first), plus the witness commitment output.
pub fn build(
    config: &CoinbaseConfig,
    height: u64,
    value: u64,
    witness_commitment: Option<&[u8]>,
) -> Result<CoinbaseParts, CoinbaseError> {
    if config.payouts.is_empty() {
        return Err(CoinbaseError::NoPayouts);
    }
    // The fields are public: a zero weight must be an error here, not a division by zero.
    if config.payouts.iter().any(|p| p.weight == 0) {
        return Err(CoinbaseError::ZeroWeight);
    }
    let script_size = script_sig_size(height, config.tag.len(), config.extranonce);
    if script_size > MAX_COINBASE_SCRIPT_SIZE {
        return Err(CoinbaseError::ScriptTooLong(script_size));
    }

    let mut coinb1 = Vec::with_capacity(64);
    coinb1.extend_from_slice(&config.tx_version.to_le_bytes());
    coinb1.push(1); // one input
    coinb1.extend_from_slice(&[0u8; 32]); // null prevout hash
    coinb1.extend_from_slice(&u32::MAX.to_le_bytes()); // null prevout index
    write_compact_size(&mut coinb1, script_size as u64);
    coinb1.extend_from_slice(&bip34_height_push(height));
    coinb1.push(config.extranonce.total() as u8); // push of the extranonce bytes

    let mut coinb2 = Vec::with_capacity(128);
    match config.tag.len() {
        0 => {}
        n @ 1..=MAX_SINGLE_PUSH => coinb2.push(n as u8),
        n => {
            coinb2.push(0x4c); // OP_PUSHDATA1
            coinb2.push(n as u8);
        }
    }
    coinb2.extend_from_slice(&config.tag);
    coinb2.extend_from_slice(&u32::MAX.to_le_bytes()); // sequence

    let outputs = config.payouts.len() + usize::from(witness_commitment.is_some());
    write_compact_size(&mut coinb2, outputs as u64);
    let total_weight: u128 = config.payouts.iter().map(|p| u128::from(p.weight)).sum();
    let shares: Vec<u64> = config
        .payouts
        .iter()
        .map(|p| (u128::from(value) * u128::from(p.weight) / total_weight) as u64)
        .collect();
    let remainder = value - shares.iter().sum::<u64>();
    for (i, (payout, share)) in config.payouts.iter().zip(shares).enumerate() {
        let amount = if i == 0 { share + remainder } else { share };
        write_output(&mut coinb2, amount, payout.script_pubkey.as_bytes());
    }
    if let Some(commitment) = witness_commitment {
        write_output(&mut coinb2, 0, commitment);
    }
    coinb2.extend_from_slice(&0u32.to_le_bytes()); // lock time
    Ok(CoinbaseParts { coinb1, coinb2 })
}

fn write_output(out: &mut Vec<u8>, value: u64, script: &[u8]) {
    out.extend_from_slice(&value.to_le_bytes());
    write_compact_size(out, script.len() as u64);
    out.extend_from_slice(script);
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::consensus::deserialize;
    use bitcoin::Transaction;

    const REGTEST_ADDR: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";

    fn config(tag: &[u8]) -> CoinbaseConfig {
        CoinbaseConfig {
            payouts: vec![Payout::to_address(REGTEST_ADDR, Network::Regtest, 1).unwrap()],
            tag: tag.to_vec(),
            extranonce: ExtranonceSizes::new(4, 8).unwrap(),
            tx_version: 1,
        }
    }

    #[test]
    fn height_push_matches_core() {
        assert_eq!(bip34_height_push(0), [0x00]);
        assert_eq!(bip34_height_push(1), [0x51]);
        assert_eq!(bip34_height_push(16), [0x60]);
        assert_eq!(bip34_height_push(17), [0x01, 0x11]);
        assert_eq!(bip34_height_push(127), [0x01, 0x7f]);
        assert_eq!(bip34_height_push(128), [0x02, 0x80, 0x00]);
        assert_eq!(bip34_height_push(80_778), [0x03, 0x8a, 0x3b, 0x01]);
        assert_eq!(bip34_height_push(840_000), [0x03, 0x40, 0xd1, 0x0c]);
    }

    #[test]
    fn coinbase_parses_and_carries_height_tag_and_payouts() {
        let commitment = bitcoin::hex::FromHex::from_hex(
            "6a24aa21a9ede2f61c3f71d1defd3fa999dfa36953755c690689799962b48bebd836974e8cf9",
        )
        .unwrap();
        let commitment: Vec<u8> = commitment;
        let mut cfg = config(b"/sluice/");
        cfg.payouts
            .push(Payout::to_address(REGTEST_ADDR, Network::Regtest, 2).unwrap());
        let parts = build(&cfg, 840_000, 312_500_001, Some(&commitment)).unwrap();
        let mut raw = parts.coinb1.clone();
        raw.extend_from_slice(&[0xaa; 12]);
        raw.extend_from_slice(&parts.coinb2);
        let tx: Transaction = deserialize(&raw).unwrap();
        assert!(tx.is_coinbase());
        let script = tx.input[0].script_sig.as_bytes();
        assert!(script.starts_with(&[0x03, 0x40, 0xd1, 0x0c, 12]));
        assert!(script.ends_with(b"\x08/sluice/"));
        assert_eq!(tx.output.len(), 3);
        // 312_500_001 split 1:2, remainder to the first.
        assert_eq!(tx.output[0].value.to_sat(), 104_166_667);
        assert_eq!(tx.output[1].value.to_sat(), 208_333_334);
        assert_eq!(tx.output[2].script_pubkey.as_bytes(), commitment.as_slice());
        assert_eq!(
            tx.output.iter().map(|o| o.value.to_sat()).sum::<u64>(),
            312_500_001
        );
    }

    #[test]
    fn script_sig_limit_is_enforced_at_the_edge() {
        // height push 4 + extranonce push 1 + 12 + tag push (1 + n) must be <= 100: n = 82 needs
        // OP_PUSHDATA1 (2 + n), so the largest tag is 81.
        let fits = config(&[b'x'; 81]);
        assert!(build(&fits, 840_000, 1, None).is_ok());
        let too_long = config(&[b'x'; 82]);
        assert_eq!(
            build(&too_long, 840_000, 1, None),
            Err(CoinbaseError::ScriptTooLong(101))
        );
    }

    #[test]
    fn zero_weight_is_an_error_not_a_panic() {
        let mut cfg = config(b"");
        cfg.payouts[0].weight = 0;
        assert_eq!(cfg.validate(), Err(CoinbaseError::ZeroWeight));
        assert_eq!(build(&cfg, 1, 1, None), Err(CoinbaseError::ZeroWeight));
    }

    #[test]
    fn addresses_are_checked_for_the_network() {
        assert!(matches!(
            Payout::to_address(
                "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",
                Network::Regtest,
                1
            ),
            Err(CoinbaseError::WrongNetwork { .. })
        ));
        assert!(matches!(
            Payout::to_address("not-an-address", Network::Bitcoin, 1),
            Err(CoinbaseError::BadAddress { .. })
        ));
        assert!(Payout::to_address(
            "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",
            Network::Bitcoin,
            1
        )
        .is_ok());
    }
}
