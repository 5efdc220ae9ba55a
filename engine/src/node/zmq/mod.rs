//! A minimal ZeroMQ SUB client for a node's `hashblock` publisher
//! (`-zmqpubhashblock=tcp://HOST:PORT`).
//!
//! The jobmanager learns of new blocks from this subscription rather than by polling, so miners get
//! a clean job within milliseconds of a block; while the subscription is not live (never connected,
//! node restarting, connection lost) it falls back to polling `getbestblockhash`. ZeroMQ never
//! replays what was published while we were away, so on every (re)connection the jobmanager should
//! check the tip once.
//!
//! Only what talking to bitcoind needs is implemented, over a plain blocking
//! [`std::net::TcpStream`]: ZMTP 3.0 (RFC 23) with the NULL security mechanism, one subscription,
//! and multipart messages. It avoids a libzmq binding (and its C build) and keeps every byte the
//! peer sends under our bounds: no frame may exceed [`MAX_FRAME_SIZE`], and nothing the peer sends
//! can make us panic or allocate beyond one receive buffer (save an error message). Why not a
//! ZeroMQ crate: ARCHITECTURE.md, "The ZMQ client".
//!
//! Use [`Subscriber`] to drive a connection yourself, or [`spawn_subscriber`] for a thread that keeps
//! one alive and reports [`SubscriberEvent`]s.
//!
//! The parts: `endpoint` (the `tcp://HOST:PORT` the node publishes on), `codec` (the bytes of
//! ZMTP: the handshake we send and check, frames, the `hashblock` message; no I/O), `subscriber`
//! (one blocking connection: connect, handshake, subscribe, read under deadlines) and `runner`
//! (the thread that keeps one alive, with back-off).

mod codec;
mod endpoint;
mod runner;
mod subscriber;
#[cfg(test)]
mod tests;

use std::io;
use std::net::SocketAddr;

pub use codec::{HashBlock, HASHBLOCK_TOPIC, MAX_FRAME_SIZE};
pub use endpoint::{parse_endpoint, Endpoint};
pub use runner::{spawn_subscriber, SubscriberEvent};
pub use subscriber::Subscriber;

#[derive(Debug, thiserror::Error)]
pub enum ZmqError {
    #[error("bad ZMQ endpoint {endpoint:?}: {reason}")]
    BadEndpoint {
        endpoint: String,
        reason: &'static str,
    },
    #[error("cannot resolve {endpoint}: {source}")]
    Resolve { endpoint: String, source: io::Error },
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error("ZMQ connection: {0}")]
    Io(#[from] io::Error),
    #[error("the ZMQ publisher closed the connection")]
    Closed,
    #[error("ZMTP protocol violation: {0}")]
    Protocol(String),
    #[error("ZMTP frame of {size} bytes is over the {MAX_FRAME_SIZE}-byte limit")]
    FrameTooLarge { size: u64 },
    #[error("the ZMQ publisher refused the handshake: {0}")]
    Refused(String),
    #[error("stopped")]
    Cancelled,
    #[error("the ZMQ connection already failed")]
    Broken,
}
