//! A real `sluice` process for a test: built once, started with the test's flags or configuration,
//! its ports read from its `sluice ready` line, stopped with SIGTERM (or killed when dropped).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The `sluice` binary, built once per test process with the same profile as the tests.
pub fn sluice_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let release = !cfg!(debug_assertions);
            let mut cmd = Command::new(env!("CARGO"));
            cmd.args(["build", "-q", "-p", "sluice", "--bin", "sluice"])
                .current_dir(env!("CARGO_MANIFEST_DIR"));
            if release {
                cmd.arg("--release");
            }
            assert!(cmd.status().unwrap().success(), "building sluice failed");
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
            target
                .join(if release { "release" } else { "debug" })
                .join("sluice")
        })
        .clone()
}

pub struct EngineProcess {
    child: Child,
    pub stratum: Vec<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub log: Arc<Mutex<String>>,
    _dir: Option<tempdir::TempDir>,
}

/// A temporary directory removed on drop (enough of one for config files).
pub mod tempdir {
    use std::path::{Path, PathBuf};

    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(tag: &str) -> TempDir {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "sluice-test-{tag}-{}-{}",
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
        let dir = tempdir::TempDir::new("config");
        let path = dir.path().join("sluice.toml");
        std::fs::write(&path, toml).unwrap();
        let path = path.to_str().unwrap().to_owned();
        let mut args = vec!["--config", path.as_str()];
        args.extend_from_slice(extra);
        Self::spawn(&args, Some(dir))
    }

    /// `sluice ROLE` (`stratum` or `jobmanager`) with these arguments.
    pub fn start_role(role: &str, args: &[&str]) -> EngineProcess {
        Self::spawn_command(role, args, None)
    }

    fn spawn(args: &[&str], dir: Option<tempdir::TempDir>) -> EngineProcess {
        Self::spawn_command("run", args, dir)
    }

    fn spawn_command(command: &str, args: &[&str], dir: Option<tempdir::TempDir>) -> EngineProcess {
        let mut child = Command::new(sluice_binary())
            .arg(command)
            .args(args)
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
        let field = |name: &str| {
            ready
                .split_whitespace()
                .find_map(|f| f.strip_prefix(&format!("{name}=")))
                .unwrap_or("")
                .to_owned()
        };
        let stratum = field("stratum")
            .split(',')
            .filter_map(|a| a.parse().ok())
            .collect();
        let admin = field("admin").parse().ok();
        EngineProcess {
            child,
            stratum,
            admin,
            log,
            _dir: dir,
        }
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

/// Polls `f` until it returns `Some`, for at most `timeout`.
pub fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
