//! Share validation, pure and synchronous: the verdict on a submitted share, the per-session merkle
//! cache and the bounded duplicate filter.

pub mod dedup;
pub mod validate;

pub use dedup::{DuplicateFilter, DuplicateLimits, SavedShares, DEFAULT_MAX_SHARES_PER_JOB};
pub use validate::{
    check_ntime, parse_job_id, Reject, SessionShares, ShareProof, ShareRules, Submission, Verdict,
    MAX_NTIME_AHEAD_SECS,
};
