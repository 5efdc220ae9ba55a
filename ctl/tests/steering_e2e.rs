//! `jobmanager pause|resume|promote` and `policy set` end to end: two real `sluice jobmanager`
//! processes (lease 1 s) and a real `sluice stratum` engine on a real Redis, with the test miner
//! (`sluice-testkit`) on the engine's port.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{eventually, sluicectl, Miner, RedisServer, SluiceProcess};

const PREFIX: &str = "steer";
const WORKER: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080.vip";

fn leader(redis: &RedisServer) -> Option<String> {
    sluicectl(redis, PREFIX, &["jobmanager", "ls", "--json"]).json()["leader"]["id"]
        .as_str()
        .map(str::to_owned)
}

#[test]
fn pause_resume_promote_move_the_lease_and_a_policy_reaches_a_miner() {
    let redis = RedisServer::start();
    let _jm_a = SluiceProcess::jobmanager_with_lease(&redis, PREFIX, "jm-a", 1.0);
    let first = eventually(Duration::from_secs(5), || leader(&redis)).expect("a jobmanager leads");
    let _jm_b = SluiceProcess::jobmanager_with_lease(&redis, PREFIX, "jm-b", 1.0);
    let engine = SluiceProcess::stratum(&redis, PREFIX, "engine-1");
    let addr = engine.field("stratum");
    assert_eq!(first, "jm-a");

    // Pause the leader: the other one leads by the time the command returns.
    let run = sluicectl(&redis, PREFIX, &["jobmanager", "pause", "jm-a", "--json"]);
    let doc = run.json();
    assert_eq!(doc["jobmanager"], "jm-a");
    assert_eq!(doc["action"], "pause");
    assert_eq!(doc["leader"]["id"], "jm-b", "{doc}");
    assert!(doc["leader"]["token"].as_u64().unwrap() >= 2, "{doc}");
    assert_eq!(leader(&redis).as_deref(), Some("jm-b"));

    // Resume: jm-a may lead again, but does not take the lease back.
    let run = sluicectl(&redis, PREFIX, &["jobmanager", "resume", "jm-a", "--json"]);
    assert_eq!(run.json()["leader"]["id"], "jm-b");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(leader(&redis).as_deref(), Some("jm-b"));

    // Promote: jm-b hands over, jm-a leads again with a larger token.
    let run = sluicectl(&redis, PREFIX, &["jobmanager", "promote", "jm-a"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .starts_with("jobmanager jm-a promoted: it leads (token "),
        "{}",
        run.stdout
    );
    let doc = sluicectl(&redis, PREFIX, &["jobmanager", "ls", "--json"]).json();
    assert_eq!(doc["leader"]["id"], "jm-a");
    assert!(doc["leader"]["token"].as_u64().unwrap() >= 3, "{doc}");
    // It stays there: jm-b does not take it back.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(leader(&redis).as_deref(), Some("jm-a"));

    // A policy for one worker: its first difficulty is the policy's, before any job.
    let run = sluicectl(
        &redis,
        PREFIX,
        &[
            "policy",
            "set",
            "vip",
            "--worker",
            WORKER,
            "--start-difficulty",
            "0.0001",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    // Engines read the policies every second.
    std::thread::sleep(Duration::from_millis(1500));
    let mut miner = Miner::connect(&addr);
    // Subscribe and authorize at once, to read every line before the first job.
    let lines = format!(
        "{}\n{}\n",
        json!({"id": 1, "method": "mining.subscribe", "params": ["t/1"]}),
        json!({"id": 2, "method": "mining.authorize", "params": [WORKER, "x"]})
    );
    miner.send_raw(lines.as_bytes()).unwrap();
    let seen = miner.messages_until("mining.notify", Duration::from_secs(10));
    let difficulties: Vec<&Value> = seen
        .iter()
        .filter(|v| v["method"] == "mining.set_difficulty")
        .map(|v| &v["params"][0])
        .collect();
    assert!(
        !difficulties.is_empty() && difficulties.iter().all(|d| **d == json!(0.0001)),
        "every difficulty before the first job should be the policy's; received {seen:?}"
    );
    assert!(
        seen.iter().any(|v| v["id"] == 2 && v["result"] == true),
        "{seen:?}"
    );
}
