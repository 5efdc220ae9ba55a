//! Stratum V1 error codes and the errors a pool answers with.

use std::fmt;

/// The error codes Stratum V1 miners understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ErrorCode {
    Other = 20,
    JobNotFound = 21,
    Duplicate = 22,
    LowDifficulty = 23,
    Unauthorized = 24,
    NotSubscribed = 25,
}

/// An error sent back to a miner: a code and a short message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StratumError {
    pub code: ErrorCode,
    pub message: &'static str,
}

impl StratumError {
    pub const fn new(code: ErrorCode, message: &'static str) -> StratumError {
        StratumError { code, message }
    }
}

impl fmt::Display for StratumError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code as u8, self.message)
    }
}
