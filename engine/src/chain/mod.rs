//! Chain logic, pure and synchronous: block templates, the coinbase, the merkle branch, jobs, and the
//! assembly of a block from a winning share.

pub mod book;
pub mod coinbase;
pub mod job;
pub mod merkle;
pub mod template;

pub use book::{JobBook, Lookup};
pub use coinbase::{CoinbaseConfig, Payout};
pub use job::{Job, JobParts};
pub use template::BlockTemplate;
