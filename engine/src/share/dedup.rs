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
