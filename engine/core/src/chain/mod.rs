//! Chain logic, pure and synchronous: block templates, the coinbase, the merkle branch, jobs and the
//! job book, the job sink job sources publish into, and found blocks from their assembly to their
//! outcome at the nodes.

pub mod blocks;
pub mod book;
pub mod coinbase;
pub mod job;
pub mod merkle;
pub mod sink;
pub mod template;

pub use blocks::{BlockRecord, CandidateBlock, SubmitResult};
pub use book::{JobBook, Lookup};
pub use coinbase::{CoinbaseConfig, Payout};
pub use job::{FrontEnd, HeaderFields, Job, JobParts};
pub use sink::JobSink;
pub use template::BlockTemplate;
