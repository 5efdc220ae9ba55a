//! `sluice run`: an engine and its job source in one process. Found blocks are assembled off the
//! cores, then go to the source (the simulated chain judges them, the nodes' submitter sends them).

use std::sync::Arc;

use crate::chain::sink::JobSink;
use crate::chain::CandidateBlock;
use crate::config::Settings;
use crate::feed::JobFeed;
use crate::metrics::Metrics;
use crate::records::BlockFound;
use crate::server::{Engine, Hooks, BLOCK_QUEUE};
use crate::source::{self, SourceStatus};

use super::{StartError, Threads};

/// A running `sluice run`.
pub struct Run {
    pub engine: Engine,
    /// Node health and recent blocks, for `/status`.
    pub status: Arc<SourceStatus>,
    threads: Threads,
}

impl Run {
    /// Checks the nodes (or starts the simulated chain), publishes the first job, binds the
    /// listeners and starts the cores.
    pub fn start(settings: Settings) -> Result<Run, StartError> {
        let metrics = Arc::new(Metrics::new(settings.threads));
        let feed = Arc::new(JobFeed::new(settings.threads, settings.job_history));
        let status = Arc::new(SourceStatus::default());
        let (blocks_tx, blocks_rx) = crossbeam_channel::bounded::<Box<BlockFound>>(BLOCK_QUEUE);
        let mut threads = Threads::default();
        let (candidates_tx, candidates_rx) = crossbeam_channel::bounded(BLOCK_QUEUE);
        threads.push(
            std::thread::Builder::new()
                .name("sluice-assemble".into())
                .spawn(move || {
                    for found in blocks_rx {
                        if candidates_tx
                            .send(CandidateBlock::assemble(&found))
                            .is_err()
                        {
                            break;
                        }
                    }
                })?,
        );
        // Work exists before the first miner connects: the source publishes before returning.
        let started = source::start_source(
            &settings,
            Arc::clone(&feed) as Arc<dyn JobSink>,
            Arc::clone(&metrics),
            Arc::clone(&status),
            candidates_rx,
            threads.stop_flag(),
        );
        match started {
            Ok(t) => threads.push(t),
            Err(e) => {
                drop(blocks_tx);
                threads.stop();
                return Err(e.into());
            }
        }
        match Engine::start_with(settings, metrics, Hooks::local(feed, blocks_tx)) {
            Ok(engine) => Ok(Run {
                engine,
                status,
                threads,
            }),
            Err(e) => {
                threads.stop();
                Err(e.into())
            }
        }
    }

    /// Sends `client.reconnect` to every miner, stops the cores, then the job source.
    pub fn shutdown(mut self) {
        self.engine.shutdown();
        self.threads.stop();
    }
}
