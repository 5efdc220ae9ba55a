//! `services ls`, `engine ls` and `jobmanager ls` against real Sluice processes: two jobmanagers
//! (one leads, one stands by) and a stratum engine registered in a real Redis. Nothing is mined.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{eventually, sluicectl, RedisServer, SluiceProcess};

const PREFIX: &str = "fleet7";

fn ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect()
}

fn leader_id(doc: &Value) -> Option<String> {
    doc["leader"]["id"].as_str().map(str::to_owned)
}

#[test]
fn services_engines_and_jobmanagers_are_listed_from_the_registry_and_the_lease() {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    let mut jm_a = SluiceProcess::jobmanager(&redis, PREFIX, "jm-a");
    // jm-a leads before jm-b starts, so which one leads is known.
    eventually(Duration::from_secs(5), || {
        leader_id(&sluicectl(&redis, PREFIX, &["jobmanager", "ls", "--json"]).json())
    })
    .expect("jm-a takes the lease");
    let _jm_b = SluiceProcess::jobmanager(&redis, PREFIX, "jm-b");
    let mut engine = SluiceProcess::stratum(&redis, PREFIX, "engine-1");
    let engine_addr = engine.field("stratum");
    assert!(engine_addr.starts_with("127.0.0.1:"), "{}", engine.ready);

    // services ls: every process, by role then id, with what its heartbeat said.
    let run = sluicectl(&redis, PREFIX, &["services", "ls", "--json"]);
    let doc = run.json();
    assert_eq!(doc["prefix"], PREFIX);
    assert_eq!(ids(&doc["services"]), ["jm-a", "jm-b", "engine-1"]);
    let now = doc["now_ms"].as_u64().unwrap();
    for s in doc["services"].as_array().unwrap() {
        assert_eq!(s["version"], env!("CARGO_PKG_VERSION"), "{s}");
        let age = s["heartbeat_age_ms"].as_u64().unwrap();
        assert!(
            age < 10_000,
            "a live service heartbeated within its TTL: {s}"
        );
        assert!(s["uptime_ms"].as_u64().unwrap() < 60_000, "{s}");
        assert!(s["expires_ms"].as_u64().unwrap() > now, "{s}");
        assert_eq!(s["connections"], 0, "{s}");
        assert_eq!(s["hashrate"], 0.0, "{s}");
    }
    let e = &doc["services"][2];
    assert_eq!(e["role"], "stratum");
    assert_eq!(e["address"], engine_addr.as_str());
    assert_eq!(e["state"], "serving");
    assert_eq!(doc["services"][0]["role"], "jobmanager");
    assert_eq!(doc["services"][0]["address"], "");

    // --role filters; engine ls is the stratum role.
    let doc = sluicectl(
        &redis,
        PREFIX,
        &["services", "ls", "--role", "stratum", "--json"],
    )
    .json();
    assert_eq!(ids(&doc["services"]), ["engine-1"]);
    let doc = sluicectl(
        &redis,
        PREFIX,
        &["services", "ls", "--role", "jobmanager", "--json"],
    )
    .json();
    assert_eq!(ids(&doc["services"]), ["jm-a", "jm-b"]);
    let doc = sluicectl(&redis, PREFIX, &["engine", "ls", "--json"]).json();
    assert_eq!(ids(&doc["engines"]), ["engine-1"]);
    assert_eq!(doc["engines"][0]["address"], engine_addr.as_str());

    // jobmanager ls: the lease names the leader and its token, the token counter agrees, and once
    // a heartbeat has gone by each jobmanager's own state says the same.
    let token: u64 = redis::cmd("GET")
        .arg(sluice_layout::Keys::new(PREFIX).token())
        .query(&mut con)
        .unwrap();
    let doc = eventually(Duration::from_secs(8), || {
        let doc = sluicectl(&redis, PREFIX, &["jobmanager", "ls", "--json"]).json();
        (doc["jobmanagers"][0]["state"] == format!("leader token={token}").as_str()).then_some(doc)
    })
    .expect("jm-a's heartbeat reports its leadership");
    assert_eq!(doc["leader"]["id"], "jm-a");
    assert_eq!(doc["leader"]["token"], token);
    assert_eq!(doc["last_token"], token);
    let ttl = doc["leader"]["lease_ttl_ms"].as_u64().unwrap();
    assert!(ttl > 0 && ttl <= 2000, "the default lease is 2 s: {ttl}");
    assert_eq!(ids(&doc["jobmanagers"]), ["jm-a", "jm-b"]);
    assert_eq!(doc["jobmanagers"][0]["leading"], true);
    assert_eq!(doc["jobmanagers"][1]["leading"], false);
    assert_eq!(doc["jobmanagers"][1]["state"], "standby");

    // The tables people read carry the same.
    let run = sluicectl(&redis, PREFIX, &["services", "ls"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines[0].starts_with("ID ") && lines[0].contains("HEARTBEAT"),
        "{}",
        run.stdout
    );
    assert_eq!(lines.len(), 4, "{}", run.stdout);
    assert!(
        lines[3].starts_with("engine-1 ") && lines[3].contains(&engine_addr),
        "{}",
        run.stdout
    );
    let run = sluicectl(&redis, PREFIX, &["jobmanager", "ls"]);
    assert!(
        run.stdout
            .starts_with(&format!("leader: jm-a (token {token}, lease ")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("jm-a ") && l.ends_with("held")),
        "{}",
        run.stdout
    );

    // The leader dies: the listing follows the lease to jm-b and its larger token.
    jm_a.kill();
    let doc = eventually(Duration::from_secs(6), || {
        let doc = sluicectl(&redis, PREFIX, &["jobmanager", "ls", "--json"]).json();
        (leader_id(&doc).as_deref() == Some("jm-b")).then_some(doc)
    })
    .expect("jm-b takes over");
    assert_eq!(doc["leader"]["token"], token + 1);
    assert_eq!(doc["last_token"], token + 1);

    // An engine that stops cleanly deregisters, and leaves the listing at once.
    engine.terminate();
    let doc = sluicectl(&redis, PREFIX, &["engine", "ls", "--json"]).json();
    assert_eq!(doc["engines"], serde_json::json!([]));
    let run = sluicectl(&redis, PREFIX, &["engine", "ls"]);
    assert_eq!(run.code, 0);
    assert_eq!(
        run.stdout,
        format!("no live stratum services under prefix \"{PREFIX}\"\n")
    );
}
