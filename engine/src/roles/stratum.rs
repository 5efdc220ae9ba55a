//! `sluice stratum`: an engine of the fleet. Jobs come from Redis (the subscriber fills the feed);
//! found blocks go to Redis for the leader (and, with `[[nodes]]`, to those nodes at once too);
//! sessions, policies, commands and the share log go through the plane's threads, started here.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::clock::UnixMillis;
use crate::config::Settings;
use crate::feed::JobFeed;
use crate::metrics::Metrics;
use crate::plane::commands::ReloadError;
use crate::plane::registry::{self, Load, ServiceInfo};
use crate::plane::sessions::SlotKeeper;
use crate::plane::sharelog::{ShareLogSettings, ShareQueue};
use crate::plane::{blocks, commands, jobs, policies, sessions, sharelog, PlaneSettings};
use crate::records::BlockFound;
use crate::server::{Engine, Hooks, BLOCK_QUEUE};
use crate::source::submit::{self, SubmitPolicy};
use crate::source::SourceStatus;

use super::{StartError, Threads};

/// A running stratum engine of the fleet.
pub struct Stratum {
    pub engine: Engine,
    pub id: String,
    /// The nodes' health and recent blocks (with `[[nodes]]`), for `/status`.
    pub status: Arc<SourceStatus>,
    /// The registry heartbeat: stopped first, so the fleet sees this engine go before it does.
    registry: Threads,
    /// The plane's threads, stopped after the cores.
    threads: Threads,
    /// The engine slot's keeper: released last, after the sessions.
    slot_keeper: Option<SlotKeeper>,
}

impl Stratum {
    /// Starts the plane's threads, then the engine on them; `reload` re-reads the configuration
    /// for sluicectl's `engine reload`.
    pub fn start(
        settings: Settings,
        plane: PlaneSettings,
        share_log: ShareLogSettings,
        reload: impl Fn() -> Result<Settings, ReloadError> + Send + Sync + 'static,
    ) -> Result<Stratum, StartError> {
        if settings.coinbase.extranonce.extranonce1() < 2 {
            return Err(StartError::Extranonce1TooShort);
        }
        let metrics = Arc::new(Metrics::new(settings.threads));
        let status = Arc::new(SourceStatus::default());
        let mut threads = Threads::default();
        let mut slot_keeper = None;
        let started = start_plane(
            &settings,
            &plane,
            share_log,
            &metrics,
            &status,
            &mut threads,
            &mut slot_keeper,
        )
        .and_then(|hooks| Ok(Engine::start_with(settings, metrics, hooks)?));
        let engine = match started {
            Ok(engine) => engine,
            Err(e) => {
                threads.stop();
                if let Some(keeper) = slot_keeper {
                    keeper.release();
                }
                return Err(e);
            }
        };
        let shared = engine.shared.clone();
        engine.control.set_reloader(Box::new(move || {
            let new = reload()?;
            let shared = shared.upgrade().ok_or(ReloadError::Stopping)?;
            let restart_needed = shared.reload(&new);
            tracing::info!(?restart_needed, "configuration reloaded");
            Ok(serde_json::json!({"reloaded": true, "restart_needed": restart_needed}))
        }));
        let mut stratum = Stratum {
            id: plane.id.clone(),
            status,
            registry: Threads::default(),
            threads,
            slot_keeper,
            engine,
        };
        match spawn_registry(&stratum, plane) {
            Ok(r) => stratum.registry.push(r),
            Err(e) => {
                stratum.shutdown();
                return Err(e.into());
            }
        }
        Ok(stratum)
    }

    /// Deregisters, sends `client.reconnect` to every miner, stops the cores, the plane's threads,
    /// and gives the slot back.
    pub fn shutdown(mut self) {
        self.registry.stop();
        self.engine.shutdown();
        self.threads.stop();
        if let Some(keeper) = self.slot_keeper.take() {
            keeper.release();
        }
    }
}

/// Starts the plane's threads into `threads` and returns the engine's hooks on them.
fn start_plane(
    settings: &Settings,
    plane: &PlaneSettings,
    log: ShareLogSettings,
    metrics: &Arc<Metrics>,
    status: &Arc<SourceStatus>,
    threads: &mut Threads,
    slot_keeper: &mut Option<SlotKeeper>,
) -> Result<Hooks, StartError> {
    let (blocks_tx, blocks_rx) = crossbeam_channel::bounded::<Box<BlockFound>>(BLOCK_QUEUE);
    // First, so a held-blocks file that cannot be used stops the start before anything else
    // runs. With nodes of its own, the engine submits each block itself too, at once: the path
    // through Redis and the leader then adds a second try.
    let direct = if settings.nodes.is_empty() {
        None
    } else {
        let (direct_tx, direct_rx) = crossbeam_channel::bounded(BLOCK_QUEUE);
        let policy = SubmitPolicy {
            attempts: settings.node_policy.submit_attempts,
            first_backoff: std::time::Duration::from_millis(250),
            rpc_timeout: settings.node_policy.rpc_timeout,
        };
        let (nodes, status, metrics) = (
            settings.nodes.clone(),
            Arc::clone(status),
            Arc::clone(metrics),
        );
        threads.push(
            std::thread::Builder::new()
                .name("sluice-submit".into())
                .spawn(move || {
                    // Nobody here waits for "submitted": jobs come through Redis.
                    let (after, _) = crossbeam_channel::bounded(1);
                    submit::run_submitter(nodes, policy, direct_rx, status, metrics, after)
                })?,
        );
        tracing::info!(
            nodes = settings.nodes.len(),
            "found blocks go to the configured nodes directly as well as through Redis"
        );
        Some(direct_tx)
    };
    threads.push(blocks::spawn_forwarder(
        plane.clone(),
        &settings.held_blocks_path,
        blocks_rx,
        direct,
    )?);
    let (lease, keeper) = sessions::lease_slot(plane)?;
    tracing::info!(
        slot = lease.slot,
        "engine slot leased: extranonce1 values start with it"
    );
    *slot_keeper = Some(keeper);
    let (store, store_thread) = sessions::spawn_store(
        plane.clone(),
        plane.session_ttl,
        Arc::clone(&lease),
        threads.stop_flag(),
    )?;
    threads.push(store_thread);
    let mut hooks = Hooks::local(
        Arc::new(JobFeed::new(settings.threads, settings.job_history)),
        blocks_tx,
    );
    hooks.slot = Some(lease);
    hooks.sessions = Some(store);
    threads.push(policies::spawn(
        plane.clone(),
        Arc::clone(&hooks.policies),
        threads.stop_flag(),
    )?);
    threads.push(commands::spawn(
        plane.clone(),
        Arc::clone(&hooks.control),
        Arc::clone(metrics),
        threads.stop_flag(),
    )?);
    let (shares_tx, shares_rx) = ShareQueue::new(Arc::clone(&metrics.share_log));
    // A receiver's length is the channel's: cheap, and it keeps no sender alive.
    let depth = shares_rx.clone();
    metrics.share_log.watch_queue(move || depth.len());
    let marks = log
        .durable_ack
        .map(|_| Arc::new(sharelog::DurableMarks::new(settings.threads)));
    hooks.share_log = Some(match (&marks, log.durable_ack) {
        (Some(marks), Some(ack)) => shares_tx.with_durable_ack(Arc::clone(marks), ack),
        _ => shares_tx,
    });
    threads.push(sharelog::spawn_durable_writer(
        plane.clone(),
        log,
        shares_rx,
        Arc::clone(&metrics.share_log),
        threads.stop_flag(),
        marks,
    )?);
    threads.push(jobs::start_subscriber(
        plane.clone(),
        Arc::clone(&hooks.feed),
        settings.coinbase.extranonce,
        Arc::clone(metrics),
        threads.stop_flag(),
    )?);
    Ok(hooks)
}

/// The registry heartbeat of a running engine: its listeners, its load and its state.
fn spawn_registry(
    stratum: &Stratum,
    plane: PlaneSettings,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let engine = &stratum.engine;
    let metrics = Arc::clone(&engine.metrics);
    let redis = Arc::clone(&metrics.redis);
    let control = Arc::clone(&engine.control);
    let slot = engine.shared.upgrade().and_then(|s| s.hooks.slot.clone());
    let address = engine
        .addresses
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",");
    registry::spawn(
        plane,
        ServiceInfo {
            role: "stratum".into(),
            address,
            version: env!("CARGO_PKG_VERSION").into(),
            started_ms: UnixMillis::now().as_millis(),
        },
        {
            // Shares per second over the time since the last heartbeat.
            let mut last = (std::time::Instant::now(), metrics.shares_accepted());
            move || {
                let now = (std::time::Instant::now(), metrics.shares_accepted());
                let secs = now.0.duration_since(last.0).as_secs_f64();
                let rate = if secs > 0.0 {
                    (now.1 - last.1) as f64 / secs
                } else {
                    0.0
                };
                last = now;
                Load {
                    connections: metrics.connections(),
                    hashrate: metrics.hashrate(),
                    shares_per_second: rate,
                    state: if slot.as_ref().is_some_and(|s| s.is_lost()) {
                        "slot-lost".into()
                    } else if control.draining.load(Ordering::Acquire) {
                        "draining".into()
                    } else {
                        "serving".into()
                    },
                    shares_dropped: metrics.share_log.dropped_accepted.load(Ordering::Relaxed),
                }
            }
        },
        redis,
        stratum.registry.stop_flag(),
    )
}
