//! Stratum V1, pure and sans-IO, on top of `sluice-core`:
//! - [`codec`]: line framing, typed requests, the messages a pool sends (among them a job's
//!   `mining.notify`, encoded once per job), the error codes;
//! - [`share`]: a `mining.submit` decoded into core's submission, and each refusal's answer;
//! - [`session`]: one miner connection's state machine, which owns every protocol decision.
//!
//! No module here does I/O or depends on a crate that does (tokio, tokio-uring, redis, libc,
//! socket2): `tests/layers.rs` checks it. Nothing in `sluice-core` may import this crate.

pub mod codec;
pub mod session;
pub mod share;
