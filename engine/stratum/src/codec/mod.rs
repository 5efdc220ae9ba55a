//! The Stratum V1 codec, pure and synchronous: line framing, typed requests, the messages a pool
//! sends, and the error codes.

pub mod error;
pub mod framing;
pub mod message;
pub mod request;

pub use error::{ErrorCode, StratumError};
pub use framing::{FrameError, LineFramer, DEFAULT_MAX_LINE_LENGTH};
pub use request::{parse, Id, Message, Request, Submit};
