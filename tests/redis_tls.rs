//! The control plane over TLS (`rediss://`), on a real `redis-server` that speaks TLS only, with
//! a CA and certificates made at run time (`sluice_testkit::Pki`): a jobmanager and a stratum
//! engine given `redis.tls_ca_file` lead, publish, take a miner's share into `P:shares`, and
//! sluicectl lists them with `--redis-ca-file`; a CA that does not sign the server's certificate
//! is refused at start with the key (or flag) to fix; with `tls-auth-clients yes` the client
//! certificate (`redis.tls_cert_file`, `redis.tls_key_file`) is what lets a process in.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sluice_testkit::{
    eventually, sluice_binary, sluicectl_binary, EngineProcess, Pki, RedisServer,
};
use support::fleet::{config_file_with, keys, PREFIX};
use support::miner::Miner;

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The `redis.tls_*` lines for `ca`, and with `client` its client certificate too.
fn tls_keys(ca: &Pki, client: Option<&Pki>) -> String {
    let mut lines = format!("tls_ca_file = {:?}\n", path(&ca.ca()));
    if let Some(c) = client {
        lines.push_str(&format!(
            "tls_cert_file = {:?}\ntls_key_file = {:?}\n",
            path(&c.client_cert()),
            path(&c.client_key())
        ));
    }
    lines
}

/// The fleet tests' configuration file with `tls` in its `[redis]` section.
fn config_with_tls(tls: &str) -> String {
    let config = config_file_with("");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replacen("[redis]\n", &format!("[redis]\n{tls}"), 1),
    )
    .unwrap();
    config
}

fn role_args<'a>(redis: &'a str, id: &'a str, config: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--redis", redis, "--prefix", PREFIX, "--id", id, "--config", config,
    ];
    args.extend_from_slice(extra);
    args
}

/// `sluice ROLE` over TLS with these `redis.tls_*` lines, up and ready.
fn role(redis: &RedisServer, role: &str, id: &str, tls: &str, extra: &[&str]) -> EngineProcess {
    let (url, config) = (redis.url(), config_with_tls(tls));
    EngineProcess::start_role(role, &role_args(&url, id, &config, extra))
}

/// `sluice ROLE` expected to refuse to start: its exit code and stderr, within 20 s.
fn refused_role(redis: &RedisServer, role: &str, tls: &str) -> (Option<i32>, String) {
    let (url, config) = (redis.url(), config_with_tls(tls));
    let mut child = Command::new(sluice_binary())
        .arg(role)
        .args(role_args(&url, "refused-1", &config, &[]))
        .env_remove("SLUICE_REDIS")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `sluicectl --redis URL --prefix P ARGS...`: its exit code, stdout and stderr.
fn sluicectl(redis: &RedisServer, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(sluicectl_binary())
        .args(["--redis", &redis.url(), "--prefix", PREFIX])
        .args(args)
        .env_remove("SLUICE_REDIS")
        .env_remove("SLUICE_PREFIX")
        .env_remove("SLUICE_REDIS_CA_FILE")
        .env_remove("SLUICE_REDIS_CERT_FILE")
        .env_remove("SLUICE_REDIS_KEY_FILE")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn wait_for_leader(con: &mut redis::Connection) -> String {
    eventually(Duration::from_secs(10), || {
        redis::cmd("GET")
            .arg(keys().leader())
            .query::<Option<String>>(con)
            .unwrap()
    })
    .expect("a jobmanager leads")
}

#[test]
fn a_fleet_runs_over_tls_with_the_ca_file_and_sluicectl_reads_it() {
    let redis = RedisServer::start_tls(false);
    let mut con = redis.connection();
    let tls = tls_keys(redis.pki(), None);
    let jm = role(
        &redis,
        "jobmanager",
        "jm-1",
        &tls,
        &["--block-interval", "0", "--network-difficulty", "1000"],
    );
    let engine = role(&redis, "stratum", "engine-1", &tls, &[]);
    assert!(
        wait_for_leader(&mut con).starts_with("jm-1|"),
        "{}",
        jm.log()
    );

    let mut miner = Miner::connect(engine.addr());
    miner.handshake();
    let share = miner.find_share(miner.difficulty, true, None);
    assert_eq!(miner.submit(&share)["result"], true);
    let logged = eventually(Duration::from_secs(10), || {
        let n: u64 = redis::cmd("XLEN")
            .arg(keys().shares())
            .query(&mut con)
            .unwrap();
        (n >= 1).then_some(n)
    });
    assert!(logged.is_some(), "the share is logged\n{}", engine.log());

    let ca = path(&redis.pki().ca()).to_owned();
    let (code, out, err) = sluicectl(&redis, &["--redis-ca-file", &ca, "services", "ls"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("jm-1") && out.contains("engine-1"), "{out}");

    // Without the CA file the compiled-in public roots do not know the test CA.
    let (code, out, err) = sluicectl(&redis, &["services", "ls"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("--redis-ca-file"), "{err}");
}

#[test]
fn a_ca_that_does_not_sign_the_servers_certificate_is_refused_by_name() {
    let redis = RedisServer::start_tls(false);
    let other = Pki::new();
    for name in ["jobmanager", "stratum"] {
        let (code, err) = refused_role(&redis, name, &tls_keys(&other, None));
        assert!(
            code.is_some_and(|c| c != 0),
            "{name} exits: {code:?}\n{err}"
        );
        assert!(err.contains("redis.tls_ca_file"), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
    let ca = path(&other.ca()).to_owned();
    let (code, out, err) = sluicectl(&redis, &["--redis-ca-file", &ca, "services", "ls"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("--redis-ca-file") && err.contains(&ca),
        "{err}"
    );
}

#[test]
fn mutual_tls_lets_in_the_client_certificate_and_refuses_its_absence() {
    let redis = RedisServer::start_tls(true);
    let mut con = redis.connection();
    let pki = redis.pki();
    let with_cert = tls_keys(pki, Some(pki));
    let jm = role(
        &redis,
        "jobmanager",
        "jm-1",
        &with_cert,
        &["--block-interval", "0", "--network-difficulty", "1000"],
    );
    let _engine = role(&redis, "stratum", "engine-1", &with_cert, &[]);
    assert!(
        wait_for_leader(&mut con).starts_with("jm-1|"),
        "{}",
        jm.log()
    );

    let (ca, cert, key) = (
        path(&pki.ca()).to_owned(),
        path(&pki.client_cert()).to_owned(),
        path(&pki.client_key()).to_owned(),
    );
    let flags = [
        "--redis-ca-file",
        &ca,
        "--redis-cert-file",
        &cert,
        "--redis-key-file",
        &key,
    ];
    let listed = eventually(Duration::from_secs(10), || {
        let (code, out, _) = sluicectl(&redis, &[&flags[..], &["services", "ls"]].concat());
        (code == 0 && out.contains("jm-1") && out.contains("engine-1")).then_some(())
    });
    assert!(
        listed.is_some(),
        "sluicectl lists both with the client certificate"
    );

    let (code, out, err) = sluicectl(&redis, &["--redis-ca-file", &ca, "services", "ls"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("--redis-cert-file"), "{err}");
    let (code, err) = refused_role(&redis, "stratum", &tls_keys(pki, None));
    assert!(code.is_some_and(|c| c != 0), "exits: {code:?}\n{err}");
    assert!(err.contains("redis.tls_cert_file"), "{err}");
}
