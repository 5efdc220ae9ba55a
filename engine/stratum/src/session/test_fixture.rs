//! The jobs and constants the session's unit tests share (`tests.rs`, `state_tests.rs`): one test
//! job, written once, so the two suites judge shares on the same work.

use std::sync::Arc;

use sluice_core::chain::{Job, JobParts};
use sluice_core::units::{ExtranonceSizes, JobId};

/// The payout address the tests' workers are named after.
pub const ADDRESS: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";
/// The tests' clock: every session starts at it, and jobs are stamped with it.
pub const NOW_MS: u64 = 1_750_000_000_000;

/// A job on the previous block `[prev; 32]` with this compact target, at [`NOW_MS`], with a small
/// coinbase and a three-transaction branch. The same parts under another id have the same
/// fingerprint (another engine's number for the same job).
pub fn job(id: u64, prev: u8, nbits: u32) -> Arc<Job> {
    let parts = JobParts {
        height: 500,
        prev_hash: [prev; 32],
        version: 0x2000_0000,
        nbits,
        ntime: (NOW_MS / 1000) as u32,
        mintime: (NOW_MS / 1000) as u32 - 600,
        coinb1: vec![0x01; 47],
        coinb2: vec![0x02; 60],
        extranonce: ExtranonceSizes::default(),
        txids: vec![[7; 32], [8; 32], [9; 32]],
        transactions: Vec::new(),
        witness_reserved_value: None,
    };
    Arc::new(Job::new(JobId(id), parts, true).unwrap())
}
