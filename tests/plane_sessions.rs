//! Sessions across engines through the Redis control plane, with real processes (a
//! `redis-server`, a `sluice jobmanager`, two `sluice stratum` engines, a test miner): a miner
//! resumes its session on another engine.

mod support;

use std::time::Duration;

use support::engine::eventually;
use support::fleet::{jobmanager, leader, stratum, PREFIX};
use support::miner::Miner;
use support::redis_server::RedisServer;

#[test]
fn a_miner_resumes_its_session_on_another_engine() {
    use serde_json::json;
    let redis = RedisServer::start();
    let mut con = redis.connection();
    let _jm = jobmanager(&redis, "jm-a");
    eventually(Duration::from_secs(5), || leader(&mut con)).expect("a leader");
    let e1 = stratum(&redis, "engine-1");
    let e2 = stratum(&redis, "engine-2");

    let mut first = Miner::connect(e1.addr());
    let mask = first.configure_version_rolling("1fffe000");
    assert_eq!(mask["result"]["version-rolling"], true, "{mask}");
    let subscribed = first.subscribe();
    let session_id = subscribed["result"][0][0][1].as_str().unwrap().to_owned();
    let extranonce1 = first.extranonce1.clone();
    assert_eq!(first.authorize(support::miner::WORKER, "x")["result"], true);
    first
        .wait_for("mining.notify", Duration::from_secs(5))
        .unwrap();
    first.notifications.clear();
    assert_eq!(
        first.request("mining.suggest_difficulty", json!([0.0002]))["result"],
        true
    );
    let d = first
        .wait_for("mining.set_difficulty", Duration::from_secs(5))
        .unwrap();
    assert_eq!(d["params"][0].as_f64(), Some(0.0002), "{d}");
    drop(first);

    // The session is in Redis under its id, indexed without KEYS.
    let saved: std::collections::HashMap<String, String> =
        eventually(Duration::from_secs(5), || {
            let h: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
                .arg(sluice_layout::Keys::new(PREFIX).session(&session_id))
                .query(&mut con)
                .ok()?;
            (h.get("difficulty").map(String::as_str) == Some("0.0002")).then_some(h)
        })
        .expect("the session is saved with its difficulty");
    assert_eq!(saved["engine"], "engine-1");
    let indexed: Option<f64> = redis::cmd("ZSCORE")
        .arg(sluice_layout::Keys::new(PREFIX).sessions())
        .arg(&session_id)
        .query(&mut con)
        .unwrap();
    assert!(indexed.is_some());

    // Back on the other engine with the session id: same extranonce1, difficulty, worker and
    // version mask, and work at once without authorizing again.
    let mut again = Miner::connect(e2.addr());
    let r = again.subscribe_resuming(&session_id);
    assert_eq!(
        r["result"][1],
        bitcoin::hex::DisplayHex::to_lower_hex_string(&extranonce1[..]),
        "{r}"
    );
    assert_eq!(r["result"][0][0][1], session_id.as_str());
    again.version_mask = 0x1fffe000;
    again
        .wait_for("mining.notify", Duration::from_secs(5))
        .expect("work right after the subscribe");
    assert_eq!(again.difficulty, 0.0002);
    let share = again.find_share(0.0002, true, Some(0x0ab6_e000));
    let reply = again.submit(&share);
    assert_eq!(
        reply["result"], true,
        "the worker and the mask came along: {reply}"
    );
    assert!(e2.metric("sluice_sessions_resumed_total") >= 1.0);

    // Extranonce1 values are unique across the fleet: each engine's start with its own slot.
    let mut fresh = Miner::connect(e2.addr());
    fresh.subscribe();
    assert_ne!(fresh.extranonce1[0], extranonce1[0], "engine slots differ");
    // An unknown session id gets a new session.
    let mut stranger = Miner::connect(e1.addr());
    let r = stranger.request("mining.subscribe", json!(["x", "deadbeef"]));
    assert_ne!(r["result"][1], "deadbeef");
}
