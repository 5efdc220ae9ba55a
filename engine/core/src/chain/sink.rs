//! Where a job source puts its jobs: the seam between the job sources (the simulated chain, nodes,
//! Redis) and whoever serves the jobs (the engine's own feed, or Redis for the fleet).

use crate::chain::JobParts;

/// Where a job source puts its jobs: the engine's own feed (`sluice run`), or Redis for the fleet
/// (`sluice jobmanager`).
pub trait JobSink: Send + Sync {
    /// Publishes a job of `parts`; `clean` when it is on a new previous block.
    fn publish_job(&self, parts: JobParts, clean: bool) -> Result<(), String>;
}
