//! Sluice's protocol-neutral core, pure and synchronous: everything a share and a job are, whatever
//! protocol carries them. A second front end (Stratum V2 beside V1) reuses it unchanged.
//!
//! - vocabulary: [`units`] (targets, difficulties, extranonces, job ids), [`hex`], [`hash`]
//!   (SHA-256d with SHA-NI), [`clock`];
//! - [`chain`]: templates, the coinbase, the merkle branch, jobs and the job book, the job sink, found
//!   blocks and their assembly;
//! - [`share`]: validation of a decoded share and the bounded duplicate filter;
//! - [`vardiff`]: the difficulty controller; [`records`]: what a session emits per share and block;
//! - [`proxy`]: the PROXY protocol header parser; [`simulated`]: the simulated chain's logic.
//!
//! No module here does I/O or depends on a crate that does (tokio, tokio-uring, redis, libc,
//! socket2): `tests/layers.rs` fails the build's tests if one does. Time comes in as a parameter.

pub mod chain;
pub mod clock;
pub mod hash;
pub mod hex;
pub mod proxy;
pub mod records;
pub mod share;
pub mod simulated;
pub mod units;
pub mod vardiff;
