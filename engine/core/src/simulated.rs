//! The simulated chain behind `sluice run`: a regtest-like chain that lives in the process, so a
//! newcomer can mine with no node.
//!
//! It makes `getblocktemplate`-shaped templates (BIP34 height, synthetic transactions so the merkle
//! branch is not empty, a witness commitment so the segwit path is exercised), checks a submitted
//! block the way a node would (previous block, merkle root, witness commitment, proof of work, BIP34
//! height, coinbase value), and advances on every accepted block and, standing in for the rest of
//! the network, on a timer. Pure logic: the clock is a parameter.

use bitcoin::consensus::deserialize;
use bitcoin::hashes::{sha256d, Hash};
use bitcoin::Block;

use crate::chain::template::{BlockTemplate, TemplateTransaction};
use crate::hex;
use crate::units::{Difficulty, Target};

/// Settings of the simulated chain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimulatedChainConfig {
    /// The network difficulty: a share at least this hard is a block.
    pub network_difficulty: f64,
    /// How often the rest of the (simulated) network finds a block.
    pub block_interval_secs: u64,
    /// Synthetic transactions in each template.
    pub transactions: usize,
}

impl Default for SimulatedChainConfig {
    fn default() -> Self {
        SimulatedChainConfig {
            network_difficulty: 0.1,
            block_interval_secs: 60,
            transactions: 24,
        }
    }
}

/// Why the simulated chain refused a block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockRejection {
    #[error("not a block: {0}")]
    Malformed(String),
    #[error("builds on {got}, not on the tip {tip}")]
    NotOnTip { got: String, tip: String },
    #[error("merkle root does not match the transactions")]
    BadMerkleRoot,
    #[error("witness commitment does not match")]
    BadWitnessCommitment,
    #[error("nbits {0:08x} is not the chain's")]
    BadBits(u32),
    #[error("hash does not meet the target")]
    HighHash,
    #[error("coinbase does not start with the BIP34 height {0}")]
    BadHeight(u64),
    #[error("coinbase pays {paid} sat, more than the {allowed} sat allowed")]
    BadCoinbaseValue { paid: u64, allowed: u64 },
    #[error("block has no transactions")]
    Empty,
}

/// A block the chain accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptedBlock {
    pub height: u64,
    /// In internal byte order.
    pub hash: [u8; 32],
}

/// The chain's state: its tip and what the next block must be.
#[derive(Debug, Clone)]
pub struct SimulatedChain {
    config: SimulatedChainConfig,
    tip: [u8; 32],
    height: u64,
    bits: u32,
    target: Target,
    tip_time: u64,
}

/// Regtest's halving interval.
const HALVING_INTERVAL: u64 = 150;

fn subsidy(height: u64) -> u64 {
    let halvings = height / HALVING_INTERVAL;
    if halvings >= 64 {
        0
    } else {
        (50 * 100_000_000u64) >> halvings
    }
}

impl SimulatedChain {
    /// A chain at height 100 (so that coinbases mature, as on a fresh regtest node), tip time `now`.
    pub fn new(config: SimulatedChainConfig, now_secs: u64) -> SimulatedChain {
        let difficulty = Difficulty::new(config.network_difficulty).unwrap_or(Difficulty::ONE);
        let bits = difficulty.target().to_compact();
        let target = Target::from_compact(bits).expect("to_compact makes valid compact targets");
        SimulatedChain {
            config,
            tip: sha256d::Hash::hash(&now_secs.to_le_bytes()).to_byte_array(),
            height: 100,
            bits,
            target,
            tip_time: now_secs,
        }
    }

    pub fn height(&self) -> u64 {
        self.height
    }

    /// The tip's hash in internal byte order.
    pub fn tip(&self) -> [u8; 32] {
        self.tip
    }

    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// Whether the rest of the network is due to find a block.
    pub fn block_due(&self, now_secs: u64) -> bool {
        self.config.block_interval_secs > 0
            && now_secs >= self.tip_time + self.config.block_interval_secs
    }

    /// The synthetic transactions of the next block: distinct per height, valid serializations,
    /// no witnesses, no fees.
    fn transactions(&self) -> Vec<Vec<u8>> {
        (0..self.config.transactions)
            .map(|i| {
                let mut seed = self.tip.to_vec();
                seed.extend_from_slice(&(i as u64).to_le_bytes());
                let mut tx = Vec::with_capacity(85);
                tx.extend_from_slice(&2u32.to_le_bytes());
                tx.push(1);
                tx.extend_from_slice(&sha256d::Hash::hash(&seed).to_byte_array());
                tx.extend_from_slice(&0u32.to_le_bytes());
                tx.push(0);
                tx.extend_from_slice(&u32::MAX.to_le_bytes());
                tx.push(1);
                tx.extend_from_slice(&0u64.to_le_bytes());
                tx.extend_from_slice(&[2, 0x6a, 0x00]); // OP_RETURN OP_0: spendable by no one
                tx.extend_from_slice(&0u32.to_le_bytes());
                tx
            })
            .collect()
    }

    /// The template for the next block.
    pub fn template(&self, now_secs: u64) -> BlockTemplate {
        let txs = self.transactions();
        let txids: Vec<[u8; 32]> = txs
            .iter()
            .map(|t| sha256d::Hash::hash(t).to_byte_array())
            .collect();
        // The witness root: the coinbase's wtxid is zero; these transactions have no witness, so
        // their wtxid is their txid.
        let mut leaves = vec![[0u8; 32]];
        leaves.extend_from_slice(&txids);
        let witness_root = crate::chain::merkle::root(&leaves);
        let mut committed = witness_root.to_vec();
        committed.extend_from_slice(&[0u8; 32]);
        let commitment = sha256d::Hash::hash(&committed).to_byte_array();
        let display = |h: &[u8; 32]| {
            let mut r = *h;
            r.reverse();
            hex::encode(&r)
        };
        BlockTemplate {
            version: 0x2000_0000,
            previousblockhash: display(&self.tip),
            transactions: txs
                .iter()
                .zip(&txids)
                .map(|(tx, id)| TemplateTransaction {
                    data: hex::encode(tx),
                    txid: Some(display(id)),
                    hash: Some(display(id)),
                })
                .collect(),
            coinbasevalue: subsidy(self.height + 1),
            bits: format!("{:08x}", self.bits),
            height: self.height + 1,
            curtime: now_secs.max(self.tip_time + 1),
            mintime: Some(self.tip_time + 1),
            default_witness_commitment: Some(format!("6a24aa21a9ed{}", hex::encode(&commitment))),
        }
    }

    /// Checks a block as a node would and, when it is good, makes it the tip.
    pub fn submit_block(
        &mut self,
        raw: &[u8],
        now_secs: u64,
    ) -> Result<AcceptedBlock, BlockRejection> {
        let block: Block =
            deserialize(raw).map_err(|e| BlockRejection::Malformed(e.to_string()))?;
        let prev = block.header.prev_blockhash.to_byte_array();
        if prev != self.tip {
            return Err(BlockRejection::NotOnTip {
                got: block.header.prev_blockhash.to_string(),
                tip: bitcoin::BlockHash::from_byte_array(self.tip).to_string(),
            });
        }
        let coinbase = block.txdata.first().ok_or(BlockRejection::Empty)?;
        if !block.check_merkle_root() {
            return Err(BlockRejection::BadMerkleRoot);
        }
        if !block.check_witness_commitment() {
            return Err(BlockRejection::BadWitnessCommitment);
        }
        let bits = block.header.bits.to_consensus();
        if bits != self.bits {
            return Err(BlockRejection::BadBits(bits));
        }
        let hash = block.block_hash().to_byte_array();
        if !self.target.is_met_by(&crate::units::HeaderHash(hash)) {
            return Err(BlockRejection::HighHash);
        }
        let height = self.height + 1;
        if block.bip34_block_height().ok() != Some(height) {
            return Err(BlockRejection::BadHeight(height));
        }
        let paid: u64 = coinbase.output.iter().map(|o| o.value.to_sat()).sum();
        if paid > subsidy(height) {
            return Err(BlockRejection::BadCoinbaseValue {
                paid,
                allowed: subsidy(height),
            });
        }
        self.tip = hash;
        self.height = height;
        self.tip_time = now_secs;
        Ok(AcceptedBlock { height, hash })
    }

    /// The rest of the network found a block.
    pub fn advance_elsewhere(&mut self, now_secs: u64) {
        let mut seed = self.tip.to_vec();
        seed.extend_from_slice(b"elsewhere");
        self.tip = sha256d::Hash::hash(&seed).to_byte_array();
        self.height += 1;
        self.tip_time = now_secs;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{CoinbaseConfig, Job, Payout};
    use crate::units::{ExtranonceSizes, HeaderHash, JobId};

    fn config() -> CoinbaseConfig {
        CoinbaseConfig {
            payouts: vec![Payout::to_address(
                "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080",
                bitcoin::Network::Regtest,
                1,
            )
            .unwrap()],
            tag: b"/sluice/".to_vec(),
            extranonce: ExtranonceSizes::default(),
            tx_version: 1,
        }
    }

    /// Mines the job's block by brute force over nonces (the difficulty is low).
    fn mine(job: &Job) -> Vec<u8> {
        let en1 = [1, 2, 3, 4];
        let en2 = [5, 6, 7, 8];
        let root = job.merkle_root(&en1, &en2);
        for nonce in 0u32.. {
            let header = job.header(job.version, &root, job.ntime, nonce);
            if job
                .network_target
                .is_met_by(&HeaderHash(crate::hash::header_hash(&header)))
            {
                return job.assemble_block(&header, &en1, &en2);
            }
        }
        unreachable!()
    }

    #[test]
    fn accepts_a_mined_block_and_advances() {
        let sim_config = SimulatedChainConfig {
            network_difficulty: 1e-5,
            ..SimulatedChainConfig::default()
        };
        let mut chain = SimulatedChain::new(sim_config, 1_000);
        let template = chain.template(1_010);
        assert_eq!(template.transactions.len(), 24);
        let job = Job::new(JobId(1), template.job_parts(&config()).unwrap(), true).unwrap();
        assert_eq!(job.merkle_branch.len(), 5);
        let block = mine(&job);
        let accepted = chain.submit_block(&block, 1_011).unwrap();
        assert_eq!(accepted.height, 101);
        assert_eq!(chain.tip(), accepted.hash);
        // The same block again builds on the old tip now.
        assert!(matches!(
            chain.submit_block(&block, 1_012),
            Err(BlockRejection::NotOnTip { .. })
        ));
        // The next template has other transactions.
        assert_ne!(
            chain.template(1_013).transactions[0].data,
            template.transactions[0].data
        );
    }

    #[test]
    fn refuses_bad_blocks() {
        let sim_config = SimulatedChainConfig {
            network_difficulty: 1e-5,
            ..SimulatedChainConfig::default()
        };
        let chain = SimulatedChain::new(sim_config, 1_000);
        let job = Job::new(
            JobId(1),
            chain.template(1_000).job_parts(&config()).unwrap(),
            true,
        )
        .unwrap();
        let good = mine(&job);

        let mut tampered = good.clone();
        tampered[40] ^= 1; // merkle root
        assert_eq!(
            chain.clone().submit_block(&tampered, 1_001),
            Err(BlockRejection::BadMerkleRoot)
        );
        let mut high = good.clone();
        // Find a nonce whose hash misses the target.
        for nonce in 0u32.. {
            high[76..80].copy_from_slice(&nonce.to_le_bytes());
            let h: [u8; 80] = high[..80].try_into().unwrap();
            if !job
                .network_target
                .is_met_by(&HeaderHash(crate::hash::header_hash(&h)))
            {
                break;
            }
        }
        assert_eq!(
            chain.clone().submit_block(&high, 1_001),
            Err(BlockRejection::HighHash)
        );
        assert!(matches!(
            chain.clone().submit_block(&good[..100], 1_001),
            Err(BlockRejection::Malformed(_))
        ));

        // A coinbase paying more than the subsidy.
        let mut greedy = chain.template(1_000);
        greedy.coinbasevalue += 1;
        let job = Job::new(JobId(2), greedy.job_parts(&config()).unwrap(), true).unwrap();
        assert!(matches!(
            chain.clone().submit_block(&mine(&job), 1_001),
            Err(BlockRejection::BadCoinbaseValue { .. })
        ));
    }

    #[test]
    fn the_rest_of_the_network_finds_blocks_on_a_timer() {
        let mut chain = SimulatedChain::new(SimulatedChainConfig::default(), 1_000);
        assert!(!chain.block_due(1_059));
        assert!(chain.block_due(1_060));
        let tip = chain.tip();
        chain.advance_elsewhere(1_060);
        assert_ne!(chain.tip(), tip);
        assert_eq!(chain.height(), 101);
        assert!(!chain.block_due(1_061));
    }
}
