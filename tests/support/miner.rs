//! The test miner, from `sluice-testkit` (shared with sluicectl's tests), under the path the tests
//! use. The independent reference miner is `read_notify` and `reference_header` in `support`.

pub use sluice_testkit::miner::{error_code, End, Miner, Share, Work, WORKER};
