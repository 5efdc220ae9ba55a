//! Where a job source puts its jobs: the seam between the job sources (the simulated chain, nodes,
//! Redis) and whoever serves the jobs (the engine's own feed, or Redis for the fleet).

use crate::chain::job::JobError;
use crate::chain::JobParts;

/// Where a job source puts its jobs: the engine's own feed (`sluice run`), or Redis for the fleet
/// (`sluice jobmanager`).
pub trait JobSink: Send + Sync {
    /// Publishes a job of `parts`; `clean` when it is on a new previous block.
    fn publish_job(&self, parts: JobParts, clean: bool) -> Result<(), PublishError>;
}

/// Why a sink did not publish a job.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The parts do not make a job.
    #[error(transparent)]
    Job(#[from] JobError),
    /// Where the sink keeps its jobs did not take this one (for the fleet: Redis, or a lost
    /// lease); the sink's own error says which.
    #[error(transparent)]
    Store(Box<dyn std::error::Error + Send + Sync>),
}
