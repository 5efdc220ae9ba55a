//! The layout on Redis Cluster. A fleet's keys are `{P}:name`, so they all hash to one slot, and
//! every key a script touches is passed in its `KEYS`. Proven two ways:
//! - **On a real cluster**: a `redis-server --cluster-enabled yes` node holding every slot runs a
//!   fleet (a jobmanager, an engine, a miner that subscribes, gets work, submits shares and a
//!   block, then resumes its session; sluicectl drains and undrains the engine, pauses and
//!   resumes the jobmanager, sets and removes a policy: every script of the engine and of
//!   sluicectl runs). The shares are in the stream, the block is recorded, and Redis counted no
//!   error of a cluster (`INFO errorstats`: no `CROSSSLOT`, `MOVED`, `ASK`, nor any error at all
//!   but `NOSCRIPT`, which a script's first `EVALSHA` gets before it is loaded).
//! - **On the sources**: every Lua script of the engine's plane and of sluicectl names its keys
//!   through `KEYS` (Redis does not check that a script declared a key in the same slot, so the
//!   cluster alone would not catch a key built inside a script).

mod support;

use std::process::Command;
use std::time::Duration;

use sluice_testkit::{eventually, sluicectl_binary};
use support::engine::EngineProcess;
use support::fleet::{jobmanager, keys, leader, shares_in_stream, stratum, PREFIX};
use support::miner::{error_code, Miner, WORKER};
use support::redis_server::RedisServer;

/// One cluster node that serves all 16,384 slots, once the cluster says it is ok.
fn cluster_node() -> RedisServer {
    let redis = RedisServer::start_with(&[
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
    ]);
    let mut con = redis.connection();
    redis::cmd("CLUSTER")
        .arg("ADDSLOTSRANGE")
        .arg(0)
        .arg(16383)
        .query::<()>(&mut con)
        .expect("CLUSTER ADDSLOTSRANGE (Redis 7)");
    eventually(Duration::from_secs(30), || {
        let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut con).ok()?;
        info.contains("cluster_state:ok").then_some(())
    })
    .expect("the cluster is ok");
    redis
}

/// `sluicectl --redis URL --prefix PREFIX ARGS...`: (exit code, stdout and stderr).
fn sluicectl(redis: &RedisServer, args: &[&str]) -> (i32, String) {
    let out = Command::new(sluicectl_binary())
        .args(["--redis", &redis.url(), "--prefix", PREFIX])
        .args(args)
        .env_remove("SLUICE_REDIS")
        .env_remove("SLUICE_PREFIX")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Redis's error counts by prefix (`errorstat_CROSSSLOT:count=1` ...).
fn error_stats(con: &mut redis::Connection) -> Vec<String> {
    let info: String = redis::cmd("INFO").arg("errorstats").query(con).unwrap();
    info.lines()
        .filter(|l| l.starts_with("errorstat_"))
        .map(str::to_owned)
        .collect()
}

fn logs(engine: &EngineProcess, jm: &EngineProcess) -> String {
    format!("engine:\n{}\njobmanager:\n{}", engine.log(), jm.log())
}

#[test]
fn a_fleet_runs_on_redis_cluster_with_no_cross_slot_error() {
    let redis = cluster_node();
    let mut con = redis.connection();
    let slot: u16 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(keys().shares())
        .query(&mut con)
        .unwrap();
    for key in [
        keys().layout(),
        keys().slot(7),
        keys().rollup(1),
        keys().jobs_channel(),
    ] {
        let other: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(&key)
            .query(&mut con)
            .unwrap();
        assert_eq!(other, slot, "{key} is in the fleet's slot");
    }

    let jm = jobmanager(&redis, "jm-1");
    eventually(Duration::from_secs(15), || leader(&mut con)).unwrap_or_else(|| {
        let stats: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut con)
            .unwrap();
        panic!(
            "a jobmanager leads\n{:?}\n{stats}\n{}",
            error_stats(&mut con),
            jm.log()
        )
    });
    let engine = stratum(&redis, "engine-1");

    // Work, accepted shares and a block.
    let mut miner = Miner::connect(engine.addr());
    let subscribed = miner.subscribe();
    let session = subscribed["result"][0][0][1].as_str().unwrap().to_owned();
    assert_eq!(miner.authorize(WORKER, "x")["result"], true);
    miner
        .wait_for("mining.notify", Duration::from_secs(10))
        .expect("work from the leader, through pub/sub");
    // Shares until one is a block. A job the leader published again since the miner's last
    // notify may make one stale (21): the miner reads the new job with that answer.
    let mut submitted = 0;
    loop {
        let share = miner.find_share(miner.difficulty, true, None);
        let block = miner.is_block(&share);
        let answer = miner.submit(&share);
        if answer["result"] == true {
            submitted += 1;
            if block {
                break;
            }
        } else {
            assert_eq!(error_code(&answer), 21, "{answer}\n{}", engine.log());
        }
    }
    assert!(submitted >= 1);
    let extranonce1 = miner.extranonce1.clone();
    let accepted = eventually(Duration::from_secs(15), || {
        let n = shares_in_stream(&mut con)
            .iter()
            .filter(|s| s["verdict"] == "accepted")
            .count();
        (n >= submitted).then_some(n)
    });
    assert!(
        accepted.is_some(),
        "the shares are in the stream\n{}",
        logs(&engine, &jm)
    );
    let recorded = eventually(Duration::from_secs(15), || {
        let n: u64 = redis::cmd("XLEN")
            .arg(keys().blocks())
            .query(&mut con)
            .ok()?;
        (n >= 1).then_some(n)
    });
    assert!(
        recorded.is_some(),
        "the leader records the block\n{}",
        logs(&engine, &jm)
    );

    // A session resume: released by the engine, claimed again with its extranonce1.
    drop(miner);
    eventually(Duration::from_secs(10), || {
        let v: Option<String> = redis::cmd("HGET")
            .arg(keys().session(&session))
            .arg(sluice_layout::session::field::RELEASED)
            .query(&mut con)
            .ok()?;
        (v.as_deref() == Some(sluice_layout::session::RELEASED)).then_some(())
    })
    .unwrap_or_else(|| panic!("the session is released\n{}", logs(&engine, &jm)));
    let mut miner = Miner::connect(engine.addr());
    miner.subscribe_resuming(&session);
    assert_eq!(miner.extranonce1, extranonce1, "resumed\n{}", engine.log());
    miner
        .wait_for("mining.notify", Duration::from_secs(10))
        .expect("work after the resume");
    miner.find_share(miner.difficulty, true, None);
    let share = miner.find_share(miner.difficulty, true, None);
    assert_eq!(miner.submit(&share)["result"], true);

    // sluicectl's writes and scripts.
    let (code, out) = sluicectl(&redis, &["engine", "drain", "engine-1"]);
    assert_eq!(code, 0, "{out}\n{}", engine.log());
    assert!(
        miner
            .wait_for("client.reconnect", Duration::from_secs(10))
            .is_some(),
        "the drained engine sends its miner away"
    );
    let (code, out) = sluicectl(&redis, &["engine", "undrain", "engine-1"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = sluicectl(
        &redis,
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
    assert_eq!(code, 0, "{out}");
    let (code, out) = sluicectl(&redis, &["policy", "rm", "asic"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = sluicectl(&redis, &["jobmanager", "pause", "jm-1", "--timeout", "10"]);
    assert_eq!(code, 0, "{out}\n{}", jm.log());
    let (code, out) = sluicectl(&redis, &["jobmanager", "resume", "jm-1"]);
    assert_eq!(code, 0, "{out}\n{}", jm.log());
    for args in [
        &["services", "ls"][..],
        &["shares", "tail"],
        &["blocks", "ls"],
        &["stats"],
        &["session", "ls"],
    ] {
        let (code, out) = sluicectl(&redis, args);
        assert_eq!(code, 0, "sluicectl {args:?}: {out}");
    }
    // Slot renewals and registry heartbeats (every third of the 1 s service TTL) run meanwhile.
    std::thread::sleep(Duration::from_millis(1500));

    // A refused call (CROSSSLOT, MOVED...) counts as rejected against its command; a script's
    // error as failed. Only EVALSHA may fail, with NOSCRIPT, before the client loads the script.
    let errors = error_stats(&mut con);
    let noscript = errors
        .iter()
        .find_map(|e| e.strip_prefix("errorstat_NOSCRIPT:count="))
        .map_or(0, |n| n.parse::<u64>().unwrap());
    let calls: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut con)
        .unwrap();
    for line in calls.lines().filter(|l| l.starts_with("cmdstat_")) {
        let count = |name: &str| -> u64 {
            line.split(',')
                .find_map(|f| f.strip_prefix(name))
                .map_or(0, |n| n.parse().unwrap())
        };
        let failed_ok = if line.starts_with("cmdstat_evalsha:") {
            noscript
        } else {
            0
        };
        assert!(
            count("rejected_calls=") == 0 && count("failed_calls=") == failed_ok,
            "Redis Cluster refused or failed calls: {line}\n{errors:?}\n{}",
            logs(&engine, &jm)
        );
    }
    // Nothing but NOSCRIPT, and ERR: the client's `CLIENT SETINFO` on connecting, a subcommand
    // Redis before 7.2 does not know (counted in no command's stats, so it is told apart here).
    let unexpected: Vec<&String> = errors
        .iter()
        .filter(|e| !e.starts_with("errorstat_NOSCRIPT:") && !e.starts_with("errorstat_ERR:"))
        .collect();
    assert!(
        unexpected.is_empty(),
        "Redis Cluster refused calls: {errors:?}\n{}",
        logs(&engine, &jm)
    );
}

/// `127.0.0.1:PORT` of a server.
fn host_port(redis: &RedisServer) -> String {
    redis.url().trim_start_matches("redis://").to_owned()
}

/// Three masters that share the slots, made a cluster by `redis-cli --cluster create`.
fn three_shards() -> Vec<RedisServer> {
    let nodes: Vec<RedisServer> = (0..3)
        .map(|_| {
            RedisServer::start_with(&[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ])
        })
        .collect();
    let out = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(nodes.iter().map(host_port))
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("redis-cli");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for node in &nodes {
        let mut con = node.connection();
        eventually(Duration::from_secs(30), || {
            let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut con).ok()?;
            info.contains("cluster_state:ok").then_some(())
        })
        .expect("the cluster is ok");
    }
    nodes
}

/// On a cluster of three shards, a fleet pointed at the master of its slot runs there alone:
/// its keys are all on that shard, the other two hold none, and no call is refused.
#[test]
fn on_three_shards_a_fleet_lives_on_the_shard_of_its_slot() {
    let nodes = three_shards();
    let slot: u16 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(keys().shares())
        .query(&mut nodes[0].connection())
        .unwrap();
    // `CLUSTER NODES`: the node's own line ("myself") ends with the slot ranges it serves.
    let serves = |node: &RedisServer| -> bool {
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query(&mut node.connection())
            .unwrap();
        nodes.lines().filter(|l| l.contains("myself")).any(|l| {
            l.split_whitespace().skip(8).any(|range| {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                a.parse::<u16>().is_ok_and(|a| a <= slot)
                    && b.parse::<u16>().is_ok_and(|b| slot <= b)
            })
        })
    };
    let home = nodes
        .iter()
        .position(serves)
        .expect("a master serves the fleet's slot");
    let redis = &nodes[home];
    let mut con = redis.connection();

    let jm = jobmanager(redis, "jm-1");
    eventually(Duration::from_secs(15), || leader(&mut con))
        .unwrap_or_else(|| panic!("a jobmanager leads\n{}", jm.log()));
    let engine = stratum(redis, "engine-1");
    let mut miner = Miner::connect(engine.addr());
    miner.handshake();
    let share = miner.find_share(miner.difficulty, true, None);
    assert_eq!(miner.submit(&share)["result"], true);
    let logged = eventually(Duration::from_secs(15), || {
        (!shares_in_stream(&mut con).is_empty()).then_some(())
    });
    assert!(
        logged.is_some(),
        "the share is in the stream\n{}",
        logs(&engine, &jm)
    );
    let (code, out) = sluicectl(redis, &["services", "ls"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("engine-1") && out.contains("jm-1"), "{out}");

    for (n, node) in nodes.iter().enumerate() {
        let mut con = node.connection();
        let keys: u64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
        if n == home {
            assert!(keys > 5, "the fleet's shard holds its keys: {keys}");
        } else {
            assert_eq!(keys, 0, "another shard holds none");
        }
        let refused: Vec<String> = error_stats(&mut con)
            .into_iter()
            .filter(|e| !e.starts_with("errorstat_NOSCRIPT:") && !e.starts_with("errorstat_ERR:"))
            .collect();
        // The one redirect allowed: the layout check's look for a layout-3 fleet's key, which
        // lives in another slot (a redirect there means no such fleet).
        assert!(
            refused.iter().all(|e| e == "errorstat_MOVED:count=1"),
            "node {n}: {refused:?}\n{}",
            logs(&engine, &jm)
        );
    }
}

/// The Lua scripts in a source file: the raw strings that call Redis.
fn scripts(source: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = source;
    while let Some(start) = rest.find("r#\"") {
        let body = &rest[start + 3..];
        let Some(end) = body.find("\"#") else { break };
        if body[..end].contains("redis.call") {
            found.push(body[..end].to_owned());
        }
        rest = &body[end + 2..];
    }
    found
}

/// The Lua helpers whose first parameter is `key` (a script may be a prelude and a body, in two
/// strings of one file: the caller gathers them over the file).
fn key_helpers(script: &str) -> Vec<String> {
    script
        .match_indices("local function ")
        .filter_map(|(at, _)| {
            let decl = &script[at + "local function ".len()..];
            let (name, params) = decl.split_once('(')?;
            params.starts_with("key").then(|| name.to_owned())
        })
        .collect()
}

/// Why a script builds or names a key other than through `KEYS`, if it does; `helpers` must be
/// called with a key from KEYS.
fn undeclared_key(script: &str, helpers: &[String]) -> Option<String> {
    for (at, _) in script.match_indices("redis.call(") {
        let call = &script[at + "redis.call(".len()..];
        if call.starts_with("unpack(args)") {
            // The one call from a table: it must be built on a declared key.
            if !script.contains("{'XADD', KEYS[") {
                return Some(format!("redis.call(unpack(args)) without KEYS: {call:.60}"));
            }
            continue;
        }
        let Some((_command, args)) = call.split_once(',') else {
            continue;
        };
        let first = args.trim_start();
        if !(first.starts_with("KEYS[") || first.starts_with("key,") || first.starts_with("key)")) {
            return Some(format!("a key not from KEYS: redis.call({call:.60}"));
        }
    }
    for helper in helpers {
        for (at, _) in script.match_indices(&format!("{helper}(")) {
            let before = &script[..at];
            if before.ends_with("function ") {
                continue;
            }
            let arg = &script[at + helper.len() + 1..];
            if !arg.starts_with("KEYS[") {
                return Some(format!(
                    "{helper} called with a key not from KEYS: {arg:.60}"
                ));
            }
        }
    }
    if script.contains("local key = ") && !script.contains("local key = KEYS[") {
        return Some("a local key not from KEYS".to_owned());
    }
    // The old way: a prefix from ARGV glued to a key name (`ARGV[1] .. ':slot:' .. n`).
    for literal in script.split('\'').skip(1).step_by(2) {
        if literal.starts_with(':') || literal.contains('{') {
            return Some(format!("a key fragment {literal:?}"));
        }
    }
    None
}

#[test]
fn every_key_a_script_touches_is_declared_in_keys() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["engine/src/plane", "ctl/src", "ctl/src/cmd"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let mut checked = 0;
    for path in files {
        let source = std::fs::read_to_string(&path).unwrap();
        let scripts = scripts(&source);
        let helpers: Vec<String> = scripts.iter().flat_map(|s| key_helpers(s)).collect();
        for script in &scripts {
            checked += 1;
            if let Some(why) = undeclared_key(script, &helpers) {
                panic!("{}: {why}\n{script}", path.display());
            }
        }
    }
    // sessions (6), jobs, blocks (2), share log, lease (2), sluicectl's pause and policy set.
    assert!(
        checked >= 13,
        "only {checked} scripts found: has the scan lost them?"
    );
    // The guard itself catches the old forms.
    for old in [
        "redis.call('SET', ARGV[1] .. ':slot:' .. n, 'x')",
        "local key = ARGV[3] .. ':roll:' .. ARGV[i]\nredis.call('HGET', key, 'f')",
        "local function keep(key, ttl) redis.call('PTTL', key) end\nkeep(ARGV[1], 1)",
    ] {
        assert!(undeclared_key(old, &key_helpers(old)).is_some(), "{old}");
    }
    assert_eq!(
        undeclared_key("redis.call('HSET', KEYS[1], 'pause:' .. ARGV[1], '1')", &[]),
        None
    );
}
