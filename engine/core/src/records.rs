//! The records a session emits, whatever protocol it speaks: one per judged share (for the share log
//! and metrics) and one per share that meets the network target (everything needed to assemble and
//! submit the block).

use std::sync::Arc;

use crate::chain::Job;
use crate::share::Reject;
use crate::units::{Difficulty, Extranonce1, HeaderHash, JobId};

/// One judged share, for the share log and metrics.
#[derive(Debug, Clone)]
pub struct ShareRecord {
    pub worker: Arc<str>,
    /// The job, when the submit named one the session knows.
    pub job_id: Option<JobId>,
    pub height: Option<u64>,
    /// The difficulty the job was sent with.
    pub assigned_difficulty: Difficulty,
    /// The difficulty the share reached; `None` when it was refused before hashing (the share
    /// log writes 0 then).
    pub share_difficulty: Option<Difficulty>,
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

/// Why a connection ended: the session's own reasons, the engine's, and the miner's or the
/// socket's. One list, so metrics count every reason the engine closes for by its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    LineTooLong,
    PendingOutput,
    InvalidStreak,
    FailedAuthorize,
    UnauthenticatedTimeout,
    IdleTimeout,
    ProxyHeader,
    LimitTotal,
    LimitPerIp,
    SlotLost,
    UntrustedProxy,
    /// Refused at accept while the engine drains.
    Draining,
    /// Sent away (`client.reconnect`) by a drain.
    Drained,
    /// Kicked by an operator.
    Kicked,
    /// The miner closed the connection.
    Eof,
    /// Reading or writing the socket failed.
    SocketError,
    /// The engine is stopping.
    Shutdown,
}

impl CloseReason {
    /// The reasons the engine closes or refuses a connection for, which metrics count, in their
    /// order. The miner's end, a socket error and the engine's stop are not the engine's verdict
    /// on a connection, so they are not counted.
    pub const COUNTED: [CloseReason; 14] = [
        CloseReason::LineTooLong,
        CloseReason::PendingOutput,
        CloseReason::InvalidStreak,
        CloseReason::FailedAuthorize,
        CloseReason::UnauthenticatedTimeout,
        CloseReason::IdleTimeout,
        CloseReason::ProxyHeader,
        CloseReason::LimitTotal,
        CloseReason::LimitPerIp,
        CloseReason::SlotLost,
        CloseReason::UntrustedProxy,
        CloseReason::Draining,
        CloseReason::Drained,
        CloseReason::Kicked,
    ];

    /// This reason's place in [`CloseReason::COUNTED`], when it is counted.
    pub fn counted_index(self) -> Option<usize> {
        CloseReason::COUNTED.iter().position(|r| *r == self)
    }

    /// A stable name for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::LineTooLong => "line-too-long",
            CloseReason::PendingOutput => "pending-output",
            CloseReason::InvalidStreak => "invalid-share-streak",
            CloseReason::FailedAuthorize => "failed-authorize",
            CloseReason::UnauthenticatedTimeout => "unauthenticated-timeout",
            CloseReason::IdleTimeout => "idle-timeout",
            CloseReason::ProxyHeader => "proxy-header",
            CloseReason::LimitTotal => "limit-total",
            CloseReason::LimitPerIp => "limit-per-ip",
            CloseReason::SlotLost => "slot-lost",
            CloseReason::UntrustedProxy => "untrusted-proxy",
            CloseReason::Draining => "draining",
            CloseReason::Drained => "drained",
            CloseReason::Kicked => "kicked",
            CloseReason::Eof => "eof",
            CloseReason::SocketError => "socket-error",
            CloseReason::Shutdown => "shutdown",
        }
    }
}
