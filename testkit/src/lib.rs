//! What Sluice's test suites (the root `tests/`, `ctl/tests/`) and the benches share: temporary
//! directories, polling until something holds, free loopback ports, a real `redis-server` per
//! test ([`RedisServer`], over TLS with a throwaway CA from [`tls`], with replicas and [`Sentinels`]),
//! real `sluice` processes ([`EngineProcess`]), a whole fleet behind HAProxy ([`Fleet`], also run by
//! the `sluice-fleet` binary for operators) and a Stratum V1 test miner ([`miner::Miner`]). Each suite
//! keeps in its own `support/` only what is specific to it
//! (fleet settings, sluicectl runs, the independent reference miner) and re-exports the rest from
//! here, so no fixture exists twice.
//!
//! Every fixture panics on failure: it runs only inside tests.

pub mod fleet;
pub mod miner;
mod process;
mod redis_server;
pub mod sentinel;
pub mod tls;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use fleet::{Fleet, FleetSpec};
pub use process::{loadgen_binary, sluice_binary, sluicectl_binary, EngineProcess};
pub use redis_server::RedisServer;
pub use sentinel::Sentinels;
pub use tls::Pki;

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "sluice-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Leaves the directory behind and gives its path, for files that must outlive the value
    /// (a configuration a process reads later, a spool a test reads after its writer is gone).
    pub fn keep(mut self) -> PathBuf {
        std::mem::take(&mut self.0)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Empty once kept.
        if !self.0.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Polls `f` until it returns `Some`, for at most `timeout`.
pub fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A loopback port nothing listens on (just now).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
