//! A whole fleet on one box, as an operator deploys it: `redis-server` over TLS (a throwaway CA
//! from [`crate::tls`]) on the deploy kit's ACL file with test passwords ([`test_acl`]), `haproxy`
//! on the shipped `deploy/haproxy/haproxy.cfg` rewritten only for ports and paths (PROXY v2 to
//! each engine, the health check on each engine's admin `/status`, redispatch), N `sluice
//! stratum` and 2 `sluice jobmanager` on the simulated chain, each with the user of its role, its
//! own ports, configuration, spool and log file. The fault tests (`tests/faults.rs`) and the
//! operator's `scripts/fleet.sh` (through the `sluice-fleet` binary) run this one implementation.
//!
//! With [`FleetSpec::sentinels`], a replica (as `sluice-replica`, over the same TLS and ACL file)
//! and 3 `redis-sentinel` on the shipped `deploy/redis/sentinel.conf` ([`Sentinels::start_shipped`],
//! as `sluice-sentinel`), and every role and sluicectl finds the master through them
//! (`redis.sentinels`, `redis.master_name`); [`Fleet::kill_redis_master`] is the failover fault.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::tls::TlsMode;
use crate::{
    eventually, free_port, sluicectl_binary, EngineProcess, Pki, RedisServer, Sentinels, TempDir,
};

/// The key prefix of the shipped ACL file.
pub const PREFIX: &str = "sluice";

/// The fleet key every role of a harness fleet signs and checks job messages with.
pub const FLEET_KEY: &str = "sluice-fleet-harness-key-0123456789abcdef";

/// The user each role logs in with (the shipped ACL file's names).
pub const ENGINE_USER: &str = "sluice-engine";
pub const JOBMANAGER_USER: &str = "sluice-jobmanager";
pub const OPERATOR_USER: &str = "sluicectl-operator";
pub const ADMIN_USER: &str = "sluice-admin";
pub const REPLICA_USER: &str = "sluice-replica";
pub const SENTINEL_USER: &str = "sluice-sentinel";

/// A file of the workspace (`deploy/redis/users.acl`...).
pub fn workspace_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit sits in the workspace")
        .join(relative)
}

/// The test password of an ACL user.
pub fn acl_password(user: &str) -> String {
    format!("test-password-of-{user}")
}

/// The shipped `deploy/redis/users.acl` with each user's placeholder hash (`#` and 64 hex digits)
/// replaced by that user's test password (`>PASSWORD`), and nothing else changed: the rules a
/// test runs are the rules shipped.
pub fn test_acl() -> String {
    let path = workspace_file("deploy/redis/users.acl");
    let shipped =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = String::new();
    let mut replaced = 0;
    for line in shipped.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let user = match words.as_slice() {
            ["user", name, ..] => *name,
            _ => panic!(
                "users.acl: a line that is not a user (Redis 7.0 takes no comments): {line:?}"
            ),
        };
        let rules: Vec<String> = words
            .iter()
            .map(|w| {
                let hash = w
                    .strip_prefix('#')
                    .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
                match hash {
                    Some(_) => {
                        replaced += 1;
                        format!(">{}", acl_password(user))
                    }
                    None => (*w).to_owned(),
                }
            })
            .collect();
        out.push_str(&rules.join(" "));
        out.push('\n');
    }
    assert!(
        replaced >= 7,
        "every user but default has a placeholder hash"
    );
    out
}

/// What to start.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    /// `sluice stratum` processes behind HAProxy.
    pub engines: usize,
    /// `sluice jobmanager` processes (one leads, the others stand by).
    pub jobmanagers: usize,
    /// Writes `share_log.durable_ack = true` into each engine's configuration: an accepted submit
    /// is answered only once its batch is in Redis or the fsynced spool (with `sentinels`, also
    /// `durable_replicas = 1`: in the replica too, or the spool).
    pub durable_ack: bool,
    /// A Redis replica and three Sentinels, every role and sluicectl asking them for the master
    /// (`redis.sentinels`, `redis.master_name`) rather than being given its address.
    pub sentinels: bool,
    /// Where the configuration, spools, certificates and logs go; `None`: a temporary directory
    /// removed on drop.
    pub dir: Option<PathBuf>,
    /// Seconds between refreshed jobs on the same block (`jobs.refresh_interval_secs`).
    pub refresh_secs: f64,
}

impl Default for FleetSpec {
    fn default() -> FleetSpec {
        FleetSpec {
            engines: 3,
            jobmanagers: 2,
            durable_ack: false,
            sentinels: false,
            dir: None,
            refresh_secs: 1.0,
        }
    }
}

/// One engine's fixed place: ports kept across restarts, so HAProxy's configuration holds.
struct EngineSlot {
    id: String,
    stratum: u16,
    admin: u16,
    config: PathBuf,
    process: Option<EngineProcess>,
}

struct JobmanagerSlot {
    id: String,
    config: PathBuf,
    process: Option<EngineProcess>,
}

/// A running fleet; every process is killed on drop.
pub struct Fleet {
    pub spec: FleetSpec,
    root: PathBuf,
    _temp: Option<TempDir>,
    /// The master (after [`Fleet::kill_redis_master`], the promoted replica).
    redis: RedisServer,
    /// The replica, while there is one to promote.
    replica: Option<RedisServer>,
    sentinels: Option<Sentinels>,
    engines: Vec<EngineSlot>,
    jobmanagers: Vec<JobmanagerSlot>,
    haproxy: Option<Child>,
    haproxy_port: u16,
    stats_port: u16,
    haproxy_cfg: PathBuf,
}

impl Fleet {
    /// Starts Redis, the jobmanagers (waiting for a leader), the engines and HAProxy (waiting
    /// until its health check has every engine up).
    pub fn start(spec: FleetSpec) -> Fleet {
        assert!(spec.engines >= 1 && spec.jobmanagers >= 1);
        let (temp, root) = match &spec.dir {
            Some(d) => {
                std::fs::create_dir_all(d).unwrap();
                (None, d.clone())
            }
            None => {
                let t = TempDir::new("fleet");
                let p = t.path().to_owned();
                (Some(t), p)
            }
        };
        let acl = root.join("users.acl");
        std::fs::write(&acl, test_acl()).unwrap();
        let redis = RedisServer::launch_new(
            &["--aclfile", acl.to_str().unwrap()],
            Some(TlsMode {
                pki: std::sync::Arc::new(Pki::new()),
                auth_clients: true,
            }),
        );
        // The certificates beside the rest, so what the fleet prints names files under its dir.
        let tls = root.join("tls");
        std::fs::create_dir_all(&tls).unwrap();
        let pki = redis.pki();
        for (from, name) in [
            (pki.ca(), "ca.crt"),
            (pki.client_cert(), "client.crt"),
            (pki.client_key(), "client.key"),
        ] {
            std::fs::copy(from, tls.join(name)).unwrap();
        }
        let (replica, sentinels) = if spec.sentinels {
            let replica_password = acl_password(REPLICA_USER);
            let admin_password = acl_password(ADMIN_USER);
            let replica = RedisServer::start_replica_as(
                &redis,
                &[
                    "--aclfile",
                    acl.to_str().unwrap(),
                    "--masteruser",
                    REPLICA_USER,
                    "--masterauth",
                    &replica_password,
                ],
                Some((ADMIN_USER, &admin_password)),
            );
            let sentinels = Sentinels::start_shipped(
                &redis,
                3,
                &acl_password(SENTINEL_USER),
                (ADMIN_USER, &admin_password),
            );
            (Some(replica), Some(sentinels))
        } else {
            (None, None)
        };
        let mut fleet = Fleet {
            root: root.clone(),
            _temp: temp,
            redis,
            replica,
            sentinels,
            engines: Vec::new(),
            jobmanagers: Vec::new(),
            haproxy: None,
            haproxy_port: free_port(),
            stats_port: free_port(),
            haproxy_cfg: root.join("haproxy.cfg"),
            spec,
        };
        for i in 0..fleet.spec.jobmanagers {
            let id = format!("jm-{}", i + 1);
            let config = fleet.write_config(&id, "");
            fleet.jobmanagers.push(JobmanagerSlot {
                id,
                config,
                process: None,
            });
            fleet.restart_jobmanager(i);
        }
        eventually(Duration::from_secs(20), || fleet.leader()).expect("a jobmanager leads");
        for i in 0..fleet.spec.engines {
            let id = format!("engine-{}", i + 1);
            let (stratum, admin) = (free_port(), free_port());
            // With a replica, a batch counts as kept once the replica holds it too (else it
            // is spooled as well), so a failover cannot lose what a miner was told.
            let durable = match (fleet.spec.durable_ack, fleet.spec.sentinels) {
                (true, true) => "durable_ack = true\ndurable_replicas = 1\n",
                (true, false) => "durable_ack = true\n",
                (false, _) => "",
            };
            let config = fleet.write_config(
                &id,
                &format!(
                    "[[listeners]]\naddress = \"127.0.0.1:{stratum}\"\nproxy_protocol = true\ntrusted_proxies = [\"127.0.0.0/8\"]\nstart_difficulty = 0.000000001\nmin_difficulty = 0.000000000001\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[share_log]\n{durable}"
                ),
            );
            fleet.engines.push(EngineSlot {
                id,
                stratum,
                admin,
                config,
                process: None,
            });
            fleet.restart_engine(i);
        }
        std::fs::write(&fleet.haproxy_cfg, fleet.haproxy_config()).unwrap();
        let log = std::fs::File::create(root.join("haproxy.log")).unwrap();
        let child = Command::new("haproxy")
            .arg("-W")
            .arg("-db")
            .arg("-f")
            .arg(&fleet.haproxy_cfg)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("haproxy is not installed: apt-get install haproxy (scripts/setup.sh does)");
        fleet.haproxy = Some(child);
        let all_up = eventually(Duration::from_secs(30), || {
            (fleet.engines_up()? == fleet.engines.len()).then_some(())
        });
        assert!(
            all_up.is_some(),
            "haproxy's health check has every engine up\n{}",
            std::fs::read_to_string(root.join("haproxy.log")).unwrap_or_default()
        );
        fleet
    }

    /// `ID/sluice.toml` under the fleet's dir: the test-speed lease and registry, the fleet key,
    /// the spool, one unpinned engine thread, then `more` (TOML of the role's own).
    fn write_config(&self, id: &str, more: &str) -> PathBuf {
        let dir = self.root.join(id);
        std::fs::create_dir_all(&dir).unwrap();
        let tls = self.root.join("tls");
        let path = dir.join("sluice.toml");
        // With sentinels the --redis URL gives only the user and password: its address is not used.
        let sentinels = match &self.sentinels {
            Some(s) => format!(
                "sentinels = {:?}\nmaster_name = {:?}\n",
                s.addrs(),
                s.name()
            ),
            None => String::new(),
        };
        // `[share_log]` comes last in `more` when given: its keys follow it.
        let (share_log_more, more) = match more.split_once("[share_log]\n") {
            Some((head, tail)) => (tail.to_owned(), head.to_owned()),
            None => (String::new(), more.to_owned()),
        };
        std::fs::write(
            &path,
            format!(
                "[redis]\nlease_secs = 1.0\nservice_ttl_secs = 1.0\nfleet_key = \"{FLEET_KEY}\"\ntls_ca_file = {:?}\ntls_cert_file = {:?}\ntls_key_file = {:?}\n{sentinels}[share_log]\nbatch_interval_ms = 50\nspool_path = {:?}\n{share_log_more}[blocks]\nheld_path = {:?}\n[engine]\nthreads = 1\npin_threads = false\n[vardiff]\nenabled = false\n[jobs]\nrefresh_interval_secs = {}\n{more}",
                tls.join("ca.crt").display().to_string(),
                tls.join("client.crt").display().to_string(),
                tls.join("client.key").display().to_string(),
                dir.join("shares.spool").display().to_string(),
                dir.join("shares.spool.blocks").display().to_string(),
                self.spec.refresh_secs,
            ),
        )
        .unwrap();
        path
    }

    /// `rediss://USER:PASSWORD@127.0.0.1:PORT`.
    pub fn redis_url(&self, user: &str) -> String {
        self.redis.url().replacen(
            "rediss://",
            &format!("rediss://{user}:{}@", acl_password(user)),
            1,
        )
    }

    /// A connection as the admin user (everything allowed), for reading what the fleet wrote.
    pub fn admin(&self) -> redis::Connection {
        redis::Client::build_with_tls(
            self.redis_url(ADMIN_USER).as_str(),
            self.redis.pki().certificates(true),
        )
        .unwrap()
        .get_connection()
        .expect("the admin user logs in")
    }

    fn start_role(&self, role: &str, id: &str, user: &str, config: &Path) -> EngineProcess {
        let url = self.redis_url(user);
        let mut args = vec![
            "--redis",
            url.as_str(),
            "--prefix",
            PREFIX,
            "--id",
            id,
            "--config",
            config.to_str().unwrap(),
        ];
        if role == "jobmanager" {
            // The simulated chain holds still (no block from the network, none a share reaches):
            // a share's job stays current, so a stale answer means the fleet lost its work.
            args.extend_from_slice(&["--block-interval", "0", "--network-difficulty", "1000"]);
        }
        EngineProcess::start_role(role, &args)
    }

    /// The address miners connect to.
    pub fn haproxy_addr(&self) -> std::net::SocketAddr {
        format!("127.0.0.1:{}", self.haproxy_port).parse().unwrap()
    }

    pub fn dir(&self) -> &Path {
        &self.root
    }

    pub fn engine_count(&self) -> usize {
        self.engines.len()
    }

    pub fn engine_id(&self, i: usize) -> &str {
        &self.engines[i].id
    }

    pub fn jobmanager_id(&self, i: usize) -> &str {
        &self.jobmanagers[i].id
    }

    /// Engine `i`'s process (None while killed).
    pub fn engine(&self, i: usize) -> Option<&EngineProcess> {
        self.engines[i].process.as_ref()
    }

    pub fn jobmanager(&self, i: usize) -> Option<&EngineProcess> {
        self.jobmanagers[i].process.as_ref()
    }

    /// SIGKILL to engine `i`: no goodbye, no session released, its unwritten batch lost.
    pub fn kill_engine(&mut self, i: usize) {
        if let Some(mut p) = self.engines[i].process.take() {
            self.save_log(&self.engines[i].id, &p);
            p.kill();
        }
    }

    /// Starts engine `i` again on its ports and configuration (its spool replays).
    pub fn restart_engine(&mut self, i: usize) {
        self.kill_engine(i);
        let slot = &self.engines[i];
        let p = self.start_role("stratum", &slot.id, ENGINE_USER, &slot.config);
        self.engines[i].process = Some(p);
    }

    /// SIGKILL to jobmanager `i`: its lease runs out rather than being released.
    pub fn kill_jobmanager(&mut self, i: usize) {
        if let Some(mut p) = self.jobmanagers[i].process.take() {
            self.save_log(&self.jobmanagers[i].id, &p);
            p.kill();
        }
    }

    pub fn restart_jobmanager(&mut self, i: usize) {
        self.kill_jobmanager(i);
        let slot = &self.jobmanagers[i];
        let p = self.start_role("jobmanager", &slot.id, JOBMANAGER_USER, &slot.config);
        self.jobmanagers[i].process = Some(p);
    }

    /// The leading jobmanager: (its index, its fencing token), from the lease in Redis.
    pub fn leader(&self) -> Option<(usize, u64)> {
        let value: Option<String> = redis::cmd("GET")
            .arg(self.keys().leader())
            .query(&mut self.try_admin()?)
            .ok()?;
        let (id, token) = value?
            .split_once('|')
            .map(|(a, b)| (a.to_owned(), b.to_owned()))?;
        let i = self.jobmanagers.iter().position(|j| j.id == id)?;
        Some((i, token.parse().ok()?))
    }

    fn try_admin(&self) -> Option<redis::Connection> {
        redis::Client::build_with_tls(
            self.redis_url(ADMIN_USER).as_str(),
            self.redis.pki().certificates(true),
        )
        .ok()?
        .get_connection()
        .ok()
    }

    pub fn keys(&self) -> sluice_layout::keys::Keys {
        sluice_layout::keys::Keys::new(PREFIX)
    }

    /// HAProxy's seamless reload: SIGUSR2 to the master (`-W`), which starts a new worker that
    /// takes the listening socket over (`expose-fd listeners`); the old worker keeps its
    /// connections. Returns once the new worker runs.
    pub fn reload_haproxy(&mut self) {
        let master = self.haproxy.as_ref().expect("haproxy runs").id();
        let before = children(master);
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(master as i32, libc::SIGUSR2);
        }
        let reloaded = eventually(Duration::from_secs(15), || {
            children(master)
                .iter()
                .any(|c| !before.contains(c))
                .then_some(())
        });
        assert!(
            reloaded.is_some(),
            "haproxy started a new worker\n{}",
            std::fs::read_to_string(self.root.join("haproxy.log")).unwrap_or_default()
        );
    }

    /// SIGKILL to the Redis master; returns once every sentinel names the promoted replica and
    /// it says it is the master, with how long the fleet was without one (from the kill).
    /// Needs [`FleetSpec::sentinels`].
    pub fn kill_redis_master(&mut self) -> Duration {
        let sentinels = self
            .sentinels
            .as_ref()
            .expect("kill_redis_master needs FleetSpec::sentinels");
        let replica = self.replica.take().expect("a replica to promote");
        let old = self.redis.port();
        let killed = Instant::now();
        self.redis.stop();
        let promoted = sentinels.wait_failover_from(old, Duration::from_secs(60));
        let without = killed.elapsed();
        assert_eq!(promoted, replica.port(), "Sentinel promotes the replica");
        // The dead master goes (its directory too); the certificates are shared.
        self.redis = replica;
        without
    }

    /// The sentinels' addresses and the master's name they monitor (None without
    /// [`FleetSpec::sentinels`]).
    pub fn sentinels(&self) -> Option<(Vec<String>, &str)> {
        self.sentinels.as_ref().map(|s| (s.addrs(), s.name()))
    }

    /// Redis killed, its data gone (nothing is persisted), and started empty on the same port.
    pub fn redis_restart_empty(&mut self) {
        self.redis.restart();
    }

    /// Engines HAProxy's health check has up (None while the stats page does not answer).
    pub fn engines_up(&self) -> Option<usize> {
        let csv = http_get(self.stats_port, "/stats;csv")?;
        Some(
            csv.lines()
                .filter(|l| l.starts_with("sluice_engines,engine-") && l.contains(",UP,"))
                .count(),
        )
    }

    /// The environment `sluicectl` needs for this fleet as the operator user: (name, value).
    pub fn sluicectl_env(&self) -> Vec<(String, String)> {
        let tls = self.root.join("tls");
        let file = |n: &str| tls.join(n).display().to_string();
        let mut env = vec![
            ("SLUICE_REDIS".into(), self.redis_url(OPERATOR_USER)),
            ("SLUICE_REDIS_CA_FILE".into(), file("ca.crt")),
            ("SLUICE_REDIS_CERT_FILE".into(), file("client.crt")),
            ("SLUICE_REDIS_KEY_FILE".into(), file("client.key")),
            ("SLUICE_PREFIX".into(), PREFIX.into()),
        ];
        if let Some(s) = &self.sentinels {
            env.push(("SLUICE_REDIS_SENTINELS".into(), s.addrs().join(",")));
            env.push(("SLUICE_REDIS_MASTER_NAME".into(), s.name().into()));
        }
        env
    }

    /// `sluicectl ARGS...` as the operator: (exit code, stdout, stderr).
    pub fn sluicectl(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(sluicectl_binary())
            .args(args)
            .envs(self.sluicectl_env())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Every entry of `P:shares`, as field maps.
    pub fn shares(&self) -> Vec<HashMap<String, String>> {
        let mut con = self.admin();
        let mut out = Vec::new();
        let mut from = "-".to_owned();
        loop {
            let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
                .arg(self.keys().shares())
                .arg(&from)
                .arg("+")
                .arg("COUNT")
                .arg(10_000)
                .query(&mut con)
                .unwrap();
            let Some((last, _)) = entries.last() else {
                break;
            };
            from = format!("({last}");
            let n = entries.len();
            out.extend(
                entries
                    .into_iter()
                    .map(|(_, fields)| fields.into_iter().collect()),
            );
            if n < 10_000 {
                break;
            }
        }
        out
    }

    /// Writes each process's log so far to `DIR/ID.log` (the processes' stderr is read by the
    /// harness, so an operator reads it here).
    pub fn write_logs(&self) {
        for s in &self.engines {
            if let Some(p) = &s.process {
                self.save_log(&s.id, p);
            }
        }
        for s in &self.jobmanagers {
            if let Some(p) = &s.process {
                self.save_log(&s.id, p);
            }
        }
    }

    fn save_log(&self, id: &str, p: &EngineProcess) {
        let _ = std::fs::write(self.root.join(format!("{id}.log")), p.log());
    }

    /// Every process's log, for a failing assertion's message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (id, p) in self
            .engines
            .iter()
            .map(|s| (&s.id, &s.process))
            .chain(self.jobmanagers.iter().map(|s| (&s.id, &s.process)))
        {
            if let Some(p) = p {
                let log = p.log();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                out.push_str(&format!("--- {id} (last lines)\n"));
                for l in tail.into_iter().rev() {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out
    }

    fn haproxy_config(&self) -> String {
        let servers: Vec<HaproxyServer> = self
            .engines
            .iter()
            .map(|e| HaproxyServer {
                id: e.id.clone(),
                proxied: format!("127.0.0.1:{}", e.stratum),
                admin_port: e.admin,
            })
            .collect();
        shipped_haproxy_config(
            &self.root.join("haproxy.sock"),
            self.haproxy_port,
            self.stats_port,
            &servers,
        )
    }
}

/// One engine as HAProxy's backend lists it.
pub struct HaproxyServer {
    pub id: String,
    /// Its PROXY-protocol listener, `host:port`.
    pub proxied: String,
    /// Its admin listener's port (the health check's).
    pub admin_port: u16,
}

/// The shipped `deploy/haproxy/haproxy.cfg` with only ports and paths changed: the front on
/// `front`, a `server` line per engine (its PROXY listener, its admin port for the check), the
/// stats listener on `stats`, the admin socket at `socket`, no syslog, and `maxconn` down to what a
/// test process may open. The one place the tests rewrite it, so every test runs the shipped rules.
pub fn shipped_haproxy_config(
    socket: &Path,
    front: u16,
    stats: u16,
    engines: &[HaproxyServer],
) -> String {
    let shipped = std::fs::read_to_string(workspace_file("deploy/haproxy/haproxy.cfg")).unwrap();
    let mut servers = 0;
    let mut out = String::new();
    for line in shipped.lines() {
        let t = line.trim_start();
        let indent = &line[..line.len() - t.len()];
        let line = if t.starts_with("log /dev/log") {
            String::new()
        } else if t.starts_with("stats socket ") {
            t.replacen("/run/haproxy/admin.sock", socket.to_str().unwrap(), 1)
        } else if t.starts_with("maxconn ") {
            // The shipped figure needs a descriptor limit this machine does not give.
            "maxconn 4000".to_owned()
        } else if t == "bind :3333" {
            format!("bind 127.0.0.1:{front}")
        } else if t == "bind 127.0.0.1:8405" {
            format!("bind 127.0.0.1:{stats}")
        } else if t.starts_with("server ") {
            servers += 1;
            if servers > 1 {
                continue;
            }
            // Every engine where the shipped file lists its first: each checked on its own
            // admin port (a server's `port` overrides default-server's).
            engines
                .iter()
                .map(|e| format!("server {} {} port {}", e.id, e.proxied, e.admin_port))
                .collect::<Vec<_>>()
                .join(&format!("\n{indent}"))
        } else {
            t.to_owned()
        };
        out.push_str(indent);
        out.push_str(&line);
        out.push('\n');
    }
    assert!(servers >= 2, "the shipped backend lists its engines");
    out
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.write_logs();
        if let Some(mut h) = self.haproxy.take() {
            let pid = h.id();
            for c in children(pid) {
                // SAFETY: signalling HAProxy's workers, children of our own child.
                unsafe {
                    libc::kill(c as i32, libc::SIGKILL);
                }
            }
            let _ = h.kill();
            let _ = h.wait();
        }
    }
}

/// The children of `pid` (HAProxy's workers), from `/proc`.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .collect()
}

fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}
