//! Real `redis-sentinel` processes for the failover tests: [`Sentinels::start`] writes one
//! `sentinel.conf` per sentinel in a [`TempDir`] (Sentinel rewrites its file, so each needs its own
//! writable copy), with a short `down-after-milliseconds` so a killed master is failed over in a
//! few seconds, and waits until every sentinel knows the replicas and the other sentinels (a
//! failover needs both). The helpers ask them which server is the master.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{eventually, free_port, RedisServer, TempDir};

/// A master is down after this long without an answer.
pub const DOWN_AFTER_MS: u64 = 1000;
/// A failover that stalls is tried again after this.
pub const FAILOVER_TIMEOUT_MS: u64 = 5000;

pub struct Sentinels {
    children: Vec<Child>,
    ports: Vec<u16>,
    name: String,
    _dir: TempDir,
}

impl Sentinels {
    /// `n` sentinels monitoring `master` (plain TCP, on 127.0.0.1) under `name`, of which
    /// `quorum` must agree it is down. Returns once each knows `master`'s replicas and the other
    /// sentinels, so a failover can happen.
    pub fn start(master: &RedisServer, name: &str, quorum: u32, n: usize) -> Sentinels {
        let dir = TempDir::new("sentinel");
        let mut children = Vec::new();
        let mut ports = Vec::new();
        for i in 0..n {
            let port = free_port();
            let conf = dir.path().join(format!("sentinel-{i}.conf"));
            let work = dir.path().join(format!("s{i}"));
            std::fs::create_dir_all(&work).unwrap();
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {work}\n\
                     sentinel monitor {name} 127.0.0.1 {master} {quorum}\n\
                     sentinel down-after-milliseconds {name} {DOWN_AFTER_MS}\n\
                     sentinel failover-timeout {name} {FAILOVER_TIMEOUT_MS}\n\
                     sentinel parallel-syncs {name} 1\n",
                    work = work.display(),
                    master = master.port(),
                ),
            )
            .unwrap();
            let child = Command::new("redis-sentinel")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-sentinel is not installed: apt-get install redis-sentinel (scripts/setup.sh does)");
            children.push(child);
            ports.push(port);
        }
        let sentinels = Sentinels {
            children,
            ports,
            name: name.to_owned(),
            _dir: dir,
        };
        for &port in &sentinels.ports {
            eventually(Duration::from_secs(60), || {
                let mut con = sentinels.connection(port)?;
                let replicas: Vec<redis::Value> = redis::cmd("SENTINEL")
                    .arg("replicas")
                    .arg(name)
                    .query(&mut con)
                    .ok()?;
                let others: Vec<redis::Value> = redis::cmd("SENTINEL")
                    .arg("sentinels")
                    .arg(name)
                    .query(&mut con)
                    .ok()?;
                (!replicas.is_empty() && others.len() + 1 >= n).then_some(())
            })
            .expect("the sentinels did not learn the replica and each other");
        }
        sentinels
    }

    fn connection(&self, port: u16) -> Option<redis::Connection> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
        let con = client
            .get_connection_with_timeout(Duration::from_secs(2))
            .ok()?;
        con.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        Some(con)
    }

    /// `host:port` of each sentinel, for `redis.sentinels` and `--sentinel`.
    pub fn addrs(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect()
    }

    /// The master's name they monitor.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The master's port as the first sentinel that answers names it.
    pub fn master_port(&self) -> Option<u16> {
        self.ports.iter().find_map(|&port| {
            let (_, master): (String, u16) = redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(&self.name)
                .query(&mut self.connection(port)?)
                .ok()?;
            Some(master)
        })
    }

    /// Waits until every sentinel names a master other than `old` that says it is a master
    /// (`ROLE`); its port.
    pub fn wait_failover_from(&self, old: u16, timeout: Duration) -> u16 {
        eventually(timeout, || {
            let mut named = None;
            for &port in &self.ports {
                let (_, master): (String, u16) = redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(&self.name)
                    .query(&mut self.connection(port)?)
                    .ok()?;
                if master == old || named.is_some_and(|n| n != master) {
                    return None;
                }
                named = Some(master);
            }
            let master = named?;
            let mut con = self.connection(master)?;
            let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut con).ok()?;
            matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master")
                .then_some(master)
        })
        .expect("Sentinel did not promote a new master")
    }
}

impl Drop for Sentinels {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
