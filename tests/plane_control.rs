//! What operators change on running engines through the Redis control plane, with real
//! processes (a `redis-server`, a `sluice jobmanager`, a `sluice stratum` engine, test miners):
//! policies in `P:policies` apply to new connections and to live ones when changed, and a
//! `reload` command applies new difficulty bounds to new and live connections.

mod support;

use std::time::Duration;

use support::engine::{eventually, EngineProcess};
use support::fleet::{config_file, jobmanager, leader, stratum, PREFIX};
use support::miner::Miner;
use support::plane::command;
use support::redis_server::RedisServer;

#[test]
fn policies_apply_to_new_connections_and_to_live_ones_when_changed() {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    let _jm = jobmanager(&redis, "jm-a");
    eventually(Duration::from_secs(5), || leader(&mut con)).expect("a leader");
    let engine = stratum(&redis, "engine-1");
    let worker = support::miner::WORKER;
    let set = |con: &mut redis::Connection, json: String| {
        let _: i64 = redis::cmd("HSET")
            .arg(sluice_layout::Keys::new(PREFIX).policies())
            .arg("vip")
            .arg(json)
            .query(con)
            .unwrap();
    };
    set(
        &mut con,
        format!(r#"{{"worker":"{worker}","start_difficulty":0.0001,"min_difficulty":0.00005}}"#),
    );
    // Engines read the policies every second.
    std::thread::sleep(Duration::from_millis(1500));

    let mut vip = Miner::connect(engine.addr());
    vip.handshake();
    assert_eq!(
        vip.difficulty, 0.0001,
        "the policy's start difficulty, before the first job"
    );
    let mut other = Miner::connect(engine.addr());
    other.subscribe();
    assert_eq!(other.authorize("someone.rig", "x")["result"], true);
    other
        .wait_for("mining.notify", Duration::from_secs(5))
        .unwrap();
    assert_eq!(
        other.difficulty, 0.000001,
        "no policy matches: the listener's"
    );

    // Changed while the miner is connected: its difficulty moves into the new bounds at once.
    vip.notifications.clear();
    other.notifications.clear();
    set(
        &mut con,
        format!(r#"{{"worker":"{worker}","min_difficulty":0.0003}}"#),
    );
    let d = vip
        .wait_for("mining.set_difficulty", Duration::from_secs(4))
        .expect("the live connection gets the new difficulty");
    assert_eq!(d["params"][0].as_f64(), Some(0.0003), "{d}");
    assert_eq!(
        other.wait_for("mining.set_difficulty", Duration::from_millis(500)),
        None
    );
}

#[test]
fn reload_applies_new_difficulty_bounds_to_new_and_live_connections() {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    let _jm = jobmanager(&redis, "jm-a");
    eventually(Duration::from_secs(5), || leader(&mut con)).expect("a leader");
    let config = config_file();
    let url = redis.url();
    let engine = EngineProcess::start_role(
        "stratum",
        &[
            "--redis", &url, "--prefix", PREFIX, "--id", "engine-1", "--config", &config,
        ],
    );
    let mut live = Miner::connect(engine.addr());
    live.handshake();
    assert_eq!(live.difficulty, 0.000001);
    live.notifications.clear();

    let original = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        original.replace(
            "start_difficulty = 0.000001\nmin_difficulty = 0.000001",
            "start_difficulty = 0.0002\nmin_difficulty = 0.0002",
        ),
    )
    .unwrap();
    let ack = command(&mut con, "engine-1", "reload", "reload-1");
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(
        ack["result"]["restart_needed"],
        serde_json::json!([]),
        "{ack}"
    );
    let d = live
        .wait_for("mining.set_difficulty", Duration::from_secs(4))
        .expect("the live connection moves into the new bounds");
    assert_eq!(d["params"][0].as_f64(), Some(0.0002));
    let mut new = Miner::connect(engine.addr());
    new.handshake();
    assert_eq!(
        new.difficulty, 0.0002,
        "new connections start at the new start"
    );

    // A bad file is refused with the key to fix, and nothing changes.
    std::fs::write(
        &config,
        original.replace("threads = 1", "threads = 1\nthreadz = 2"),
    )
    .unwrap();
    let ack = command(&mut con, "engine-1", "reload", "reload-2");
    assert_eq!(ack["ok"], false, "{ack}");
    assert!(ack["error"].as_str().unwrap().contains("threadz"), "{ack}");
    // What cannot change live is named.
    std::fs::write(&config, original.replace("threads = 1", "threads = 2")).unwrap();
    let ack = command(&mut con, "engine-1", "reload", "reload-3");
    assert_eq!(
        ack["result"]["restart_needed"],
        serde_json::json!(["engine.threads"]),
        "{ack}"
    );
}
