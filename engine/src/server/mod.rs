//! The engine's I/O layer: one pinned thread per core, each with its own tokio-uring runtime and its
//! own SO_REUSEPORT listener socket per configured listener, so a connection lives and dies on the
//! core that accepted it. Jobs reach the cores through the [`JobFeed`] snapshot; found blocks
//! leave them through a bounded channel. The role that starts the engine ([`crate::roles`]) fills
//! the feed, drains the channel and hands in the fleet's services as [`Hooks`]: the server builds
//! no job source and no plane thread of its own.

pub mod connection;
pub mod core;
pub mod limits;
mod local;
mod shared;

pub use shared::{Hooks, Shared};

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;

use socket2::{Domain, Socket, Type};
use tokio::sync::watch;

use crate::config::Settings;
use crate::feed::JobFeed;
use crate::metrics::Metrics;

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

        let (feed, control) = (Arc::clone(&hooks.feed), Arc::clone(&hooks.control));
        let shared = Arc::new(Shared::new(
            Arc::clone(&settings),
            Arc::clone(&metrics),
            hooks,
        ));
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
            control,
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
