//! The fleet on a Redis that Sentinel keeps available: a real `redis-server` master, a replica
//! and three `redis-sentinel`s (`sluice_testkit::Sentinels`); the roles are given only
//! `redis.sentinels` and `redis.master_name`, never the master's address.
//!
//! - a jobmanager and a stratum engine mine; the master is SIGKILLed; Sentinel promotes the
//!   replica; the leader takes a found block and publishes the next job on the new master, new
//!   sessions are saved there, every share a miner saw accepted reaches its `P:shares`, and
//!   sluicectl `--sentinel` lists the fleet before and after;
//! - the same fault under load (`sluice-loadgen`, straight to the engine, no HAProxy): after the
//!   spool's replay the new master's stream holds every share the loadgen was told was accepted,
//!   none twice;
//! - the configuration errors: sentinels without a master name, a master name without sentinels,
//!   an address that is not `HOST:PORT`.

mod support;

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sluice_testkit::{
    eventually, loadgen_binary, sluice_binary, sluicectl_binary, EngineProcess, RedisServer,
    Sentinels,
};
use support::fleet::{config_file_with, keys, shares_in_stream, PREFIX};
use support::miner::Miner;

/// The master's name in the sentinels' configuration.
const NAME: &str = "sluice";

/// A master, its replica and three sentinels (quorum 2), ready to fail over.
struct Ha {
    master: RedisServer,
    _replica: RedisServer,
    sentinels: Sentinels,
}

fn ha() -> Ha {
    let master = RedisServer::start();
    let replica = RedisServer::start_replica_of(&master, &[]);
    let sentinels = Sentinels::start(&master, NAME, 2, 3);
    Ha {
        master,
        _replica: replica,
        sentinels,
    }
}

/// A connection to whichever server the sentinels name as master.
fn master(sentinels: &Sentinels) -> redis::Connection {
    let port = sentinels
        .master_port()
        .expect("a sentinel names the master");
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let con = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap();
    con.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    con
}

/// The fleet tests' configuration with `redis.sentinels` and `redis.master_name` of
/// `sentinels`, and `replace` applied to the rest.
fn config(sentinels: &Sentinels, replace: &[(&str, &str)]) -> String {
    let list: Vec<String> = sentinels.addrs().iter().map(|a| format!("{a:?}")).collect();
    config_lines(
        &format!(
            "sentinels = [{}]\nmaster_name = {:?}\n",
            list.join(", "),
            sentinels.name()
        ),
        replace,
    )
}

/// The fleet tests' configuration with `lines` at the top of its `[redis]` section.
fn config_lines(lines: &str, replace: &[(&str, &str)]) -> String {
    let path = config_file_with("");
    let mut text = std::fs::read_to_string(&path).unwrap();
    for (from, to) in replace {
        text = text.replace(from, to);
    }
    std::fs::write(
        &path,
        text.replacen("[redis]\n", &format!("[redis]\n{lines}"), 1),
    )
    .unwrap();
    path
}

fn role(config: &str, role: &str, id: &str, extra: &[&str]) -> EngineProcess {
    let mut args = vec!["--prefix", PREFIX, "--id", id, "--config", config];
    args.extend_from_slice(extra);
    EngineProcess::start_role(role, &args)
}

/// `sluicectl --sentinel ... --master-name NAME --prefix P ARGS`: exit code and stdout.
fn sluicectl(sentinels: &Sentinels, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(sluicectl_binary());
    for addr in sentinels.addrs() {
        cmd.args(["--sentinel", &addr]);
    }
    let out = cmd
        .args(["--master-name", sentinels.name(), "--prefix", PREFIX])
        .args(args)
        .env_remove("SLUICE_REDIS")
        .env_remove("SLUICE_REDIS_SENTINELS")
        .env_remove("SLUICE_REDIS_MASTER_NAME")
        .env_remove("SLUICE_PREFIX")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The hashes of the accepted entries in `P:shares`, and how many entries hold each.
fn accepted_hashes(con: &mut redis::Connection) -> (usize, HashSet<String>) {
    let entries = shares_in_stream(con);
    let accepted: Vec<String> = entries
        .iter()
        .filter(|e| e.get("verdict").map(String::as_str) == Some("accepted"))
        .map(|e| e["hash"].clone())
        .collect();
    let n = accepted.len();
    (n, accepted.into_iter().collect())
}

fn leader_on(con: &mut redis::Connection) -> Option<String> {
    redis::cmd("GET")
        .arg(keys().leader())
        .query::<Option<String>>(con)
        .ok()
        .flatten()
}

#[test]
fn the_fleet_follows_the_master_sentinel_promotes() {
    let mut ha = ha();
    let old = ha.master.port();
    let config = config(&ha.sentinels, &[]);
    let _jm = role(
        &config,
        "jobmanager",
        "jm-a",
        &["--block-interval", "0", "--network-difficulty", "0.00001"],
    );
    let stratum = role(&config, "stratum", "st-a", &[]);
    let mut con = master(&ha.sentinels);
    eventually(Duration::from_secs(10), || leader_on(&mut con)).expect("a leader");

    let mut miner = Miner::connect(stratum.addr());
    miner.handshake();
    let mut told = Vec::new();
    for _ in 0..3 {
        let share = miner.find_share(miner.difficulty, true, None);
        if miner.is_block(&share) {
            continue;
        }
        assert_eq!(miner.submit(&share)["result"], true);
        told.push(Miner::hash_hex(&share));
    }
    let (code, out, err) = sluicectl(&ha.sentinels, &["services", "ls"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("jm-a") && out.contains("st-a"), "{out}");

    let killed = Instant::now();
    ha.master.stop();
    let new = ha
        .sentinels
        .wait_failover_from(old, Duration::from_secs(60));
    println!(
        "failover: master {old} killed, {new} promoted after {:.1} s",
        killed.elapsed().as_secs_f64()
    );
    let mut con = master(&ha.sentinels);

    // The miner keeps mining through the failover; its shares wait in the spool if need be.
    for _ in 0..3 {
        let share = miner.find_share(miner.difficulty, true, None);
        if miner.is_block(&share) {
            continue;
        }
        assert_eq!(miner.submit(&share)["result"], true);
        told.push(Miner::hash_hex(&share));
    }
    eventually(Duration::from_secs(20), || leader_on(&mut con))
        .expect("a leader on the new master");
    assert!(
        stratum.logged_within("following the Redis master", Duration::from_secs(20)),
        "{}",
        stratum.log()
    );

    // A block found now goes to the leader through the new master, and its next job comes back.
    let prev = miner.work.as_ref().unwrap().prev_hash;
    let block = miner.mine_until_block();
    assert_eq!(miner.submit(&block)["result"], true);
    told.push(Miner::hash_hex(&block));
    assert!(
        miner.wait_for_new_block(prev, Duration::from_secs(30)),
        "no job on the next block after the failover"
    );

    // A new session is saved on the new master.
    let mut second = Miner::connect(stratum.addr());
    let subscribed = second.subscribe();
    let id = subscribed["result"][0][0][1].as_str().unwrap().to_owned();
    assert_eq!(second.authorize("w2", "x")["result"], true);
    second
        .wait_for("mining.notify", Duration::from_secs(10))
        .expect("work");
    // Saved as resumable when it leaves.
    drop(second);
    eventually(Duration::from_secs(20), || {
        let exists: bool = redis::cmd("EXISTS")
            .arg(keys().session(&id))
            .query(&mut con)
            .ok()?;
        exists.then_some(())
    })
    .expect("the new session saved on the new master");

    // Every share the miner saw accepted, before, during and after, is in the new master's stream.
    let (_, hashes) = eventually(Duration::from_secs(30), || {
        let (n, hashes) = accepted_hashes(&mut con);
        told.iter()
            .all(|h| hashes.contains(h))
            .then_some((n, hashes))
    })
    .unwrap_or_else(|| panic!("accepted shares missing on the new master: {told:?}"));
    assert!(told.iter().all(|h| hashes.contains(h)));

    let (code, out, err) = sluicectl(&ha.sentinels, &["services", "ls"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("jm-a") && out.contains("st-a"), "{out}");
}

#[test]
fn a_master_killed_under_load_loses_no_accepted_share() {
    let mut ha = ha();
    let old = ha.master.port();
    // A tiny share difficulty: the loadgen (a debug build here) finds shares in a few hashes.
    let config = config(
        &ha.sentinels,
        &[
            (
                "start_difficulty = 0.000001",
                "start_difficulty = 0.000000001",
            ),
            ("min_difficulty = 0.000001", "min_difficulty = 0.000000001"),
        ],
    );
    let _jm = role(
        &config,
        "jobmanager",
        "jm-a",
        &["--block-interval", "0", "--network-difficulty", "1000"],
    );
    let stratum = role(&config, "stratum", "st-a", &[]);
    let mut con = master(&ha.sentinels);
    eventually(Duration::from_secs(10), || leader_on(&mut con)).expect("a leader");

    let loadgen = Command::new(loadgen_binary())
        .args(["--target", &stratum.addr().to_string()])
        .args(["--connections", "50", "--rate", "300", "--duration", "15"])
        .args(["--mix", "valid=100", "--drain", "5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Into the measured window (the handshakes of 50 connections take well under this).
    std::thread::sleep(Duration::from_secs(6));
    let killed = Instant::now();
    ha.master.stop();
    let new = ha
        .sentinels
        .wait_failover_from(old, Duration::from_secs(60));
    let without_master = killed.elapsed();
    let out = loadgen.wait_with_output().unwrap();
    assert!(out.status.success(), "sluice-loadgen failed");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let told = report["submits"]["by_kind"]["valid"]["accepted"]
        .as_u64()
        .expect("a count of accepted shares");
    assert!(told > 0, "{report}");

    let mut con = master(&ha.sentinels);
    let (entries, hashes) = eventually(Duration::from_secs(60), || {
        let (n, hashes) = accepted_hashes(&mut con);
        (n as u64 >= told).then_some((n, hashes))
    })
    .unwrap_or_else(|| {
        let (n, _) = accepted_hashes(&mut con);
        panic!("told {told} accepted, the new master's stream holds {n}")
    });
    let spooled = stratum.metric("sluice_share_log_total{kind=\"spooled_batches\"}");
    println!(
        "master killed under load: {told} accepted told, {entries} accepted in the stream of the new master ({new}), {} distinct hashes, {spooled} batches spooled, {:.1} s without a master",
        hashes.len(),
        without_master.as_secs_f64()
    );
    assert_eq!(hashes.len(), entries, "a share hash is in the stream twice");
}

/// `sluice stratum` with `[redis]` lines of a bad configuration: its exit code and stderr.
fn refused(lines: &str) -> (Option<i32>, String) {
    let config = config_lines(lines, &[]);
    let mut child = Command::new(sluice_binary())
        .args(["stratum", "--prefix", PREFIX, "--config", &config])
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

#[test]
fn sentinel_settings_are_checked_and_name_their_key() {
    // Each is refused at start, before any Redis or sentinel is asked: none runs.
    for (lines, key, says) in [
        (
            "sentinels = [\"127.0.0.1:26379\"]\n",
            "redis.master_name",
            "sentinel monitor",
        ),
        ("master_name = \"sluice\"\n", "redis.sentinels", "redis.master_name needs"),
        (
            "sentinels = [\"127.0.0.1\"]\nmaster_name = \"sluice\"\n",
            "redis.sentinels",
            "HOST:PORT",
        ),
        (
            "sentinels = [\"127.0.0.1:26379\"]\nmaster_name = \"sluice\"\nurl = \"unix:///run/redis.sock\"\n",
            "redis.url",
            "over TCP",
        ),
    ] {
        let (code, err) = refused(lines);
        assert_eq!(code, Some(1), "{lines}: {err}");
        assert!(err.contains(key) && err.contains(says), "{lines}: {err}");
    }

    // sluicectl: each half without the other is a usage error.
    let out = Command::new(sluicectl_binary())
        .args(["--sentinel", "127.0.0.1:1", "services", "ls"])
        .env_remove("SLUICE_REDIS")
        .env_remove("SLUICE_REDIS_MASTER_NAME")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--master-name"));
    let out = Command::new(sluicectl_binary())
        .args(["--master-name", "sluice", "services", "ls"])
        .env_remove("SLUICE_REDIS")
        .env_remove("SLUICE_REDIS_SENTINELS")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--sentinel"));
}
