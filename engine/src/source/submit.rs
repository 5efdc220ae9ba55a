//! Block submission: every found block goes to every node at once (one thread per node), so the
//! block reaches the network through whichever node is best connected; a node that does not answer
//! is asked again, and each node's final answer is recorded.
//!
//! The submitter has a thread of its own so a slow node never holds up template fetching. A
//! `sluice stratum` with `[[nodes]]` runs one too, fed by its block forwarder, so its blocks reach
//! the nodes without waiting for Redis or the leader.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::clock::UnixMillis;
use crate::hex;
use crate::metrics::Metrics;
use crate::node::client::{Node, NodeSettings, SubmitResult};
use crate::source::{BlockRecord, CandidateBlock, SourceStatus};

/// How submission behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubmitPolicy {
    /// Tries per node before the outcome is "no answer".
    pub attempts: u32,
    /// The wait before the second try; doubled for each later one.
    pub first_backoff: Duration,
    pub rpc_timeout: Duration,
}

/// Submits `block_hex` to every node at once; one result per node, in order.
pub fn submit_everywhere(
    nodes: &mut [Node],
    block_hex: &str,
    policy: SubmitPolicy,
) -> Vec<SubmitResult> {
    assert!(policy.attempts >= 1, "at least one attempt per node");
    std::thread::scope(|scope| {
        let handles: Vec<_> = nodes
            .iter_mut()
            .map(|node| {
                scope.spawn(move || {
                    let mut backoff = policy.first_backoff;
                    let mut attempt = 1;
                    loop {
                        match node.submit_block(block_hex) {
                            Ok(result) => return result,
                            Err(e) if attempt >= policy.attempts => {
                                return SubmitResult::NoAnswer(e.to_string())
                            }
                            Err(e) => {
                                tracing::warn!(node = %node.settings.name(), attempt, error = %e, "submitblock got no answer; retrying");
                                std::thread::sleep(backoff);
                                backoff *= 2;
                                attempt += 1;
                            }
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| SubmitResult::NoAnswer("submission thread failed".into()))
            })
            .collect()
    })
}

/// Takes found blocks from the cores and submits each to every node; after each block, `after`
/// is told (the jobmanager checks the tip at once rather than waiting for its next poll).
pub fn run_submitter(
    settings: Vec<NodeSettings>,
    policy: SubmitPolicy,
    blocks: Receiver<CandidateBlock>,
    status: Arc<SourceStatus>,
    metrics: Arc<Metrics>,
    after: Sender<()>,
) {
    let mut nodes: Vec<Node> = settings
        .into_iter()
        .map(|s| Node::new(s, policy.rpc_timeout))
        .collect();
    for block in blocks.iter() {
        let hex = hex::encode(&block.raw);
        let results = submit_everywhere(&mut nodes, &hex, policy);
        let record = BlockRecord {
            hash: block.hash,
            height: block.height,
            worker: block.worker,
            found_ms: UnixMillis::now().as_millis(),
            results: nodes
                .iter()
                .map(|n| n.settings.name())
                .zip(results)
                .collect(),
            entry: block.entry,
        };
        for (node, result) in &record.results {
            match result {
                SubmitResult::Accepted | SubmitResult::Duplicate => {
                    tracing::info!(%node, hash = %record.hash, height = record.height, result = result.kind(), "block submitted")
                }
                _ => {
                    tracing::warn!(%node, hash = %record.hash, height = record.height, result = result.kind(), reason = result.reason().unwrap_or(""), "block not taken")
                }
            }
        }
        if record.accepted() {
            metrics.blocks_accepted.fetch_add(1, Ordering::Relaxed);
        } else {
            metrics.blocks_rejected.fetch_add(1, Ordering::Relaxed);
        }
        status.record_block(record);
        let _ = after.try_send(());
    }
}
