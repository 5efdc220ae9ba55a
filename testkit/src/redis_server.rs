//! A real `redis-server` per test: a free port, a temporary directory, no persistence, never the
//! machine's own instance (DESIGN.md section 7). It can be stopped and started again on the same
//! port, for tests of what happens while Redis is away, and given configuration of its own
//! ([`RedisServer::start_with`], e.g. the deploy kit's ACL file), or speak TLS only
//! ([`RedisServer::start_tls`], in `tls.rs`), or replicate another, over TLS too ([`RedisServer::start_replica_of`],
//! for Sentinel's tests and the fleet harness with `sentinel.rs`).

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::tls::TlsMode;
use crate::{eventually, free_port, TempDir};

pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
    /// Configuration directives after the test defaults (`--aclfile PATH`...).
    extra: Vec<String>,
    pub(crate) tls: Option<TlsMode>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// A server with `extra` command-line directives after the test defaults, e.g.
    /// `["--aclfile", path]`. With the default user off, [`RedisServer::url`] and
    /// [`RedisServer::connection`] are refused: name a user in the URL.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        Self::launch_new(extra, None)
    }

    /// A replica of `master` (over TLS when the master speaks it, with its certificates and
    /// `tls-replication yes`), with `extra` directives; returns once its link to the master is up
    /// and the first sync is done.
    pub fn start_replica_of(master: &RedisServer, extra: &[&str]) -> RedisServer {
        Self::start_replica_as(master, extra, None)
    }

    /// [`RedisServer::start_replica_of`] for servers on an ACL file whose default user is off:
    /// `login` (user, password) is who the harness checks the sync as; `extra` names the ACL
    /// file and the replica's own `--masteruser`/`--masterauth`.
    pub fn start_replica_as(
        master: &RedisServer,
        extra: &[&str],
        login: Option<(&str, &str)>,
    ) -> RedisServer {
        let mut args: Vec<String> = vec![
            "--replicaof".into(),
            "127.0.0.1".into(),
            master.port.to_string(),
        ];
        let tls = master.tls.as_ref().map(|t| TlsMode {
            pki: t.pki.clone(),
            auth_clients: t.auth_clients,
        });
        if let Some(t) = &tls {
            // The replica dials its master as a client: with the client certificate (the server
            // one is for serverAuth only, which a master checking clients refuses).
            let path = |p: std::path::PathBuf| p.to_str().unwrap().to_owned();
            args.extend([
                "--tls-replication".into(),
                "yes".into(),
                "--tls-client-cert-file".into(),
                path(t.pki.client_cert()),
                "--tls-client-key-file".into(),
                path(t.pki.client_key()),
            ]);
        }
        args.extend(extra.iter().map(|&a| a.to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let replica = Self::launch_new(&args, tls);
        eventually(Duration::from_secs(20), || {
            let mut con = match login {
                None => replica.connection(),
                Some((user, password)) => replica.connection_as(user, password)?,
            };
            let info: String = redis::cmd("INFO").arg("replication").query(&mut con).ok()?;
            info.contains("master_link_status:up").then_some(())
        })
        .expect("the replica did not sync with its master");
        replica
    }

    /// A connection as `user` (over TLS for a TLS server); None if it is refused.
    pub fn connection_as(&self, user: &str, password: &str) -> Option<redis::Connection> {
        let url = self
            .url()
            .replacen("://", &format!("://{user}:{password}@"), 1);
        let client = match &self.tls {
            None => redis::Client::open(url.as_str()).ok()?,
            Some(t) => {
                redis::Client::build_with_tls(url.as_str(), t.pki.certificates(true)).ok()?
            }
        };
        let con = client
            .get_connection_with_timeout(Duration::from_secs(2))
            .ok()?;
        con.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        Some(con)
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn launch_new(extra: &[&str], tls: Option<TlsMode>) -> RedisServer {
        let port = free_port();
        let mut server = RedisServer {
            child: None,
            port,
            dir: TempDir::new("redis"),
            extra: extra.iter().map(|&a| a.to_owned()).collect(),
            tls,
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let ports = match &self.tls {
            None => vec!["--port".to_owned(), self.port.to_string()],
            Some(tls) => tls.args(self.port),
        };
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1"])
            .args(&ports)
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is not installed: apt-get install redis-server (.ci/run does)");
        self.child = Some(child);
        if self.tls.is_some() {
            eventually(Duration::from_secs(10), || {
                let mut con = self.tls_client().get_connection().ok()?;
                // Any reply is an answer: with the default user off it is NOAUTH, and up.
                match redis::cmd("PING").exec(&mut con) {
                    Ok(()) => Some(()),
                    Err(e) if e.is_io_error() || e.is_connection_dropped() => None,
                    Err(_) => Some(()),
                }
            })
            .expect("redis-server did not answer PING over TLS");
            return;
        }
        let port = self.port;
        eventually(Duration::from_secs(10), || {
            // Any reply is an answer: a server whose default user is off says NOAUTH, and is up.
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
            s.write_all(b"PING\r\n").ok()?;
            let mut first = [0u8; 1];
            s.read_exact(&mut first).ok()?;
            matches!(first[0], b'+' | b'-').then_some(())
        })
        .expect("redis-server did not answer PING");
    }

    /// `redis://127.0.0.1:PORT`, or `rediss://` for a server from [`RedisServer::start_tls`].
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// A connection; to a TLS server, trusting its CA and showing the client certificate.
    pub fn connection(&self) -> redis::Connection {
        match self.tls {
            None => redis::Client::open(self.url().as_str()).unwrap(),
            Some(_) => self.tls_client(),
        }
        .get_connection()
        .unwrap()
    }

    fn tls_client(&self) -> redis::Client {
        let pki = &self.tls.as_ref().expect("a TLS server").pki;
        redis::Client::build_with_tls(self.url().as_str(), pki.certificates(true)).unwrap()
    }

    /// Freezes the server (SIGSTOP): connections stay open but nothing answers, as when Redis hangs
    /// or the network drops its packets. Its data stays.
    pub fn pause(&self) {
        let pid = self.child.as_ref().expect("running").id() as i32;
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(pid, libc::SIGSTOP);
        }
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) {
        let pid = self.child.as_ref().expect("running").id() as i32;
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(pid, libc::SIGCONT);
        }
    }

    /// Kills the server (its data goes with it: nothing is persisted).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child process (a paused server must be able to die).
            unsafe {
                libc::kill(c.id() as i32, libc::SIGCONT);
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
