//! Talking to bitcoind-compatible nodes: the jobmanager's only window on the network.
//!
//! - [`rpc`]: JSON-RPC over HTTP/1.1 (kept-alive, timeouts, user/password or cookie file);
//! - [`zmq`]: a ZeroMQ SUB client for the node's `hashblock` publisher, the fast way to learn of
//!   new blocks (polling `getbestblockhash` is the fallback);
//! - [`client`]: the calls a pool makes (`getblockchaininfo`, `getblocktemplate`,
//!   `getbestblockhash`, `submitblock`), the start-up checks that name the key to fix, and the
//!   classification of `submitblock` answers.
//!
//! Everything here is blocking and runs on the jobmanager's threads, never on an engine core.

pub mod client;
pub mod rpc;
pub mod zmq;
