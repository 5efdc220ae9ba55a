//! The jobmanager on real nodes: templates from the best healthy node, a clean job the moment the
//! tip moves, failover when the template node stops answering and a return when a better node is
//! back.
//!
//! How a new block is learned, fastest first:
//! 1. the template node's ZMQ `hashblock` publisher (a subscriber thread per node with an endpoint);
//! 2. the submitter, right after one of our blocks went out;
//! 3. `getbestblockhash` every `poll_interval` while the template node has no live ZMQ
//!    subscription, and every `zmq_check_interval` while it has one (a PUB socket drops messages
//!    under pressure, so ZMQ alone is not trusted forever).
//!
//! Every node call here is blocking and runs on this thread; probing a node that is down runs on a
//! thread of its own, so a hung node never delays the template node.
//!
//! Invariants: a job is clean exactly when its previous block differs from the last published
//! job's; while no node can give a template, miners keep the last job (nothing is published).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bitcoin::Network;
use crossbeam_channel::{select, Receiver, Sender};

use crate::chain::sink::JobSink;
use crate::chain::CoinbaseConfig;
use crate::hex;
use crate::metrics::Metrics;
use crate::node::client::{Node, NodeProblem, NodeSettings};
use crate::node::zmq::{self, SubscriberEvent};
use crate::source::submit::{self, SubmitPolicy};
use crate::source::{CandidateBlock, NodeStatus, SourceStatus};

pub use crate::config::NodePolicy;

/// Events reaching the jobmanager thread (bounded: a full queue drops ZMQ news, which polling
/// recovers).
enum Event {
    Zmq {
        node: usize,
        event: SubscriberEvent,
    },
    Probe {
        node: usize,
        result: Result<(), NodeProblem>,
    },
}

/// Events queued before the jobmanager must have caught up.
const EVENT_QUEUE: usize = 1024;

struct Slot {
    node: Node,
    healthy: bool,
    probing: bool,
    next_probe: Instant,
    zmq_live: Option<bool>,
    last_error: Option<String>,
}

pub struct NodeJobManager {
    slots: Vec<Slot>,
    /// Index into `slots` of the template node.
    source: Option<usize>,
    /// The previous block of the last published job, as nodes print it.
    published_prev: Option<String>,
    network: Network,
    coinbase: CoinbaseConfig,
    policy: NodePolicy,
    feed: Arc<dyn JobSink>,
    metrics: Arc<Metrics>,
    status: Arc<SourceStatus>,
    events_tx: Sender<Event>,
    events_rx: Receiver<Event>,
    /// When the last job went out: a refresh is due `policy.refresh` after it.
    last_published: Instant,
    next_poll: Instant,
}

impl NodeJobManager {
    /// Checks every node and publishes the first job. Fails, with every node's problem, when a
    /// node is misconfigured (wrong credentials, wrong chain) or when no node can give work.
    #[allow(clippy::too_many_arguments)]
    pub fn connect(
        mut nodes: Vec<NodeSettings>,
        network: Network,
        coinbase: CoinbaseConfig,
        policy: NodePolicy,
        feed: Arc<dyn JobSink>,
        metrics: Arc<Metrics>,
        status: Arc<SourceStatus>,
    ) -> Result<NodeJobManager, super::SourceError> {
        assert!(!nodes.is_empty(), "the node job source needs a node");
        // Stable: equal priorities keep configuration order.
        nodes.sort_by_key(|n| n.priority);
        let (events_tx, events_rx) = crossbeam_channel::bounded(EVENT_QUEUE);
        let now = Instant::now();
        let mut slots = Vec::new();
        for settings in nodes {
            let zmq_live = settings.zmq_hashblock.as_ref().map(|_| false);
            let mut node = Node::new(settings, policy.rpc_timeout);
            let (healthy, last_error) = match node.check(network) {
                Ok(info) => {
                    tracing::info!(node = %node.settings.name(), chain = %info.chain, height = info.blocks, "node ready");
                    (true, None)
                }
                Err(problem) if problem.fatal => {
                    return Err(super::SourceError::Node(problem.message))
                }
                Err(problem) => {
                    tracing::warn!(node = %node.settings.name(), "{problem}");
                    (false, Some(problem.message))
                }
            };
            slots.push(Slot {
                node,
                healthy,
                probing: false,
                next_probe: now + policy.retry_interval,
                zmq_live,
                last_error,
            });
        }
        let mut manager = NodeJobManager {
            slots,
            source: None,
            published_prev: None,
            network,
            coinbase,
            policy,
            feed,
            metrics,
            status,
            events_tx,
            events_rx,
            last_published: now,
            next_poll: now,
        };
        manager.source = manager.best_healthy();
        if manager.source.is_none() || !manager.publish() {
            // Every node's own problem, including a template that failed after its check passed.
            let problems = manager
                .slots
                .iter()
                .filter_map(|s| s.last_error.clone())
                .collect();
            return Err(super::SourceError::NoWork(problems));
        }
        manager.report();
        Ok(manager)
    }

    /// The node settings, for the submitter.
    pub fn node_settings(&self) -> Vec<NodeSettings> {
        self.slots.iter().map(|s| s.node.settings.clone()).collect()
    }

    fn best_healthy(&self) -> Option<usize> {
        self.slots.iter().position(|s| s.healthy)
    }

    fn report(&self) {
        self.status.set_nodes(
            self.slots
                .iter()
                .enumerate()
                .map(|(i, s)| NodeStatus {
                    name: s.node.settings.name(),
                    healthy: s.healthy,
                    source: self.source == Some(i),
                    zmq_live: s.zmq_live,
                    last_error: s.last_error.clone(),
                })
                .collect(),
        );
    }

    /// Marks the node failed and moves the template source to the best healthy node.
    fn fail(&mut self, index: usize, message: String) {
        let slot = &mut self.slots[index];
        if slot.healthy {
            tracing::warn!(node = %slot.node.settings.name(), "{message}; failing over");
        }
        slot.healthy = false;
        slot.last_error = Some(message);
        slot.next_probe = Instant::now() + self.policy.retry_interval;
        if self.source == Some(index) {
            self.source = self.best_healthy();
            match self.source {
                Some(next) => {
                    self.status.count_switch();
                    tracing::warn!(to = %self.slots[next].node.settings.name(), "template source moved");
                }
                None => tracing::error!(
                    "no node answers: miners keep the current work until one is back"
                ),
            }
        }
        self.report();
    }

    /// Fetches a template from the template node (failing over as needed) and publishes it.
    /// Returns whether a job was published.
    fn publish(&mut self) -> bool {
        while let Some(index) = self.source {
            let template = match self.slots[index].node.template() {
                Ok(t) => {
                    self.metrics
                        .templates_fetched
                        .fetch_add(1, Ordering::Relaxed);
                    t
                }
                Err(e) => {
                    self.metrics
                        .templates_failed
                        .fetch_add(1, Ordering::Relaxed);
                    let problem = self.slots[index].node.describe(&e, "getblocktemplate");
                    self.fail(index, problem.message);
                    continue;
                }
            };
            let parts = match template.job_parts(&self.coinbase) {
                Ok(p) => p,
                Err(e) => {
                    self.fail(
                        index,
                        format!(
                            "{}: unusable template: {e}",
                            self.slots[index].node.settings.key
                        ),
                    );
                    continue;
                }
            };
            let clean = self.published_prev.as_deref() != Some(&template.previousblockhash);
            let height = parts.height;
            match self.feed.publish_job(parts, clean) {
                Ok(()) => {
                    self.metrics.jobs_published.fetch_add(1, Ordering::Relaxed);
                    self.published_prev = Some(template.previousblockhash);
                    self.last_published = Instant::now();
                    if clean {
                        tracing::info!(height, node = %self.slots[index].node.settings.key, "new block: clean job published");
                    } else {
                        tracing::debug!(height, "job refreshed");
                    }
                    return true;
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not build a job from the template");
                    return false;
                }
            }
        }
        false
    }

    /// Asks the template node for its tip; publishes a clean job when it moved.
    fn check_tip(&mut self) {
        let Some(index) = self.source else { return };
        match self.slots[index].node.best_block_hash() {
            Ok(best) if self.published_prev.as_deref() != Some(best.as_str()) => {
                self.publish();
            }
            Ok(_) => {}
            Err(e) => {
                let problem = self.slots[index].node.describe(&e, "getbestblockhash");
                self.fail(index, problem.message);
                self.publish();
            }
        }
    }

    fn probe_due_nodes(&mut self) {
        let now = Instant::now();
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if slot.healthy || slot.probing || slot.next_probe > now {
                continue;
            }
            slot.probing = true;
            let settings = slot.node.settings.clone();
            let (network, timeout, tx) = (
                self.network,
                self.policy.rpc_timeout,
                self.events_tx.clone(),
            );
            let spawned = std::thread::Builder::new()
                .name("sluice-probe".into())
                .spawn(move || {
                    let result = Node::new(settings, timeout).check(network).map(|_| ());
                    let _ = tx.send(Event::Probe {
                        node: index,
                        result,
                    });
                });
            if spawned.is_err() {
                slot.probing = false;
                slot.next_probe = now + self.policy.retry_interval;
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Zmq { node, event } => match event {
                SubscriberEvent::Connected => {
                    self.slots[node].zmq_live = Some(true);
                    self.report();
                    // Anything announced while the subscription was down is caught up now.
                    if self.source == Some(node) {
                        self.check_tip();
                    }
                }
                SubscriberEvent::Disconnected(reason) => {
                    if self.slots[node].zmq_live == Some(true) {
                        tracing::warn!(node = %self.slots[node].node.settings.name(), %reason, "ZMQ subscription lost; polling getbestblockhash until it is back");
                    }
                    self.slots[node].zmq_live = Some(false);
                    self.next_poll = Instant::now();
                    self.report();
                }
                SubscriberEvent::HashBlock(block) => {
                    let hash = hex::encode(&block.hash);
                    if self.source == Some(node)
                        && self.published_prev.as_deref() != Some(hash.as_str())
                    {
                        tracing::debug!(%hash, "hashblock");
                        self.publish();
                        if self.published_prev.as_deref() != Some(hash.as_str()) {
                            // The template did not build on the announced block yet (or the
                            // node failed): poll at the fast rate until it does.
                            self.next_poll = Instant::now() + self.policy.poll_interval;
                        }
                    }
                }
            },
            Event::Probe { node, result } => {
                let slot = &mut self.slots[node];
                slot.probing = false;
                match result {
                    Ok(()) => {
                        tracing::info!(node = %slot.node.settings.name(), "node is back");
                        slot.healthy = true;
                        slot.last_error = None;
                        if self.source.is_none() {
                            self.source = Some(node);
                            self.status.count_switch();
                            self.publish();
                        } else {
                            self.try_return();
                        }
                    }
                    Err(problem) => {
                        slot.last_error = Some(problem.message);
                        slot.next_probe = Instant::now() + self.policy.retry_interval;
                    }
                }
                self.report();
            }
        }
    }

    /// Templates come from a better node than the template node again once it is healthy and has
    /// caught up with the published tip: a node back from a restart may be blocks behind, and its
    /// templates would set miners on stale work.
    fn try_return(&mut self) {
        let Some(source) = self.source else { return };
        for index in 0..source {
            if !self.slots[index].healthy {
                continue;
            }
            match self.slots[index].node.best_block_hash() {
                Ok(best) if self.published_prev.as_deref() == Some(best.as_str()) => {
                    tracing::info!(node = %self.slots[index].node.settings.name(), "templates come from this node again");
                    self.source = Some(index);
                    self.status.count_switch();
                    self.publish();
                    self.report();
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    let problem = self.slots[index].node.describe(&e, "getbestblockhash");
                    self.fail(index, problem.message);
                }
            }
        }
    }

    /// Runs until `stop` is set: starts the ZMQ subscribers and the submitter, then watches the tip.
    pub fn run(mut self, blocks: Receiver<CandidateBlock>, stop: Arc<AtomicBool>) {
        let mut subscribers: Vec<JoinHandle<()>> = Vec::new();
        for (index, slot) in self.slots.iter().enumerate() {
            let Some(endpoint) = slot.node.settings.zmq_hashblock.clone() else {
                continue;
            };
            let tx = self.events_tx.clone();
            match zmq::spawn_subscriber(
                endpoint,
                move |event| {
                    let _ = tx.try_send(Event::Zmq { node: index, event });
                },
                Arc::clone(&stop),
            ) {
                Ok(handle) => subscribers.push(handle),
                Err(e) => tracing::error!(error = %e, "cannot start a ZMQ subscriber thread"),
            }
        }
        let (submitted_tx, submitted_rx) = crossbeam_channel::bounded::<()>(16);
        let policy = SubmitPolicy {
            attempts: self.policy.submit_attempts,
            first_backoff: Duration::from_millis(250),
            rpc_timeout: self.policy.rpc_timeout,
        };
        let (settings, status, metrics) = (
            self.node_settings(),
            Arc::clone(&self.status),
            Arc::clone(&self.metrics),
        );
        let submitter = std::thread::Builder::new()
            .name("sluice-submit".into())
            .spawn(move || {
                submit::run_submitter(settings, policy, blocks, status, metrics, submitted_tx)
            });
        if let Err(e) = &submitter {
            tracing::error!(error = %e, "cannot start the block submitter: found blocks will not reach the nodes");
        }

        let events_rx = self.events_rx.clone();
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let next_refresh = self.last_published + self.policy.refresh;
            // Wake at least every 100 ms to notice `stop`.
            let wake = next_refresh
                .min(self.next_poll)
                .min(now + Duration::from_millis(100));
            select! {
                recv(events_rx) -> event => {
                    if let Ok(event) = event {
                        self.on_event(event);
                    }
                }
                recv(submitted_rx) -> _ => self.check_tip(),
                default(wake.saturating_duration_since(now)) => {}
            }
            let now = Instant::now();
            if now >= self.next_poll {
                self.check_tip();
                self.try_return();
                let zmq_live = self
                    .source
                    .is_some_and(|s| self.slots[s].zmq_live == Some(true));
                self.next_poll = Instant::now()
                    + if zmq_live {
                        self.policy.zmq_check_interval
                    } else {
                        self.policy.poll_interval
                    };
            }
            if Instant::now() >= self.last_published + self.policy.refresh && !self.publish() {
                // No node gives work: the next refresh is a full interval away, and a node's
                // return (probed every retry interval) publishes at once.
                self.last_published = Instant::now();
            }
            self.probe_due_nodes();
        }
        for s in subscribers {
            let _ = s.join();
        }
        // The submitter ends when the cores drop their block senders.
        drop(submitter);
    }
}
