//! The duplicate filter: per job, the set of header hashes a session has had accepted.
//!
//! A duplicate is the same header however its fields were written (hex case, version bits given or
//! left out), so the key is the header hash, never the submitted text. Both dimensions are bounded:
//! sets for at most `max_jobs` jobs (the oldest id is dropped first: the job book holds the newest ids,
//! so a dropped set's job can no longer be submitted against), and at most `max_shares_per_job` shares
//! in each. A session that reaches the per-job bound has its further shares on that job refused (and
//! not credited) until new work arrives; at 18 shares a minute no honest miner comes near it.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use crate::units::{HeaderHash, JobId};

/// The bounds of a [`DuplicateFilter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DuplicateLimits {
    /// Jobs tracked at once; at least the job book's capacity.
    pub max_jobs: usize,
    /// Accepted shares remembered per job.
    pub max_shares_per_job: usize,
}

impl Default for DuplicateLimits {
    fn default() -> Self {
        DuplicateLimits {
            max_jobs: crate::chain::book::DEFAULT_JOB_HISTORY,
            max_shares_per_job: DEFAULT_MAX_SHARES_PER_JOB,
        }
    }
}

/// The default for [`DuplicateLimits::max_shares_per_job`].
pub const DEFAULT_MAX_SHARES_PER_JOB: usize = 4096;

/// The keys are already uniform (a slice of a SHA-256 output), so hashing them again is waste.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type ShareSet = HashSet<u64, BuildHasherDefault<IdentityHasher>>;

/// Why a share was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuplicateError {
    Duplicate,
    /// The job's set is full.
    Full,
}

#[derive(Debug, Default)]
pub struct DuplicateFilter {
    sets: Vec<(JobId, ShareSet)>,
    limits: DuplicateLimits,
}

impl DuplicateFilter {
    pub fn new(limits: DuplicateLimits) -> DuplicateFilter {
        assert!(limits.max_jobs > 0 && limits.max_shares_per_job > 0);
        DuplicateFilter {
            sets: Vec::new(),
            limits,
        }
    }

    /// Records an accepted share's hash, or says why it cannot be.
    pub fn insert(&mut self, job: JobId, hash: &HeaderHash) -> Result<(), DuplicateError> {
        let index = match self.sets.iter().position(|(id, _)| *id == job) {
            Some(i) => i,
            None if self.sets.len() < self.limits.max_jobs => {
                self.sets.push((job, ShareSet::default()));
                self.sets.len() - 1
            }
            None => {
                // Reuse the oldest job's set and its allocation.
                let (i, _) = self
                    .sets
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, (id, _))| *id)
                    .expect("max_jobs > 0, so the filter is not empty here");
                self.sets[i].0 = job;
                self.sets[i].1.clear();
                i
            }
        };
        let set = &mut self.sets[index].1;
        let key = hash.short();
        if set.contains(&key) {
            return Err(DuplicateError::Duplicate);
        }
        if set.len() >= self.limits.max_shares_per_job {
            return Err(DuplicateError::Full);
        }
        set.insert(key);
        Ok(())
    }

    /// Jobs with a set.
    pub fn tracked_jobs(&self) -> usize {
        self.sets.len()
    }

    /// The sets of the jobs still open, for a session that moves to another connection, keyed
    /// by what each job is (`fingerprint` gives it for an open job, `None` for a closed one): job
    /// ids are an engine's own. `None` when they hold more than `max_shares` in all (the session
    /// is then not carried over, so no share can be credited twice).
    pub fn export(
        &self,
        fingerprint: impl Fn(JobId) -> Option<u64>,
        max_shares: usize,
    ) -> Option<SavedShares> {
        let mut jobs: Vec<(JobId, u64, Vec<u64>)> = self
            .sets
            .iter()
            .filter(|(_, set)| !set.is_empty())
            .filter_map(|(id, set)| {
                let mut keys: Vec<u64> = set.iter().copied().collect();
                keys.sort_unstable();
                Some((*id, fingerprint(*id)?, keys))
            })
            .collect();
        if jobs.iter().map(|(_, _, k)| k.len()).sum::<usize>() > max_shares {
            return None;
        }
        jobs.sort_unstable_by_key(|(id, _, _)| *id);
        Some(SavedShares {
            jobs: jobs.into_iter().map(|(_, fp, keys)| (fp, keys)).collect(),
        })
    }

    /// Takes over saved sets (a resumed session), replacing what this filter held: each goes to
    /// this engine's id of the same job (`local`; a job this engine does not hold cannot be
    /// submitted against, so its set is dropped), bounded by this filter's own limits.
    pub fn import(&mut self, saved: &SavedShares, local: impl Fn(u64) -> Option<JobId>) {
        self.sets.clear();
        for (fingerprint, keys) in &saved.jobs {
            let Some(id) = local(*fingerprint) else {
                continue;
            };
            if self.sets.len() == self.limits.max_jobs || self.sets.iter().any(|(j, _)| *j == id) {
                continue;
            }
            let set: ShareSet = keys
                .iter()
                .copied()
                .take(self.limits.max_shares_per_job)
                .collect();
            self.sets.push((id, set));
        }
    }
}

/// A session's duplicate sets as they travel with it (to Redis, to another engine): per job (by
/// its fingerprint, the same on every engine), the short keys of the header hashes accepted on it.
/// (Serde for a session's exported state, which keys them by job id; the store uses `encode`.)
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SavedShares {
    pub jobs: Vec<(u64, Vec<u64>)>,
}

impl SavedShares {
    /// The shares held, in all.
    pub fn len(&self) -> usize {
        self.jobs.iter().map(|(_, k)| k.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Binary, little-endian: per job, its id (u64), its key count (u32), the keys (u64 each).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 * self.jobs.len() + 8 * self.len());
        for (id, keys) in &self.jobs {
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&(keys.len() as u32).to_le_bytes());
            for k in keys {
                out.extend_from_slice(&k.to_le_bytes());
            }
        }
        out
    }

    /// The inverse of [`encode`](Self::encode); `None` for bytes it did not write or holding more
    /// than `max_shares` keys (Redis is not trusted to keep the bound).
    pub fn decode(mut bytes: &[u8], max_shares: usize) -> Option<SavedShares> {
        let mut jobs = Vec::new();
        let mut total = 0usize;
        let take = |n: usize, bytes: &mut &[u8]| -> Option<Vec<u8>> {
            if bytes.len() < n {
                return None;
            }
            let (head, rest) = bytes.split_at(n);
            *bytes = rest;
            Some(head.to_vec())
        };
        while !bytes.is_empty() {
            let id = u64::from_le_bytes(take(8, &mut bytes)?.try_into().ok()?);
            let count = u32::from_le_bytes(take(4, &mut bytes)?.try_into().ok()?) as usize;
            total = total.checked_add(count)?;
            if total > max_shares || count.checked_mul(8)? > bytes.len() {
                return None;
            }
            let keys = (0..count)
                .map(|_| {
                    take(8, &mut bytes)
                        .and_then(|b| b.try_into().ok())
                        .map(u64::from_le_bytes)
                })
                .collect::<Option<Vec<u64>>>()?;
            jobs.push((id, keys));
        }
        Some(SavedShares { jobs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(n: u64) -> HeaderHash {
        let mut h = [0u8; 32];
        h[..8].copy_from_slice(&n.to_le_bytes());
        HeaderHash(h)
    }

    #[test]
    fn per_job_limit_at_its_edge() {
        let mut f = DuplicateFilter::new(DuplicateLimits {
            max_jobs: 2,
            max_shares_per_job: 3,
        });
        for n in 0..3 {
            assert_eq!(f.insert(JobId(1), &hash(n)), Ok(()));
        }
        assert_eq!(f.insert(JobId(1), &hash(0)), Err(DuplicateError::Duplicate));
        assert_eq!(f.insert(JobId(1), &hash(3)), Err(DuplicateError::Full));
        assert_eq!(
            f.insert(JobId(2), &hash(3)),
            Ok(()),
            "another job has its own set"
        );
    }

    #[test]
    fn saved_sets_travel_and_stay_duplicates() {
        let mut f = DuplicateFilter::new(DuplicateLimits {
            max_jobs: 4,
            max_shares_per_job: 8,
        });
        f.insert(JobId(1), &hash(1)).unwrap();
        f.insert(JobId(2), &hash(2)).unwrap();
        f.insert(JobId(2), &hash(3)).unwrap();
        // Job 2 is this engine's id of the job another engine calls 7 (fingerprint 0x77).
        let saved = f.export(|id| (id != JobId(1)).then_some(0x77), 16).unwrap();
        assert_eq!(saved.len(), 2, "job 1 is no longer open");
        let bytes = saved.encode();
        assert_eq!(SavedShares::decode(&bytes, 16), Some(saved.clone()));
        assert_eq!(SavedShares::decode(&bytes, 1), None, "over the bound");
        for n in 0..bytes.len() {
            assert_eq!(SavedShares::decode(&bytes[..n], 16).is_some(), n == 0);
        }
        let mut g = DuplicateFilter::new(f.limits);
        g.import(&saved, |fp| (fp == 0x77).then_some(JobId(7)));
        assert_eq!(g.insert(JobId(7), &hash(3)), Err(DuplicateError::Duplicate));
        assert_eq!(g.insert(JobId(2), &hash(3)), Ok(()), "another job here");
        assert_eq!(g.insert(JobId(1), &hash(1)), Ok(()));
        assert_eq!(
            f.export(|id| Some(id.0), 2),
            None,
            "three shares do not fit in two"
        );
    }

    #[test]
    fn oldest_job_is_dropped_first() {
        let mut f = DuplicateFilter::new(DuplicateLimits {
            max_jobs: 2,
            max_shares_per_job: 8,
        });
        f.insert(JobId(5), &hash(1)).unwrap();
        f.insert(JobId(7), &hash(1)).unwrap();
        f.insert(JobId(5), &hash(2)).unwrap(); // recently used, but still the oldest id
        f.insert(JobId(9), &hash(1)).unwrap();
        assert_eq!(f.tracked_jobs(), 2);
        assert_eq!(
            f.insert(JobId(7), &hash(1)),
            Err(DuplicateError::Duplicate),
            "job 7 kept"
        );
        assert_eq!(f.insert(JobId(9), &hash(1)), Err(DuplicateError::Duplicate));
    }
}
