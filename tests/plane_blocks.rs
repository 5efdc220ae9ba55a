//! Found blocks through the Redis control plane, with real processes (a `redis-server`, a
//! `sluice jobmanager`, a `sluice stratum` engine, a test miner): a block found on an engine
//! reaches the leader and is recorded with its result in `P:blocks`.

mod support;

use std::time::Duration;

use support::engine::eventually;
use support::fleet::{jobmanager, leader, stratum, PREFIX};
use support::miner::Miner;
use support::redis_server::RedisServer;

#[test]
fn a_block_found_on_an_engine_is_submitted_by_the_leader_and_recorded() {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    let _jm = jobmanager(&redis, "jm-a");
    eventually(Duration::from_secs(5), || leader(&mut con)).expect("a leader");
    let engine = stratum(&redis, "engine-1");
    let mut miner = Miner::connect(engine.addr());
    miner.handshake();
    let share = miner.mine_until_block();
    assert_eq!(miner.submit(&share)["result"], true);
    let hash = share.hash.to_string();
    type Entries = Vec<(String, Vec<(String, String)>)>;
    let entry = eventually(Duration::from_secs(10), || {
        let entries: Entries = redis::cmd("XRANGE")
            .arg(sluice_layout::Keys::new(PREFIX).blocks())
            .arg("-")
            .arg("+")
            .query(&mut con)
            .ok()?;
        entries
            .into_iter()
            .map(|(_, fields)| fields)
            .find(|f| f.iter().any(|(k, v)| k == "hash" && v == &hash))
    })
    .unwrap_or_else(|| panic!("block {hash} recorded in {PREFIX}:blocks"));
    let field = |name: &str| {
        entry
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(field("accepted"), "1", "{entry:?}");
    let results: serde_json::Value = serde_json::from_str(&field("results")).unwrap();
    assert_eq!(results[0]["node"], "simulated chain");
    assert_eq!(results[0]["result"], "accepted");
    // The leader's chain moved on: clean work reaches the miner.
    let moved = eventually(Duration::from_secs(5), || {
        let n = miner.wait_for("mining.notify", Duration::from_millis(100))?;
        (n["params"][8] == true).then_some(())
    });
    assert!(moved.is_some());
}
