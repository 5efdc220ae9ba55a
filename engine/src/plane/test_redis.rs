//! A real `redis-server` for the plane's unit tests: `sluice-testkit`'s, the one the integration
//! tests start (a free port, a temporary directory, no persistence, never the machine's own).

use std::path::PathBuf;
use std::time::Duration;

use crate::plane::{connect, PlaneSettings};

/// The testkit's server, with connections made as the plane makes them (timeouts set).
pub struct TestRedis(sluice_testkit::RedisServer);

impl TestRedis {
    pub fn start() -> TestRedis {
        TestRedis(sluice_testkit::RedisServer::start())
    }

    pub fn url(&self) -> String {
        self.0.url()
    }

    pub fn con(&self) -> redis::Connection {
        connect(&self.url().into()).unwrap()
    }
}

/// A directory of its own for one test's files, left behind (a spool a test may still read).
pub fn temp_dir(what: &str) -> PathBuf {
    sluice_testkit::TempDir::new(what).keep()
}

/// Plane settings for a test process `id` under prefix `t`.
pub fn plane(url: &str, id: &str) -> PlaneSettings {
    PlaneSettings {
        url: url.into(),
        prefix: "t".into(),
        id: id.into(),
        service_ttl: Duration::from_secs(10),
        lease: Duration::from_secs(2),
        session_ttl: Duration::from_secs(600),
        fleet_key: crate::plane::FleetKey::new(vec![b'k'; 32]).unwrap(),
    }
}
