//! Found blocks on their way to the nodes, and what the nodes made of them: the types a block takes
//! from the session that found it ([`BlockFound`]) through the submitter to `/status` and the
//! fleet's block log, whichever job source is running.

use crate::records::BlockFound;
use crate::units::BlockHash;

/// A found block, assembled, on its way to the nodes (from this process's cores, or from an engine
/// of the fleet through Redis).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandidateBlock {
    pub hash: BlockHash,
    pub height: u64,
    pub worker: String,
    /// The serialized block, as `submitblock` takes it (before hex).
    pub raw: Vec<u8>,
    /// The `P:blocks:found` entry it was read from (the jobmanager role): the cursor moves past it
    /// only once the block's outcome is recorded. `None` for a block found by this process.
    pub entry: Option<String>,
}

impl CandidateBlock {
    pub fn assemble(found: &BlockFound) -> CandidateBlock {
        CandidateBlock {
            hash: BlockHash::from(found.hash),
            height: found.job.height,
            worker: found.worker.to_string(),
            raw: found.assemble(),
            entry: None,
        }
    }
}

/// A found block and what each node made of it.
#[derive(Debug, Clone)]
pub struct BlockRecord {
    pub hash: BlockHash,
    pub height: u64,
    pub worker: String,
    pub found_ms: u64,
    /// One entry per node: its name and its answer.
    pub results: Vec<(String, SubmitResult)>,
    /// The `P:blocks:found` entry of the block, carried from its [`CandidateBlock`].
    pub entry: Option<String>,
}

impl BlockRecord {
    /// Some node took it (or already had it).
    pub fn accepted(&self) -> bool {
        self.results
            .iter()
            .any(|(_, r)| matches!(r, SubmitResult::Accepted | SubmitResult::Duplicate))
    }
}

/// What one node said to one `submitblock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitResult {
    Accepted,
    /// The node already had the block (another of our nodes relayed it first).
    Duplicate,
    Rejected(String),
    /// No answer after every attempt: the last error.
    NoAnswer(String),
}

impl SubmitResult {
    /// `submitblock`'s answer: `null` on success, else a BIP22 reason string.
    pub fn from_answer(answer: Option<String>) -> SubmitResult {
        match answer.as_deref() {
            None => SubmitResult::Accepted,
            Some("duplicate" | "duplicate-inconclusive") => SubmitResult::Duplicate,
            Some(reason) => SubmitResult::Rejected(reason.to_owned()),
        }
    }

    /// The outcome as one word, for metrics, JSON and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            SubmitResult::Accepted => "accepted",
            SubmitResult::Duplicate => "duplicate",
            SubmitResult::Rejected(_) => "rejected",
            SubmitResult::NoAnswer(_) => "no_answer",
        }
    }

    /// The reason, for the outcomes that carry one.
    pub fn reason(&self) -> Option<&str> {
        match self {
            SubmitResult::Rejected(r) | SubmitResult::NoAnswer(r) => Some(r),
            _ => None,
        }
    }
}
