//! The Redis control plane: how jobmanagers and stratum engines of one fleet find each other, agree
//! on one publishing jobmanager, and pass jobs and found blocks (design section 6).
//!
//! - [`keys`]: the layout version check (the layout itself is the `sluice-layout` crate);
//! - [`lease`]: jobmanager leadership, a lease with a fleet epoch and a fencing token;
//! - [`registry`]: each process's service hash, refreshed under a TTL;
//! - [`jobs`]: the leader publishes jobs (fenced in Redis), engines take them (fenced again by token);
//! - [`blocks`]: engines hand found blocks to the leader, which records each node's answer;
//! - [`sessions`]: engine slots (fleet-unique extranonce1) and the session store for resume;
//! - [`sharelog`]: every share verdict to a stream in idempotent batches, spooled while Redis is away;
//! - [`policies`]: per-connection overrides of difficulty, vardiff target and version mask;
//! - [`commands`]: drain, undrain and kick from sluicectl, acknowledged through Redis;
//!
//! Everything here is blocking (the `redis` crate's synchronous client) and runs on threads of its
//! own, never on an engine core; a thread that loops on Redis is a [`PlaneLoop`] run by
//! [`spawn_loop`].

pub mod blocks;
pub mod commands;
pub mod jobs;
pub mod keys;
pub mod lease;
pub mod policies;
pub mod registry;
pub mod sessions;
pub mod sharelog;

#[cfg(test)]
pub(crate) mod test_redis;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use keys::{Keys, LAYOUT_VERSION};
pub use sluice_layout::job_message::FleetKey;

pub use crate::config::{PlaneSettings, RedisTarget, Sentinels};

/// Redis calls time out after this: a hung Redis must not hold a thread forever.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// Opens a connection with timeouts set. Over `rediss://` it also sends a PING: rustls shakes
/// hands on the first exchange, and a server whose certificate the CA file does not sign must be
/// refused here, with the key to fix, rather than as a puzzling I/O error on some later command.
/// A TLS refusal's error names the `redis.tls_*` key to fix.
///
/// With `redis.sentinels` it asks them for the master first (see [`connect_master`]): every
/// plane thread calls this on start and on every reconnect, and drops its connection on any
/// error (a `READONLY` answer from a demoted master included), so each thread follows a
/// failover on its next step.
pub fn connect(target: &RedisTarget) -> redis::RedisResult<redis::Connection> {
    use redis::IntoConnectionInfo;
    match &target.sentinels {
        None => open(target, target.url.as_str().into_connection_info()?),
        Some(sentinels) => connect_master(target, sentinels),
    }
}

/// One connection to `info`, with the TLS files of `target`.
fn open(
    target: &RedisTarget,
    info: redis::ConnectionInfo,
) -> redis::RedisResult<redis::Connection> {
    let tls = matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. });
    let client = match &target.tls {
        None => redis::Client::open(info)?,
        Some(files) => redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: files.client.as_ref().map(|c| redis::ClientTlsConfig {
                    client_cert: c.cert.clone(),
                    client_key: c.key.clone(),
                }),
                root_cert: files.ca.as_ref().map(|(_, pem)| pem.clone()),
            },
        )?,
    };
    let mut con = client
        .get_connection_with_timeout(REDIS_TIMEOUT)
        .map_err(|e| tls_refused(e, target))?;
    con.set_read_timeout(Some(REDIS_TIMEOUT))?;
    con.set_write_timeout(Some(REDIS_TIMEOUT))?;
    if tls {
        if let Err(e) = redis::cmd("PING").exec(&mut con) {
            // Any answer of the server's (NOPERM for a user without PING...) means the
            // handshake worked.
            if !matches!(e.kind(), redis::ErrorKind::Server(_)) {
                return Err(tls_refused(e, target));
            }
        }
    }
    Ok(con)
}

/// `info` at another TCP address, over TLS when it was.
fn at(info: &redis::ConnectionInfo, host: &str, port: u16) -> redis::ConnectionInfo {
    let addr = match info.addr() {
        redis::ConnectionAddr::TcpTls { insecure, .. } => redis::ConnectionAddr::TcpTls {
            host: host.to_owned(),
            port,
            insecure: *insecure,
            tls_params: None,
        },
        _ => redis::ConnectionAddr::Tcp(host.to_owned(), port),
    };
    info.clone().set_addr(addr)
}

/// The master the sentinels name, connected and checked: each sentinel in turn is asked
/// (`SENTINEL get-master-addr-by-name`) until one names a server that says it is the master
/// (`ROLE`). An old master that came back is a replica until Sentinel's failover reaches it, and
/// a sentinel may still name it: it is refused and the next sentinel asked. Errors are the last
/// failure's, and the caller's backoff asks again.
fn connect_master(
    target: &RedisTarget,
    sentinels: &Sentinels,
) -> redis::RedisResult<redis::Connection> {
    use redis::IntoConnectionInfo;
    let base = target.url.as_str().into_connection_info()?;
    let mut asked = redis::RedisConnectionInfo::default().set_skip_set_lib_name();
    if let Some(user) = &sentinels.username {
        asked = asked.set_username(user);
    }
    if let Some(password) = &sentinels.password {
        asked = asked.set_password(password);
    }
    let mut last = None;
    let mut refused: Vec<(String, u16)> = Vec::new();
    for (host, port) in &sentinels.addrs {
        let info = at(&base, host, *port).set_redis_settings(asked.clone());
        let named: redis::RedisResult<Option<(String, u16)>> =
            open(target, info).and_then(|mut s| {
                redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(&sentinels.master_name)
                    .query(&mut s)
            });
        let master = match named {
            Ok(Some(master)) => master,
            Ok(None) => {
                last = Some(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "the sentinel does not know the master",
                    format!(
                        "sentinel {host}:{port} monitors no master named {:?}: check redis.master_name",
                        sentinels.master_name
                    ),
                )));
                continue;
            }
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        // Several sentinels naming one dead master: one try is enough.
        if refused.contains(&master) {
            continue;
        }
        match open(target, at(&base, &master.0, master.1))
            .and_then(|mut con| is_master(&mut con).map(|yes| yes.then_some(con)))
        {
            Ok(Some(con)) => {
                followed(sentinels, &master, (host, *port));
                return Ok(con);
            }
            Ok(None) => {
                last = Some(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "not the master",
                    format!(
                        "sentinel {host}:{port} names {}:{} as master {:?}, but it is a replica (a failover under way)",
                        master.0, master.1, sentinels.master_name
                    ),
                )));
            }
            Err(e) => last = Some(e),
        }
        refused.push(master);
    }
    Err(last.unwrap_or_else(|| {
        redis::RedisError::from((redis::ErrorKind::Io, "no sentinel in redis.sentinels"))
    }))
}

/// Whether the server says it is a master. A user whose ACL lacks `ROLE` cannot tell: the
/// sentinel's word stands, and a write refused with `READONLY` makes the thread ask again.
fn is_master(con: &mut redis::Connection) -> redis::RedisResult<bool> {
    match redis::cmd("ROLE").query::<redis::Value>(con) {
        Ok(redis::Value::Array(items)) => Ok(matches!(
            items.first(),
            Some(redis::Value::BulkString(role)) if role == b"master"
        ) || matches!(
            items.first(),
            Some(redis::Value::SimpleString(role)) if role == "master"
        )),
        Ok(_) => Ok(false),
        Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm) => Ok(true),
        Err(e) => Err(e),
    }
}

/// Logs the master this process follows when it is not the one it followed before (every
/// plane thread reconnects after a failover; the first to find the new master says so).
fn followed(sentinels: &Sentinels, master: &(String, u16), sentinel: (&str, u16)) {
    static FOLLOWED: std::sync::Mutex<Option<(String, u16)>> = std::sync::Mutex::new(None);
    let mut last = FOLLOWED.lock().unwrap_or_else(|p| p.into_inner());
    if last.as_ref() != Some(master) {
        tracing::info!(
            master = %format!("{}:{}", master.0, master.1),
            name = %sentinels.master_name,
            sentinel = %format!("{}:{}", sentinel.0, sentinel.1),
            previous = ?last.as_ref().map(|(h, p)| format!("{h}:{p}")),
            "following the Redis master the sentinels name"
        );
        *last = Some(master.clone());
    }
}

/// `e` with what to fix when it is a TLS refusal: the configuration keys an operator sets.
fn tls_refused(e: redis::RedisError, target: &RedisTarget) -> redis::RedisError {
    let ca = target.tls.as_ref().and_then(|t| t.ca.as_ref());
    let hint = match rustls_error(&e) {
        Some(rustls::Error::InvalidCertificate(_)) => match ca {
            Some((path, _)) => format!("the server's certificate is not signed by the CA of redis.tls_ca_file ({path:?}), or does not name the URL's host"),
            None => "the server's certificate is not signed by a public CA, or does not name the URL's host: set redis.tls_ca_file to the PEM of the CA that signs it".to_owned(),
        },
        Some(rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired)) => {
            "the server asks for a client certificate: set redis.tls_cert_file and redis.tls_key_file".to_owned()
        }
        Some(other) => format!("TLS refused ({other}): check redis.tls_ca_file, redis.tls_cert_file and redis.tls_key_file"),
        None => return e,
    };
    redis::RedisError::from((
        redis::ErrorKind::Io,
        "TLS handshake with Redis failed",
        format!("{e}: {hint}"),
    ))
}

/// The rustls error behind a connection's failure, if that is what it was: the `redis` crate
/// keeps it in an `Arc`, inside the `io::Error` rustls' stream hands over.
pub(crate) fn rustls_error(e: &redis::RedisError) -> Option<&rustls::Error> {
    fn find<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(shared) = e.downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>() {
            return find(&**shared);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return find(io.get_ref()?);
        }
        find(e.source()?)
    }
    find(std::error::Error::source(e)?)
}

/// Sleeps `total` in short steps so `stop` is noticed; false when stopped.
pub fn pause(total: Duration, stop: &AtomicBool) -> bool {
    let step = Duration::from_millis(50);
    let mut slept = Duration::ZERO;
    while slept < total {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(step.min(total - slept));
        slept += step;
    }
    !stop.load(std::sync::atomic::Ordering::Relaxed)
}

/// The connection, opened when there is none; `None` while Redis is unreachable. Threads keep
/// their connection in an `Option` and drop it on any error, so the next call reconnects.
pub fn connected<'a>(
    con: &'a mut Option<redis::Connection>,
    url: &RedisTarget,
) -> Option<&'a mut redis::Connection> {
    if con.is_none() {
        *con = connect(url).ok();
    }
    con.as_mut()
}

/// How long a plane thread waits after a failed step: `first`, doubled after each failure up to
/// `max`, back to `first` after a step that worked.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The same wait after every failure.
    pub const fn fixed(wait: Duration) -> Backoff {
        Backoff {
            first: wait,
            max: wait,
        }
    }
}

/// Why a plane thread's step failed: its connection is dropped and the next step reconnects.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("cannot connect")]
    Unreachable,
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
    /// The block submitter this thread hands blocks to has stopped.
    #[error("the block submitter stopped")]
    SubmitterStopped,
    /// The lease script left the fleet epoch unreadable (`P:jm:epoch` is not a u64).
    #[error("{key} holds no epoch: {found:?}")]
    NoEpoch { key: String, found: String },
}

/// The body of a plane thread, which [`spawn_loop`] runs.
pub trait PlaneLoop: Send + 'static {
    /// One step on a live connection; `Ok` with the wait before the next step.
    fn step(
        &mut self,
        con: &mut redis::Connection,
        stop: &AtomicBool,
    ) -> Result<Duration, StepError>;

    /// A step failed, or Redis could not be reached: before the backoff.
    fn failed(&mut self, _error: &StepError) {}

    /// Once the stop flag is up, with the connection if there is one.
    fn finish(&mut self, _con: Option<&mut redis::Connection>) {}
}

/// A [`PlaneLoop`] of a step alone: failures are silent (the connection is dropped and the loop
/// backs off), nothing to do on stop.
pub struct Steps<F>(pub F);

impl<F> PlaneLoop for Steps<F>
where
    F: FnMut(&mut redis::Connection, &AtomicBool) -> Result<Duration, StepError> + Send + 'static,
{
    fn step(
        &mut self,
        con: &mut redis::Connection,
        stop: &AtomicBool,
    ) -> Result<Duration, StepError> {
        (self.0)(con, stop)
    }
}

/// Runs `body` on a thread named `name` until `stop`: connects (again) to `url` when it has no
/// connection, steps, waits what the step asked for, and after a failure drops the connection
/// and waits `backoff`; every wait notices `stop`. The one skeleton of the plane's threads.
pub fn spawn_loop(
    name: &str,
    url: RedisTarget,
    backoff: Backoff,
    stop: Arc<AtomicBool>,
    mut body: impl PlaneLoop,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let mut con = None;
            let mut wait = backoff.first;
            while !stop.load(Ordering::Relaxed) {
                let result = match connected(&mut con, &url) {
                    Some(c) => body.step(c, &stop),
                    None => Err(StepError::Unreachable),
                };
                match result {
                    Ok(next) => {
                        wait = backoff.first;
                        if !next.is_zero() {
                            pause(next, &stop);
                        }
                    }
                    Err(e) => {
                        con = None;
                        body.failed(&e);
                        pause(wait, &stop);
                        wait = (wait * 2).min(backoff.max);
                    }
                }
            }
            body.finish(con.as_mut());
        })
}

pub use crate::config::default_id;

#[cfg(test)]
mod tls_tests {
    use std::sync::Arc;

    use sluice_testkit::{Pki, RedisServer};

    use super::*;
    use crate::config::{ClientCert, TlsFiles};

    fn target(url: String, ca: &Pki, client: Option<&Pki>) -> RedisTarget {
        let read = |p: std::path::PathBuf| std::fs::read(p).unwrap();
        RedisTarget {
            url,
            sentinels: None,
            tls: Some(Arc::new(TlsFiles {
                ca: Some(("ca.crt".into(), read(ca.ca()))),
                client: client.map(|c| ClientCert {
                    cert_path: "client.crt".into(),
                    cert: read(c.client_cert()),
                    key: read(c.client_key()),
                }),
            })),
        }
    }

    fn refusal(target: &RedisTarget) -> String {
        match connect(target) {
            Ok(_) => panic!("connected to {}", target.url),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn connect_trusts_the_ca_file_and_names_it_when_it_does_not_sign() {
        let redis = RedisServer::start_tls(false);
        let mut con = connect(&target(redis.url(), redis.pki(), None)).unwrap();
        let pong: String = redis::cmd("PING").query(&mut con).unwrap();
        assert_eq!(pong, "PONG");

        let other = Pki::new();
        let e = refusal(&target(redis.url(), &other, None));
        assert!(e.contains("redis.tls_ca_file (\"ca.crt\")"), "{e}");
        // Without a CA file the public roots do not know a private CA either.
        let e = refusal(&RedisTarget::plain(redis.url()));
        assert!(e.contains("set redis.tls_ca_file"), "{e}");
    }

    #[test]
    fn connect_shows_the_client_certificate_a_server_asks_for() {
        let redis = RedisServer::start_tls(true);
        let mut con = connect(&target(redis.url(), redis.pki(), Some(redis.pki()))).unwrap();
        let pong: String = redis::cmd("PING").query(&mut con).unwrap();
        assert_eq!(pong, "PONG");

        let e = refusal(&target(redis.url(), redis.pki(), None));
        assert!(e.contains("redis.tls_cert_file"), "{e}");
        // A certificate of another CA is refused too.
        let other = Pki::new();
        assert!(connect(&target(redis.url(), redis.pki(), Some(&other))).is_err());
    }
}

#[cfg(test)]
mod sentinel_tests {
    use std::sync::Arc;

    use sluice_testkit::{free_port, RedisServer, Sentinels as SentinelProcesses};

    use super::*;

    fn via(sentinels: Vec<(String, u16)>) -> RedisTarget {
        RedisTarget {
            url: "redis://sluice".into(),
            tls: None,
            sentinels: Some(Arc::new(Sentinels {
                addrs: sentinels,
                master_name: "sluice".into(),
                username: None,
                password: None,
            })),
        }
    }

    fn port_of(con: &mut redis::Connection) -> u16 {
        let info: String = redis::cmd("CONFIG")
            .arg("GET")
            .arg("port")
            .query::<Vec<String>>(con)
            .unwrap()[1]
            .clone();
        info.parse().unwrap()
    }

    #[test]
    fn connect_asks_the_sentinels_in_order_and_refuses_a_replica() {
        let master = RedisServer::start();
        let replica = RedisServer::start_replica_of(&master, &[]);
        let sentinels = SentinelProcesses::start(&master, "sluice", 1, 1);
        let live = Sentinels::parse_addr(&sentinels.addrs()[0]).unwrap();
        // A sentinel that is down is skipped; the next one names the master.
        let dead = ("127.0.0.1".to_owned(), free_port());
        let mut con = connect(&via(vec![dead.clone(), live.clone()])).unwrap();
        assert_eq!(port_of(&mut con), master.port());
        assert!(is_master(&mut con).unwrap());
        // A replica says so (a demoted master that came back, still named by a sentinel).
        assert!(!is_master(&mut replica.connection()).unwrap());
        // A name no sentinel monitors is an error naming the key to check.
        let mut unknown = via(vec![live]);
        Arc::get_mut(unknown.sentinels.as_mut().unwrap())
            .unwrap()
            .master_name = "other".into();
        let e = connect(&unknown).err().expect("no master named other");
        assert!(e.to_string().contains("redis.master_name"), "{e}");
        assert!(connect(&via(vec![dead])).is_err());
    }

    #[test]
    fn sentinel_addresses_parse_as_host_and_port() {
        assert_eq!(
            Sentinels::parse_addr("10.0.1.5:26379"),
            Some(("10.0.1.5".into(), 26379))
        );
        assert_eq!(
            Sentinels::parse_addr("[::1]:26379"),
            Some(("::1".into(), 26379))
        );
        assert_eq!(
            Sentinels::parse_addr("s1.example:1"),
            Some(("s1.example".into(), 1))
        );
        for bad in [
            "10.0.1.5",
            ":26379",
            "h:0",
            "h:99999",
            "::1:26379",
            "redis://h:1",
            "h:x",
        ] {
            assert_eq!(Sentinels::parse_addr(bad), None, "{bad}");
        }
    }
}
