//! Found blocks in a fleet are never lost: real `sluice jobmanager` and `sluice stratum` processes on
//! a real Redis, real regtest nodes, and the test miner.
//!
//! What is proved here, through Redis, the nodes' RPC and the Stratum wire only:
//! - a leader killed after it took a block and before the nodes answered leaves the block to the
//!   next leader, which submits and records it;
//! - a block found while Redis is frozen survives the engine's SIGKILL in its held-blocks file and
//!   reaches the leader from the next engine started on that file;
//! - a stratum engine with nodes of its own gets a block to them while Redis is frozen, and the
//!   leader's later submission is recorded harmlessly;
//! - the cursor over `P:blocks:found` never moves backwards.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::engine::tempdir::TempDir;
use support::engine::{eventually, EngineProcess};
use support::fleet::{self, role_with, wait_for_leader, PREFIX};
use support::miner::Miner;
use support::node::{start_pair, RegtestNode};
use support::redis_server::RedisServer;

type Entries = Vec<(String, Vec<(String, String)>)>;

/// Every entry of a stream (its key): its id and its fields.
fn stream(con: &mut redis::Connection, key: &str) -> Vec<(String, HashMap<String, String>)> {
    let entries: Entries = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query(con)
        .unwrap_or_default();
    entries
        .into_iter()
        .map(|(id, fields)| (id, fields.into_iter().collect()))
        .collect()
}

/// The `P:blocks:found` entries of the block `hash`.
fn found(con: &mut redis::Connection, hash: &str) -> Vec<(String, HashMap<String, String>)> {
    stream(con, &sluice_layout::Keys::new(PREFIX).blocks_found())
        .into_iter()
        .filter(|(_, f)| f.get("hash").is_some_and(|h| h == hash))
        .collect()
}

/// The `P:blocks` records of the block `hash`.
fn recorded(con: &mut redis::Connection, hash: &str) -> Vec<HashMap<String, String>> {
    stream(con, &sluice_layout::Keys::new(PREFIX).blocks())
        .into_iter()
        .map(|(_, f)| f)
        .filter(|f| f.get("hash").is_some_and(|h| h == hash))
        .collect()
}

fn cursor(con: &mut redis::Connection) -> Option<String> {
    redis::cmd("GET")
        .arg(sluice_layout::Keys::new(PREFIX).blocks_cursor())
        .query(con)
        .unwrap()
}

/// TOML for a role mining on `nodes` (in priority order), paying an address of the first node's
/// wallet, with `jobs` added to its `[jobs]` section.
fn on_nodes(nodes: &[&RegtestNode], jobs: &str) -> String {
    let payout = nodes[0].cli_ok(&["getnewaddress"]);
    let mut toml = format!(
        "[pool]\nnetwork = \"regtest\"\npayout_address = \"{}\"\n[jobs]\n{jobs}\n",
        payout.as_str().unwrap()
    );
    for (i, node) in nodes.iter().enumerate() {
        toml.push_str(&format!(
            "[[nodes]]\nurl = \"{}\"\nrpc_user = \"{}\"\nrpc_password = \"{}\"\npriority = {i}\n",
            node.rpc_url(),
            node.user(),
            node.password()
        ));
    }
    toml
}

fn miner_on(engine: &EngineProcess) -> Miner {
    let mut miner = Miner::connect(engine.addr());
    miner.handshake();
    miner
}

fn best(node: &RegtestNode) -> String {
    node.cli_ok(&["getbestblockhash"])
        .as_str()
        .unwrap()
        .to_owned()
}

/// A record of the block says some node took it (or had it), and every answer is one of those.
fn assert_taken(record: &HashMap<String, String>) {
    assert_eq!(record["accepted"], "1", "{record:?}");
    let results: serde_json::Value = serde_json::from_str(&record["results"]).unwrap();
    let results = results.as_array().unwrap();
    assert!(!results.is_empty(), "{record:?}");
    assert!(
        results
            .iter()
            .all(|r| r["result"] == "accepted" || r["result"] == "duplicate"),
        "{record:?}"
    );
}

#[test]
fn a_leader_killed_before_the_nodes_answered_leaves_the_block_to_the_next_leader() {
    let (node1, _node2) = start_pair(false);
    let redis = RedisServer::start();
    let mut con = redis.connection();
    // One node, and a call timeout longer than the test: the frozen node holds the submission.
    let toml = on_nodes(&[&node1], "rpc_timeout_secs = 60.0\n");
    let mut jm_a = role_with(&redis, "jobmanager", "jm-a", &toml, &[]);
    assert!(wait_for_leader(&mut con).starts_with("jm-a|"));
    let jm_b = role_with(&redis, "jobmanager", "jm-b", &toml, &[]);
    let engine = fleet::stratum(&redis, "engine-1");
    let mut miner = miner_on(&engine);

    node1.freeze();
    // On regtest every share at the test difficulty is a block.
    let share = miner.mine_until_block();
    assert_eq!(miner.submit(&share)["result"], true);
    let hash = share.hash.to_string();
    let taken = eventually(Duration::from_secs(10), || {
        let entry = found(&mut con, &hash).into_iter().next()?;
        jm_a.log()
            .lines()
            .any(|l| l.contains("from the fleet") && l.contains(&hash))
            .then_some(entry)
    });
    let Some((entry, _)) = taken else {
        node1.thaw();
        panic!(
            "the leader takes the block {hash}\n--- jm-a:\n{}\n--- engine:\n{}",
            jm_a.log(),
            engine.log()
        );
    };
    // The leader dies while its submitblock waits on the frozen node.
    jm_a.kill();
    node1.thaw();

    let on_node = eventually(Duration::from_secs(30), || {
        node1.cli(&["getblockheader", &hash]).ok()
    });
    assert!(
        on_node.is_some(),
        "block {hash} reaches the node; its tip is {}\n--- jm-b:\n{}",
        best(&node1),
        jm_b.log()
    );
    let records = eventually(Duration::from_secs(30), || {
        Some(recorded(&mut con, &hash)).filter(|r| !r.is_empty())
    })
    .unwrap_or_else(|| {
        panic!(
            "the new leader records block {hash} in {PREFIX}:blocks\n--- jm-b:\n{}",
            jm_b.log()
        )
    });
    assert_taken(&records[0]);
    assert!(
        jm_b.log()
            .lines()
            .any(|l| l.contains("from the fleet") && l.contains(&hash)),
        "jm-b submitted the block itself\n{}",
        jm_b.log()
    );
    // The cursor is past the block's entry now, and only because its outcome is on record.
    let at = eventually(Duration::from_secs(5), || {
        cursor(&mut con).filter(|c| *c == entry)
    });
    assert_eq!(at.as_deref(), Some(entry.as_str()));
}

/// The blocks in a held-blocks file, by hash, with their hex.
fn held_in(path: &std::path::Path) -> HashMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| {
            (
                v["hash"].as_str().unwrap_or("").to_owned(),
                v["block"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_block_held_while_redis_is_frozen_survives_the_engine_and_reaches_the_leader() {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    let jm = fleet::jobmanager(&redis, "jm-a");
    wait_for_leader(&mut con);
    let dir = TempDir::new("held");
    let held = dir.path().join("held.blocks");
    let toml = format!("[blocks]\nheld_path = \"{}\"\n", held.display());
    let mut e1 = role_with(&redis, "stratum", "engine-1", &toml, &[]);
    let mut miner = miner_on(&e1);
    let share = miner.mine_until_block();

    redis.pause();
    assert_eq!(miner.submit(&share)["result"], true);
    let hash = share.hash.to_string();
    let hex = eventually(Duration::from_secs(10), || {
        let hex = held_in(&held).remove(&hash)?;
        // Held, and logged in full at error level for an operator to submit by hand.
        e1.log()
            .lines()
            .any(|l| l.contains("ERROR") && l.contains(&hex))
            .then_some(hex)
    });
    let Some(hex) = hex else {
        redis.resume();
        panic!(
            "block {hash} in {} and logged in full\n{}",
            held.display(),
            e1.log()
        );
    };
    assert!(hex.len() > 160, "the whole block, not just its header");
    e1.kill();
    redis.resume();
    assert!(
        held_in(&held).contains_key(&hash),
        "the file outlives the engine"
    );

    let e2 = role_with(&redis, "stratum", "engine-2", &toml, &[]);
    let sent = eventually(Duration::from_secs(10), || {
        found(&mut con, &hash)
            .into_iter()
            .find(|(_, f)| f.get("engine").is_some_and(|e| e == "engine-2"))
    });
    assert!(
        sent.is_some(),
        "engine-2 hands the held block {hash} to Redis\n{}",
        e2.log()
    );
    assert_eq!(sent.unwrap().1["block"], hex);
    let records = eventually(Duration::from_secs(10), || {
        Some(recorded(&mut con, &hash)).filter(|r| !r.is_empty())
    })
    .unwrap_or_else(|| panic!("the leader records block {hash}\n{}", jm.log()));
    assert!(records.iter().any(|r| r["accepted"] == "1"), "{records:?}");
    assert!(
        jm.log()
            .lines()
            .any(|l| l.contains(&hash) && l.contains("engine=engine-2")),
        "the leader took engine-2's entry\n{}",
        jm.log()
    );
    // Handed over: the file no longer holds it.
    let released = eventually(Duration::from_secs(5), || {
        (!held_in(&held).contains_key(&hash)).then_some(())
    });
    assert!(released.is_some(), "{}", e2.log());
}

#[test]
fn a_stratum_engine_with_nodes_submits_directly_while_redis_is_frozen() {
    let (node1, node2) = start_pair(false);
    let redis = RedisServer::start();
    let mut con = redis.connection();
    let jm = role_with(&redis, "jobmanager", "jm-a", &on_nodes(&[&node1], ""), &[]);
    wait_for_leader(&mut con);
    let engine = role_with(
        &redis,
        "stratum",
        "engine-1",
        &on_nodes(&[&node1, &node2], ""),
        &[],
    );
    let mut miner = miner_on(&engine);
    let share = miner.mine_until_block();

    redis.pause();
    assert_eq!(miner.submit(&share)["result"], true);
    let hash = share.hash.to_string();
    // Redis stays frozen all this while: only the engine's own submission can get it there, and
    // the engine logs each node's outcome.
    let outcomes = |engine: &EngineProcess| -> Vec<String> {
        engine
            .log()
            .lines()
            .filter(|l| l.contains("block submitted") && l.contains(&hash))
            .map(str::to_owned)
            .collect()
    };
    let direct = eventually(Duration::from_secs(10), || {
        (best(&node1) == hash && outcomes(&engine).len() == 2).then_some(())
    });
    redis.resume();
    assert!(
        direct.is_some(),
        "block {hash} reaches the node while Redis is frozen, both outcomes logged; node1 is at {}\n{}",
        best(&node1),
        engine.log()
    );

    // Once Redis answers, the leader submits it too: the node already has it.
    let records = eventually(Duration::from_secs(20), || {
        Some(recorded(&mut con, &hash)).filter(|r| !r.is_empty())
    })
    .unwrap_or_else(|| panic!("the leader records block {hash}\n{}", jm.log()));
    assert_taken(&records[0]);
    let results: serde_json::Value = serde_json::from_str(&records[0]["results"]).unwrap();
    assert_eq!(results[0]["result"], "duplicate", "{results}");
}

#[test]
fn the_cursor_over_found_blocks_only_moves_forward() {
    use sluice::chain::BlockRecord;
    use sluice::node::client::SubmitResult;
    use sluice::plane::blocks::{advance_cursor, record};

    let redis = RedisServer::start();
    let mut con = redis.connection();
    let keys = sluice::plane::Keys::new(PREFIX);
    assert!(advance_cursor(&mut con, &keys, "5-1").unwrap());
    for behind in ["5-1", "5-0", "4-9", "0-0"] {
        assert!(
            !advance_cursor(&mut con, &keys, behind).unwrap(),
            "{behind}"
        );
    }
    assert!(advance_cursor(&mut con, &keys, "5-2").unwrap());
    // Numbers, not text: 10 is past 9.
    assert!(advance_cursor(&mut con, &keys, "9-0").unwrap());
    assert!(advance_cursor(&mut con, &keys, "10-0").unwrap());
    assert_eq!(cursor(&mut con).as_deref(), Some("10-0"));
    // What is not a stream id never becomes the cursor.
    assert!(!advance_cursor(&mut con, &keys, "11").unwrap());
    assert!(!advance_cursor(&mut con, &keys, "x-1").unwrap());
    assert_eq!(cursor(&mut con).as_deref(), Some("10-0"));

    // A record moves the cursor with it, and only forward; the record is written either way.
    let rec = |entry: &str| BlockRecord {
        hash: format!("{:064}", entry.len()).parse().unwrap(),
        height: 7,
        worker: "w".into(),
        found_ms: 1,
        results: vec![("n".into(), SubmitResult::Duplicate)],
        entry: Some(entry.into()),
    };
    record(&mut con, &keys, &rec("12-3")).unwrap();
    assert_eq!(cursor(&mut con).as_deref(), Some("12-3"));
    record(&mut con, &keys, &rec("11-0")).unwrap();
    assert_eq!(cursor(&mut con).as_deref(), Some("12-3"));
    assert_eq!(
        stream(&mut con, &sluice_layout::Keys::new(PREFIX).blocks()).len(),
        2
    );
    assert_eq!(
        stream(&mut con, &sluice_layout::Keys::new(PREFIX).blocks())[0].1["accepted"],
        "1"
    );

    // A garbled cursor (a hostile writer) is replaced by the next real one.
    redis::cmd("SET")
        .arg(sluice_layout::Keys::new(PREFIX).blocks_cursor())
        .arg("garbage")
        .query::<()>(&mut con)
        .unwrap();
    assert!(advance_cursor(&mut con, &keys, "1-0").unwrap());
    assert_eq!(cursor(&mut con).as_deref(), Some("1-0"));
}
