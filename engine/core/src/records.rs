//! The records a session emits, whatever protocol it speaks: one per judged share (for the share log
//! and metrics) and one per share that meets the network target (everything needed to assemble and
//! submit the block).

use std::sync::Arc;

use crate::chain::Job;
use crate::share::Reject;
use crate::units::{Extranonce1, HeaderHash, JobId};

/// One judged share, for the share log and metrics.
#[derive(Debug, Clone)]
pub struct ShareRecord {
    pub worker: Arc<str>,
    /// The job, when the submit named one the session knows.
    pub job_id: Option<JobId>,
    pub height: Option<u64>,
    /// The difficulty the job was sent with.
    pub assigned_difficulty: f64,
    /// The difficulty the share reached (0 when it was refused before hashing).
    pub share_difficulty: f64,
    pub result: Result<(), Reject>,
    pub is_block: bool,
    pub hash: Option<HeaderHash>,
}

/// A share that meets the network target: everything needed to assemble and submit the block.
#[derive(Debug, Clone)]
pub struct BlockFound {
    pub job: Arc<Job>,
    pub header: [u8; 80],
    pub hash: HeaderHash,
    pub extranonce1: Extranonce1,
    pub extranonce2: Vec<u8>,
    pub worker: Arc<str>,
}

impl BlockFound {
    /// The block's bytes, as `submitblock` takes them (before hex).
    pub fn assemble(&self) -> Vec<u8> {
        self.job
            .assemble_block(&self.header, self.extranonce1.as_bytes(), &self.extranonce2)
    }
}
