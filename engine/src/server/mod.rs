//! The engine's I/O layer: one pinned thread per core, each with its own tokio-uring runtime and its
//! own SO_REUSEPORT listener socket per configured listener, so a connection lives and dies on the
//! core that accepted it. Jobs reach the cores through the [`JobFeed`] snapshot; found blocks
//! leave them through a bounded channel. The role that starts the engine ([`crate::roles`]) fills
//! the feed, drains the channel and hands in the fleet's services as [`Hooks`]: the server builds
//! no job source and no plane thread of its own.

pub mod connection;
pub mod core;
pub mod limits;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;

use socket2::{Domain, Socket, Type};
use tokio::sync::watch;

use crate::config::Settings;
use crate::feed::JobFeed;
use crate::metrics::Metrics;
use crate::session::BlockFound;
use limits::ConnectionLimits;

/// Found blocks waiting for whoever takes them: far more than can ever be pending at once.
pub const BLOCK_QUEUE: usize = 1024;

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

/// What the role starting an engine hands it: where its jobs come from and its found blocks go,
/// and the fleet's services (idle or absent without a plane).
pub struct Hooks {
    /// Filled by the role's job source or the plane's subscriber, before the cores start.
    pub feed: Arc<JobFeed>,
    /// Found blocks leave the cores here; the receiver ends when the engine stops.
    pub blocks: crossbeam_channel::Sender<Box<BlockFound>>,
    pub share_log: Option<crate::plane::sharelog::ShareQueue>,
    pub sessions: Option<Arc<crate::plane::sessions::SessionStore>>,
    pub slot: Option<Arc<crate::plane::sessions::SlotLease>>,
    pub control: Arc<crate::plane::commands::Control>,
    pub policies: Arc<arc_swap::ArcSwap<crate::plane::policies::PolicySet>>,
}

impl Hooks {
    /// Hooks with no fleet services: jobs through `feed`, found blocks to `blocks`.
    pub fn local(feed: Arc<JobFeed>, blocks: crossbeam_channel::Sender<Box<BlockFound>>) -> Hooks {
        Hooks {
            feed,
            blocks,
            share_log: None,
            sessions: None,
            slot: None,
            control: Arc::new(crate::plane::commands::Control::default()),
            policies: Arc::new(arc_swap::ArcSwap::from_pointee(
                crate::plane::policies::PolicySet::default(),
            )),
        }
    }
}

/// A running engine.
pub struct Engine {
    /// The address of each listener, in configuration order (with the real port when 0 was asked).
    pub addresses: Vec<SocketAddr>,
    pub metrics: Arc<Metrics>,
    pub feed: Arc<JobFeed>,
    /// Drain state, for the registry.
    pub control: Arc<crate::plane::commands::Control>,
    /// What the cores share (configuration reloads go through it). Weak, so that stopping the
    /// cores drops the found-block sender and the threads behind it finish.
    pub shared: std::sync::Weak<Shared>,
    shutdown: watch::Sender<bool>,
    cores: Vec<JoinHandle<()>>,
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
}

impl Engine {
    /// Binds the listeners and starts the cores on `hooks`, counting into `metrics` (made by the
    /// role, whose threads count into them too). The feed should hold a job already: a miner that
    /// connects first gets it at once.
    pub fn start_with(
        mut settings: Settings,
        metrics: Arc<Metrics>,
        hooks: Hooks,
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

        let shared = Arc::new(Shared {
            limits: ConnectionLimits::new(
                settings.max_connections,
                settings.max_connections_per_ip,
            ),
            settings: Arc::clone(&settings),
            feed: Arc::clone(&hooks.feed),
            metrics: Arc::clone(&metrics),
            blocks: hooks.blocks,
            share_log: hooks.share_log,
            sessions: hooks.sessions,
            slot: hooks.slot,
            control: Arc::clone(&hooks.control),
            policies: hooks.policies,
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
            feed: hooks.feed,
            control: hooks.control,
            shared: weak_shared,
            shutdown,
            cores,
        })
    }

    /// Sends `client.reconnect` to every miner and stops the cores; the found-block sender goes
    /// with them, so whatever drains it finishes.
    pub fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for core in self.cores.drain(..) {
            let _ = core.join();
        }
    }
}
