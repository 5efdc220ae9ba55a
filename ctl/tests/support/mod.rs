//! What sluicectl's tests share beyond the fixtures of `sluice-testkit` (a real `redis-server`
//! per test, real `sluice` processes, the test miner, temp dirs, `eventually`, free ports,
//! re-exported here): the
//! roles these tests start, the share log, block log, registry and sessions written with the
//! engine's own layout (`sluice-layout`), a stand-in for an engine's command reader, and a way to
//! run the built sluicectl. Each test binary uses part of it.
#![allow(dead_code, unused_imports)]

use std::process::{Command, Output};

use serde_json::Value;
use sluice_layout::blocks;
use sluice_layout::command::{self, Ack};
use sluice_layout::registry::{self, ServiceEntry};
use sluice_layout::session::field;
use sluice_layout::shares::{ShareEntry, Verdict};
use sluice_layout::{Keys, BLOCK_STREAM_MAXLEN, LAYOUT_VERSION};
pub use sluice_testkit::miner::{End, Miner};
pub use sluice_testkit::{eventually, free_port, EngineProcess, RedisServer, TempDir};

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

/// A `sluice jobmanager` or `sluice stratum` in a directory of its own, killed on drop.
pub struct SluiceProcess(EngineProcess);

impl std::ops::Deref for SluiceProcess {
    type Target = EngineProcess;
    fn deref(&self) -> &EngineProcess {
        &self.0
    }
}

impl std::ops::DerefMut for SluiceProcess {
    fn deref_mut(&mut self) -> &mut EngineProcess {
        &mut self.0
    }
}

impl SluiceProcess {
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
        let (command, rest) = args.split_first().unwrap();
        SluiceProcess(EngineProcess::start_in_dir(
            command,
            rest,
            &[(file.as_str(), contents.as_str())],
        ))
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
        .arg(Keys::new(prefix).layout())
        .arg(LAYOUT_VERSION)
        .arg("NX")
        .query(con)
        .unwrap();
}

/// The layout version sluicectl reads: the engine's, from `sluice-layout`.
pub fn sluicectl_layout_version() -> u32 {
    LAYOUT_VERSION
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
    let keys = Keys::new(prefix);
    let mut pipe = redis::pipe();
    pipe.atomic();
    for (i, s) in shares.iter().enumerate() {
        let entry = ShareEntry {
            ts: s.ts,
            engine: s.engine.to_owned(),
            batch: format!("1:{}", i / 500 + 1),
            verdict: match s.reject {
                None => Verdict::Accepted,
                Some(_) => Verdict::Rejected,
            },
            reason: s.reject.map(str::to_owned),
            worker: s.worker.clone(),
            assigned: s.assigned,
            actual: s.actual,
            job: Some("5".to_owned()),
            height: s.height,
            session: "0a0b0c0d".to_owned(),
            client: "10.0.0.7".to_owned(),
            agent: Some("cgminer/4.11.1".to_owned()),
            block: s.block,
            hash: s.reject.is_none().then(|| "00".repeat(32)),
        };
        let cmd = pipe
            .cmd("XADD")
            .arg(keys.shares())
            .arg("MAXLEN")
            .arg("~")
            .arg(1_000_000)
            .arg("*");
        for (name, value) in sluice_layout::shares::FIELDS
            .iter()
            .zip(entry.into_values())
        {
            cmd.arg(*name).arg(value);
        }
        cmd.ignore();
        let rollup = keys.rollup(s.ts / 60_000);
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
        .arg(Keys::new(prefix).blocks())
        .arg("MAXLEN")
        .arg("~")
        .arg(BLOCK_STREAM_MAXLEN)
        .arg("*")
        .arg(blocks::HASH)
        .arg(hash)
        .arg(blocks::HEIGHT)
        .arg(height)
        .arg(blocks::WORKER)
        .arg(worker)
        .arg(blocks::ACCEPTED)
        .arg(u8::from(accepted))
        .arg(blocks::FOUND_MS)
        .arg(found_ms)
        .arg(blocks::RESULTS)
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
    let keys = Keys::new(prefix);
    let entry = ServiceEntry {
        id,
        role,
        address: if role == registry::ROLE_STRATUM {
            "127.0.0.1:3333"
        } else {
            ""
        },
        version: env!("CARGO_PKG_VERSION"),
        started_ms: (now - 5000) as u64,
        heartbeat_ms: (now - 1000) as u64,
        connections: 0,
        hashrate: 0.0,
        shares_per_second: 0.0,
        state: "serving",
        shares_dropped: 0,
    };
    let mut pipe = redis::pipe();
    pipe.atomic().cmd("HSET").arg(keys.service(id));
    for (name, value) in entry.fields() {
        pipe.arg(name);
        match value {
            registry::Value::Text(t) => pipe.arg(t),
            registry::Value::Int(n) => pipe.arg(n),
            registry::Value::Float(f) => pipe.arg(f),
        };
    }
    pipe.ignore()
        .cmd("PEXPIRE")
        .arg(keys.service(id))
        .arg(60_000)
        .ignore()
        .cmd("ZADD")
        .arg(keys.services())
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
    let keys = Keys::new(prefix);
    let key = keys.session(s.id);
    redis::pipe()
        .atomic()
        .cmd("HSET")
        .arg(&key)
        .arg(field::EXTRANONCE1)
        .arg(s.extranonce1)
        .arg(field::DIFFICULTY)
        .arg(s.difficulty)
        .arg(field::VERSION_MASK)
        .arg(format!("{:08x}", s.version_mask))
        .arg(field::WORKERS)
        .arg(serde_json::to_string(&s.workers).unwrap())
        .arg(field::ENGINE)
        .arg(s.engine)
        .arg(field::UPDATED_MS)
        .arg(s.updated_ms)
        .ignore()
        .cmd("PEXPIRE")
        .arg(&key)
        .arg(600_000)
        .ignore()
        .cmd("ZADD")
        .arg(keys.sessions())
        .arg(s.expires_ms)
        .arg(s.id)
        .ignore()
        .query::<()>(con)
        .unwrap();
}

/// One command an engine read from its stream: the entry's fields in written order.
pub type Received = Vec<(String, String)>;

/// A stand-in for an engine's command reader (`engine/src/plane/commands.rs`): it reads
/// `P:cmd:ID` with XREAD and acknowledges each command with the engine's [`Ack`] in `P:ack:CMD_ID`.
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
        let mut con = redis.connection();
        let keys = Keys::new(prefix);
        let (stream, engine) = (keys.commands(id), id.to_owned());
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
                        let (cmd_id, cmd, arg) = (
                            field(command::field::ID),
                            field(command::field::CMD),
                            field(command::field::ARG),
                        );
                        received2.lock().unwrap().push(fields.clone());
                        let Some(outcome) = answer(&cmd, &arg) else {
                            continue;
                        };
                        let ack = Ack::new(&engine, &cmd, outcome);
                        let _: () = redis::cmd("SET")
                            .arg(keys.ack(&cmd_id))
                            .arg(ack.to_json())
                            .arg("EX")
                            .arg(command::ACK_TTL_SECS)
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
