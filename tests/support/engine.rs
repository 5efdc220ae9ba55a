//! A real `sluice` process for a test, and the fixtures around it: all from `sluice-testkit`,
//! shared with sluicectl's tests and the benches (re-exported here under the paths the tests use).

pub use sluice_testkit::{eventually, sluice_binary, EngineProcess};

/// A temporary directory removed on drop.
pub mod tempdir {
    pub use sluice_testkit::TempDir;
}
