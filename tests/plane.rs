//! The Redis control plane with real processes: a `redis-server` the test starts, two
//! `sluice jobmanager` (simulated chains) and two `sluice stratum` engines, and test miners.
//!
//! Proved through the wire and Redis only:
//! - exactly one jobmanager leads; engines started after it have work at once;
//! - killing the leader: the standby publishes, and miners on both engines get its work, within
//!   3 s;
//! - a job carrying a stale fencing token (signed with the fleet key) is refused by the engines;
//! - the registry lists every live process without `KEYS`, and a dead one drops out with its TTL;
//! - a block found on an engine reaches the leader and is recorded with its result in `P:blocks`.

mod support;

use std::time::{Duration, Instant};

use support::engine::{eventually, EngineProcess};
use support::fleet::{
    config_file, fleet_key, jobmanager, leader, live_services, role, shares_in_stream, stratum,
    PREFIX,
};
use support::miner::Miner;
use support::redis_server::RedisServer;

#[test]
fn the_standby_takes_over_within_3_s_and_stale_tokens_are_refused() {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    let mut jm_a = jobmanager(&redis, "jm-a");
    let leading =
        eventually(Duration::from_secs(5), || leader(&mut con)).expect("a jobmanager leads");
    assert!(leading.starts_with("jm-a|"), "{leading}");
    let mut jm_b = jobmanager(&redis, "jm-b");
    let e1 = stratum(&redis, "engine-1");
    let e2 = stratum(&redis, "engine-2");

    // Engines that start after the leader have its work at once.
    let mut m1 = Miner::connect(e1.addr());
    m1.handshake();
    let mut m2 = Miner::connect(e2.addr());
    m2.handshake();
    let first_prev = m1.work.as_ref().unwrap().prev_hash;
    assert_eq!(m2.work.as_ref().unwrap().prev_hash, first_prev);

    let mut services = live_services(&mut con);
    services.sort();
    assert_eq!(services, ["engine-1", "engine-2", "jm-a", "jm-b"]);
    let role: String = redis::cmd("HGET")
        .arg(format!("{PREFIX}:svc:engine-1"))
        .arg("role")
        .query(&mut con)
        .unwrap();
    assert_eq!(role, "stratum");
    let state: String = redis::cmd("HGET")
        .arg(format!("{PREFIX}:svc:jm-b"))
        .arg("state")
        .query(&mut con)
        .unwrap();
    assert_eq!(state, "standby");

    // The leader dies without a word. Nothing else publishes (no block, refresh 30 s away), so
    // the next notify on each engine is the standby's first job.
    m1.notifications.clear();
    m2.notifications.clear();
    let job_before = m1.work.as_ref().unwrap().job_id.clone();
    jm_a.kill();
    let died = Instant::now();
    for (name, miner) in [("engine-1", &mut m1), ("engine-2", &mut m2)] {
        let moved = eventually(Duration::from_secs(3), || {
            miner.wait_for("mining.notify", Duration::from_millis(100))
        });
        assert!(
            moved.is_some(),
            "miners on {name} get the standby's work within 3 s of the leader's death\n{}",
            jm_b.log()
        );
    }
    let took = died.elapsed();
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_ne!(m1.work.as_ref().unwrap().job_id, job_before);
    let leading = leader(&mut con).expect("a leader");
    assert!(leading.starts_with("jm-b|"), "{leading}");
    let token_b: u64 = leading.rsplit('|').next().unwrap().parse().unwrap();
    assert!(token_b >= 2);

    // A job from the deposed leader (its older token) reaches Redis's channel, as it could
    // through a partition: the engines refuse it.
    let latest: Vec<u8> = redis::cmd("GET")
        .arg(format!("{PREFIX}:job:latest"))
        .query(&mut con)
        .unwrap();
    let mut stale = sluice::plane::wire::JobMessage::decode(&latest, &fleet_key()).unwrap();
    assert_eq!(stale.token, token_b);
    stale.token = token_b - 1;
    stale.sequence += 1000;
    stale.clean = true;
    stale.parts.prev_hash = [0x5a; 32];
    let refused_before = e1.metric("sluice_jobs_refused_total");
    let _: i64 = redis::cmd("PUBLISH")
        .arg(format!("{PREFIX}:jobs"))
        .arg(stale.encode(&fleet_key()))
        .query(&mut con)
        .unwrap();
    eventually(Duration::from_secs(3), || {
        (e1.metric("sluice_jobs_refused_total") > refused_before
            && e2.metric("sluice_jobs_refused_total") >= 1.0)
            .then_some(())
    })
    .expect("both engines refuse the stale token");
    let mut notify = m1.wait_for("mining.notify", Duration::from_millis(500));
    while let Some(n) = notify {
        assert_ne!(
            m1.work.as_ref().unwrap().prev_hash,
            [0x5a; 32],
            "no miner works on the stale job: {n}"
        );
        notify = m1.wait_for("mining.notify", Duration::from_millis(200));
    }

    // The dead jobmanager drops out of the registry with its TTL; the others stay.
    eventually(Duration::from_secs(5), || {
        (!live_services(&mut con).contains(&"jm-a".to_owned())).then_some(())
    })
    .expect("jm-a leaves the registry");
    let mut services = live_services(&mut con);
    services.sort();
    assert_eq!(services, ["engine-1", "engine-2", "jm-b"]);
    assert_eq!(jm_b.terminate().code(), Some(0));
    // A clean stop gives the lease up and deregisters at once.
    assert_eq!(leader(&mut con), None);
    assert!(!live_services(&mut con).contains(&"jm-b".to_owned()));
}

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
            .arg(format!("{PREFIX}:blocks"))
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

#[test]
fn with_redis_away_for_10_s_mining_goes_on_and_every_share_is_logged_exactly_once() {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    // No share is a block: the chain's difficulty is far above the shares'.
    let _jm = support::fleet::still_jobmanager(&redis, "jm-a");
    eventually(Duration::from_secs(5), || leader(&mut con)).expect("a leader");
    let engine = stratum(&redis, "engine-1");
    let mut miner = Miner::connect(engine.addr());
    miner.handshake();

    let mut accepted = std::collections::HashSet::new();
    let mut duplicates = 0;
    let mut mine_for = |miner: &mut Miner, how_long: Duration| {
        let until = Instant::now() + how_long;
        while Instant::now() < until {
            let share = miner.find_share(miner.difficulty, true, None);
            let reply = miner.submit(&share);
            assert_eq!(reply["result"], true, "{reply}");
            assert!(accepted.insert(share.hash.to_string()));
            if accepted.len() % 10 == 0 {
                // A duplicate now and then: rejected verdicts are logged too.
                assert_eq!(support::miner::error_code(&miner.submit(&share)), 22);
                duplicates += 1;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    mine_for(&mut miner, Duration::from_secs(2));
    redis.pause();
    // Mining goes on while Redis is away.
    mine_for(&mut miner, Duration::from_secs(10));
    redis.resume();
    mine_for(&mut miner, Duration::from_secs(2));
    assert!(accepted.len() > 50, "{} shares", accepted.len());

    let logged = eventually(Duration::from_secs(20), || {
        let shares = shares_in_stream(&mut con);
        (shares.len() == accepted.len() + duplicates).then_some(shares)
    })
    .unwrap_or_else(|| {
        panic!(
            "{} accepted and {duplicates} duplicates submitted, {} in the stream\n{}",
            accepted.len(),
            shares_in_stream(&mut con).len(),
            engine.log()
        )
    });
    let mut in_stream = std::collections::HashSet::new();
    let mut rejected = 0;
    for share in &logged {
        match share["verdict"].as_str() {
            "accepted" => assert!(
                in_stream.insert(share["hash"].clone()),
                "logged twice: {share:?}"
            ),
            _ => {
                assert_eq!(share["reason"], "duplicate");
                rejected += 1;
            }
        }
        assert_eq!(share["engine"], "engine-1");
        assert_eq!(share["worker"], support::miner::WORKER);
        assert_eq!(share["agent"], "sluice-test-miner/1.0");
    }
    assert_eq!(in_stream, accepted, "every accepted share, once");
    assert_eq!(rejected, duplicates);
    assert!(engine.metric("sluice_share_log_total{kind=\"spooled_batches\"}") > 0.0);
    assert!(engine.metric("sluice_share_log_total{kind=\"replayed_batches\"}") > 0.0);
    assert_eq!(
        engine.metric("sluice_share_log_total{kind=\"dropped\"}"),
        0.0
    );

    // The per-minute rollups count the same shares.
    let now_minute = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 60;
    let mut rolled = 0;
    for minute in now_minute - 2..=now_minute {
        let n: Option<u64> = redis::cmd("HGET")
            .arg(format!("{PREFIX}:roll:{minute}"))
            .arg(format!("{}|accepted", support::miner::WORKER))
            .query(&mut con)
            .unwrap();
        rolled += n.unwrap_or(0);
    }
    assert_eq!(rolled as usize, accepted.len());
}

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
                .arg(format!("{PREFIX}:session:{session_id}"))
                .query(&mut con)
                .ok()?;
            (h.get("difficulty").map(String::as_str) == Some("0.0002")).then_some(h)
        })
        .expect("the session is saved with its difficulty");
    assert_eq!(saved["engine"], "engine-1");
    let indexed: Option<f64> = redis::cmd("ZSCORE")
        .arg(format!("{PREFIX}:sessions"))
        .arg(&session_id)
        .query(&mut con)
        .unwrap();
    assert!(indexed.is_some());

    // Back on the other engine with the session id: same extranonce1, difficulty, worker and
    // version mask, and work at once without authorizing again.
    let mut again = Miner::connect(e2.addr());
    let r = again.request(
        "mining.subscribe",
        json!(["sluice-test-miner/1.0", session_id]),
    );
    assert_eq!(
        r["result"][1],
        bitcoin::hex::DisplayHex::to_lower_hex_string(&extranonce1[..]),
        "{r}"
    );
    assert_eq!(r["result"][0][0][1], session_id.as_str());
    again.extranonce1 = extranonce1.clone();
    again.extranonce2_size = r["result"][2].as_u64().unwrap() as usize;
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

#[test]
fn operators_pause_and_promote_jobmanagers_through_the_control_hash() {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    let _a = jobmanager(&redis, "jm-a");
    eventually(Duration::from_secs(5), || leader(&mut con)).expect("a leader");
    let _b = jobmanager(&redis, "jm-b");
    let engine = stratum(&redis, "engine-1");
    let mut miner = Miner::connect(engine.addr());
    miner.handshake();
    let leads = |con: &mut redis::Connection, id: &str| {
        eventually(Duration::from_secs(3), || {
            leader(con).filter(|l| l.starts_with(&format!("{id}|")))
        })
    };
    assert!(leads(&mut con, "jm-a").is_some());
    let control = format!("{PREFIX}:jm:control");

    // Paused, the leader hands the lease over; the new leader's job reaches the miner.
    let _: i64 = redis::cmd("HSET")
        .arg(&control)
        .arg("pause:jm-a")
        .arg(1)
        .query(&mut con)
        .unwrap();
    assert!(
        leads(&mut con, "jm-b").is_some(),
        "jm-b leads once jm-a is paused"
    );
    miner.notifications.clear();
    assert!(miner
        .wait_for("mining.notify", Duration::from_secs(3))
        .is_some());

    // Resumed, jm-a stays standby (no churn); promoted, it takes the lease back.
    let _: i64 = redis::cmd("HDEL")
        .arg(&control)
        .arg("pause:jm-a")
        .query(&mut con)
        .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert!(leader(&mut con).unwrap().starts_with("jm-b|"));
    let _: i64 = redis::cmd("HSET")
        .arg(&control)
        .arg("prefer")
        .arg("jm-a")
        .query(&mut con)
        .unwrap();
    assert!(
        leads(&mut con, "jm-a").is_some(),
        "jm-a leads once preferred"
    );

    // A preferred jobmanager that dies does not leave the fleet without a leader.
    let _: i64 = redis::cmd("HSET")
        .arg(&control)
        .arg("prefer")
        .arg("jm-gone")
        .query(&mut con)
        .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert!(leader(&mut con).is_some());
}

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
            .arg(format!("{PREFIX}:policies"))
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

/// Sends a command to an engine the way sluicectl does and waits for its acknowledgement.
fn command(con: &mut redis::Connection, engine: &str, cmd: &str, id: &str) -> serde_json::Value {
    let _: String = redis::cmd("XADD")
        .arg(format!("{PREFIX}:cmd:{engine}"))
        .arg("*")
        .arg("id")
        .arg(id)
        .arg("cmd")
        .arg(cmd)
        .arg("arg")
        .arg("")
        .query(con)
        .unwrap();
    let ack: String = eventually(Duration::from_secs(5), || {
        redis::cmd("GET")
            .arg(format!("{PREFIX}:ack:{id}"))
            .query::<Option<String>>(con)
            .unwrap()
    })
    .unwrap_or_else(|| panic!("no acknowledgement of {cmd}"));
    serde_json::from_str(&ack).unwrap()
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

#[test]
fn a_deposed_leader_that_wakes_up_publishes_nothing() {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    // A job every 100 ms, so a leader that still thought it led would publish at once.
    let jm_a = role(
        &redis,
        "jobmanager",
        "jm-a",
        &["--block-interval", "0", "--refresh-interval", "0.1"],
    );
    eventually(Duration::from_secs(5), || leader(&mut con)).expect("jm-a leads");
    let _jm_b = role(
        &redis,
        "jobmanager",
        "jm-b",
        &["--block-interval", "0", "--refresh-interval", "0.1"],
    );
    // jm-a freezes (a long GC pause, a stalled VM): its lease lapses and jm-b takes over.
    // SAFETY: signalling a child process of this test.
    unsafe { libc::kill(jm_a.pid() as i32, libc::SIGSTOP) };
    let token_b = eventually(Duration::from_secs(5), || {
        leader(&mut con)
            .filter(|l| l.starts_with("jm-b|"))
            .map(|l| l.rsplit('|').next().unwrap().parse::<u64>().unwrap())
    })
    .expect("jm-b takes the lease");

    // Listen to the job channel, then wake jm-a up: every job published from now on carries
    // jm-b's token, never jm-a's older one.
    let mut sub = redis.connection();
    let mut pubsub = sub.as_pubsub();
    pubsub.subscribe(format!("{PREFIX}:jobs")).unwrap();
    pubsub
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(jm_a.pid() as i32, libc::SIGCONT) };
    let until = Instant::now() + Duration::from_secs(3);
    let mut seen = 0;
    while Instant::now() < until {
        if let Ok(msg) = pubsub.get_message() {
            let job =
                sluice::plane::wire::JobMessage::decode(msg.get_payload_bytes(), &fleet_key())
                    .unwrap();
            assert_eq!(
                job.token, token_b,
                "a job from the deposed leader was published"
            );
            seen += 1;
        }
    }
    assert!(seen >= 10, "jm-b kept publishing ({seen} jobs)");
    drop(pubsub);
    assert!(leader(&mut con).unwrap().starts_with("jm-b|"));
    assert!(
        jm_a.logged_within("no longer the leading jobmanager", Duration::from_secs(2)),
        "{}",
        jm_a.log()
    );
}
