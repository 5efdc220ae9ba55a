//! Stratum V1's side of share validation: a `mining.submit`'s hex fields as core's
//! [`ShareFields`], and the error each [`Reject`] is answered with.
//!
//! Core decides the order of checks (see `sluice_core::share::validate`); this only says how each
//! field is decoded: extranonce2 as exactly the job's size in hex, ntime and nonce as 8 hex digits,
//! version bits as up to 8.

use sluice_core::chain::Job;
use sluice_core::hex;
use sluice_core::share::{Reject, SessionShares, ShareFields, ShareRules, Undecodable, Verdict};
use sluice_core::units::Extranonce1;

use crate::codec::error::{ErrorCode, StratumError};
use crate::codec::request::Submit;

impl ShareFields for Submit<'_> {
    #[inline]
    fn extranonce2_into(&self, out: &mut [u8]) -> bool {
        hex::decode_into(self.extranonce2.as_bytes(), out).is_ok()
    }
    #[inline]
    fn ntime(&self) -> Option<u32> {
        hex::decode_u32_exact(self.ntime.as_bytes()).ok()
    }
    #[inline]
    fn nonce(&self) -> Option<u32> {
        hex::decode_u32_exact(self.nonce.as_bytes()).ok()
    }
    #[inline]
    fn version_bits(&self) -> Result<Option<u32>, Undecodable> {
        match self.version_bits {
            None => Ok(None),
            Some(text) => hex::decode_u32_loose(text.as_bytes())
                .map(Some)
                .map_err(|_| Undecodable),
        }
    }
}

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
    #[inline]
    fn validate_submit(
        &mut self,
        job: &Job,
        stale: bool,
        extranonce1: &Extranonce1,
        submit: &Submit<'_>,
        rules: &ShareRules,
    ) -> Verdict {
        self.validate(job, stale, extranonce1, submit, rules)
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
