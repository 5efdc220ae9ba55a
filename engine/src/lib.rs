//! Sluice: a thread-per-core Bitcoin (SHA-256d) Stratum V1 mining-pool engine: the I/O layer and
//! the roles, over the pure crates.
//!
//! The layers (see `ARCHITECTURE.md`), each using only those before it, the first two kept apart
//! by crate boundaries:
//! 1. `sluice-core`, protocol-neutral and pure: units, hex, hashing, chain logic, jobs, share
//!    validation, vardiff, records, the PROXY parser, the simulated chain's logic;
//! 2. `sluice-stratum`, Stratum V1 and sans-IO: the codec and the session state machine;
//! 3. this crate's I/O: the runtime and listeners ([`server`]), the job feed the cores read
//!    ([`feed`]), the job sources ([`source`], over the node client [`node`]), the Redis plane
//!    ([`plane`]), configuration, metrics and the admin listener;
//! 4. the `sluice` binary and its roles ([`roles`]).
//!
//! The pure modules are re-exported under their old names, so `sluice::chain::Job` and
//! `crate::units::Difficulty` name the same items as `sluice_core::...`.

pub use sluice_core::{chain, clock, hash, hex, proxy, records, share, simulated, units, vardiff};
pub use sluice_stratum::codec as stratum;
pub use sluice_stratum::session;

pub mod admin;
pub mod config;
pub mod feed;
pub mod metrics;
pub mod node;
pub mod plane;
pub mod random;
pub mod redact;
pub mod roles;
pub mod server;
pub mod source;
