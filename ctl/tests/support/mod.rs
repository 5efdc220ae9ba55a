//! What sluicectl's tests share: a real `redis-server` per test, real `sluice` processes, the
//! share log and block log written in the engine's format, and a way to run the built sluicectl.
//! Each test binary uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "sluicectl-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `f` every 50 ms until it gives a value or `timeout` passes.
pub fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A loopback port nothing listens on (just now).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private `redis-server`: its own port and directory, nothing persisted, killed on drop.
pub struct RedisServer {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let port = free_port();
        let dir = TempDir::new("redis");
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is not installed (apt-get install redis-server)");
        let server = RedisServer {
            child,
            port,
            _dir: dir,
        };
        eventually(Duration::from_secs(10), || {
            let mut con = redis::Client::open(server.url().as_str())
                .ok()?
                .get_connection()
                .ok()?;
            redis::cmd("PING").query::<String>(&mut con).ok()
        })
        .expect("redis-server did not answer PING");
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn con(&self) -> redis::Connection {
        redis::Client::open(self.url().as_str())
            .unwrap()
            .get_connection()
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `sluice` binary, built once per test process with the tests' profile.
pub fn sluice_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
            let release = !cfg!(debug_assertions);
            let mut cmd = Command::new(env!("CARGO"));
            cmd.args(["build", "-q", "-p", "sluice", "--bin", "sluice"])
                .current_dir(workspace);
            if release {
                cmd.arg("--release");
            }
            assert!(cmd.status().unwrap().success(), "building sluice failed");
            // A relative CARGO_TARGET_DIR is relative to where cargo runs: the workspace above.
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(|t| workspace.join(t))
                .unwrap_or_else(|| workspace.join("target"));
            target
                .join(if release { "release" } else { "debug" })
                .join("sluice")
        })
        .clone()
}

/// The fleet key (`redis.fleet_key`) every role these tests start signs and checks jobs with.
pub const FLEET_KEY: &str = "sluicectl-test-fleet-key-0123456789abcdef";

/// `config` with the test fleet key in its `[redis]` section (a section of its own if it has none).
fn with_fleet_key(config: &str) -> String {
    let line = format!("fleet_key = {FLEET_KEY:?}\n");
    match config.find("[redis]\n") {
        Some(at) => {
            let end = at + "[redis]\n".len();
            format!("{}{line}{}", &config[..end], &config[end..])
        }
        None => format!("[redis]\n{line}{config}"),
    }
}

/// A `sluice jobmanager` or `sluice stratum`, killed on drop.
pub struct SluiceProcess {
    child: Child,
    /// The fields of its `sluice ready ...` line.
    pub ready: String,
    _stdout: BufReader<ChildStdout>,
    _dir: TempDir,
}

impl SluiceProcess {
    /// Starts it with `files` (name, contents) written to its working directory first, so the
    /// arguments can name them (`--config jm.toml`).
    fn start_with(args: &[&str], files: &[(&str, &str)]) -> SluiceProcess {
        // Its own directory: a stratum engine keeps its share spool in the working directory.
        let dir = TempDir::new("sluice");
        for (name, contents) in files {
            std::fs::write(dir.path().join(name), contents).unwrap();
        }
        let mut child = Command::new(sluice_binary())
            .args(args)
            .current_dir(dir.path())
            .env_remove("SLUICE_REDIS")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut ready = String::new();
        stdout.read_line(&mut ready).unwrap();
        if !ready.starts_with("sluice ready") {
            let _ = child.kill();
            panic!("sluice {args:?} did not start: {ready:?}");
        }
        SluiceProcess {
            child,
            ready: ready.trim().to_owned(),
            _stdout: stdout,
            _dir: dir,
        }
    }

    /// `sluice ROLE --redis URL --prefix P --id ID --config FILE EXTRA...`, with `config` (or an
    /// empty one) and the fleet key written to FILE in the process's directory first.
    fn role(
        role: &str,
        redis: &RedisServer,
        prefix: &str,
        id: &str,
        config: Option<&str>,
        extra: &[&str],
    ) -> SluiceProcess {
        let url = redis.url();
        let file = format!("{role}.toml");
        let mut args = vec![role, "--redis", &url, "--prefix", prefix, "--id", id];
        args.extend_from_slice(&["--config", &file]);
        args.extend_from_slice(extra);
        let contents = with_fleet_key(config.unwrap_or(""));
        SluiceProcess::start_with(&args, &[(file.as_str(), contents.as_str())])
    }

    pub fn jobmanager(redis: &RedisServer, prefix: &str, id: &str) -> SluiceProcess {
        SluiceProcess::role(
            "jobmanager",
            redis,
            prefix,
            id,
            None,
            &["--block-interval", "0"],
        )
    }

    /// A jobmanager whose lease lasts `lease_secs` (`redis.lease_secs` in a configuration file).
    pub fn jobmanager_with_lease(
        redis: &RedisServer,
        prefix: &str,
        id: &str,
        lease_secs: f64,
    ) -> SluiceProcess {
        let config = format!("[redis]\nlease_secs = {lease_secs:?}\n");
        SluiceProcess::role(
            "jobmanager",
            redis,
            prefix,
            id,
            Some(&config),
            &["--block-interval", "0"],
        )
    }

    /// A jobmanager with these extra arguments (e.g. the simulated chain's settings).
    pub fn jobmanager_with(
        redis: &RedisServer,
        prefix: &str,
        id: &str,
        extra: &[&str],
    ) -> SluiceProcess {
        SluiceProcess::role("jobmanager", redis, prefix, id, None, extra)
    }

    /// An engine started with `config` as its configuration file, which must give its listeners
    /// (no `--listen`).
    pub fn stratum_with_config(
        redis: &RedisServer,
        prefix: &str,
        id: &str,
        config: &str,
    ) -> SluiceProcess {
        SluiceProcess::role(
            "stratum",
            redis,
            prefix,
            id,
            Some(config),
            &["--threads", "1", "--no-pin"],
        )
    }

    pub fn stratum(redis: &RedisServer, prefix: &str, id: &str) -> SluiceProcess {
        SluiceProcess::role(
            "stratum",
            redis,
            prefix,
            id,
            None,
            &["--listen", "127.0.0.1:0", "--threads", "1", "--no-pin"],
        )
    }

    /// A field of the ready line, e.g. `stratum`.
    pub fn field(&self, name: &str) -> String {
        self.ready
            .split_whitespace()
            .find_map(|f| f.strip_prefix(&format!("{name}=")))
            .unwrap_or("")
            .to_owned()
    }

    /// Dies without a word (no deregistration, the lease left to lapse).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A clean stop (SIGTERM): it deregisters and gives up its lease.
    pub fn terminate(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let _ = self.child.wait();
    }
}

impl Drop for SluiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What a sluicectl run gave.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().expect("sluicectl exited, not killed"),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    }

    /// The one JSON document on stdout, after checking the run succeeded.
    pub fn json(&self) -> Value {
        assert_eq!(self.code, 0, "sluicectl failed: {}", self.stderr);
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", self.stdout))
    }
}

/// `sluicectl` with these arguments and only the environment given (never the caller's
/// SLUICE_* variables).
pub fn sluicectl_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = sluicectl_command(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run::from(cmd.output().unwrap())
}

/// `sluicectl --redis URL --prefix P ARGS...`.
pub fn sluicectl(redis: &RedisServer, prefix: &str, args: &[&str]) -> Run {
    let url = redis.url();
    let mut all = vec!["--redis", url.as_str(), "--prefix", prefix];
    all.extend_from_slice(args);
    sluicectl_env(&all, &[])
}

pub fn sluicectl_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluicectl"));
    cmd.args(args)
        .env_remove("SLUICE_REDIS")
        .env_remove("SLUICE_PREFIX");
    cmd
}

/// Marks the prefix as a fleet of this build's layout version, as the first Sluice process does.
pub fn claim_layout(con: &mut redis::Connection, prefix: &str) {
    let _: Option<String> = redis::cmd("SET")
        .arg(format!("{prefix}:layout"))
        .arg(sluicectl_layout_version())
        .arg("NX")
        .query(con)
        .unwrap();
}

/// The layout version sluicectl reads (`ctl/src/layout.rs`, held to the engine's by its tests).
pub fn sluicectl_layout_version() -> u32 {
    let source = include_str!("../../src/layout.rs");
    source
        .lines()
        .find_map(|l| l.strip_prefix("pub const LAYOUT_VERSION: u32 = "))
        .and_then(|v| v.trim_end_matches(';').parse().ok())
        .expect("ctl/src/layout.rs declares LAYOUT_VERSION")
}

/// Redis's clock in ms (sluicectl measures by it).
pub fn redis_now_ms(con: &mut redis::Connection) -> u64 {
    let (s, us): (u64, u64) = redis::cmd("TIME").query(con).unwrap();
    s * 1000 + us / 1000
}

/// One share verdict as the engine logs it (`engine/src/plane/sharelog.rs`).
#[derive(Debug, Clone)]
pub struct Share {
    pub ts: u64,
    pub engine: &'static str,
    pub worker: String,
    /// None for accepted, Some(reason) for rejected.
    pub reject: Option<&'static str>,
    pub assigned: f64,
    pub actual: f64,
    pub height: Option<u64>,
    pub block: bool,
}

impl Share {
    pub fn accepted(ts: u64, worker: &str, assigned: f64) -> Share {
        Share {
            ts,
            engine: "engine-1",
            worker: worker.to_owned(),
            reject: None,
            assigned,
            actual: assigned * 3.0,
            height: Some(840_000),
            block: false,
        }
    }

    pub fn rejected(ts: u64, worker: &str, reason: &'static str) -> Share {
        Share {
            reject: Some(reason),
            actual: 0.0,
            ..Share::accepted(ts, worker, 1.0)
        }
    }
}

/// Writes shares exactly as the engine's batch script does, in one transaction: each record to
/// `P:shares` with the fields in the engine's order, and the rollup `P:roll:MINUTE` of its minute
/// (`WORKER|accepted` and `WORKER|difficulty` += assigned, or `WORKER|rejected`).
pub fn log_shares(con: &mut redis::Connection, prefix: &str, shares: &[Share]) {
    let mut pipe = redis::pipe();
    pipe.atomic();
    for (i, s) in shares.iter().enumerate() {
        let (verdict, reason) = match s.reject {
            None => ("accepted", ""),
            Some(r) => ("rejected", r),
        };
        let values = [
            s.ts.to_string(),
            s.engine.to_owned(),
            format!("1:{}", i / 500 + 1),
            verdict.to_owned(),
            reason.to_owned(),
            s.worker.clone(),
            s.assigned.to_string(),
            s.actual.to_string(),
            "5".to_owned(),
            s.height.map_or(String::new(), |h| h.to_string()),
            "0a0b0c0d".to_owned(),
            "10.0.0.7".to_owned(),
            "cgminer/4.11.1".to_owned(),
            u8::from(s.block).to_string(),
            if s.reject.is_some() {
                String::new()
            } else {
                "00".repeat(32)
            },
        ];
        let cmd = pipe
            .cmd("XADD")
            .arg(format!("{prefix}:shares"))
            .arg("MAXLEN")
            .arg("~")
            .arg(1_000_000)
            .arg("*");
        for (name, value) in sluice::plane::sharelog::FIELDS.iter().zip(&values) {
            cmd.arg(*name).arg(value);
        }
        cmd.ignore();
        let rollup = format!("{prefix}:roll:{}", s.ts / 60_000);
        if s.reject.is_none() {
            pipe.cmd("HINCRBY")
                .arg(&rollup)
                .arg(format!("{}|accepted", s.worker))
                .arg(1)
                .ignore();
            pipe.cmd("HINCRBYFLOAT")
                .arg(&rollup)
                .arg(format!("{}|difficulty", s.worker))
                .arg(s.assigned)
                .ignore();
        } else {
            pipe.cmd("HINCRBY")
                .arg(&rollup)
                .arg(format!("{}|rejected", s.worker))
                .arg(1)
                .ignore();
        }
        pipe.cmd("EXPIRE").arg(&rollup).arg(172_800).ignore();
    }
    pipe.query::<()>(con).unwrap();
}

/// Appends a submitted block to `P:blocks` as the leading jobmanager records it
/// (`engine/src/plane/blocks.rs`), returning the entry id.
pub fn record_block(
    con: &mut redis::Connection,
    prefix: &str,
    hash: &str,
    height: u64,
    worker: &str,
    found_ms: u64,
    results: &Value,
) -> String {
    let accepted = results
        .as_array()
        .unwrap()
        .iter()
        .any(|r| matches!(r["result"].as_str(), Some("accepted" | "duplicate")));
    redis::cmd("XADD")
        .arg(format!("{prefix}:blocks"))
        .arg("MAXLEN")
        .arg("~")
        .arg(10_000)
        .arg("*")
        .arg("hash")
        .arg(hash)
        .arg("height")
        .arg(height)
        .arg("worker")
        .arg(worker)
        .arg("accepted")
        .arg(u8::from(accepted))
        .arg("found_ms")
        .arg(found_ms)
        .arg("results")
        .arg(results.to_string())
        .query(con)
        .unwrap()
}

/// Registers a service as its heartbeat does (`engine/src/plane/registry.rs`): the hash
/// `P:svc:ID` and its expiry in `P:services`, `ttl_ms` from Redis's now (negative: expired).
pub fn register_service(
    con: &mut redis::Connection,
    prefix: &str,
    id: &str,
    role: &str,
    ttl_ms: i64,
) {
    let now = redis_now_ms(con) as i64;
    redis::pipe()
        .atomic()
        .cmd("HSET")
        .arg(format!("{prefix}:svc:{id}"))
        .arg("id")
        .arg(id)
        .arg("role")
        .arg(role)
        .arg("address")
        .arg(if role == "stratum" {
            "127.0.0.1:3333"
        } else {
            ""
        })
        .arg("version")
        .arg(env!("CARGO_PKG_VERSION"))
        .arg("started_ms")
        .arg(now - 5000)
        .arg("heartbeat_ms")
        .arg(now - 1000)
        .arg("connections")
        .arg(0)
        .arg("hashrate")
        .arg(0)
        .arg("shares_per_second")
        .arg(0)
        .arg("state")
        .arg("serving")
        .ignore()
        .cmd("PEXPIRE")
        .arg(format!("{prefix}:svc:{id}"))
        .arg(60_000)
        .ignore()
        .cmd("ZADD")
        .arg(format!("{prefix}:services"))
        .arg(now + ttl_ms)
        .arg(id)
        .ignore()
        .query::<()>(con)
        .unwrap();
}

/// A session as an engine's session store saves it (`engine/src/plane/sessions.rs` `store`).
#[derive(Debug, Clone)]
pub struct SavedSession {
    pub id: &'static str,
    pub engine: &'static str,
    pub extranonce1: &'static str,
    pub difficulty: f64,
    pub version_mask: u32,
    pub workers: Vec<&'static str>,
    pub updated_ms: u64,
    /// Its score in `P:sessions`.
    pub expires_ms: u64,
}

/// Writes the hash `P:session:ID` (fields as the engine writes them, with a TTL) and its expiry
/// in `P:sessions`.
pub fn save_session(con: &mut redis::Connection, prefix: &str, s: &SavedSession) {
    let key = format!("{prefix}:session:{}", s.id);
    redis::pipe()
        .atomic()
        .cmd("HSET")
        .arg(&key)
        .arg("extranonce1")
        .arg(s.extranonce1)
        .arg("difficulty")
        .arg(s.difficulty)
        .arg("version_mask")
        .arg(format!("{:08x}", s.version_mask))
        .arg("workers")
        .arg(serde_json::to_string(&s.workers).unwrap())
        .arg("engine")
        .arg(s.engine)
        .arg("updated_ms")
        .arg(s.updated_ms)
        .ignore()
        .cmd("PEXPIRE")
        .arg(&key)
        .arg(600_000)
        .ignore()
        .cmd("ZADD")
        .arg(format!("{prefix}:sessions"))
        .arg(s.expires_ms)
        .arg(s.id)
        .ignore()
        .query::<()>(con)
        .unwrap();
}

/// One command an engine read from its stream: the entry's fields in written order.
pub type Received = Vec<(String, String)>;

/// A stand-in for an engine's command reader (`engine/src/plane/commands.rs`): it reads
/// `P:cmd:ID` with XREAD and acknowledges each command with `SET P:ack:CMD_ID <json> EX 3600`.
/// It answers `(cmd, arg)` with what the test's closure gives: `Ok(result)`, `Err(error)`, or
/// `None` to stay silent. Stopped and joined on drop.
pub struct FakeEngine {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    received: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl FakeEngine {
    pub fn start(
        redis: &RedisServer,
        prefix: &str,
        id: &str,
        answer: impl Fn(&str, &str) -> Option<Result<Value, String>> + Send + 'static,
    ) -> FakeEngine {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(Mutex::new(Vec::new()));
        let mut con = redis.con();
        let (stream, engine, prefix) = (
            format!("{prefix}:cmd:{id}"),
            id.to_owned(),
            prefix.to_owned(),
        );
        let (stop2, received2) = (Arc::clone(&stop), Arc::clone(&received));
        let handle = std::thread::spawn(move || {
            // The stream is new in each test: reading it from the start cannot race the sender.
            let mut last = "0-0".to_owned();
            type Reply = Option<Vec<(String, Vec<(String, Vec<(String, String)>)>)>>;
            while !stop2.load(Ordering::Relaxed) {
                let reply: Reply = redis::cmd("XREAD")
                    .arg("BLOCK")
                    .arg(100)
                    .arg("STREAMS")
                    .arg(&stream)
                    .arg(&last)
                    .query(&mut con)
                    .unwrap();
                for (_, entries) in reply.unwrap_or_default() {
                    for (entry, fields) in entries {
                        last = entry;
                        let field = |name: &str| {
                            fields
                                .iter()
                                .find(|(k, _)| k == name)
                                .map_or(String::new(), |(_, v)| v.clone())
                        };
                        let (cmd_id, cmd, arg) = (field("id"), field("cmd"), field("arg"));
                        received2.lock().unwrap().push(fields.clone());
                        let ack = match answer(&cmd, &arg) {
                            None => continue,
                            Some(Ok(result)) => serde_json::json!({
                                "engine": engine, "cmd": cmd, "ok": true, "result": result
                            }),
                            Some(Err(error)) => serde_json::json!({
                                "engine": engine, "cmd": cmd, "ok": false, "error": error
                            }),
                        };
                        let _: () = redis::cmd("SET")
                            .arg(format!("{prefix}:ack:{cmd_id}"))
                            .arg(ack.to_string())
                            .arg("EX")
                            .arg(3600)
                            .query(&mut con)
                            .unwrap();
                    }
                }
            }
        });
        FakeEngine {
            stop,
            received,
            handle: Some(handle),
        }
    }

    /// The commands read so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for FakeEngine {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
