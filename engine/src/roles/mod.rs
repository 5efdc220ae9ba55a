//! The roles a `sluice` process can take, each wired from its parts in a file of its own (layer 4
//! of the design, kept in the library so the binary stays a thin CLI):
//!
//! - [`Run`] (`sluice run`): an engine and, as its job source, the simulated chain or the nodes,
//!   in one process;
//! - [`Jobmanager`]: the configured job source publishing into Redis while it holds the lease;
//!   found blocks read from Redis, submitted, and recorded there;
//! - [`Stratum`]: an engine whose jobs come from Redis and whose found blocks go there (and, with
//!   `[[nodes]]`, straight to those nodes as well).
//!
//! The engine ([`crate::server::Engine`]) only serves: each role builds the job source or the
//! plane threads and hands the engine the few values it needs ([`crate::server::Hooks`]). The
//! fleet roles register in the service registry and deregister on a clean stop.

mod jobmanager;
mod run;
mod stratum;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

pub use jobmanager::Jobmanager;
pub use run::Run;
pub use stratum::Stratum;

/// Why a role did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Engine(#[from] crate::server::StartError),
    /// The job source, each node's problem naming the key to fix.
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    #[error("redis.url: cannot reach Redis at {url}: {source}")]
    Unreachable {
        /// Redacted.
        url: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("redis.prefix {prefix:?}: {source}")]
    Layout {
        prefix: String,
        #[source]
        source: crate::plane::keys::LayoutError,
    },
    /// The first byte of every extranonce1 is the engine's slot.
    #[error("pool.extranonce1_size: a fleet engine needs at least 2 bytes (one is its slot)")]
    Extranonce1TooShort,
    #[error(transparent)]
    Slot(#[from] crate::plane::sessions::SlotError),
    #[error(transparent)]
    Jobs(#[from] crate::plane::jobs::SubscribeError),
    #[error(transparent)]
    HeldBlocks(#[from] crate::plane::blocks::HeldBlocksError),
    #[error("cannot start the engine: {0}")]
    Io(#[from] std::io::Error),
}

/// A role's own threads and the flag that stops them.
#[derive(Default)]
struct Threads {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl Threads {
    fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    fn push(&mut self, handle: JoinHandle<()>) {
        self.handles.push(handle);
    }

    /// Raises the flag and waits for every thread.
    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.handles.drain(..) {
            let _ = t.join();
        }
    }
}
