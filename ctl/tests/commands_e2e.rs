//! `session ls`, `session kick` and `engine drain|undrain|reload` end to end: a real `sluice jobmanager`
//! and `sluice stratum` on a real Redis, and test miners (`sluice-testkit`) on the engine's port. What
//! sluicectl prints is checked against what the miners see on their sockets.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{eventually, sluicectl, End, Miner, RedisServer, SluiceProcess};

const PREFIX: &str = "e2e";
const WORKER: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080.rig";

/// Subscribes and authorizes WORKER; gives the session id (`result[0][0][1]`) and the
/// subscribe answer.
fn subscribe_and_authorize(miner: &mut Miner) -> (String, Value) {
    let answer = miner.subscribe();
    let id = answer["result"][0][0][1]
        .as_str()
        .unwrap_or_else(|| panic!("no session id in {answer}"))
        .to_owned();
    let auth = miner.authorize(WORKER, "x");
    assert_eq!(auth["result"], true, "authorize: {auth}");
    (id, answer)
}

fn session_ids(redis: &RedisServer) -> Vec<String> {
    sluicectl(redis, PREFIX, &["session", "ls", "--json"]).json()["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn kick_drain_and_undrain_reach_a_real_engine_and_its_miners() {
    let redis = RedisServer::start();
    let _jm = SluiceProcess::jobmanager(&redis, PREFIX, "jm-a");
    let engine = SluiceProcess::stratum(&redis, PREFIX, "engine-1");
    let addr = engine.field("stratum");
    assert!(addr.starts_with("127.0.0.1:"), "{}", engine.ready);

    // A miner authorizes: its session is saved, and listed.
    let mut first = Miner::connect(&addr);
    let (session, answer) = subscribe_and_authorize(&mut first);
    eventually(Duration::from_secs(5), || {
        session_ids(&redis).contains(&session).then_some(())
    })
    .unwrap_or_else(|| panic!("session {session} was not listed within 5 s"));
    let doc = sluicectl(&redis, PREFIX, &["session", "ls", "--json"]).json();
    let listed = doc["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == session.as_str())
        .unwrap()
        .clone();
    assert_eq!(listed["engine"], "engine-1", "{listed}");
    assert_eq!(listed["workers"], json!([WORKER]), "{listed}");
    assert_eq!(listed["extranonce1"], answer["result"][1], "{listed}");
    let shown = sluicectl(&redis, PREFIX, &["session", "show", &session, "--json"]).json();
    assert_eq!(shown["session"]["id"], session.as_str());

    // Kicked: the engine closes its connection.
    let run = sluicectl(&redis, PREFIX, &["session", "kick", &session, "--json"]);
    assert_eq!(
        run.json(),
        json!({"engine": "engine-1", "cmd": "kick", "ok": true, "result": {"kicked": 1}})
    );
    let end = first.end_within(Duration::from_secs(3));
    assert_ne!(
        end,
        End::Open,
        "the kicked miner's socket is still open 3 s after the acknowledgement; received {:?}",
        first.recent()
    );

    // A second miner; then the engine drains.
    let mut second = Miner::connect(&addr);
    subscribe_and_authorize(&mut second);
    let run = sluicectl(&redis, PREFIX, &["engine", "drain", "engine-1", "--json"]);
    assert_eq!(
        run.json(),
        json!({"engine": "engine-1", "cmd": "drain", "ok": true,
               "result": {"draining": true, "connections": 1}})
    );
    second
        .wait_for("client.reconnect", Duration::from_secs(5))
        .unwrap_or_else(|| {
            panic!(
                "no client.reconnect within 5 s of the drain; received {:?}",
                second.recent()
            )
        });
    // While draining, a new connection is closed at once.
    let mut refused = Miner::connect(&addr);
    let end = refused.end_within(Duration::from_secs(2));
    assert_eq!(
        end,
        End::Eof,
        "a connection to a draining engine should read 0 bytes within 2 s; received {:?}",
        refused.recent()
    );

    // Undrained: new connections are served again.
    let run = sluicectl(&redis, PREFIX, &["engine", "undrain", "engine-1", "--json"]);
    assert_eq!(
        run.json(),
        json!({"engine": "engine-1", "cmd": "undrain", "ok": true, "result": {"draining": false}})
    );
    let mut third = Miner::connect(&addr);
    let answer = third.subscribe();
    assert!(answer["result"][0][0][1].is_string(), "{answer}");

    // Reload: the engine re-reads its configuration (here: its flags, unchanged) and says so.
    let run = sluicectl(&redis, PREFIX, &["engine", "reload", "engine-1", "--json"]);
    assert_eq!(
        run.json(),
        json!({"engine": "engine-1", "cmd": "reload", "ok": true,
            "result": {"reloaded": true, "restart_needed": []}})
    );
    let run = sluicectl(&redis, PREFIX, &["engine", "reload", "engine-1"]);
    assert!(
        run.stdout
            .contains("engine engine-1 reloaded its configuration"),
        "{}",
        run.stdout
    );
}
