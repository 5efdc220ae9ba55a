//! The job feed: the current job book as an immutable snapshot, swapped whole (arc-swap) when a job
//! arrives, and one wake-up per core so each core pushes the new job to its own connections. Its
//! own module, so the server (which reads it) and whoever fills it (a job source, or the plane's
//! subscriber) share it without naming each other.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use tokio::sync::Notify;

pub use crate::chain::sink::{JobSink, PublishError};
use crate::chain::{Job, JobBook, JobParts};
use crate::units::JobId;

pub struct JobFeed {
    book: ArcSwap<JobBook>,
    wakers: Vec<Arc<Notify>>,
    next_id: AtomicU64,
}

impl JobFeed {
    pub fn new(cores: usize, job_history: usize) -> JobFeed {
        JobFeed {
            book: ArcSwap::from_pointee(JobBook::new(job_history)),
            wakers: (0..cores).map(|_| Arc::new(Notify::new())).collect(),
            next_id: AtomicU64::new(1),
        }
    }

    /// The waker of one core.
    pub fn waker(&self, core: usize) -> Arc<Notify> {
        Arc::clone(&self.wakers[core])
    }

    /// The current snapshot (lock-free).
    pub fn load(&self) -> Guard<Arc<JobBook>> {
        self.book.load()
    }

    /// Makes a job of `parts` with the next id, publishes it, and wakes every core. Only one thread
    /// publishes (the job source), so the read-modify-write of the book does not race.
    pub fn publish(
        &self,
        parts: JobParts,
        clean: bool,
    ) -> Result<Arc<Job>, crate::chain::job::JobError> {
        let id = JobId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let job = Arc::new(Job::new(id, parts, clean)?);
        // Encoded here, on the job source's thread, so no core waits for it at fan-out.
        sluice_stratum::codec::message::notify_line(&job);
        let mut book = JobBook::clone(&self.book.load());
        book.push(Arc::clone(&job));
        self.book.store(Arc::new(book));
        for w in &self.wakers {
            w.notify_one();
        }
        Ok(job)
    }
}

impl JobSink for JobFeed {
    fn publish_job(&self, parts: JobParts, clean: bool) -> Result<(), PublishError> {
        Ok(self.publish(parts, clean).map(|_| ())?)
    }
}
