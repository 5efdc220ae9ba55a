//! The job sources, on threads of their own: where jobs come from and where found blocks go. Kept
//! outside the Stratum server: a source publishes into a [`JobSink`] (the engine's own
//! [`JobFeed`](crate::feed::JobFeed) for `sluice run`, Redis for `sluice jobmanager`) and takes
//! found blocks from a channel, so it names neither the server nor the plane.
//!
//! - [`simulated`]: the embedded simulated chain of `sluice run` with no node;
//! - [`nodes`]: real bitcoind-compatible nodes: templates from the best healthy node, new blocks by
//!   ZMQ or polling, failover and return;
//! - [`submit`]: a found block goes to every node at once, retried, with one outcome per node.
//!
//! Both sources report into a [`SourceStatus`], which `/status` shows: node health and the recent
//! blocks with their outcomes. The node I/O they use (RPC, ZMQ) stays in [`crate::node`]: it is a
//! client of bitcoind, not a job source, and its own tests and limits live with it.

pub mod nodes;
pub mod simulated;
pub mod submit;

use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Receiver;

use crate::chain::sink::JobSink;
use crate::config::Settings;
use crate::metrics::Metrics;

pub use crate::chain::blocks::{BlockRecord, CandidateBlock};

/// Why a job source did not start.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A node that cannot work as configured (credentials, chain): its problem names the key.
    #[error("{0}")]
    Node(String),
    /// Every node's problem, each naming the key to fix.
    #[error("no node can give work:\n  {}", problems(.0))]
    NoWork(Vec<String>),
    #[error("cannot start the engine: {0}")]
    Thread(#[from] std::io::Error),
}

fn problems(list: &[String]) -> String {
    if list.is_empty() {
        "no node gave a usable template (see the log)".to_owned()
    } else {
        list.join("\n  ")
    }
}

/// Starts the configured job source, the simulated chain or the nodes, publishing into `sink` and
/// taking found blocks from `blocks`: checks the nodes and publishes the first job before it
/// returns.
pub fn start_source(
    settings: &Settings,
    sink: Arc<dyn JobSink>,
    metrics: Arc<Metrics>,
    status: Arc<SourceStatus>,
    blocks: Receiver<CandidateBlock>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, SourceError> {
    let thread = std::thread::Builder::new().name("sluice-jobs".into());
    if settings.nodes.is_empty() {
        let manager = simulated::SimulatedJobManager::new(
            settings.simulated_chain,
            settings.coinbase.clone(),
            Duration::from_millis(settings.refresh_interval_ms),
            sink,
            metrics,
            status,
        );
        manager.publish(true);
        Ok(thread.spawn(move || manager.run(blocks, stop))?)
    } else {
        let manager = nodes::NodeJobManager::connect(
            settings.nodes.clone(),
            settings.network,
            settings.coinbase.clone(),
            settings.node_policy,
            sink,
            metrics,
            status,
        )?;
        Ok(thread.spawn(move || manager.run(blocks, stop))?)
    }
}

/// Found blocks kept for `/status`, newest last.
pub const RECENT_BLOCKS: usize = 32;

/// How one node stands, as `/status` shows it.
#[derive(Debug, Clone, Default)]
pub struct NodeStatus {
    pub name: String,
    pub healthy: bool,
    /// Templates come from this node.
    pub source: bool,
    /// `None` without a ZMQ endpoint; else whether the subscription is up.
    pub zmq_live: Option<bool>,
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
struct Inner {
    nodes: Vec<NodeStatus>,
    blocks: VecDeque<BlockRecord>,
    template_source_switches: u64,
    /// Where block records also go (the jobmanager role writes them to Redis).
    block_sink: Option<crossbeam_channel::Sender<BlockRecord>>,
}

/// What the job source reports; written by its threads, read by `/status`.
#[derive(Debug, Default)]
pub struct SourceStatus {
    inner: Mutex<Inner>,
}

impl SourceStatus {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere must not take the status page down with it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_nodes(&self, nodes: Vec<NodeStatus>) {
        self.lock().nodes = nodes;
    }

    /// (name, healthy) per node, for `sluice_node_up`.
    pub fn node_health(&self) -> Vec<(String, bool)> {
        self.lock()
            .nodes
            .iter()
            .map(|n| (n.name.clone(), n.healthy))
            .collect()
    }

    pub fn count_switch(&self) {
        self.lock().template_source_switches += 1;
    }

    /// Sends every block record to `sink` as well (bounded; a full sink drops the copy, never
    /// the record here).
    pub fn set_block_sink(&self, sink: crossbeam_channel::Sender<BlockRecord>) {
        self.lock().block_sink = Some(sink);
    }

    pub fn record_block(&self, record: BlockRecord) {
        let mut inner = self.lock();
        if let Some(sink) = &inner.block_sink {
            if sink.try_send(record.clone()).is_err() {
                tracing::error!(hash = %record.hash, "block record queue full: not written to Redis");
            }
        }
        if inner.blocks.len() == RECENT_BLOCKS {
            inner.blocks.pop_front();
        }
        inner.blocks.push_back(record);
    }

    pub fn recent_blocks(&self) -> Vec<BlockRecord> {
        self.lock().blocks.iter().cloned().collect()
    }

    pub fn to_json(&self) -> serde_json::Value {
        let inner = self.lock();
        let nodes: Vec<_> = inner
            .nodes
            .iter()
            .map(|n| {
                serde_json::json!({"name": n.name, "healthy": n.healthy, "source": n.source,
                    "zmq_live": n.zmq_live, "last_error": n.last_error})
            })
            .collect();
        let blocks: Vec<_> = inner
            .blocks
            .iter()
            .map(|b| {
                let results: Vec<_> = b
                    .results
                    .iter()
                    .map(|(node, r)| {
                        serde_json::json!({"node": node, "result": r.kind(), "reason": r.reason()})
                    })
                    .collect();
                serde_json::json!({"hash": b.hash, "height": b.height, "worker": b.worker,
                    "found_ms": b.found_ms, "accepted": b.accepted(), "results": results})
            })
            .collect();
        serde_json::json!({"nodes": nodes, "template_source_switches": inner.template_source_switches,
            "recent_blocks": blocks})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::SubmitResult;

    #[test]
    fn the_block_log_keeps_the_newest_blocks_up_to_its_bound() {
        let status = SourceStatus::default();
        for height in 0..(RECENT_BLOCKS as u64 + 5) {
            status.record_block(BlockRecord {
                hash: format!("{height:064x}").parse().unwrap(),
                height,
                worker: "w".into(),
                found_ms: 0,
                results: vec![("n".into(), SubmitResult::Accepted)],
                entry: None,
            });
        }
        let blocks = status.recent_blocks();
        assert_eq!(blocks.len(), RECENT_BLOCKS);
        assert_eq!(blocks[0].height, 5);
        assert_eq!(blocks.last().unwrap().height, RECENT_BLOCKS as u64 + 4);
        let json = status.to_json();
        assert_eq!(json["recent_blocks"][0]["results"][0]["result"], "accepted");
    }
}
