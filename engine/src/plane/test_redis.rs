//! A real `redis-server` for the plane's unit tests, started per test as the integration tests do:
//! a free port, a temporary directory, no persistence, never the machine's own instance.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::plane::{connect, PlaneSettings};

pub struct TestRedis {
    child: std::process::Child,
    port: u16,
    dir: PathBuf,
}

impl TestRedis {
    pub fn start() -> TestRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = temp_dir("redis");
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is not installed: apt-get install redis-server");
        let redis = TestRedis { child, port, dir };
        for _ in 0..200 {
            if let Ok(mut con) = connect(&redis.url()) {
                if redis::cmd("PING").query::<String>(&mut con).is_ok() {
                    return redis;
                }
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("redis-server did not answer PING");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn con(&self) -> redis::Connection {
        connect(&self.url()).unwrap()
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn temp_dir(what: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sluice-plane-{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
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
