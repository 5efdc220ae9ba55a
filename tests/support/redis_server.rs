//! A real `redis-server` per test, from `sluice-testkit` (shared with sluicectl's tests).

pub use sluice_testkit::RedisServer;
