//! Share validation: a submitted share against its job, judged exactly, whatever protocol carried it.
//!
//! The order of checks is part of the contract, and this module alone keeps it:
//! 1. the fields are decoded at their exact sizes and checked, one at a time, the first failure
//!    being the answer: extranonce2, ntime, ntime against the template's `mintime` and the clock,
//!    nonce, version bits, version bits against the negotiated mask; nothing is hashed;
//! 2. the header is built and hashed, and compared with the network target: a block is a block even
//!    when the share is stale or a duplicate, and the caller submits it;
//! 3. the share is judged: stale, then low difficulty, then duplicate (only shares that would be
//!    credited take a place in the duplicate set).
//!
//! A front end hands the share over as [`ShareFields`]: it knows its fields' encoding (hex text for
//! Stratum V1, binary for V2), the order above does not depend on it. Validation is generic over the
//! fields, so it is compiled into the front end's crate and the decoding inlines into it.
//!
//! Each session owns a [`SessionShares`]: its duplicate filter and the merkle root of its last
//! (job, extranonce1, extranonce2), since miners roll nonce, ntime and version long before
//! extranonce2. Validation allocates nothing, except when a duplicate set grows.

use crate::chain::job::Job;
use crate::chain::merkle;
use crate::hash::{header_hash, Sha256};
use crate::hex;
use crate::share::dedup::{DuplicateError, DuplicateFilter, DuplicateLimits, SavedShares};
use crate::units::{Extranonce1, HeaderHash, JobId, Target, VersionMask, MAX_EXTRANONCE2_SIZE};

/// How far past the pool's clock a share's ntime may be: consensus rejects blocks more than two hours
/// ahead of the network's time.
pub const MAX_NTIME_AHEAD_SECS: u32 = 2 * 60 * 60;

/// Why a share was not credited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reject {
    /// The job id is not hex, or names no job the pool still holds.
    JobNotFound,
    /// The job is on an older previous block.
    Stale,
    Duplicate,
    LowDifficulty,
    /// The job's duplicate set is full; new work will come.
    JobShareLimit,
    BadExtranonce2,
    BadNtime,
    NtimeTooOld,
    NtimeTooNew,
    BadNonce,
    BadVersionBits,
    VersionBitsOutsideMask,
    /// The worker named in the submit is not authorized on this connection (found by the session).
    UnauthorizedWorker,
    /// The connection has not subscribed (found by the session).
    NotSubscribed,
}

impl Reject {
    /// Every reason, in a fixed order (metrics index them by [`Reject::index`]).
    pub const ALL: [Reject; 14] = [
        Reject::JobNotFound,
        Reject::Stale,
        Reject::Duplicate,
        Reject::LowDifficulty,
        Reject::JobShareLimit,
        Reject::BadExtranonce2,
        Reject::BadNtime,
        Reject::NtimeTooOld,
        Reject::NtimeTooNew,
        Reject::BadNonce,
        Reject::BadVersionBits,
        Reject::VersionBitsOutsideMask,
        Reject::UnauthorizedWorker,
        Reject::NotSubscribed,
    ];

    /// This reason's place in [`Reject::ALL`].
    pub fn index(self) -> usize {
        Reject::ALL
            .iter()
            .position(|r| *r == self)
            .expect("ALL lists every reason")
    }

    /// A stable name for share records and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Reject::JobNotFound => "job-not-found",
            Reject::Stale => "stale",
            Reject::Duplicate => "duplicate",
            Reject::LowDifficulty => "low-difficulty",
            Reject::JobShareLimit => "job-share-limit",
            Reject::BadExtranonce2 => "bad-extranonce2",
            Reject::BadNtime => "bad-ntime",
            Reject::NtimeTooOld => "ntime-too-old",
            Reject::NtimeTooNew => "ntime-too-new",
            Reject::BadNonce => "bad-nonce",
            Reject::BadVersionBits => "bad-version-bits",
            Reject::VersionBitsOutsideMask => "version-bits-outside-mask",
            Reject::UnauthorizedWorker => "unauthorized-worker",
            Reject::NotSubscribed => "not-subscribed",
        }
    }
}

/// What a share is judged by, beyond its job.
#[derive(Debug, Clone, Copy)]
pub struct ShareRules {
    /// The version-rolling mask negotiated with `mining.configure` (0 when none).
    pub version_mask: VersionMask,
    /// The pool's clock, in Unix seconds.
    pub now: u32,
    /// The share target in force when the job was sent to this session.
    pub share_target: Target,
}

/// A share that was hashed: what it proves.
#[derive(Debug, Clone, Copy)]
pub struct ShareProof {
    pub hash: HeaderHash,
    pub header: [u8; 80],
    extranonce2: [u8; MAX_EXTRANONCE2_SIZE],
    extranonce2_len: u8,
}

impl ShareProof {
    pub fn extranonce2(&self) -> &[u8] {
        &self.extranonce2[..usize::from(self.extranonce2_len)]
    }

    /// The difficulty the share reached, for the record.
    pub fn difficulty(&self) -> f64 {
        self.hash.difficulty()
    }
}

/// The judgement on one share. A block always carries its proof: only a hashed share can be one.
#[derive(Debug, Clone, Copy)]
pub enum Verdict {
    /// Refused before hashing: a field failed its checks, so nothing is proven.
    Refused(Reject),
    /// Hashed and judged. `is_block`: the hash meets the network target, so the block is submitted
    /// whatever `result` says.
    Hashed {
        result: Result<(), Reject>,
        proof: ShareProof,
        is_block: bool,
    },
}

impl Verdict {
    pub fn refused(reject: Reject) -> Verdict {
        Verdict::Refused(reject)
    }

    /// The verdict for a submit whose job is unknown.
    pub fn job_not_found() -> Verdict {
        Verdict::refused(Reject::JobNotFound)
    }

    /// Whether the share is credited, or why not.
    pub fn result(&self) -> Result<(), Reject> {
        match self {
            Verdict::Refused(reject) => Err(*reject),
            Verdict::Hashed { result, .. } => *result,
        }
    }

    /// What the share proves, when it got as far as hashing.
    pub fn proof(&self) -> Option<&ShareProof> {
        match self {
            Verdict::Refused(_) => None,
            Verdict::Hashed { proof, .. } => Some(proof),
        }
    }

    /// Whether the share is a block.
    pub fn is_block(&self) -> bool {
        self.block().is_some()
    }

    /// The proof of a block, when the share is one.
    pub fn block(&self) -> Option<&ShareProof> {
        match self {
            Verdict::Hashed {
                proof,
                is_block: true,
                ..
            } => Some(proof),
            _ => None,
        }
    }
}

/// A share's fields as a front end carries them, each decoded when validation asks for it (in the
/// contract's order). A decode that fails is the share's answer: [`Reject::BadExtranonce2`],
/// [`Reject::BadNtime`], [`Reject::BadNonce`], [`Reject::BadVersionBits`].
pub trait ShareFields {
    /// Decodes extranonce2 into `out`, which is exactly the job's extranonce2 size; `false` when the
    /// field is not exactly that size or does not decode.
    fn extranonce2_into(&self, out: &mut [u8]) -> bool;
    fn ntime(&self) -> Option<u32>;
    fn nonce(&self) -> Option<u32>;
    /// The version bits the miner rolled (`Ok(None)` when it rolled none).
    fn version_bits(&self) -> Result<Option<u32>, Undecodable>;
}

/// A share field that does not decode in its front end's encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Undecodable;

/// A share whose fields are already decoded (binary front ends, tests).
#[derive(Debug, Clone, Copy)]
pub struct Submission<'a> {
    /// Exactly the job's extranonce2 size, or the share is refused as [`Reject::BadExtranonce2`].
    pub extranonce2: &'a [u8],
    pub ntime: u32,
    pub nonce: u32,
    /// The version bits the miner rolled, when it rolled any.
    pub version_bits: Option<u32>,
}

impl ShareFields for Submission<'_> {
    #[inline]
    fn extranonce2_into(&self, out: &mut [u8]) -> bool {
        if self.extranonce2.len() != out.len() {
            return false;
        }
        out.copy_from_slice(self.extranonce2);
        true
    }
    #[inline]
    fn ntime(&self) -> Option<u32> {
        Some(self.ntime)
    }
    #[inline]
    fn nonce(&self) -> Option<u32> {
        Some(self.nonce)
    }
    #[inline]
    fn version_bits(&self) -> Result<Option<u32>, Undecodable> {
        Ok(self.version_bits)
    }
}

/// Checks a share's ntime against the job's `mintime` and the pool's clock (`now`, Unix seconds).
#[inline]
fn check_ntime(job: &Job, ntime: u32, now: u32) -> Result<(), Reject> {
    if ntime < job.mintime {
        return Err(Reject::NtimeTooOld);
    }
    if ntime > now.saturating_add(MAX_NTIME_AHEAD_SECS) {
        return Err(Reject::NtimeTooNew);
    }
    Ok(())
}

/// Parses a submitted job id (hex, as [`JobId`]'s `Display` writes it).
pub fn parse_job_id(text: &str) -> Option<JobId> {
    hex::decode_u64_loose(text.as_bytes()).ok().map(JobId)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MerkleKey {
    job: JobId,
    extranonce1: Extranonce1,
    extranonce2: [u8; MAX_EXTRANONCE2_SIZE],
}

/// One session's share state.
#[derive(Debug)]
pub struct SessionShares {
    last_root: Option<(MerkleKey, [u8; 32])>,
    duplicates: DuplicateFilter,
    merkle_cache_hits: u64,
}

impl SessionShares {
    pub fn new(limits: DuplicateLimits) -> SessionShares {
        SessionShares {
            last_root: None,
            duplicates: DuplicateFilter::new(limits),
            merkle_cache_hits: 0,
        }
    }

    /// The duplicate sets of the jobs still open, to carry the session elsewhere; `None` when
    /// they hold more than `max_shares` (see [`DuplicateFilter::export`]).
    pub fn save_duplicates(
        &self,
        fingerprint: impl Fn(JobId) -> Option<u64>,
        max_shares: usize,
    ) -> Option<SavedShares> {
        self.duplicates.export(fingerprint, max_shares)
    }

    /// Takes over a resumed session's duplicate sets (see [`DuplicateFilter::import`]).
    pub fn restore_duplicates(
        &mut self,
        saved: &SavedShares,
        local: impl Fn(u64) -> Option<JobId>,
    ) {
        self.duplicates.import(saved, local);
    }

    /// How many shares reused the cached merkle root.
    pub fn merkle_cache_hits(&self) -> u64 {
        self.merkle_cache_hits
    }

    /// Judges one share against `job`. `stale` says the job is on an older previous block.
    #[inline]
    pub fn validate<F: ShareFields + ?Sized>(
        &mut self,
        job: &Job,
        stale: bool,
        extranonce1: &Extranonce1,
        fields: &F,
        rules: &ShareRules,
    ) -> Verdict {
        let en2_len = job.extranonce.extranonce2();
        let mut extranonce2 = [0u8; MAX_EXTRANONCE2_SIZE];
        if !fields.extranonce2_into(&mut extranonce2[..en2_len]) {
            return Verdict::refused(Reject::BadExtranonce2);
        }
        let Some(ntime) = fields.ntime() else {
            return Verdict::refused(Reject::BadNtime);
        };
        if let Err(reject) = check_ntime(job, ntime, rules.now) {
            return Verdict::refused(reject);
        }
        let Some(nonce) = fields.nonce() else {
            return Verdict::refused(Reject::BadNonce);
        };
        let Ok(version_bits) = fields.version_bits() else {
            return Verdict::refused(Reject::BadVersionBits);
        };
        let version = match version_bits {
            None => job.version,
            Some(bits) => {
                if !rules.version_mask.allows(bits) {
                    return Verdict::refused(Reject::VersionBitsOutsideMask);
                }
                rules.version_mask.roll(job.version, bits)
            }
        };

        let key = MerkleKey {
            job: job.id,
            extranonce1: *extranonce1,
            extranonce2,
        };
        let merkle_root = match &self.last_root {
            Some((cached, root)) if *cached == key => {
                self.merkle_cache_hits += 1;
                *root
            }
            _ => {
                let root = merkle::fold(
                    coinbase_txid(job, extranonce1, &extranonce2[..en2_len]),
                    &job.merkle_branch,
                );
                self.last_root = Some((key, root));
                root
            }
        };

        let header = job.header(version, &merkle_root, ntime, nonce);
        let hash = HeaderHash(header_hash(&header));
        let is_block = job.network_target.is_met_by(&hash);

        let result = if stale {
            Err(Reject::Stale)
        } else if !rules.share_target.is_met_by(&hash) {
            Err(Reject::LowDifficulty)
        } else {
            self.duplicates.insert(job.id, &hash).map_err(|e| match e {
                DuplicateError::Duplicate => Reject::Duplicate,
                DuplicateError::Full => Reject::JobShareLimit,
            })
        };
        Verdict::Hashed {
            result,
            proof: ShareProof {
                hash,
                header,
                extranonce2,
                extranonce2_len: en2_len as u8,
            },
            is_block,
        }
    }
}

/// The txid of the job's coinbase with these extranonces, continuing from the job's coinb1 midstate.
#[inline]
fn coinbase_txid(job: &Job, extranonce1: &Extranonce1, extranonce2: &[u8]) -> [u8; 32] {
    let mut sha = Sha256::from_midstate(job.coinb1_midstate);
    sha.update(&job.coinb1[job.coinb1_tail_start..]);
    sha.update(extranonce1.as_bytes());
    sha.update(extranonce2);
    sha.update(&job.coinb2);
    sha.finalize_double()
}
