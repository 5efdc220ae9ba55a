//! A job: one unit of work sent to miners, with everything precomputed that every share against it
//! would otherwise recompute.
//!
//! A job knows no protocol. Each front end (Stratum V1's `mining.notify`, later Stratum V2's job
//! messages) encodes it once, the first time a session needs it, into the job's [`Encodings`], and
//! every session of every core shares that encoding.
//!
//! A job is immutable once built and shared between cores behind an `Arc`. It keeps the template's
//! transactions so that a winning share can be assembled into a full block without asking anyone.

use std::sync::{Arc, OnceLock};

use crate::chain::coinbase::write_compact_size;
use crate::chain::merkle;
use crate::hash::Midstate;
use crate::units::{ExtranonceSizes, JobId, Target, TargetError};

/// The parts a job is made of, whether from a template or from a recorded block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobParts {
    pub height: u64,
    /// The previous block's hash in header (internal) byte order.
    pub prev_hash: [u8; 32],
    pub version: u32,
    pub nbits: u32,
    pub ntime: u32,
    /// The earliest ntime a share may carry (the template's `mintime`).
    pub mintime: u32,
    pub coinb1: Vec<u8>,
    pub coinb2: Vec<u8>,
    pub extranonce: ExtranonceSizes,
    /// The txids (internal byte order) of every transaction but the coinbase, in block order.
    pub txids: Vec<[u8; 32]>,
    /// Those transactions' serializations (with witnesses), concatenated in block order.
    pub transactions: Vec<u8>,
    /// Set when the block commits to witnesses: the coinbase then carries this value as its witness.
    pub witness_reserved_value: Option<[u8; 32]>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error("bad nbits: {0}")]
    Bits(#[from] TargetError),
    #[error("coinbase halves are too short to be a transaction")]
    CoinbaseTooShort,
}

/// A block header's fields, named so that no caller can pass two of them in the wrong order (the
/// load generator builds its headers with it too).
#[derive(Debug, Clone, Copy)]
pub struct HeaderFields<'a> {
    pub version: u32,
    /// In header (internal) byte order.
    pub prev_hash: &'a [u8; 32],
    pub merkle_root: &'a [u8; 32],
    pub ntime: u32,
    pub nbits: u32,
    pub nonce: u32,
}

impl HeaderFields<'_> {
    /// The 80 bytes that are hashed, in consensus order.
    #[inline]
    pub fn serialize(&self) -> [u8; 80] {
        let mut header = [0u8; 80];
        header[0..4].copy_from_slice(&self.version.to_le_bytes());
        header[4..36].copy_from_slice(self.prev_hash);
        header[36..68].copy_from_slice(self.merkle_root);
        header[68..72].copy_from_slice(&self.ntime.to_le_bytes());
        header[72..76].copy_from_slice(&self.nbits.to_le_bytes());
        header[76..80].copy_from_slice(&self.nonce.to_le_bytes());
        header
    }
}

/// The protocol front ends that encode jobs for miners: one slot each in a job's [`Encodings`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrontEnd {
    StratumV1 = 0,
}

/// A job's encodings, one per [`FrontEnd`], each made at most once.
#[derive(Debug, Default)]
struct Encodings {
    slots: [OnceLock<Arc<[u8]>>; 1],
}

/// One job, ready for miners and for share validation.
#[derive(Debug)]
pub struct Job {
    pub id: JobId,
    pub height: u64,
    pub prev_hash: [u8; 32],
    pub version: u32,
    pub nbits: u32,
    pub ntime: u32,
    pub mintime: u32,
    pub network_target: Target,
    pub coinb1: Vec<u8>,
    pub coinb2: Vec<u8>,
    pub extranonce: ExtranonceSizes,
    pub merkle_branch: Vec<[u8; 32]>,
    /// Whether miners must drop older work for this job (it builds on a new previous block).
    pub clean: bool,
    /// SHA-256 state after the whole 64-byte blocks at the front of coinb1.
    pub(crate) coinb1_midstate: Midstate,
    /// The bytes of coinb1 after those blocks.
    pub(crate) coinb1_tail_start: usize,
    tx_count: usize,
    transactions: Vec<u8>,
    witness_reserved_value: Option<[u8; 32]>,
    /// What the front ends send miners for this job, each encoded once.
    encodings: Encodings,
    /// What the job is, whatever id an engine gave it: a hash of everything a share's header
    /// depends on except the extranonces. Sessions that move between engines (whose ids differ)
    /// carry their duplicate sets by it.
    pub fingerprint: u64,
}

impl Job {
    pub fn new(id: JobId, parts: JobParts, clean: bool) -> Result<Job, JobError> {
        let network_target = Target::from_compact(parts.nbits)?;
        // version (4) + input count (1) + prevout (36) + script length (>= 1) before the extranonce;
        // sequence (4) + output count (1) + lock time (4) after it.
        if parts.coinb1.len() < 42 || parts.coinb2.len() < 9 {
            return Err(JobError::CoinbaseTooShort);
        }
        let merkle_branch = merkle::coinbase_branch(&parts.txids);
        let (coinb1_midstate, tail) = Midstate::of_prefix(&parts.coinb1);
        let coinb1_tail_start = parts.coinb1.len() - tail.len();
        let fingerprint = {
            let mut sha = crate::hash::Sha256::default();
            sha.update(&parts.prev_hash);
            for v in [parts.version, parts.nbits, parts.ntime] {
                sha.update(&v.to_le_bytes());
            }
            for part in [&parts.coinb1, &parts.coinb2] {
                sha.update(&(part.len() as u64).to_le_bytes());
                sha.update(part);
            }
            for node in &merkle_branch {
                sha.update(node);
            }
            let digest = sha.finalize();
            u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
        };
        Ok(Job {
            fingerprint,
            id,
            height: parts.height,
            prev_hash: parts.prev_hash,
            version: parts.version,
            nbits: parts.nbits,
            ntime: parts.ntime,
            mintime: parts.mintime,
            network_target,
            coinb1: parts.coinb1,
            coinb2: parts.coinb2,
            extranonce: parts.extranonce,
            merkle_branch,
            clean,
            coinb1_midstate,
            coinb1_tail_start,
            tx_count: parts.txids.len(),
            transactions: parts.transactions,
            witness_reserved_value: parts.witness_reserved_value,
            encodings: Encodings::default(),
        })
    }

    /// This job as `front_end` sends it to every miner, encoded by `encode` the first time it is
    /// asked for (cores that ask at the same moment wait for the one encoding).
    pub fn encoded(&self, front_end: FrontEnd, encode: impl FnOnce(&Job) -> Vec<u8>) -> &Arc<[u8]> {
        self.encodings.slots[front_end as usize].get_or_init(|| encode(self).into())
    }

    /// The coinbase with the given extranonces, without its witness: the bytes whose hash is the txid.
    pub fn coinbase(&self, extranonce1: &[u8], extranonce2: &[u8]) -> Vec<u8> {
        let mut tx = Vec::with_capacity(self.coinb1.len() + 24 + self.coinb2.len());
        tx.extend_from_slice(&self.coinb1);
        tx.extend_from_slice(extranonce1);
        tx.extend_from_slice(extranonce2);
        tx.extend_from_slice(&self.coinb2);
        tx
    }

    /// The merkle root of a block of this job with these extranonces, computed the plain way (the
    /// share path starts from the coinb1 midstate and caches the root).
    pub fn merkle_root(&self, extranonce1: &[u8], extranonce2: &[u8]) -> [u8; 32] {
        merkle::fold(
            crate::hash::sha256d(&self.coinbase(extranonce1, extranonce2)),
            &self.merkle_branch,
        )
    }

    /// The 80-byte header of a block of this job.
    #[inline]
    pub fn header(&self, version: u32, merkle_root: &[u8; 32], ntime: u32, nonce: u32) -> [u8; 80] {
        HeaderFields {
            version,
            prev_hash: &self.prev_hash,
            merkle_root,
            ntime,
            nbits: self.nbits,
            nonce,
        }
        .serialize()
    }

    /// The full block for a solved header, serialized as `submitblock` takes it (before hex).
    pub fn assemble_block(
        &self,
        header: &[u8; 80],
        extranonce1: &[u8],
        extranonce2: &[u8],
    ) -> Vec<u8> {
        let coinbase = self.coinbase(extranonce1, extranonce2);
        let mut block = Vec::with_capacity(80 + 9 + coinbase.len() + 40 + self.transactions.len());
        block.extend_from_slice(header);
        write_compact_size(&mut block, (self.tx_count + 1) as u64);
        match &self.witness_reserved_value {
            None => block.extend_from_slice(&coinbase),
            Some(reserved) => {
                // BIP144: version, marker and flag, the body, one witness stack of one item, lock time.
                let (version, rest) = coinbase.split_at(4);
                let (body, lock_time) = rest.split_at(rest.len() - 4);
                block.extend_from_slice(version);
                block.extend_from_slice(&[0x00, 0x01]);
                block.extend_from_slice(body);
                block.extend_from_slice(&[0x01, 0x20]);
                block.extend_from_slice(reserved);
                block.extend_from_slice(lock_time);
            }
        }
        block.extend_from_slice(&self.transactions);
        block
    }

    /// The number of transactions in a block of this job, the coinbase included.
    pub fn transaction_count(&self) -> usize {
        self.tx_count + 1
    }
}
