//! Stratum V1's side of share validation: a `mining.submit`'s hex fields decoded into core's
//! [`Submission`], and the error each [`Reject`] is answered with.
//!
//! The order of checks is part of the contract (see `sluice_core::share::validate`): extranonce2 at
//! its exact size, ntime, ntime against the job and the clock, nonce, version bits; the first failure
//! is the answer, and nothing is hashed.

use sluice_core::chain::Job;
use sluice_core::hex;
use sluice_core::share::{check_ntime, Reject, SessionShares, ShareRules, Submission, Verdict};
use sluice_core::units::{Extranonce1, MAX_EXTRANONCE2_SIZE};

use crate::codec::error::{ErrorCode, StratumError};
use crate::codec::request::Submit;

/// A session's share state judging Stratum V1 submits.
pub trait ValidateSubmit {
    /// Judges one `mining.submit` against `job` (`stale` when the job is on an older previous
    /// block). Allocates nothing.
    fn validate_submit(
        &mut self,
        job: &Job,
        stale: bool,
        extranonce1: &Extranonce1,
        submit: &Submit<'_>,
        rules: &ShareRules,
    ) -> Verdict;
}

impl ValidateSubmit for SessionShares {
    fn validate_submit(
        &mut self,
        job: &Job,
        stale: bool,
        extranonce1: &Extranonce1,
        submit: &Submit<'_>,
        rules: &ShareRules,
    ) -> Verdict {
        let en2_len = job.extranonce.extranonce2();
        let mut extranonce2 = [0u8; MAX_EXTRANONCE2_SIZE];
        if hex::decode_into(submit.extranonce2.as_bytes(), &mut extranonce2[..en2_len]).is_err() {
            return Verdict::refused(Reject::BadExtranonce2);
        }
        let Ok(ntime) = hex::decode_u32_exact(submit.ntime.as_bytes()) else {
            return Verdict::refused(Reject::BadNtime);
        };
        if let Err(reject) = check_ntime(job, ntime, rules.now) {
            return Verdict::refused(reject);
        }
        let Ok(nonce) = hex::decode_u32_exact(submit.nonce.as_bytes()) else {
            return Verdict::refused(Reject::BadNonce);
        };
        let version_bits = match submit.version_bits {
            None => None,
            Some(text) => match hex::decode_u32_loose(text.as_bytes()) {
                Ok(bits) => Some(bits),
                Err(_) => return Verdict::refused(Reject::BadVersionBits),
            },
        };
        let submission = Submission {
            extranonce2: &extranonce2[..en2_len],
            ntime,
            nonce,
            version_bits,
        };
        self.validate(job, stale, extranonce1, &submission, rules)
    }
}

/// The Stratum error a refused share is answered with.
pub trait RejectAnswer {
    fn stratum_error(self) -> StratumError;
}

impl RejectAnswer for Reject {
    fn stratum_error(self) -> StratumError {
        let (code, message) = match self {
            Reject::JobNotFound => (ErrorCode::JobNotFound, "Job not found"),
            Reject::Stale => (ErrorCode::JobNotFound, "Stale share"),
            Reject::Duplicate => (ErrorCode::Duplicate, "Duplicate share"),
            Reject::LowDifficulty => (ErrorCode::LowDifficulty, "Low difficulty share"),
            Reject::JobShareLimit => (
                ErrorCode::Other,
                "Too many shares for this job; wait for new work",
            ),
            Reject::BadExtranonce2 => (ErrorCode::Other, "Incorrect size or hex of extranonce2"),
            Reject::BadNtime => (ErrorCode::Other, "Invalid ntime: must be 8 hex digits"),
            Reject::NtimeTooOld => (
                ErrorCode::Other,
                "ntime out of range: earlier than the job allows",
            ),
            Reject::NtimeTooNew => (
                ErrorCode::Other,
                "ntime out of range: more than 2 hours ahead",
            ),
            Reject::BadNonce => (ErrorCode::Other, "Invalid nonce: must be 8 hex digits"),
            Reject::BadVersionBits => (ErrorCode::Other, "Invalid version bits"),
            Reject::VersionBitsOutsideMask => {
                (ErrorCode::Other, "Version bits outside the negotiated mask")
            }
            Reject::UnauthorizedWorker => (ErrorCode::Unauthorized, "Unauthorized worker"),
            Reject::NotSubscribed => (ErrorCode::NotSubscribed, "Not subscribed"),
        };
        StratumError::new(code, message)
    }
}
