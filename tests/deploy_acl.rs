//! The deploy kit's Redis ACL file (`deploy/redis/users.acl`), proven on a real `redis-server`:
//! a `sluice jobmanager` and a `sluice stratum` each log in with their own user and the fleet
//! works (the leader publishes, a miner is notified and its shares and block are logged, the block
//! is recorded), `sluicectl` reads with the read-only user and is refused `engine drain`, drains
//! with the operator user, and every user is refused what its role does not need. Redis 7 checks
//! each command and key a Lua script calls too, so a role's scripts run only when the file
//! grants all they touch: after the fleet ran, Redis's `ACL LOG` must hold no denial. A replica
//! and a Sentinel (on the shipped sentinel.conf) log in with their users too, and HAProxy on the
//! shipped haproxy.cfg fronts an engine of such a fleet.
//!
//! The test writes its own copy of the shipped file with test passwords put in place of the
//! placeholder hashes, and changes nothing else: the rules tested are the rules shipped.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sluice_layout::Keys;
use sluice_testkit::fleet::{acl_password as password, test_acl};
use sluice_testkit::{eventually, sluicectl_binary, EngineProcess, RedisServer, TempDir};
use support::fleet::config_file_with;
use support::miner::Miner;

/// The shipped ACL file.
fn shipped_acl() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/redis/users.acl");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A Redis on the test copy of the ACL file (kept in `dir`).
fn acl_redis(dir: &TempDir) -> RedisServer {
    let path = dir.path().join("users.acl");
    std::fs::write(&path, test_acl()).unwrap();
    RedisServer::start_with(&["--aclfile", path.to_str().unwrap()])
}

/// `redis://USER:PASSWORD@HOST:PORT`.
fn url_as(redis: &RedisServer, user: &str) -> String {
    redis.url().replacen(
        "redis://",
        &format!("redis://{user}:{}@", password(user)),
        1,
    )
}

fn connect_as(redis: &RedisServer, user: &str) -> redis::Connection {
    redis::Client::open(url_as(redis, user).as_str())
        .unwrap()
        .get_connection()
        .unwrap_or_else(|e| panic!("{user} logs in: {e}"))
}

/// Runs `cmd` and expects Redis's ACL refusal: NOPERM, or from inside a script its own words.
fn refused(con: &mut redis::Connection, user: &str, cmd: &redis::Cmd) {
    match cmd.query::<redis::Value>(con) {
        Ok(v) => panic!(
            "{user} was allowed {:?}: {v:?}",
            String::from_utf8_lossy(&cmd.get_packed_command())
        ),
        Err(e) => assert!(
            is_acl_refusal(&e.to_string()),
            "{user}: {:?} failed for another reason: {e}",
            String::from_utf8_lossy(&cmd.get_packed_command())
        ),
    }
}

/// How Redis (and the client's rendering of it) words an ACL refusal.
fn is_acl_refusal(message: &str) -> bool {
    let m = message.to_lowercase();
    m.contains("noperm")
        || m.contains("no permissions")
        || m.contains("the user executing the script can't")
}

fn cmd(parts: &[&str]) -> redis::Cmd {
    let mut c = redis::cmd(parts[0]);
    for p in &parts[1..] {
        c.arg(*p);
    }
    c
}

/// `sluicectl --redis URL ARGS...` as `user`: (exit code, stdout, stderr).
fn sluicectl(redis: &RedisServer, user: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(sluicectl_binary())
        .arg("--redis")
        .arg(url_as(redis, user))
        .args(args)
        .env_remove("SLUICE_REDIS")
        .env_remove("SLUICE_PREFIX")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `sluice ROLE` under the default prefix, logged in as `user`.
fn role(redis: &RedisServer, role: &str, user: &str, id: &str, extra: &[&str]) -> EngineProcess {
    let url = url_as(redis, user);
    let config = config_file_with("");
    let mut args = vec![
        "--redis",
        url.as_str(),
        "--id",
        id,
        "--config",
        config.as_str(),
    ];
    args.extend_from_slice(extra);
    EngineProcess::start_role(role, &args)
}

/// Denials Redis logged (`ACL LOG`), as the admin user sees them.
fn acl_denials(admin: &mut redis::Connection) -> Vec<String> {
    let log: Vec<redis::Value> = redis::cmd("ACL").arg("LOG").query(admin).unwrap();
    log.iter().map(|entry| format!("{entry:?}")).collect()
}

#[test]
fn each_role_works_with_its_own_user_and_the_acl_log_stays_empty() {
    let dir = TempDir::new("acl");
    let redis = acl_redis(&dir);
    let mut admin = connect_as(&redis, "sluice-admin");
    // The default prefix's keys (the ACL file's patterns name them).
    let k = Keys::new("sluice");

    // Blocks at difficulty 1e-5 against shares at 1e-6: a found block exercises the engine's
    // forwarder and the leader's reader and recorder.
    let jm = role(
        &redis,
        "jobmanager",
        "sluice-jobmanager",
        "jm-1",
        &["--block-interval", "0", "--network-difficulty", "0.00001"],
    );
    let engine = role(&redis, "stratum", "sluice-engine", "engine-1", &[]);
    let leader = eventually(Duration::from_secs(10), || {
        redis::cmd("GET")
            .arg(k.leader())
            .query::<Option<String>>(&mut admin)
            .unwrap()
    })
    .expect("the jobmanager leads");
    assert!(leader.starts_with("jm-1|"), "{leader}");

    let mut miner = Miner::connect(engine.addr());
    miner.handshake();
    let block = miner.mine_until_block();
    assert_eq!(miner.submit(&block)["result"], true);
    for _ in 0..3 {
        let share = miner.find_share(miner.difficulty, true, None);
        miner.submit(&share);
    }
    let logged = eventually(Duration::from_secs(10), || {
        let n: u64 = redis::cmd("XLEN")
            .arg(k.shares())
            .query(&mut admin)
            .unwrap();
        (n >= 4).then_some(n)
    });
    assert!(logged.is_some(), "the shares are logged\n{}", engine.log());
    let recorded = eventually(Duration::from_secs(10), || {
        let n: u64 = redis::cmd("XLEN")
            .arg(k.blocks())
            .query(&mut admin)
            .unwrap();
        (n >= 1).then_some(n)
    });
    assert!(
        recorded.is_some(),
        "the leader records the block\n{}",
        jm.log()
    );
    // A session saved on authorize, and the slot renewals (every third of the 1 s service TTL).
    std::thread::sleep(Duration::from_millis(1500));

    // sluicectl: the read user lists and reads, and may not send commands.
    let (code, out, err) = sluicectl(&redis, "sluicectl-read", &["services", "ls"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("engine-1") && out.contains("jm-1"), "{out}");
    for args in [
        &["engine", "ls"][..],
        &["jobmanager", "ls"],
        &["shares", "tail"],
        &["blocks", "ls"],
        &["stats"],
        &["policy", "ls"],
    ] {
        let (code, out, err) = sluicectl(&redis, "sluicectl-read", args);
        assert_eq!(code, 0, "sluicectl {args:?}: {out}{err}");
    }
    let denials = acl_denials(&mut admin);
    assert!(
        denials.is_empty(),
        "a role was refused something it needs: {denials:#?}\nengine:\n{}\njobmanager:\n{}",
        engine.log(),
        jm.log()
    );

    let (code, out, err) = sluicectl(&redis, "sluicectl-read", &["engine", "drain", "engine-1"]);
    assert_eq!(code, 5, "an ACL refusal has its own exit code: {out}{err}");
    assert!(is_acl_refusal(&err), "the refusal says why: {err}");
    assert!(
        err.contains("sluicectl-operator"),
        "the refusal names the user to use: {err}"
    );
    redis::cmd("ACL")
        .arg("LOG")
        .arg("RESET")
        .query::<()>(&mut admin)
        .unwrap();

    // The operator drains; the engine acknowledges and moves its miner away.
    let (code, out, err) = sluicectl(
        &redis,
        "sluicectl-operator",
        &["engine", "drain", "engine-1"],
    );
    assert_eq!(code, 0, "{out}{err}\n{}", engine.log());
    assert!(
        miner
            .wait_for("client.reconnect", Duration::from_secs(10))
            .is_some(),
        "the drained engine sends its miner away"
    );
    let (code, out, err) = sluicectl(
        &redis,
        "sluicectl-operator",
        &["engine", "undrain", "engine-1"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = sluicectl(
        &redis,
        "sluicectl-operator",
        &[
            "policy",
            "set",
            "asic",
            "--port",
            "3333",
            "--start-difficulty",
            "1024",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = sluicectl(&redis, "sluicectl-operator", &["policy", "rm", "asic"]);
    assert_eq!(code, 0, "{out}{err}");
    let denials = acl_denials(&mut admin);
    assert!(
        denials.is_empty(),
        "the operator was refused something it needs: {denials:#?}"
    );
    drop(engine);
    drop(jm);
}

#[test]
fn each_role_is_refused_what_it_does_not_need() {
    let dir = TempDir::new("acl");
    let redis = acl_redis(&dir);
    let mut admin = connect_as(&redis, "sluice-admin");
    // The default prefix's keys (the ACL file's patterns name them).
    let k = Keys::new("sluice");
    let (leader, token, latest, jobs, policies, blocks) = (
        k.leader(),
        k.token(),
        k.latest_job(),
        k.jobs_channel(),
        k.policies(),
        k.blocks(),
    );
    let (cmd1, cmd2, shares, session, slot, control, layout, ack) = (
        k.commands("engine-1"),
        k.commands("engine-2"),
        k.shares(),
        k.session("00"),
        k.slot(0),
        k.jm_control(),
        k.layout(),
        k.ack("1"),
    );
    // A script naming a key it was not given (refused by the ACL whatever it names).
    let set_leader = format!("return redis.call('SET', '{leader}', 'x')");
    redis::cmd("SET")
        .arg(k.layout())
        .arg(2)
        .query::<()>(&mut admin)
        .unwrap();
    redis::cmd("SET")
        .arg("other:key")
        .arg(1)
        .query::<()>(&mut admin)
        .unwrap();

    // Everywhere: nothing outside the prefix, no server-wide commands.
    for user in [
        "sluice-engine",
        "sluice-jobmanager",
        "sluicectl-read",
        "sluicectl-operator",
    ] {
        let mut con = connect_as(&redis, user);
        for c in [
            &["FLUSHALL"][..],
            &["FLUSHDB"],
            &["KEYS", "*"],
            &["CONFIG", "SET", "appendonly", "no"],
            &["ACL", "LIST"],
            &["GET", "other:key"],
            &["SET", "other:key", "2"],
        ] {
            refused(&mut con, user, &cmd(c));
        }
    }

    // The engine may not lead, publish jobs, or do so from a script, declared key or not.
    let user = "sluice-engine";
    let mut engine = connect_as(&redis, user);
    for c in [
        &["SET", leader.as_str(), "engine-1|1"][..],
        &["INCR", token.as_str()],
        &["SET", latest.as_str(), "x"],
        &["PUBLISH", jobs.as_str(), "x"],
        &["HSET", policies.as_str(), "p", "{}"],
        &["XADD", blocks.as_str(), "*", "hash", "00"],
        &["XADD", cmd2.as_str(), "*", "cmd", "drain"],
        &[
            "EVAL",
            "return redis.call('SET', KEYS[1], 'x')",
            "1",
            leader.as_str(),
        ],
        &["EVAL", set_leader.as_str(), "0"],
        &["EVAL", "return redis.call('FLUSHALL')", "0"],
    ] {
        refused(&mut engine, user, &cmd(c));
    }

    // The jobmanager may not write shares, sessions, commands or policies.
    let user = "sluice-jobmanager";
    let mut jm = connect_as(&redis, user);
    for c in [
        &["XADD", shares.as_str(), "*", "verdict", "accepted"][..],
        &["HSET", session.as_str(), "difficulty", "1"],
        &["SET", slot.as_str(), "x"],
        &["HSET", policies.as_str(), "p", "{}"],
        &["HSET", control.as_str(), "prefer", "jm-1"],
        &["XADD", cmd1.as_str(), "*", "cmd", "drain"],
        &["SUBSCRIBE", "other:channel"],
    ] {
        refused(&mut jm, user, &cmd(c));
    }

    // The read user writes nothing, not even from a script.
    let user = "sluicectl-read";
    let mut read = connect_as(&redis, user);
    for c in [
        &["SET", layout.as_str(), "2"][..],
        &["XADD", cmd1.as_str(), "*", "cmd", "drain"],
        &["HSET", policies.as_str(), "p", "{}"],
        &["HDEL", control.as_str(), "prefer"],
        &["HSET", control.as_str(), "prefer", "jm-1"],
        &["DEL", shares.as_str()],
        &["EXPIRE", layout.as_str(), "1"],
        &["EVAL", "return 1", "0"],
        &["PUBLISH", jobs.as_str(), "x"],
        &["SUBSCRIBE", jobs.as_str()],
    ] {
        refused(&mut read, user, &cmd(c));
    }
    let layout: String = redis::cmd("GET").arg(k.layout()).query(&mut read).unwrap();
    assert_eq!(layout, "2", "the read user reads");

    // The operator writes only commands, policies and the lease's steering.
    let user = "sluicectl-operator";
    let mut operator = connect_as(&redis, user);
    for c in [
        &["SET", leader.as_str(), "jm-1|1"][..],
        &["SET", layout.as_str(), "3"],
        &["XADD", shares.as_str(), "*", "verdict", "accepted"],
        &["SET", ack.as_str(), "{}"],
        &["EVAL", set_leader.as_str(), "0"],
        &["PUBLISH", jobs.as_str(), "x"],
    ] {
        refused(&mut operator, user, &cmd(c));
    }

    // The default user is off: no login without a user and password.
    let mut anonymous = redis::Client::open(redis.url().as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let e = redis::cmd("GET")
        .arg(k.layout())
        .query::<Option<String>>(&mut anonymous)
        .unwrap_err();
    assert!(e.to_string().contains("NOAUTH"), "{e}");
}

/// The file as shipped loads, and no user can log in until its placeholder is replaced.
#[test]
fn the_shipped_file_loads_and_its_placeholders_let_no_one_in() {
    let dir = TempDir::new("acl");
    let path = dir.path().join("users.acl");
    std::fs::write(&path, shipped_acl()).unwrap();
    let redis = RedisServer::start_with(&["--aclfile", path.to_str().unwrap()]);
    for line in shipped_acl().lines() {
        let user = line.split_whitespace().nth(1).unwrap();
        let login = redis::Client::open(url_as(&redis, user).as_str())
            .unwrap()
            .get_connection();
        assert!(login.is_err(), "{user} logged in with a placeholder");
    }
}

/// The shipped haproxy.cfg pointed at this test's one engine (testkit's rewrite, which changes
/// only ports and paths).
fn haproxy_config(dir: &TempDir, front: u16, engine: &EngineProcess, stats: u16) -> String {
    let server = sluice_testkit::fleet::HaproxyServer {
        id: "engine-1".into(),
        proxied: engine.stratum[1].to_string(),
        admin_port: engine.admin.expect("admin listener").port(),
    };
    sluice_testkit::fleet::shipped_haproxy_config(
        &dir.path().join("admin.sock"),
        front,
        stats,
        &[server],
    )
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

/// HAProxy on the shipped configuration in front of a fleet engine: the file passes
/// `haproxy -c`, the health check on the engine's admin `/status` marks it up, a miner mines
/// through it, and the PROXY v2 header carries the miner's own address to the share log.
#[test]
fn haproxy_on_the_shipped_config_fronts_an_engine() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/haproxy/haproxy.cfg");
    let check = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&shipped)
        .output()
        .expect("haproxy is not installed: apt-get install haproxy (scripts/setup.sh does)");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let dir = TempDir::new("acl");
    let redis = acl_redis(&dir);
    let mut admin = connect_as(&redis, "sluice-admin");
    // The default prefix's keys (the ACL file's patterns name them).
    let k = Keys::new("sluice");
    let _jm = role(
        &redis,
        "jobmanager",
        "sluice-jobmanager",
        "jm-1",
        &["--block-interval", "0", "--network-difficulty", "1000"],
    );
    let url = url_as(&redis, "sluice-engine");
    let config = config_file_with(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\nproxy_protocol = true\nstart_difficulty = 0.000001\nmin_difficulty = 0.000001\n",
    );
    let engine = EngineProcess::start_role(
        "stratum",
        &["--redis", &url, "--id", "engine-1", "--config", &config],
    );
    assert_eq!(engine.stratum.len(), 2, "{}", engine.ready);

    let (front, stats) = (sluice_testkit::free_port(), sluice_testkit::free_port());
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(&cfg, haproxy_config(&dir, front, &engine, stats)).unwrap();
    let mut haproxy = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let up = eventually(Duration::from_secs(10), || {
        let csv = http_get(stats, "/stats;csv")?;
        csv.lines()
            .any(|l| l.starts_with("sluice_engines,engine-1,") && l.contains(",UP,"))
            .then_some(())
    });
    let metrics = http_get(stats, "/metrics").unwrap_or_default();

    // From 127.0.0.7: HAProxy itself reaches the engine from 127.0.0.1, so only the PROXY
    // header can tell the engine this address.
    let front_addr: std::net::SocketAddr = format!("127.0.0.1:{front}").parse().unwrap();
    let miner = eventually(Duration::from_secs(5), || {
        Miner::connect_from(front_addr, "127.0.0.7").ok()
    });
    let mut miner = miner.expect("haproxy listens");
    miner.handshake();
    let share = miner.find_share(miner.difficulty, true, None);
    assert_eq!(miner.submit(&share)["result"], true);
    let client = eventually(Duration::from_secs(10), || {
        let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg(k.shares())
            .arg("-")
            .arg("+")
            .query(&mut admin)
            .unwrap();
        entries.into_iter().find_map(|(_, fields)| {
            fields
                .into_iter()
                .find_map(|(k, v)| (k == "client").then_some(v))
        })
    });
    // SAFETY: signalling our own child process.
    unsafe {
        libc::kill(haproxy.id() as i32, libc::SIGTERM);
    }
    let _ = haproxy.wait();
    assert!(
        up.is_some(),
        "the health check on /status marks the engine up"
    );
    assert!(
        metrics.contains("haproxy_"),
        "haproxy's Prometheus exporter answers"
    );
    assert_eq!(
        client.as_deref(),
        Some("127.0.0.7"),
        "the PROXY v2 header carries the miner's address"
    );
}

/// The shipped sentinel.conf with its ports and the master's address pointed at this test.
fn sentinel_config(port: u16, master: &RedisServer) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/redis/sentinel.conf");
    let master_port = master.url().rsplit(':').next().unwrap().to_owned();
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let line = if line.starts_with("port ") {
                format!("port {port}")
            } else if line.starts_with("sentinel monitor sluice ") {
                format!("sentinel monitor sluice 127.0.0.1 {master_port} 2")
            } else if line.starts_with("sentinel auth-pass sluice ") {
                format!("sentinel auth-pass sluice {}", password("sluice-sentinel"))
            } else {
                line.to_owned()
            };
            line + "\n"
        })
        .collect()
}

/// The replication and Sentinel users work: a replica logs in to the master as `sluice-replica`
/// and syncs, and a Sentinel on the shipped sentinel.conf logs in as `sluice-sentinel` and
/// learns the replica from the master; neither is refused anything.
#[test]
fn a_replica_and_a_sentinel_log_in_with_their_users() {
    let dir = TempDir::new("acl");
    let master = acl_redis(&dir);
    let master_port = master.url().rsplit(':').next().unwrap().to_owned();
    let acl = dir.path().join("users.acl");
    let replica = RedisServer::start_with(&[
        "--aclfile",
        acl.to_str().unwrap(),
        "--replicaof",
        "127.0.0.1",
        &master_port,
        "--masteruser",
        "sluice-replica",
        "--masterauth",
        &password("sluice-replica"),
    ]);
    let mut on_replica = connect_as(&replica, "sluice-admin");
    let synced = eventually(Duration::from_secs(10), || {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut on_replica)
            .ok()?;
        info.contains("master_link_status:up").then_some(())
    });
    assert!(synced.is_some(), "the replica syncs as sluice-replica");

    let port = sluice_testkit::free_port();
    let conf = dir.path().join("sentinel.conf");
    std::fs::write(&conf, sentinel_config(port, &master)).unwrap();
    let mut sentinel = Command::new("redis-sentinel")
        .arg(&conf)
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("redis-sentinel is not installed: apt-get install redis-sentinel");
    let learned = eventually(Duration::from_secs(15), || {
        let mut con = redis::Client::open(format!("redis://127.0.0.1:{port}").as_str())
            .ok()?
            .get_connection()
            .ok()?;
        let replicas: Vec<Vec<String>> = redis::cmd("SENTINEL")
            .arg("REPLICAS")
            .arg("sluice")
            .query(&mut con)
            .ok()?;
        (!replicas.is_empty()).then_some(())
    });
    let mut admin = connect_as(&master, "sluice-admin");
    let clients: String = redis::cmd("CLIENT").arg("LIST").query(&mut admin).unwrap();
    let denials = acl_denials(&mut admin);
    let _ = sentinel.kill();
    let _ = sentinel.wait();
    assert!(learned.is_some(), "the sentinel reads the master's INFO");
    assert!(clients.contains("user=sluice-sentinel"), "{clients}");
    assert!(denials.is_empty(), "{denials:#?}");
}
