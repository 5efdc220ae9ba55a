//! The engine's I/O layer: one pinned thread per core, each with its own tokio-uring runtime and its
//! own SO_REUSEPORT listener socket per configured listener, so a connection lives and dies on the
//! core that accepted it. Jobs reach the cores through the [`feed::JobFeed`] snapshot; found blocks
//! leave them through a bounded channel to the job source.

pub mod connection;
pub mod core;
pub mod limits;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;

use socket2::{Domain, Socket, Type};
use tokio::sync::watch;

use crate::config::Settings;
use crate::metrics::Metrics;
use crate::session::BlockFound;
use crate::chain::sink::JobSink;
use crate::chain::CandidateBlock;
use crate::feed::JobFeed;
use crate::source::{self as jobmanager, SourceStatus};
use limits::ConnectionLimits;

/// Found blocks waiting for the job source: far more than can ever be pending at once.
const BLOCK_QUEUE: usize = 1024;

/// File descriptors kept for listeners, the admin listener, logs and the like.
const FILES_KEPT_FOR_THE_ENGINE: usize = 64;

/// The soft limit on open files of this process.
fn open_file_limit() -> Option<usize> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0
        && limit.rlim_cur != libc::RLIM_INFINITY
    {
        Some(limit.rlim_cur as usize)
    } else {
        None
    }
}

/// What every core shares.
pub struct Shared {
    pub settings: Arc<Settings>,
    pub feed: Arc<JobFeed>,
    pub metrics: Arc<Metrics>,
    pub limits: Arc<ConnectionLimits>,
    pub blocks: crossbeam_channel::Sender<Box<BlockFound>>,
    /// The share log writer's queue (the stratum role only).
    pub share_log: Option<crate::plane::sharelog::ShareQueue>,
    /// The fleet's session store (the stratum role only).
    pub sessions: Option<Arc<crate::plane::sessions::SessionStore>>,
    /// This engine's slot in the fleet: the first byte of every extranonce1 (the stratum role).
    pub slot: Option<Arc<crate::plane::sessions::SlotLease>>,
    /// Drain state and kicks from sluicectl (the stratum role; idle otherwise).
    pub control: Arc<crate::plane::commands::Control>,
    /// Per-connection policies from Redis (the stratum role; empty otherwise).
    pub policies: Arc<arc_swap::ArcSwap<crate::plane::policies::PolicySet>>,
    /// Each listener's session settings, by `Listener::index`; a reload swaps them.
    pub listener_sessions: Vec<arc_swap::ArcSwap<crate::session::SessionConfig>>,
}

impl Shared {
    /// The current session settings of a listener.
    pub fn listener_session(&self, index: usize) -> Arc<crate::session::SessionConfig> {
        self.listener_sessions[index].load_full()
    }

    /// Applies what a configuration reload can change while the engine runs: connection limits
    /// and the listeners' session settings (new connections at once; live ones on the cores' next
    /// tick). Returns the keys whose change needs a restart.
    pub fn reload(&self, new: &Settings) -> Vec<&'static str> {
        let mut restart = Vec::new();
        let old = &self.settings;
        if new.listeners.len() != old.listeners.len()
            || new.listeners.iter().zip(&old.listeners).any(|(n, o)| {
                n.proxy_protocol != o.proxy_protocol
                    || n.address != o.address
                    || n.trusted_proxies != o.trusted_proxies
            })
        {
            restart.push("listeners (addresses, proxy_protocol, trusted_proxies)");
        }
        if new.threads != old.threads {
            restart.push("engine.threads");
        }
        if new.coinbase.extranonce != old.coinbase.extranonce || new.network != old.network {
            restart.push("pool (network, extranonce sizes)");
        }
        self.limits
            .set(new.max_connections, new.max_connections_per_ip);
        for (slot, listener) in self.listener_sessions.iter().zip(&new.listeners) {
            if listener.session.extranonce == slot.load().extranonce {
                slot.store(Arc::clone(&listener.session));
            }
        }
        self.control
            .reloads
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        restart
    }
}

/// A running engine.
pub struct Engine {
    /// The address of each listener, in configuration order (with the real port when 0 was asked).
    pub addresses: Vec<SocketAddr>,
    pub metrics: Arc<Metrics>,
    pub feed: Arc<JobFeed>,
    /// Node health and recent blocks, for `/status`.
    pub source_status: Arc<SourceStatus>,
    /// Drain state, for the registry.
    pub control: Arc<crate::plane::commands::Control>,
    /// What the cores share (configuration reloads go through it). Weak, so that stopping the
    /// cores drops the found-block sender and the threads behind it finish.
    pub shared: std::sync::Weak<Shared>,
    shutdown: watch::Sender<bool>,
    cores: Vec<JoinHandle<()>>,
    /// The job source's threads (or, with a plane, the Redis threads).
    background: Vec<JoinHandle<()>>,
    /// The engine slot's keeper (the stratum role): released last, after the sessions.
    slot_keeper: Option<crate::plane::sessions::SlotKeeper>,
    /// The engine slot, for the registry (the stratum role).
    pub slot: Option<Arc<crate::plane::sessions::SlotLease>>,
    stop_jobmanager: Arc<AtomicBool>,
}

fn listener_socket(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// Why the engine did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot start the engine: {0}")]
    Io(#[from] std::io::Error),
    /// Every node's problem, each naming the key to fix.
    #[error("{0}")]
    Nodes(String),
    #[error("{0}")]
    Plane(String),
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
}

impl Engine {
    /// Checks the nodes (or starts the embedded simulated chain), publishes the first job, binds
    /// the listeners and starts the cores.
    pub fn start(settings: Settings) -> Result<Engine, StartError> {
        Engine::start_with(settings, None)
    }

    /// As [`start`](Self::start); with a plane, jobs come from Redis and found blocks go there (the
    /// `sluice stratum` role) instead of from an embedded job source.
    pub fn start_with(
        mut settings: Settings,
        plane: Option<(
            crate::plane::PlaneSettings,
            crate::plane::sharelog::ShareLogSettings,
        )>,
    ) -> Result<Engine, StartError> {
        // Connections past the open-file limit would wait in the listen backlog instead of being
        // refused: keep the connection limit under it.
        if let Some(files) = open_file_limit() {
            let room = files.saturating_sub(FILES_KEPT_FOR_THE_ENGINE);
            if settings.max_connections > room {
                tracing::warn!(
                    configured = settings.max_connections,
                    used = room,
                    open_file_limit = files,
                    "limits.max_connections is above what the open-file limit allows; lowering it"
                );
                settings.max_connections = room;
            }
        }
        let settings = Arc::new(settings);
        let threads = settings.threads;
        // One socket per listener per core, all on the same port; the first fixes the port when 0
        // was asked for.
        let mut per_core: Vec<Vec<(std::net::TcpListener, usize)>> =
            (0..threads).map(|_| Vec::new()).collect();
        let mut addresses = Vec::new();
        for (i, listener) in settings.listeners.iter().enumerate() {
            let first = listener_socket(listener.address)?;
            let addr = first.local_addr()?;
            addresses.push(addr);
            per_core[0].push((first, i));
            for sockets in per_core.iter_mut().skip(1) {
                sockets.push((listener_socket(addr)?, i));
            }
        }

        let metrics = Arc::new(Metrics::new(threads));
        let feed = Arc::new(JobFeed::new(threads, settings.job_history));
        let source_status = Arc::new(SourceStatus::default());
        let (blocks_tx, blocks_rx) = crossbeam_channel::bounded::<Box<BlockFound>>(BLOCK_QUEUE);
        let stop_jobmanager = Arc::new(AtomicBool::new(false));
        let mut background = Vec::new();
        let mut share_log = None;
        let mut sessions = None;
        let mut slot = None;
        let mut slot_keeper = None;
        let control = Arc::new(crate::plane::commands::Control::default());
        let policies = Arc::new(arc_swap::ArcSwap::from_pointee(
            crate::plane::policies::PolicySet::default(),
        ));
        match &plane {
            None => {
                // Blocks are assembled off the cores, then go to the job source.
                let (candidates_tx, candidates_rx) = crossbeam_channel::bounded(BLOCK_QUEUE);
                background.push(
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
                // Work exists before the first miner connects: the source publishes before
                // returning.
                background.push(jobmanager::start_source(
                    &settings,
                    Arc::clone(&feed) as Arc<dyn JobSink>,
                    Arc::clone(&metrics),
                    Arc::clone(&source_status),
                    candidates_rx,
                    Arc::clone(&stop_jobmanager),
                )?);
            }
            Some((plane, log)) => {
                if settings.coinbase.extranonce.extranonce1() < 2 {
                    return Err(StartError::Plane(
                        "pool.extranonce1_size: a fleet engine needs at least 2 bytes (one is its slot)"
                            .into(),
                    ));
                }
                // First, so a held-blocks file that cannot be used stops the start before
                // anything else runs. With nodes of its own, the engine submits each block itself
                // too, at once: the path through Redis and the leader then adds a second try.
                let direct = if settings.nodes.is_empty() {
                    None
                } else {
                    let (direct_tx, direct_rx) = crossbeam_channel::bounded(BLOCK_QUEUE);
                    let policy = jobmanager::submit::SubmitPolicy {
                        attempts: settings.node_policy.submit_attempts,
                        first_backoff: std::time::Duration::from_millis(250),
                        rpc_timeout: settings.node_policy.rpc_timeout,
                    };
                    let (nodes, status, metrics) = (
                        settings.nodes.clone(),
                        Arc::clone(&source_status),
                        Arc::clone(&metrics),
                    );
                    background.push(
                        std::thread::Builder::new()
                            .name("sluice-submit".into())
                            .spawn(move || {
                                // Nobody here waits for "submitted": jobs come through Redis.
                                let (after, _) = crossbeam_channel::bounded(1);
                                jobmanager::submit::run_submitter(
                                    nodes, policy, direct_rx, status, metrics, after,
                                )
                            })?,
                    );
                    tracing::info!(
                        nodes = settings.nodes.len(),
                        "found blocks go to the configured nodes directly as well as through Redis"
                    );
                    Some(direct_tx)
                };
                background.push(
                    crate::plane::blocks::spawn_forwarder(
                        plane.clone(),
                        &settings.held_blocks_path,
                        blocks_rx,
                        direct,
                    )
                    .map_err(|e| StartError::Plane(e.to_string()))?,
                );
                let (lease, keeper) =
                    crate::plane::sessions::lease_slot(plane).map_err(StartError::Plane)?;
                tracing::info!(
                    slot = lease.slot,
                    "engine slot leased: extranonce1 values start with it"
                );
                slot_keeper = Some(keeper);
                let (store, store_thread) = crate::plane::sessions::spawn_store(
                    plane.clone(),
                    plane.session_ttl,
                    Arc::clone(&lease),
                    Arc::clone(&stop_jobmanager),
                )?;
                slot = Some(lease);
                sessions = Some(store);
                background.push(store_thread);
                background.push(crate::plane::policies::spawn(
                    plane.clone(),
                    Arc::clone(&policies),
                    Arc::clone(&stop_jobmanager),
                )?);
                background.push(crate::plane::commands::spawn(
                    plane.clone(),
                    Arc::clone(&control),
                    Arc::clone(&metrics),
                    Arc::clone(&stop_jobmanager),
                )?);
                let (shares_tx, shares_rx) =
                    crate::plane::sharelog::ShareQueue::new(Arc::clone(&metrics.share_log));
                share_log = Some(shares_tx);
                background.push(crate::plane::sharelog::spawn_writer(
                    plane.clone(),
                    log.clone(),
                    shares_rx,
                    Arc::clone(&metrics.share_log),
                    Arc::clone(&stop_jobmanager),
                )?);
                let extranonce = settings.coinbase.extranonce;
                background.push(
                    crate::plane::jobs::start_subscriber(
                        plane.clone(),
                        Arc::clone(&feed),
                        extranonce,
                        Arc::clone(&metrics),
                        Arc::clone(&stop_jobmanager),
                    )
                    .map_err(StartError::Plane)?,
                );
            }
        }

        let shared = Arc::new(Shared {
            limits: ConnectionLimits::new(
                settings.max_connections,
                settings.max_connections_per_ip,
            ),
            settings: Arc::clone(&settings),
            feed: Arc::clone(&feed),
            metrics: Arc::clone(&metrics),
            blocks: blocks_tx,
            share_log,
            sessions,
            slot: slot.clone(),
            control: Arc::clone(&control),
            policies,
            listener_sessions: settings
                .listeners
                .iter()
                .map(|l| arc_swap::ArcSwap::new(Arc::clone(&l.session)))
                .collect(),
        });
        let weak_shared = Arc::downgrade(&shared);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut cores = Vec::new();
        for (index, sockets) in per_core.into_iter().enumerate() {
            let shared = Arc::clone(&shared);
            let rx = shutdown_rx.clone();
            cores.push(
                std::thread::Builder::new()
                    .name(format!("sluice-core-{index}"))
                    .spawn(move || {
                        let sockets = sockets
                            .into_iter()
                            .map(|(s, i)| (s, Rc::new(shared.settings.listeners[i].clone())))
                            .collect();
                        core::run(index, shared, sockets, rx)
                    })?,
            );
        }
        Ok(Engine {
            addresses,
            metrics,
            feed,
            source_status,
            control,
            shared: weak_shared,
            shutdown,
            cores,
            background,
            slot_keeper,
            slot,
            stop_jobmanager,
        })
    }

    /// Sends `client.reconnect` to every miner, stops the cores and the job source.
    pub fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for core in self.cores.drain(..) {
            let _ = core.join();
        }
        self.stop_jobmanager
            .store(true, std::sync::atomic::Ordering::Relaxed);
        for j in self.background.drain(..) {
            let _ = j.join();
        }
        if let Some(keeper) = self.slot_keeper.take() {
            keeper.release();
        }
    }
}
