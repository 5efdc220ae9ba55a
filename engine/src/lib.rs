//! Sluice: a thread-per-core Bitcoin (SHA-256d) Stratum V1 mining-pool engine.
//!
//! The library is layered (see `ARCHITECTURE.md`); each layer uses only those before it:
//! 1. pure and synchronous: [`units`], [`hex`], [`hash`], [`stratum`] (the codec), [`chain`] (templates,
//!    coinbase, merkle branch, jobs, block assembly) and [`share`] (validation);
//! 2. the sans-IO session state machine (to come);
//! 3. I/O: runtime, listeners, job sources, Redis (to come);
//! 4. the `sluice` binary.

pub mod admin;
pub mod chain;
pub mod config;
pub mod hash;
pub mod hex;
pub mod metrics;
pub mod node;
pub mod plane;
pub mod proxy;
pub mod redact;
pub mod roles;
pub mod server;
pub mod session;
pub mod share;
pub mod source;
pub mod stratum;
pub mod units;
