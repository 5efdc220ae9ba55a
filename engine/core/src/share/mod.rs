//! Share validation, pure and synchronous: the verdict on a submitted share, the per-session merkle
//! cache and the bounded duplicate filter.

pub mod dedup;
pub mod validate;

pub use dedup::{DuplicateFilter, DuplicateLimits, SavedShares, DEFAULT_MAX_SHARES_PER_JOB};
pub use validate::{
    parse_job_id, Reject, SessionShares, ShareFields, ShareProof, ShareRules, Submission,
    Undecodable, Verdict, MAX_NTIME_AHEAD_SECS,
};
