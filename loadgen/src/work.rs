//! Work as a miner sees it: jobs read from `mining.notify`, and shares found on them by hashing.
//!
//! The generator mines for real: a share it calls valid was hashed and meets the share target the
//! server set for its job, by an exact 256-bit comparison; an invalid one was hashed and misses it.
//! Encodings are those of cgminer-family miners, which every Stratum V1 pool speaks: the previous
//! hash arrives with each 32-bit word byte-swapped; version, nbits, ntime and nonce are big-endian hex
//! of the number; extranonce2 is raw bytes in coinbase order; merkle branch nodes in internal order.

use std::sync::Arc;

use serde_json::value::RawValue;
use sluice_core::chain::job::HeaderFields;
use sluice_core::hash::{header_hash, merkle_parent, sha256d};
use sluice_core::hex;
use sluice_core::units::{Difficulty, HeaderHash, Target};

/// One job, as received, with the difficulty and extranonce1 in force when it arrived (a new
/// difficulty or extranonce applies to work sent after it).
#[derive(Debug, Clone)]
pub struct JobView {
    pub id: String,
    /// In header byte order (the Stratum words swapped back).
    pub prev_hash: [u8; 32],
    pub coinb1: Vec<u8>,
    pub coinb2: Vec<u8>,
    pub branch: Vec<[u8; 32]>,
    pub version: u32,
    pub nbits: u32,
    pub ntime: u32,
    pub clean: bool,
    pub difficulty: f64,
    pub target: Target,
    pub extranonce1: Arc<[u8]>,
    pub extranonce2_size: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyError(pub String);

impl std::fmt::Display for NotifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotifyError {}

type NotifyParams = (
    String,
    String,
    String,
    String,
    Vec<String>,
    String,
    String,
    String,
    bool,
);

fn hex32(text: &str, what: &str) -> Result<[u8; 32], NotifyError> {
    let v = hex::decode_vec(text).map_err(|_| NotifyError(format!("{what}: not hex")))?;
    v.try_into()
        .map_err(|_| NotifyError(format!("{what}: not 32 bytes")))
}

fn hex_u32(text: &str, what: &str) -> Result<u32, NotifyError> {
    u32::from_str_radix(text, 16).map_err(|_| NotifyError(format!("{what}: not a hex u32")))
}

/// The target of a pool difficulty, exactly (`floor(diff1 / difficulty)`).
pub fn share_target(difficulty: f64) -> Result<Target, NotifyError> {
    Difficulty::new(difficulty)
        .map(Target::from_difficulty)
        .map_err(|_| NotifyError(format!("bad difficulty {difficulty}")))
}

impl JobView {
    /// Reads `mining.notify`'s nine parameters.
    pub fn from_notify(
        params: &RawValue,
        difficulty: f64,
        extranonce1: Arc<[u8]>,
        extranonce2_size: usize,
    ) -> Result<JobView, NotifyError> {
        let (id, prev, coinb1, coinb2, branch, version, nbits, ntime, clean): NotifyParams =
            serde_json::from_str(params.get())
                .map_err(|e| NotifyError(format!("mining.notify params: {e}")))?;
        let mut prev_hash = hex32(&prev, "prevhash")?;
        for word in prev_hash.chunks_exact_mut(4) {
            word.reverse();
        }
        let branch = branch
            .iter()
            .map(|n| hex32(n, "merkle branch node"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(JobView {
            id,
            prev_hash,
            coinb1: hex::decode_vec(&coinb1).map_err(|_| NotifyError("coinb1: not hex".into()))?,
            coinb2: hex::decode_vec(&coinb2).map_err(|_| NotifyError("coinb2: not hex".into()))?,
            branch,
            version: hex_u32(&version, "version")?,
            nbits: hex_u32(&nbits, "nbits")?,
            ntime: hex_u32(&ntime, "ntime")?,
            clean,
            difficulty,
            target: share_target(difficulty)?,
            extranonce1,
            extranonce2_size,
        })
    }

    /// The merkle root for one extranonce2: the coinbase `coinb1 + extranonce1 + extranonce2 +
    /// coinb2`, double SHA-256, folded up the branch.
    pub fn merkle_root(&self, extranonce2: &[u8]) -> [u8; 32] {
        let mut coinbase = Vec::with_capacity(
            self.coinb1.len() + self.extranonce1.len() + extranonce2.len() + self.coinb2.len(),
        );
        coinbase.extend_from_slice(&self.coinb1);
        coinbase.extend_from_slice(&self.extranonce1);
        coinbase.extend_from_slice(extranonce2);
        coinbase.extend_from_slice(&self.coinb2);
        self.branch
            .iter()
            .fold(sha256d(&coinbase), |acc, node| merkle_parent(&acc, node))
    }

    /// The 80-byte header for a merkle root, version, ntime and nonce, as the engine builds it.
    pub fn header(&self, merkle_root: &[u8; 32], version: u32, ntime: u32, nonce: u32) -> [u8; 80] {
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
}

/// A share's `mining.submit` fields (all but the worker name), kept so it can be sent again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub job_id: String,
    pub extranonce2: String,
    pub ntime: String,
    pub nonce: String,
    /// Present when version rolling was negotiated.
    pub version_bits: Option<String>,
    /// What the generator hashed (for tests and checks).
    pub hash: HeaderHash,
}

impl Share {
    /// The whole `mining.submit` line, newline included.
    pub fn write_submit(&self, out: &mut Vec<u8>, id: u64, worker: &str) {
        use std::io::Write;
        let _ = write!(
            out,
            r#"{{"id":{id},"method":"mining.submit","params":[{},"{}","{}","{}","{}""#,
            serde_json::Value::String(worker.to_owned()),
            self.job_id,
            self.extranonce2,
            self.ntime,
            self.nonce
        );
        if let Some(v) = &self.version_bits {
            let _ = write!(out, r#","{v}""#);
        }
        out.extend_from_slice(b"]}\n");
    }
}

#[derive(Debug, Clone)]
struct RootCache {
    job_id: String,
    extranonce1: Arc<[u8]>,
    extranonce2: u64,
    root: [u8; 32],
}

/// One connection's miner: rolls the nonce first and a fresh extranonce2 every
/// `shares_per_extranonce2` shares, as hardware does.
#[derive(Debug, Clone)]
pub struct Miner {
    extranonce2: u64,
    nonce: u32,
    shares_on_extranonce2: u32,
    pub shares_per_extranonce2: u32,
    /// The version-rolling mask the server granted (0: none, submits have 5 parameters).
    pub version_mask: u32,
    /// The bits this miner rolls into the version (only those inside the mask are used).
    pub version_bits: u32,
    /// The merkle root of the last (job, extranonce1, extranonce2).
    cache: Option<RootCache>,
    /// Hashes computed, for the report.
    pub hashes: u64,
}

impl Miner {
    /// `seed` starts extranonce2 somewhere different for each connection (not needed for
    /// uniqueness: extranonce1 already differs, but real miners do not all start at zero).
    pub fn new(seed: u64, version_mask: u32) -> Miner {
        Miner {
            extranonce2: seed,
            nonce: 0,
            shares_on_extranonce2: 0,
            shares_per_extranonce2: 8,
            version_mask,
            version_bits: (seed.rotate_left(17) as u32) & 0x1fff_e000,
            cache: None,
            hashes: 0,
        }
    }

    fn extranonce2_bytes(&self, size: usize) -> Vec<u8> {
        let be = self.extranonce2.to_be_bytes();
        if size >= 8 {
            let mut v = vec![0u8; size - 8];
            v.extend_from_slice(&be);
            v
        } else {
            be[8 - size..].to_vec()
        }
    }

    fn root(&mut self, job: &JobView, extranonce2: &[u8]) -> [u8; 32] {
        if let Some(c) = &self.cache {
            if c.job_id == job.id
                && c.extranonce1 == job.extranonce1
                && c.extranonce2 == self.extranonce2
            {
                return c.root;
            }
        }
        let root = job.merkle_root(extranonce2);
        self.cache = Some(RootCache {
            job_id: job.id.clone(),
            extranonce1: Arc::clone(&job.extranonce1),
            extranonce2: self.extranonce2,
            root,
        });
        root
    }

    fn next_extranonce2(&mut self) {
        self.extranonce2 = self.extranonce2.wrapping_add(1);
        self.nonce = 0;
        self.shares_on_extranonce2 = 0;
    }

    /// Hashes nonces until one meets the job's share target (`meets`) or misses it (`!meets`).
    /// Each nonce is used once per extranonce2, so a share is never found twice.
    pub fn find(&mut self, job: &JobView, meets: bool) -> Share {
        if self.shares_on_extranonce2 >= self.shares_per_extranonce2 {
            self.next_extranonce2();
        }
        self.shares_on_extranonce2 += 1;
        let version = (job.version & !self.version_mask) | (self.version_bits & self.version_mask);
        loop {
            let extranonce2 = self.extranonce2_bytes(job.extranonce2_size);
            let root = self.root(job, &extranonce2);
            while self.nonce < u32::MAX {
                let nonce = self.nonce;
                self.nonce += 1;
                let header = job.header(&root, version, job.ntime, nonce);
                let hash = HeaderHash(header_hash(&header));
                self.hashes += 1;
                if job.target.is_met_by(&hash) == meets {
                    return Share {
                        job_id: job.id.clone(),
                        extranonce2: hex::encode(&extranonce2),
                        ntime: format!("{:08x}", job.ntime),
                        nonce: format!("{nonce:08x}"),
                        version_bits: (self.version_mask != 0)
                            .then(|| format!("{:08x}", self.version_bits & self.version_mask)),
                        hash,
                    };
                }
            }
            self.next_extranonce2();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::chain::{Job, JobParts};
    use sluice_core::share::{DuplicateLimits, Reject, SessionShares, ShareRules};
    use sluice_core::units::{Extranonce1, ExtranonceSizes, JobId};
    use sluice_stratum::codec::message::notify_line;
    use sluice_stratum::codec::{parse, Request};
    use sluice_stratum::share::ValidateSubmit;

    /// A job made by the engine's own code, and its notify line as a server would send it.
    fn engine_job(id: u64, txs: usize) -> Job {
        let mut coinb1 = vec![0x01, 0, 0, 0, 0x01];
        coinb1.extend_from_slice(&[0u8; 32]);
        coinb1.extend_from_slice(&[0xff; 4]);
        coinb1.push(0x2a); // script length, not checked here
        coinb1.extend_from_slice(&[0x03, 0x10, 0x27, 0x00, 0x0c]);
        coinb1.extend_from_slice(b"some coinbase bytes to pass a 64-byte block boundary");
        let coinb2 = vec![
            0xff, 0xff, 0xff, 0xff, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let txids: Vec<[u8; 32]> = (0..txs)
            .map(|i| sha256d(&(i as u64).to_le_bytes()))
            .collect();
        Job::new(
            JobId(id),
            JobParts {
                height: 10_000,
                prev_hash: sha256d(b"previous block"),
                version: 0x2000_0000,
                nbits: 0x207f_ffff,
                ntime: 1_700_000_000,
                mintime: 1_699_999_000,
                coinb1,
                coinb2,
                extranonce: ExtranonceSizes::new(4, 8).unwrap(),
                txids,
                transactions: Vec::new(),
                witness_reserved_value: None,
            },
            true,
        )
        .unwrap()
    }

    fn view_of(job: &Job, difficulty: f64, en1: &[u8]) -> JobView {
        let line = std::str::from_utf8(notify_line(job)).unwrap();
        #[derive(serde::Deserialize)]
        struct N<'a> {
            #[serde(borrow)]
            params: &'a RawValue,
        }
        let n: N = serde_json::from_str(line.trim_end()).unwrap();
        JobView::from_notify(n.params, difficulty, en1.into(), 8).unwrap()
    }

    /// Judges a share with the engine's validator, from the very line the generator would send.
    fn judge(
        job: &Job,
        en1: &[u8],
        share: &Share,
        difficulty: f64,
        mask: u32,
    ) -> Result<(), Reject> {
        let mut line = Vec::new();
        share.write_submit(&mut line, 7, "w.1");
        let msg = parse(&line[..line.len() - 1]).unwrap();
        let Request::Submit(submit) = msg.request else {
            panic!("not a submit")
        };
        assert_eq!(submit.worker, "w.1");
        let mut shares = SessionShares::new(DuplicateLimits::default());
        let verdict = shares.validate_submit(
            job,
            false,
            &Extranonce1::new(en1).unwrap(),
            &submit,
            &ShareRules {
                version_mask: sluice_core::units::VersionMask(mask),
                now: job.ntime + 60,
                share_target: Difficulty::new(difficulty).unwrap().target(),
            },
        );
        assert_eq!(
            verdict.proof().unwrap().hash,
            share.hash,
            "same header hash"
        );
        verdict.result()
    }

    #[test]
    fn notify_is_read_back_exactly() {
        let job = engine_job(0x1f, 24);
        let view = view_of(&job, 1e-9, &[1, 2, 3, 4]);
        assert_eq!(view.id, "1f");
        assert_eq!(view.prev_hash, job.prev_hash, "prevhash words swapped back");
        assert_eq!(view.coinb1, job.coinb1);
        assert_eq!(view.coinb2, job.coinb2);
        assert_eq!(view.branch, job.merkle_branch);
        assert_eq!(
            (view.version, view.nbits, view.ntime),
            (job.version, job.nbits, job.ntime)
        );
        assert!(view.clean);
        // The root matches the engine's coinbase built from the same parts.
        let en2 = [9u8; 8];
        let coinbase = job.coinbase(&[1, 2, 3, 4], &en2);
        let root = job
            .merkle_branch
            .iter()
            .fold(sha256d(&coinbase), |a, n| merkle_parent(&a, n));
        assert_eq!(view.merkle_root(&en2), root);
    }

    #[test]
    fn valid_shares_meet_the_target_by_the_engines_validator() {
        for (txs, mask) in [
            (0usize, 0u32),
            (1, 0x1fff_e000),
            (24, 0x1fff_e000),
            (2000, 0),
        ] {
            let job = engine_job(5, txs);
            let en1 = [0xde, 0xad, 0xbe, 0xef];
            for difficulty in [1e-9, 1e-8, 2.5e-10] {
                let view = view_of(&job, difficulty, &en1);
                let mut miner = Miner::new(txs as u64 * 31, mask);
                for i in 0..40 {
                    let share = miner.find(&view, true);
                    assert_eq!(share.version_bits.is_some(), mask != 0);
                    assert_eq!(
                        judge(&job, &en1, &share, difficulty, mask),
                        Ok(()),
                        "share {i} with {txs} txs at {difficulty}"
                    );
                }
            }
        }
    }

    #[test]
    fn invalid_shares_miss_the_target_by_the_engines_validator() {
        let job = engine_job(6, 24);
        let en1 = [0, 0, 0, 7];
        let view = view_of(&job, 1e-9, &en1);
        let mut miner = Miner::new(3, 0x1fff_e000);
        for _ in 0..40 {
            let share = miner.find(&view, false);
            assert_eq!(
                judge(&job, &en1, &share, 1e-9, 0x1fff_e000),
                Err(Reject::LowDifficulty)
            );
        }
    }

    #[test]
    fn valid_shares_agree_with_the_bitcoin_crate() {
        use bitcoin::block::{Header, Version};
        use bitcoin::hashes::Hash;
        use bitcoin::{BlockHash, CompactTarget, TxMerkleNode};
        let job = engine_job(8, 24);
        let en1 = [5, 6, 7, 8];
        let view = view_of(&job, 1e-9, &en1);
        let mut miner = Miner::new(11, 0x1fff_e000);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..64 {
            let share = miner.find(&view, true);
            let en2 = hex::decode_vec(&share.extranonce2).unwrap();
            let coinbase = job.coinbase(&en1, &en2);
            let txid = bitcoin::hashes::sha256d::Hash::hash(&coinbase).to_byte_array();
            let root = job.merkle_branch.iter().fold(txid, |acc, n| {
                let mut pair = [0u8; 64];
                pair[..32].copy_from_slice(&acc);
                pair[32..].copy_from_slice(n);
                bitcoin::hashes::sha256d::Hash::hash(&pair).to_byte_array()
            });
            let bits = u32::from_str_radix(share.version_bits.as_deref().unwrap(), 16).unwrap();
            let header = Header {
                version: Version::from_consensus(
                    ((job.version & !0x1fff_e000) | (bits & 0x1fff_e000)) as i32,
                ),
                prev_blockhash: BlockHash::from_byte_array(job.prev_hash),
                merkle_root: TxMerkleNode::from_byte_array(root),
                time: u32::from_str_radix(&share.ntime, 16).unwrap(),
                bits: CompactTarget::from_consensus(job.nbits),
                nonce: u32::from_str_radix(&share.nonce, 16).unwrap(),
            };
            let hash = header.block_hash().to_byte_array();
            assert_eq!(hash, share.hash.0);
            // Independent target check: the hash as a 256-bit little-endian integer <= the target.
            let target = bitcoin::Target::from_le_bytes(view.target.to_le_bytes());
            assert!(bitcoin::Target::from_le_bytes(hash) <= target);
            assert!(seen.insert(hash), "no share is found twice");
        }
    }

    #[test]
    fn extranonce2_rolls_every_eighth_share_and_keeps_its_size() {
        let job = engine_job(9, 3);
        let view = view_of(&job, 1e-9, &[1, 1, 1, 1]);
        let mut miner = Miner::new(0xff, 0);
        let shares: Vec<Share> = (0..17).map(|_| miner.find(&view, true)).collect();
        let en2s: Vec<&str> = shares.iter().map(|s| s.extranonce2.as_str()).collect();
        assert!(en2s[..8].iter().all(|e| *e == "00000000000000ff"));
        assert!(en2s[8..16].iter().all(|e| *e == "0000000000000100"));
        assert_eq!(en2s[16], "0000000000000101");
        let mut small = view.clone();
        small.extranonce2_size = 2;
        assert_eq!(miner.find(&small, true).extranonce2.len(), 4);
    }

    #[test]
    fn the_submit_line_is_well_formed() {
        let share = Share {
            job_id: "1a".into(),
            extranonce2: "0000000000000001".into(),
            ntime: "6553f100".into(),
            nonce: "0000002a".into(),
            version_bits: Some("00002000".into()),
            hash: HeaderHash::default(),
        };
        let mut out = Vec::new();
        share.write_submit(&mut out, 12, "a\"b");
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "{\"id\":12,\"method\":\"mining.submit\",\"params\":[\"a\\\"b\",\"1a\",\"0000000000000001\",\"6553f100\",\"0000002a\",\"00002000\"]}\n"
        );
    }
}
