//! Real `redis-sentinel` processes for the failover tests: [`Sentinels::start`] writes one
//! `sentinel.conf` per sentinel in a [`TempDir`] (Sentinel rewrites its file, so each needs its own
//! writable copy), with a short `down-after-milliseconds` so a killed master is failed over in a
//! few seconds, and waits until every sentinel knows the replicas and the other sentinels (a
//! failover needs both). The helpers ask them which server is the master.
//! [`Sentinels::start_shipped`] runs the deploy kit's `deploy/redis/sentinel.conf` instead (the
//! fleet harness, [`crate::Fleet`]): over the master's TLS, logging in as its ACL user.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::tls::Pki;
use crate::{eventually, free_port, RedisServer, TempDir};

/// A master is down after this long without an answer.
pub const DOWN_AFTER_MS: u64 = 1000;
/// A failover that stalls is tried again after this.
pub const FAILOVER_TIMEOUT_MS: u64 = 5000;

pub struct Sentinels {
    children: Vec<Child>,
    ports: Vec<u16>,
    name: String,
    /// The master's certificates when it speaks TLS: the sentinels then listen on TLS only.
    tls: Option<Arc<Pki>>,
    /// Who [`Sentinels::wait_failover_from`] asks a server its `ROLE` as (an ACL'd server).
    login: Option<(String, String)>,
    _dir: TempDir,
}

impl Sentinels {
    /// `n` sentinels monitoring `master` (plain TCP, on 127.0.0.1) under `name`, of which
    /// `quorum` must agree it is down. Returns once each knows `master`'s replicas and the other
    /// sentinels, so a failover can happen.
    pub fn start(master: &RedisServer, name: &str, quorum: u32, n: usize) -> Sentinels {
        let dir = TempDir::new("sentinel");
        let confs = (0..n)
            .map(|i| {
                let port = free_port();
                let work = dir.path().join(format!("s{i}"));
                let conf = format!(
                    "port {port}\nbind 127.0.0.1\ndir {work}\n\
                     sentinel monitor {name} 127.0.0.1 {master} {quorum}\n\
                     sentinel down-after-milliseconds {name} {DOWN_AFTER_MS}\n\
                     sentinel failover-timeout {name} {FAILOVER_TIMEOUT_MS}\n\
                     sentinel parallel-syncs {name} 1\n",
                    work = work.display(),
                    master = master.port(),
                );
                (port, conf)
            })
            .collect();
        Self::spawn(dir, confs, name, None, None)
    }

    /// `n` sentinels on the shipped `deploy/redis/sentinel.conf`, monitoring `master` under the
    /// file's name and quorum, with only these lines changed: `port` (a free port; over TLS,
    /// `port 0` and `tls-port` with the master's certificates, `tls-replication yes` so the
    /// sentinels dial the servers and each other over TLS, and the client certificate for that,
    /// since a server that checks clients refuses one made for serverAuth), plus `bind` and
    /// `dir` here; the monitor line's address; `down-after-milliseconds` and `failover-timeout`
    /// down to [`DOWN_AFTER_MS`] and [`FAILOVER_TIMEOUT_MS`] (the shipped 5 s and 60 s would
    /// make a test wait minutes for a stalled failover); `auth-pass` to `password`. `login`
    /// (user, password) is who the helpers ask a server its `ROLE` as.
    pub fn start_shipped(
        master: &RedisServer,
        n: usize,
        password: &str,
        login: (&str, &str),
    ) -> Sentinels {
        let path = crate::fleet::workspace_file("deploy/redis/sentinel.conf");
        let shipped =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = shipped
            .lines()
            .find_map(|l| l.strip_prefix("sentinel monitor "))
            .and_then(|l| l.split_whitespace().next())
            .expect("sentinel.conf monitors a master")
            .to_owned();
        let tls = master.tls.as_ref().map(|t| t.pki.clone());
        let dir = TempDir::new("sentinel");
        let confs = (0..n)
            .map(|i| {
                let port = free_port();
                let work = dir.path().join(format!("s{i}"));
                let mut conf = String::new();
                for line in shipped.lines() {
                    let words: Vec<&str> = line.split_whitespace().collect();
                    let line = match words.as_slice() {
                        ["port", _] => {
                            let listen = match &tls {
                                None => format!("port {port}"),
                                Some(pki) => {
                                    let f = |p: std::path::PathBuf| p.display().to_string();
                                    format!(
                                        "port 0\ntls-port {port}\ntls-cert-file {}\ntls-key-file {}\n\
                                         tls-client-cert-file {}\ntls-client-key-file {}\n\
                                         tls-ca-cert-file {}\ntls-auth-clients yes\ntls-replication yes",
                                        f(pki.server_cert()),
                                        f(pki.server_key()),
                                        f(pki.client_cert()),
                                        f(pki.client_key()),
                                        f(pki.ca()),
                                    )
                                }
                            };
                            format!("{listen}\nbind 127.0.0.1\ndir {}", work.display())
                        }
                        ["sentinel", "monitor", name, _, _, quorum] => format!(
                            "sentinel monitor {name} 127.0.0.1 {} {quorum}",
                            master.port()
                        ),
                        ["sentinel", "down-after-milliseconds", name, _] => {
                            format!("sentinel down-after-milliseconds {name} {DOWN_AFTER_MS}")
                        }
                        ["sentinel", "failover-timeout", name, _] => {
                            format!("sentinel failover-timeout {name} {FAILOVER_TIMEOUT_MS}")
                        }
                        ["sentinel", "auth-pass", name, _] => {
                            format!("sentinel auth-pass {name} {password}")
                        }
                        _ => line.to_owned(),
                    };
                    conf.push_str(&line);
                    conf.push('\n');
                }
                (port, conf)
            })
            .collect();
        let login = Some((login.0.to_owned(), login.1.to_owned()));
        Self::spawn(dir, confs, &name, tls, login)
    }

    /// Starts one `redis-sentinel` per (port, configuration) and waits until each knows the
    /// replicas and the other sentinels. Each one's log is `sentinel-I.log` in `dir`.
    fn spawn(
        dir: TempDir,
        confs: Vec<(u16, String)>,
        name: &str,
        tls: Option<Arc<Pki>>,
        login: Option<(String, String)>,
    ) -> Sentinels {
        let n = confs.len();
        let mut children = Vec::new();
        let mut ports = Vec::new();
        for (i, (port, text)) in confs.into_iter().enumerate() {
            let conf = dir.path().join(format!("sentinel-{i}.conf"));
            std::fs::create_dir_all(dir.path().join(format!("s{i}"))).unwrap();
            std::fs::write(&conf, text).unwrap();
            let log = std::fs::File::create(dir.path().join(format!("sentinel-{i}.log"))).unwrap();
            let child = Command::new("redis-sentinel")
                .arg(&conf)
                .stdout(log)
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
            tls,
            login,
            _dir: dir,
        };
        for &port in &sentinels.ports {
            let learned = eventually(Duration::from_secs(60), || {
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
            });
            assert!(
                learned.is_some(),
                "the sentinels did not learn the replica and each other:\n{}",
                sentinels.log()
            );
        }
        sentinels
    }

    /// Every sentinel's log, for a failing assertion's message.
    pub fn log(&self) -> String {
        (0..self.ports.len())
            .map(|i| {
                let path = self._dir.path().join(format!("sentinel-{i}.log"));
                format!(
                    "--- sentinel {i}\n{}",
                    std::fs::read_to_string(path).unwrap_or_default()
                )
            })
            .collect()
    }

    /// A connection to a sentinel (`login` None) or to a server, over TLS when the master speaks it.
    fn connect(&self, port: u16, login: Option<&(String, String)>) -> Option<redis::Connection> {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        let auth = login.map_or(String::new(), |(u, p)| format!("{u}:{p}@"));
        let url = format!("{scheme}://{auth}127.0.0.1:{port}");
        let client = match &self.tls {
            None => redis::Client::open(url).ok()?,
            Some(pki) => redis::Client::build_with_tls(url, pki.certificates(true)).ok()?,
        };
        let con = client
            .get_connection_with_timeout(Duration::from_secs(2))
            .ok()?;
        con.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        Some(con)
    }

    fn connection(&self, port: u16) -> Option<redis::Connection> {
        self.connect(port, None)
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
            let mut con = self.connect(master, self.login.as_ref())?;
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
