//! A real `sluice` process for a test: built once, started with the test's flags or configuration,
//! its ports read from its `sluice ready` line, stopped with SIGTERM (or killed when dropped).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::{eventually, TempDir};

/// The `sluice` binary, built once per test process with the same profile as the tests.
pub fn sluice_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build("sluice", "sluice")).clone()
}

/// The `sluicectl` binary, built the same way, for suites outside sluicectl's own package (which
/// have no `CARGO_BIN_EXE_sluicectl`).
pub fn sluicectl_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| build("sluicectl", "sluicectl"))
        .clone()
}

/// The `sluice-loadgen` binary, built the same way, for the fault tests.
pub fn loadgen_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| build("sluice-loadgen", "sluice-loadgen"))
        .clone()
}

/// `cargo build -p PACKAGE --bin BIN` with the tests' profile; the binary's path.
pub(crate) fn build(package: &str, bin: &str) -> PathBuf {
    // This crate sits one folder below the workspace root.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let release = !cfg!(debug_assertions);
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "-q", "-p", package, "--bin", bin])
        .current_dir(workspace);
    // The variables cargo gives the running test (CARGO_PKG_NAME, CARGO_MANIFEST_DIR...) would
    // reach build scripts that track them (ring's does): each switch between a test's build and a
    // shell's would rebuild ring, rustls, redis and the binary.
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || name.starts_with("CARGO_BIN_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "OUT_DIR",
            ]
            .contains(&name)
        {
            cmd.env_remove(name);
        }
    }
    if release {
        cmd.arg("--release");
    }
    assert!(cmd.status().unwrap().success(), "building {bin} failed");
    // A relative CARGO_TARGET_DIR is relative to where cargo runs: the workspace.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|t| workspace.join(t))
        .unwrap_or_else(|| workspace.join("target"));
    target
        .join(if release { "release" } else { "debug" })
        .join(bin)
}

pub struct EngineProcess {
    child: Child,
    /// Its `sluice ready ...` line, trimmed.
    pub ready: String,
    pub stratum: Vec<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub log: Arc<Mutex<String>>,
    _dir: Option<TempDir>,
}

impl EngineProcess {
    /// `sluice run` with these arguments (add `--listen 127.0.0.1:0` yourself or use `start_default`).
    pub fn start(args: &[&str]) -> EngineProcess {
        Self::spawn(args, None)
    }

    /// A test engine: loopback listener on a free port, admin on, two unpinned threads, tiny
    /// difficulty, no vardiff, blocks only when a share meets `network_difficulty`.
    pub fn start_default(extra: &[&str]) -> EngineProcess {
        let mut args = vec![
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--threads",
            "2",
            "--no-pin",
            "--start-difficulty",
            "1e-9",
            "--min-difficulty",
            "1e-12",
            "--no-vardiff",
            "--network-difficulty",
            "1000000",
            "--block-interval",
            "0",
        ];
        args.extend_from_slice(extra);
        Self::spawn(&args, None)
    }

    /// `sluice run --config FILE` with this configuration, plus extra flags.
    pub fn start_with_config(toml: &str, extra: &[&str]) -> EngineProcess {
        let dir = TempDir::new("config");
        let path = dir.path().join("sluice.toml");
        std::fs::write(&path, toml).unwrap();
        let path = path.to_str().unwrap().to_owned();
        let mut args = vec!["--config", path.as_str()];
        args.extend_from_slice(extra);
        Self::spawn(&args, Some(dir))
    }

    /// `sluice ROLE` (`stratum` or `jobmanager`) with these arguments.
    pub fn start_role(role: &str, args: &[&str]) -> EngineProcess {
        Self::spawn_command(Command::new(sluice_binary()), role, args, None)
    }

    fn spawn(args: &[&str], dir: Option<TempDir>) -> EngineProcess {
        Self::spawn_command(Command::new(sluice_binary()), "run", args, dir)
    }

    /// `sluice COMMAND ARGS...` in a directory of its own (a stratum engine keeps its share spool
    /// in its working directory), with `files` (name, contents) written there first so the
    /// arguments can name them (`--config jm.toml`).
    pub fn start_in_dir(command: &str, args: &[&str], files: &[(&str, &str)]) -> EngineProcess {
        let dir = TempDir::new("sluice");
        for (name, contents) in files {
            std::fs::write(dir.path().join(name), contents).unwrap();
        }
        let mut cmd = Command::new(sluice_binary());
        cmd.current_dir(dir.path());
        Self::spawn_command(cmd, command, args, Some(dir))
    }

    /// Starts `cmd` (the binary, perhaps in a directory) as `sluice COMMAND ARGS...`; `dir` lives
    /// as long as the process.
    fn spawn_command(
        mut cmd: Command,
        command: &str,
        args: &[&str],
        dir: Option<TempDir>,
    ) -> EngineProcess {
        let mut child = cmd
            .arg(command)
            .args(args)
            // Only what the test says: never the caller's Redis.
            .env_remove("SLUICE_REDIS")
            .env("RUST_LOG", "info,sluice=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut ready = String::new();
        stdout.read_line(&mut ready).unwrap();
        assert!(
            ready.starts_with("sluice ready "),
            "engine did not start: {ready:?}\n{}",
            log.lock().unwrap()
        );
        let ready = ready.trim().to_owned();
        let field = |name: &str| ready_field(&ready, name);
        let stratum = field("stratum")
            .split(',')
            .filter_map(|a| a.parse().ok())
            .collect();
        let admin = field("admin").parse().ok();
        EngineProcess {
            child,
            ready,
            stratum,
            admin,
            log,
            _dir: dir,
        }
    }

    /// A field of the ready line, e.g. `stratum` (empty when absent).
    pub fn field(&self, name: &str) -> String {
        ready_field(&self.ready, name)
    }

    pub fn addr(&self) -> SocketAddr {
        self.stratum[0]
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn get(&self, path: &str) -> String {
        let mut s = TcpStream::connect(self.admin.expect("admin listener")).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body.split_once("\r\n\r\n").unwrap().1.to_owned()
    }

    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.get("/status")).unwrap()
    }

    pub fn metrics(&self) -> String {
        self.get("/metrics")
    }

    /// One sample of the Prometheus text, e.g. `sluice_connections_closed_total{reason="idle-timeout"}`.
    pub fn metric(&self, name: &str) -> f64 {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no metric {name}"))
            .trim()
            .parse()
            .unwrap()
    }

    /// Kills the process outright (SIGKILL): no goodbye, no lease released.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the process to end.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("engine did not stop within 5 s of SIGTERM");
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Whether the log holds `needle` within `timeout`: the log is read from the process's stderr
    /// by a thread of its own, so a line can trail what the process did over the wire.
    pub fn logged_within(&self, needle: &str, timeout: Duration) -> bool {
        eventually(timeout, || self.log().contains(needle).then_some(())).is_some()
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ready_field(ready: &str, name: &str) -> String {
    ready
        .split_whitespace()
        .find_map(|f| f.strip_prefix(&format!("{name}=")))
        .unwrap_or("")
        .to_owned()
}
