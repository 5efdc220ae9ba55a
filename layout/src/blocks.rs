//! The two block streams' fields: `P:blocks:found` (each block an engine found, for the leading
//! jobmanager to submit) and `P:blocks` (each submitted block with every node's answer, for
//! sluicectl). The engine's `plane/blocks.rs` writes and reads them by these names, sluicectl's
//! `blocks` reads `P:blocks` by them. The Lua script that appends a record takes its fields and
//! values as arguments, so no script spells them.

/// The block's hash as nodes print it (64 lower-case hex digits). Both streams.
pub const HASH: &str = "hash";
/// The block's height (decimal). Both streams.
pub const HEIGHT: &str = "height";
/// The worker whose share it was. Both streams.
pub const WORKER: &str = "worker";
/// `P:blocks:found`: the `redis.id` of the engine that found it.
pub const ENGINE: &str = "engine";
/// `P:blocks:found`: the serialized block in hex, as `submitblock` takes it.
pub const BLOCK: &str = "block";
/// `P:blocks`: `1` if some node took the block (or already had it), else `0`.
pub const ACCEPTED: &str = "accepted";
/// `P:blocks`: when its outcome was known, unix milliseconds.
pub const FOUND_MS: &str = "found_ms";
/// `P:blocks`: a JSON array, one `{"node", "result", "reason"}` per node.
pub const RESULTS: &str = "results";

/// A `P:blocks:found` entry's fields, in the order the engine writes them.
pub const FOUND_FIELDS: [&str; 5] = [HASH, HEIGHT, WORKER, ENGINE, BLOCK];

/// A `P:blocks` entry's fields, in the order the recorder writes them.
pub const RECORD_FIELDS: [&str; 6] = [HASH, HEIGHT, WORKER, ACCEPTED, FOUND_MS, RESULTS];
