//! `shares tail`, `blocks ls`, `stats` and `services ls` end to end: a real `sluice jobmanager` on
//! its simulated chain and a real `sluice stratum` on a real Redis, and a miner over TCP that mines
//! real shares (double SHA-256 of the header it builds from `mining.notify`). What sluicectl prints
//! is checked against what the miner submitted and was answered.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use support::{eventually, sluicectl, Miner, RedisServer, SluiceProcess, TempDir};

const PREFIX: &str = "e2e";
const WORKER: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080.rig1";
/// Enough accepted shares to check; the miner goes on until one of them is a block.
const ACCEPTED: usize = 20;
const DUPLICATES: usize = 2;
const GIVE_UP_AFTER: usize = 2000;

fn strings(v: &Value, field: &str) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x[field].as_str().unwrap_or("").to_owned())
        .collect()
}

#[test]
fn shares_blocks_and_stats_come_from_a_real_engine() {
    let redis = RedisServer::start();
    let _jm = SluiceProcess::jobmanager_with(
        &redis,
        PREFIX,
        "jm-a",
        &["--block-interval", "0", "--network-difficulty", "0.00001"],
    );
    let dir = TempDir::new("spool");
    let config = format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\nstart_difficulty = 0.000001\n\
         min_difficulty = 0.000001\n\n[vardiff]\nenabled = false\n\n\
         [share_log]\nbatch_interval_ms = 50\nspool_path = {:?}\n",
        dir.path().join("spool").to_str().unwrap()
    );
    let engine = SluiceProcess::stratum_with_config(&redis, PREFIX, "engine-1", &config);
    let addr = engine.field("stratum");
    assert!(addr.starts_with("127.0.0.1:"), "{}", engine.ready);

    // Mine: ACCEPTED shares, DUPLICATES resubmitted, and on until one share is a block.
    let mut miner = Miner::connect(&addr);
    miner.handshake_as(WORKER);
    let mut accepted: BTreeSet<String> = BTreeSet::new();
    let mut blocks: Vec<String> = Vec::new();
    let mut duplicates = 0;
    let mut submitted = 0;
    while accepted.len() < ACCEPTED || blocks.is_empty() || duplicates < DUPLICATES {
        assert!(
            submitted < GIVE_UP_AFTER,
            "{submitted} shares submitted ({} accepted) and none was a block at network \
             difficulty 0.00001: is the jobmanager's --network-difficulty applied?",
            accepted.len()
        );
        let share = miner.find_share(miner.difficulty, true, None);
        let (hash, block) = (share.hash.to_string(), miner.is_block(&share));
        let r = miner.submit_as(WORKER, &share);
        submitted += 1;
        assert_eq!(
            r["result"], true,
            "share {hash} (block: {block}) was not accepted: {r}"
        );
        assert!(accepted.insert(hash.clone()), "hash mined twice");
        if block {
            blocks.push(hash);
            let old = miner.work.as_ref().unwrap().prev_hash;
            assert!(
                miner.wait_for_new_block(old, Duration::from_secs(10)),
                "no job on the new block within 10 s of finding one; received {:?}",
                miner.recent()
            );
        } else if duplicates < DUPLICATES && accepted.len() >= 5 * (duplicates + 1) {
            let r = miner.submit_as(WORKER, &share);
            submitted += 1;
            assert_eq!(r["error"][0], 22, "a resubmitted share: {r}");
            duplicates += 1;
        }
    }
    let accepted_count = accepted.len();

    // The share log: every accepted hash, the two duplicates, nothing else.
    let tail = || {
        sluicectl(
            &redis,
            PREFIX,
            &["shares", "tail", "--count", "100", "--json"],
        )
        .json()
    };
    let want = accepted_count + DUPLICATES;
    let doc = eventually(Duration::from_secs(5), || {
        let doc = tail();
        (doc["shares"].as_array().unwrap().len() >= want).then_some(doc)
    })
    .unwrap_or_else(|| {
        panic!(
            "the share log did not reach {want} shares in 5 s: {}",
            tail()
        )
    });
    let shares = doc["shares"].as_array().unwrap();
    assert_eq!(shares.len(), want, "{doc}");
    for s in shares {
        assert_eq!(s["engine"], "engine-1", "{s}");
        assert_eq!(s["worker"], WORKER, "{s}");
    }
    let logged: BTreeSet<String> = shares
        .iter()
        .filter(|s| s["verdict"] == "accepted")
        .map(|s| s["hash"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(logged, accepted, "accepted hashes in the share log");
    let rejected: Vec<&Value> = shares
        .iter()
        .filter(|s| s["verdict"] == "rejected")
        .collect();
    assert_eq!(rejected.len(), DUPLICATES, "{doc}");
    for s in &rejected {
        assert_eq!(s["reason"], "duplicate", "{s}");
    }
    let logged_blocks: BTreeSet<String> = shares
        .iter()
        .filter(|s| s["block"] == true)
        .map(|s| s["hash"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        logged_blocks,
        blocks.iter().cloned().collect(),
        "block shares in the share log"
    );

    let doc = sluicectl(
        &redis,
        PREFIX,
        &["shares", "tail", "--verdict", "rejected", "--json"],
    )
    .json();
    let only = doc["shares"].as_array().unwrap();
    assert_eq!(only.len(), DUPLICATES, "{doc}");
    assert!(only.iter().all(|s| s["reason"] == "duplicate"), "{doc}");

    // The block log: each block the miner found, accepted by the simulated chain. The jobmanager
    // records it after the chain answers, so allow it a moment.
    let ls = || sluicectl(&redis, PREFIX, &["blocks", "ls", "--json"]).json();
    let doc = eventually(Duration::from_secs(5), || {
        let doc = ls();
        let listed = strings(&doc["blocks"], "hash");
        blocks.iter().all(|b| listed.contains(b)).then_some(doc)
    })
    .unwrap_or_else(|| panic!("blocks {blocks:?} were not all listed in 5 s: {}", ls()));
    for hash in &blocks {
        let b = doc["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["hash"] == hash.as_str())
            .unwrap();
        assert_eq!(b["accepted"], true, "{b}");
        assert_eq!(b["worker"], WORKER, "{b}");
        assert_eq!(
            b["results"],
            json!([{"node": "simulated chain", "result": "accepted", "reason": null}]),
            "{b}"
        );
    }

    // The rollups: the worker's accepted and rejected counts.
    let doc = sluicectl(&redis, PREFIX, &["stats", "--json"]).json();
    let row = doc["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["worker"] == WORKER)
        .unwrap_or_else(|| panic!("{WORKER} is not in stats: {doc}"))
        .clone();
    assert_eq!(row["accepted"], accepted_count, "{doc}");
    assert_eq!(row["rejected"], DUPLICATES, "{doc}");
    assert_eq!(doc["rejects_by_reason"]["duplicate"], DUPLICATES, "{doc}");

    // The registry: the engine that served the miner.
    let doc = sluicectl(&redis, PREFIX, &["services", "ls", "--json"]).json();
    let svc = doc["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "engine-1")
        .unwrap_or_else(|| panic!("engine-1 is not registered: {doc}"))
        .clone();
    assert_eq!(svc["role"], "stratum", "{svc}");
}
