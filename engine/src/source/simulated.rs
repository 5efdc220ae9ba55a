//! The embedded jobmanager of `sluice run`: drives the simulated chain on its own thread. It
//! publishes a job at start, a clean job on every new block (found by a miner or, on a timer, by the
//! rest of the simulated network) and a refreshed job on the same block every refresh interval; and
//! it checks every block miners find before the chain takes it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::chain::sink::JobSink;
use crate::chain::CoinbaseConfig;
use crate::clock::UnixMillis;
use crate::metrics::Metrics;
use crate::node::client::SubmitResult;
use crate::simulated::{SimulatedChain, SimulatedChainConfig};
use crate::source::{BlockRecord, CandidateBlock, SourceStatus};

pub struct SimulatedJobManager {
    pub chain: SimulatedChain,
    pub coinbase: CoinbaseConfig,
    pub refresh: Duration,
    pub feed: Arc<dyn JobSink>,
    pub metrics: Arc<Metrics>,
    pub status: Arc<SourceStatus>,
}

/// How the block log names the simulated chain.
const SIMULATED_NODE: &str = "simulated chain";

impl SimulatedJobManager {
    pub fn new(
        config: SimulatedChainConfig,
        coinbase: CoinbaseConfig,
        refresh: Duration,
        feed: Arc<dyn JobSink>,
        metrics: Arc<Metrics>,
        status: Arc<SourceStatus>,
    ) -> SimulatedJobManager {
        SimulatedJobManager {
            chain: SimulatedChain::new(config, UnixMillis::now().as_secs()),
            coinbase,
            refresh,
            feed,
            metrics,
            status,
        }
    }

    /// Publishes a job for the chain's next block.
    pub fn publish(&self, clean: bool) {
        let template = self.chain.template(UnixMillis::now().as_secs());
        match template.job_parts(&self.coinbase) {
            Ok(parts) => match self.feed.publish_job(parts, clean) {
                Ok(()) => {
                    self.metrics.jobs_published.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(height = self.chain.height() + 1, clean, "job published");
                }
                Err(e) => tracing::error!(error = %e, "could not build a job"),
            },
            Err(e) => {
                tracing::error!(error = %e, "could not build a job from the simulated template")
            }
        }
    }

    /// Runs until `stop` is set or every block sender is gone.
    pub fn run(mut self, blocks: Receiver<CandidateBlock>, stop: Arc<AtomicBool>) {
        let mut next_refresh = Instant::now() + self.refresh;
        while !stop.load(Ordering::Relaxed) {
            // Wake at least every 100 ms to notice `stop` and the block timer.
            let wait = next_refresh
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100));
            match blocks.recv_timeout(wait) {
                Ok(block) => {
                    let outcome = self
                        .chain
                        .submit_block(&block.raw, UnixMillis::now().as_secs());
                    self.status.record_block(BlockRecord {
                        hash: block.hash,
                        height: block.height,
                        worker: block.worker.clone(),
                        found_ms: UnixMillis::now().as_millis(),
                        results: vec![(
                            SIMULATED_NODE.to_owned(),
                            match &outcome {
                                Ok(_) => SubmitResult::Accepted,
                                Err(reason) => SubmitResult::Rejected(reason.to_string()),
                            },
                        )],
                        entry: block.entry.clone(),
                    });
                    match outcome {
                        Ok(accepted) => {
                            self.metrics.blocks_accepted.fetch_add(1, Ordering::Relaxed);
                            tracing::info!(height = accepted.height, hash = %block.hash, worker = %block.worker, "block accepted by the simulated chain");
                            self.publish(true);
                            next_refresh = Instant::now() + self.refresh;
                        }
                        Err(reason) => {
                            self.metrics.blocks_rejected.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(%reason, hash = %block.hash, "block rejected by the simulated chain");
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    if self.chain.block_due(UnixMillis::now().as_secs()) {
                        self.chain.advance_elsewhere(UnixMillis::now().as_secs());
                        tracing::info!(
                            height = self.chain.height(),
                            "the simulated network found a block"
                        );
                        self.publish(true);
                        next_refresh = Instant::now() + self.refresh;
                    } else if Instant::now() >= next_refresh {
                        self.publish(false);
                        next_refresh = Instant::now() + self.refresh;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
    }
}
