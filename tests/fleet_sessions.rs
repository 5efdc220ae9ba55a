//! Fleet sessions tried as a hostile miner and as an operator restarting engines, with real
//! processes: a `redis-server`, a `sluice jobmanager` and `sluice stratum` engines, test miners.
//!
//! - a live session cannot be taken over (a resume of a held session gives a fresh extranonce1),
//!   and the subscription id is random, not the extranonce1;
//! - a share accepted before a disconnect is a duplicate after the resume, on the same engine
//!   and on another one;
//! - an engine restarted while its miners resume elsewhere never hands out an extranonce1 a live
//!   session holds, and a second process under a live `redis.id` is refused at start;
//! - a policy that narrows the version mask is announced with `mining.set_version_mask`, and the
//!   next share rolled inside the new mask is accepted;
//! - an engine whose slot is taken by another stops taking new connections and says why, and one
//!   whose slot lapsed (Redis restarted empty) takes it back;
//! - a session whose engine was killed is not resumed (its duplicate set died with it).

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::engine::{eventually, EngineProcess};
use support::fleet::{leader, shares_in_stream, still_jobmanager, stratum, PREFIX};
use support::miner::{error_code, Miner, Share, WORKER};
use support::redis_server::RedisServer;

fn fleet(redis: &RedisServer) -> (EngineProcess, redis::Connection) {
    let mut con = redis.connection();
    let jm = still_jobmanager(redis, "jm-a");
    eventually(Duration::from_secs(5), || leader(&mut con)).expect("a leader");
    (jm, con)
}

/// Subscribes and authorizes; returns the subscription id.
fn join(miner: &mut Miner) -> String {
    let r = miner.subscribe();
    let id = r["result"][0][0][1].as_str().unwrap().to_owned();
    assert_eq!(miner.authorize(WORKER, "x")["result"], true);
    miner
        .wait_for("mining.notify", Duration::from_secs(5))
        .expect("work");
    id
}

/// Subscribes with a session id; the miner takes whatever extranonce1 it is given.
fn resume(miner: &mut Miner, id: &str) -> Value {
    miner.subscribe_resuming(id)
}

/// Waits until the engine has released the session to Redis (its connection ended).
fn released(con: &mut redis::Connection, id: &str) {
    eventually(Duration::from_secs(5), || {
        let v: Option<String> = redis::cmd("HGET")
            .arg(sluice_layout::Keys::new(PREFIX).session(id))
            .arg("released")
            .query(con)
            .ok()?;
        (v.as_deref() == Some("1")).then_some(())
    })
    .unwrap_or_else(|| panic!("session {id} released"));
}

/// The same share on the miner's current work (the same job under this engine's id).
fn again_on_current_work(miner: &Miner, share: &Share) -> Share {
    Share {
        job_id: miner.work.as_ref().unwrap().job_id.clone(),
        ..share.clone()
    }
}

fn accepted_with_hash(con: &mut redis::Connection, hash: &str) -> usize {
    shares_in_stream(con)
        .iter()
        .filter(|s| s["verdict"] == "accepted" && s["hash"] == hash)
        .count()
}

#[test]
fn a_live_session_cannot_be_taken_over_on_any_engine() {
    let redis = RedisServer::start();
    let (_jm, mut con) = fleet(&redis);
    let e1 = stratum(&redis, "engine-1");
    let e2 = stratum(&redis, "engine-2");

    let mut owner = Miner::connect(e1.addr());
    let id = join(&mut owner);
    let en1 = bitcoin::hex::DisplayHex::to_lower_hex_string(&owner.extranonce1[..]);
    assert_eq!(id.len(), 16, "a 64-bit token: {id}");
    assert_ne!(
        u64::from_str_radix(&id, 16).unwrap(),
        u64::from_str_radix(&en1, 16).unwrap(),
        "the session id is not the extranonce1"
    );
    let share = owner.find_share(owner.difficulty, true, None);
    assert_eq!(owner.submit(&share)["result"], true);

    // While the owner is connected, a thief presents its id on the same engine and on another.
    for engine in [&e1, &e2] {
        let mut thief = Miner::connect(engine.addr());
        let r = resume(&mut thief, &id);
        assert_ne!(r["result"][1], en1.as_str(), "a fresh extranonce1: {r}");
        assert_ne!(r["result"][0][0][1], id.as_str(), "a fresh session id: {r}");
        assert_eq!(thief.authorize(WORKER, "x")["result"], true);
        thief
            .wait_for("mining.notify", Duration::from_secs(5))
            .unwrap();
        // The owner's share, sent by the thief, is not the owner's header: never credited.
        let stolen = again_on_current_work(&thief, &share);
        assert_ne!(thief.submit(&stolen)["result"], true);
        assert!(
            engine.metric("sluice_session_resumes_refused_total{reason=\"held\"}") >= 1.0,
            "{}",
            engine.log()
        );
    }
    // The owner mines on.
    let next = owner.find_share(owner.difficulty, true, None);
    assert_eq!(owner.submit(&next)["result"], true);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(accepted_with_hash(&mut con, &share.hash.to_string()), 1);
}

#[test]
fn resume_then_resubmit_is_a_duplicate_on_the_same_and_another_engine() {
    let redis = RedisServer::start();
    let (_jm, mut con) = fleet(&redis);
    let e1 = stratum(&redis, "engine-1");
    let e2 = stratum(&redis, "engine-2");

    let mut first = Miner::connect(e1.addr());
    let id = join(&mut first);
    let en1 = first.extranonce1.clone();
    let share = first.find_share(first.difficulty, true, None);
    assert_eq!(first.submit(&share)["result"], true);
    drop(first);
    released(&mut con, &id);

    // Back on the same engine: the same extranonce1, and the share is a duplicate.
    let mut second = Miner::connect(e1.addr());
    let r = resume(&mut second, &id);
    assert_eq!(second.extranonce1, en1, "{r}");
    second
        .wait_for("mining.notify", Duration::from_secs(5))
        .expect("work right after the subscribe");
    let resubmitted = again_on_current_work(&second, &share);
    assert_eq!(resubmitted.hash, share.hash, "the same header");
    assert_eq!(error_code(&second.submit(&resubmitted)), 22);
    // A new connection counts extranonce2 from the start again: step past the one used.
    second.find_share(second.difficulty, true, None);
    let more = second.find_share(second.difficulty, true, None);
    assert_eq!(second.submit(&more)["result"], true);
    drop(second);
    released(&mut con, &id);

    // On another engine, whose job ids are its own: both shares are duplicates there too.
    let mut third = Miner::connect(e2.addr());
    resume(&mut third, &id);
    assert_eq!(third.extranonce1, en1);
    third
        .wait_for("mining.notify", Duration::from_secs(5))
        .expect("work right after the subscribe");
    for old in [&share, &more] {
        let resubmitted = again_on_current_work(&third, old);
        assert_eq!(resubmitted.hash, old.hash);
        assert_eq!(error_code(&third.submit(&resubmitted)), 22);
    }
    third.find_share(third.difficulty, true, None);
    third.find_share(third.difficulty, true, None);
    let fresh = third.find_share(third.difficulty, true, None);
    assert_eq!(third.submit(&fresh)["result"], true);
    std::thread::sleep(Duration::from_millis(500));
    for s in [&share, &more, &fresh] {
        assert_eq!(
            accepted_with_hash(&mut con, &s.hash.to_string()),
            1,
            "credited once: {}",
            s.hash
        );
    }
}

#[test]
fn an_engine_restarted_while_its_miners_resume_elsewhere_hands_out_no_extranonce1_twice() {
    let redis = RedisServer::start();
    let (_jm, mut con) = fleet(&redis);
    let mut a = stratum(&redis, "engine-a");
    let b = stratum(&redis, "engine-b");

    // A second process under a live id is refused at start, naming the key.
    let out = std::process::Command::new(support::engine::sluice_binary())
        .args(["stratum", "--redis", &redis.url(), "--prefix", PREFIX])
        .args([
            "--id",
            "engine-a",
            "--config",
            &support::fleet::config_file(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("redis.id"), "{stderr}");

    let mut miners = Vec::new();
    for _ in 0..3 {
        let mut m = Miner::connect(a.addr());
        let id = join(&mut m);
        miners.push((m, id));
    }
    let held: Vec<Vec<u8>> = miners.iter().map(|(m, _)| m.extranonce1.clone()).collect();
    // Engine A stops: its miners hear client.reconnect and resume on B.
    assert_eq!(a.terminate().code(), Some(0));
    let mut resumed = Vec::new();
    for ((_, id), en1) in miners.into_iter().zip(&held) {
        let mut m = Miner::connect(b.addr());
        resume(&mut m, &id);
        assert_eq!(&m.extranonce1, en1, "resumed with its extranonce1");
        m.wait_for("mining.notify", Duration::from_secs(5)).unwrap();
        resumed.push(m);
    }
    // A starts again under its id (a clean stop deregistered it): its new miners never get an
    // extranonce1 a resumed session holds.
    let a2 = stratum(&redis, "engine-a");
    for _ in 0..5 {
        let mut m = Miner::connect(a2.addr());
        m.subscribe();
        assert!(
            !held.contains(&m.extranonce1),
            "extranonce1 {:02x?} handed out twice",
            m.extranonce1
        );
    }
    // The resumed miners still mine.
    for m in &mut resumed {
        let s = m.find_share(m.difficulty, true, None);
        assert_eq!(m.submit(&s)["result"], true);
    }
    let slots: Vec<Option<String>> = (0..3)
        .map(|n| {
            redis::cmd("GET")
                .arg(sluice_layout::Keys::new(PREFIX).slot(n))
                .query(&mut con)
                .unwrap()
        })
        .collect();
    assert!(
        slots[0]
            .as_deref()
            .is_some_and(|v| v.starts_with("released:engine-a|")),
        "A's first slot is kept while its sessions live: {slots:?}"
    );
}

#[test]
fn a_narrowed_policy_mask_is_announced_and_the_next_rolled_share_accepted() {
    let redis = RedisServer::start();
    let (_jm, mut con) = fleet(&redis);
    let engine = stratum(&redis, "engine-1");
    let mut miner = Miner::connect(engine.addr());
    let r = miner.configure_version_rolling("1fffe000");
    assert_eq!(r["result"]["version-rolling.mask"], "1fffe000");
    join(&mut miner);
    let s = miner.find_share(miner.difficulty, true, Some(0x1000_0000));
    assert_eq!(
        miner.submit(&s)["result"],
        true,
        "bit 28 under the wide mask"
    );

    // A policy narrows the mask; a policy mask wider than the pool's is cut to it.
    let _: i64 = redis::cmd("HSET")
        .arg(sluice_layout::Keys::new(PREFIX).policies())
        .arg("narrow")
        .arg(format!(
            r#"{{"worker":"{WORKER}","version_mask":"f0ffe000"}}"#
        ))
        .query(&mut con)
        .unwrap();
    let announced = miner
        .wait_for("mining.set_version_mask", Duration::from_secs(5))
        .expect("mining.set_version_mask on the narrowed mask");
    assert_eq!(announced["params"][0], "10ffe000", "{announced}");
    miner.version_mask = 0x10ff_e000;
    let rolled = miner.find_share(miner.difficulty, true, Some(0x0080_0000));
    assert_eq!(
        miner.submit(&rolled)["result"],
        true,
        "rolled inside the new mask"
    );
    assert_eq!(
        engine.metric("sluice_shares_total{verdict=\"version-bits-outside-mask\"}"),
        0.0
    );
}

#[test]
fn an_engine_whose_slot_is_taken_stops_taking_new_connections_and_says_why() {
    let redis = RedisServer::start();
    let (_jm, mut con) = fleet(&redis);
    let engine = stratum(&redis, "engine-1");
    let mut live = Miner::connect(engine.addr());
    join(&mut live);
    let slot = live.extranonce1[0];
    // Another process takes the slot (an operator's mistake, or Redis lost it and another
    // engine leased it).
    let _: () = redis::cmd("SET")
        .arg(sluice_layout::Keys::new(PREFIX).slot(u32::from(slot)))
        .arg("engine-9|0123456789abcdef")
        .query(&mut con)
        .unwrap();
    eventually(Duration::from_secs(5), || {
        let state: Option<String> = redis::cmd("HGET")
            .arg(sluice_layout::Keys::new(PREFIX).service("engine-1"))
            .arg("state")
            .query(&mut con)
            .ok()?;
        (state.as_deref() == Some("slot-lost")).then_some(())
    })
    .expect("the registry says the slot is lost");
    let mut refused = Miner::connect(engine.addr());
    assert!(refused.is_closed_within(Duration::from_secs(2)));
    assert!(engine.metric("sluice_connections_closed_total{reason=\"slot-lost\"}") >= 1.0);
    assert!(
        engine.logged_within("held by another engine", Duration::from_secs(2)),
        "{}",
        engine.log()
    );
    // The miners it has keep mining.
    let s = live.find_share(live.difficulty, true, None);
    assert_eq!(live.submit(&s)["result"], true);
}

#[test]
fn a_session_whose_engine_was_killed_is_not_resumed() {
    let redis = RedisServer::start();
    let (_jm, mut con) = fleet(&redis);
    let mut a = stratum(&redis, "engine-a");
    let b = stratum(&redis, "engine-b");
    let mut miner = Miner::connect(a.addr());
    let id = join(&mut miner);
    let en1 = miner.extranonce1.clone();
    let share = miner.find_share(miner.difficulty, true, None);
    assert_eq!(miner.submit(&share)["result"], true);
    eventually(Duration::from_secs(5), || {
        (accepted_with_hash(&mut con, &share.hash.to_string()) == 1).then_some(())
    })
    .expect("the share is logged");
    // SIGKILL: the session's duplicate set dies with the engine, so nobody may resume it.
    a.kill();
    let mut again = Miner::connect(b.addr());
    let r = resume(&mut again, &id);
    assert_ne!(again.extranonce1, en1, "a fresh session: {r}");
    assert_eq!(again.authorize(WORKER, "x")["result"], true);
    again
        .wait_for("mining.notify", Duration::from_secs(5))
        .unwrap();
    let replayed = again_on_current_work(&again, &share);
    assert_ne!(
        again.submit(&replayed)["result"],
        true,
        "not the same header"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(accepted_with_hash(&mut con, &share.hash.to_string()), 1);
}

#[test]
fn an_engine_whose_slot_lapsed_in_a_redis_restart_takes_it_back() {
    let mut redis = RedisServer::start();
    let (_jm, _con) = fleet(&redis);
    let engine = stratum(&redis, "engine-1");
    let mut before = Miner::connect(engine.addr());
    join(&mut before);
    // Redis comes back without data: the slot key is gone, and the engine leases it again.
    redis.restart();
    eventually(Duration::from_secs(5), || {
        engine
            .log()
            .contains("the engine slot's lease had lapsed")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("the slot is leased again\n{}", engine.log()));
    let mut con = redis.connection();
    let slot = before.extranonce1[0];
    let holder: Option<String> = redis::cmd("GET")
        .arg(sluice_layout::Keys::new(PREFIX).slot(u32::from(slot)))
        .query(&mut con)
        .unwrap();
    assert!(holder.is_some_and(|h| h.starts_with("engine-1|")));
    let mut after = Miner::connect(engine.addr());
    after.subscribe();
    assert_eq!(
        after.extranonce1[0], slot,
        "new miners are still served, same slot"
    );
    assert_eq!(
        engine.metric("sluice_connections_closed_total{reason=\"slot-lost\"}"),
        0.0
    );
}

#[test]
fn a_stored_state_that_is_not_this_builds_gives_a_fresh_session() {
    let redis = RedisServer::start();
    let (_jm, mut con) = fleet(&redis);
    let engine = stratum(&redis, "engine-1");
    let state_of = |con: &mut redis::Connection, id: &str| -> Value {
        let state: String = redis::cmd("HGET")
            .arg(sluice_layout::Keys::new(PREFIX).session(id))
            .arg("state")
            .query(con)
            .unwrap();
        serde_json::from_str(&state).unwrap()
    };
    let mut corrupt = Vec::new();
    // Another build's version of the same shape, then not JSON at all.
    for garbage in [false, true] {
        let mut miner = Miner::connect(engine.addr());
        let id = join(&mut miner);
        let en1 = miner.extranonce1.clone();
        drop(miner);
        released(&mut con, &id);
        // The release wrote the session's exported state, versioned.
        let state = state_of(&mut con, &id);
        assert!(state["version"].is_u64(), "{state}");
        assert_eq!(state["workers"], json!([WORKER]), "{state}");
        let _: () = redis::cmd("HSET")
            .arg(sluice_layout::Keys::new(PREFIX).session(&id))
            .arg("state")
            .arg(if garbage {
                "{not json".to_owned()
            } else {
                let mut state = state;
                state["version"] = json!(99);
                state.to_string()
            })
            .query(&mut con)
            .unwrap();
        corrupt.push((id, en1));
    }
    for (n, (id, en1)) in corrupt.iter().enumerate() {
        let mut back = Miner::connect(engine.addr());
        let r = resume(&mut back, id);
        assert_ne!(back.extranonce1, *en1, "a fresh extranonce1: {r}");
        assert_ne!(r["result"][0][0][1], id.as_str(), "a fresh session id: {r}");
        assert_eq!(back.authorize(WORKER, "x")["result"], true);
        back.wait_for("mining.notify", Duration::from_secs(5))
            .expect("served as a new miner");
        assert!(
            engine.metric("sluice_session_resumes_refused_total{reason=\"unknown\"}")
                >= (n + 1) as f64,
            "{}",
            engine.log()
        );
    }
    assert!(
        engine.log().contains("a saved session is not resumed"),
        "{}",
        engine.log()
    );
}
