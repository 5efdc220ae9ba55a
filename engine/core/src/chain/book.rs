//! The job book: the jobs a share may still be submitted against, newest last.
//!
//! The book is the immutable snapshot cores share (swapped whole when a job arrives). It holds the
//! newest `capacity` jobs. Job ids only grow, so the book always holds the highest ids issued; the
//! duplicate filter relies on that to know which of its sets are safe to drop.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::chain::job::Job;
use crate::units::JobId;

/// How many jobs the book keeps by default: at a 30 s refresh, eight minutes of work on one block.
pub const DEFAULT_JOB_HISTORY: usize = 16;

#[derive(Debug, Clone)]
pub struct JobBook {
    jobs: VecDeque<Arc<Job>>,
    capacity: usize,
}

/// Where a submitted job id stands.
#[derive(Debug, Clone, Copy)]
pub enum Lookup<'a> {
    /// A job on the current previous block.
    Current(&'a Arc<Job>),
    /// A job on an older previous block: its shares are stale, but may still be blocks.
    Stale(&'a Arc<Job>),
    NotFound,
}

impl JobBook {
    pub fn new(capacity: usize) -> JobBook {
        assert!(
            capacity > 0,
            "a job book must hold at least the current job"
        );
        JobBook {
            jobs: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Adds a job; its id must be higher than every id in the book.
    pub fn push(&mut self, job: Arc<Job>) {
        if let Some(last) = self.jobs.back() {
            assert!(
                job.id > last.id,
                "job ids must increase: {} after {}",
                job.id,
                last.id
            );
        }
        if self.jobs.len() == self.capacity {
            self.jobs.pop_front();
        }
        self.jobs.push_back(job);
    }

    /// The newest job.
    pub fn current(&self) -> Option<&Arc<Job>> {
        self.jobs.back()
    }

    pub fn lookup(&self, id: JobId) -> Lookup<'_> {
        let Some(current) = self.jobs.back() else {
            return Lookup::NotFound;
        };
        match self.jobs.iter().rev().find(|j| j.id == id) {
            None => Lookup::NotFound,
            Some(job) if job.prev_hash == current.prev_hash => Lookup::Current(job),
            Some(job) => Lookup::Stale(job),
        }
    }

    /// The jobs, oldest first.
    pub fn jobs(&self) -> impl Iterator<Item = &Arc<Job>> {
        self.jobs.iter()
    }

    pub fn contains(&self, id: JobId) -> bool {
        self.jobs.iter().any(|j| j.id == id)
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }
}
