//! Fencing that survives Redis losing its state, and job messages only the fleet's key can sign,
//! with real processes: a `redis-server` the test starts (and restarts empty), `sluice jobmanager`
//! on simulated chains, `sluice stratum` engines and test miners.
//!
//! Proved through the wire, the engines' metrics and Redis only:
//! - after a failover (tokens at 2 or more) and a Redis restart that loses every key, the tokens
//!   count again from 1 in a new fleet epoch, and the engines follow the new leader within 3 s of
//!   Redis answering: miners get its work, and a block found afterwards brings clean work;
//! - a job message not signed with the fleet key (another key, or a signed one altered to carry a
//!   huge token and a prev_hash of the forger's choice), published on `P:jobs` and written to
//!   `P:job:latest`, is refused and counted, reaches no miner, is logged once however many
//!   arrive, and the fleet goes on taking the leader's jobs;
//! - a signed job the engine cannot build, however high its token or whatever its epoch, changes
//!   neither the epoch nor the highest token: the leader's next job is taken.

mod support;

use std::time::{Duration, Instant};

use sluice::plane::FleetKey;
use sluice_layout::job_message::JobMessage;
use support::engine::{eventually, EngineProcess};
use support::fleet::{fleet_key, jobmanager, leader, stratum, wait_for_leader, PREFIX};
use support::leadership::{
    clean_work_within, latest_job, latest_job_message, next_work_within, publish_job, token_of,
    works_until_quiet, FORGED_PREV,
};
use support::miner::Miner;
use support::redis_server::RedisServer;

fn epoch(con: &mut redis::Connection) -> Option<String> {
    redis::cmd("GET")
        .arg(sluice_layout::Keys::new(PREFIX).epoch())
        .query(con)
        .unwrap()
}

/// Mines on the miner's current work until a share is a block, submits it, and waits for the
/// clean job that follows it (`mining.notify` with `params[8] == true`).
fn find_a_block_and_get_clean_work(miner: &mut Miner, what: &str) {
    let block = miner.mine_until_block();
    assert_eq!(miner.submit(&block)["result"], true);
    assert!(
        clean_work_within(miner, Duration::from_secs(10)),
        "{what}: a found block is followed by clean work"
    );
}

/// Waits until `engine`'s `sluice_jobs_published_total` is above `before`.
fn published_above(engine: &EngineProcess, before: f64, within: Duration) -> bool {
    eventually(within, || {
        (engine.metric("sluice_jobs_published_total") > before).then_some(())
    })
    .is_some()
}

#[test]
fn after_a_failover_and_a_redis_restart_the_engines_follow_the_new_epoch() {
    let mut redis = RedisServer::start();
    let mut con = redis.connection();
    let mut jm_a = jobmanager(&redis, "jm-a");
    assert!(wait_for_leader(&mut con).starts_with("jm-a|"));
    let jm_b = jobmanager(&redis, "jm-b");
    let e1 = stratum(&redis, "engine-1");
    let e2 = stratum(&redis, "engine-2");
    let mut m1 = Miner::connect(e1.addr());
    m1.handshake();
    let mut m2 = Miner::connect(e2.addr());
    m2.handshake();

    // The leader dies: the standby leads with a higher token and the engines take its work.
    m1.notifications.clear();
    m2.notifications.clear();
    jm_a.kill();
    for (name, miner) in [("engine-1", &mut m1), ("engine-2", &mut m2)] {
        let moved = next_work_within(miner, Duration::from_secs(5));
        assert!(
            moved.is_some(),
            "{name} takes the standby's work\n{}",
            jm_b.log()
        );
    }
    let lease = leader(&mut con).expect("a leader");
    assert!(lease.starts_with("jm-b|"), "{lease}");
    let token_b = token_of(&lease);
    assert!(token_b >= 2, "{lease}");
    let old_epoch = epoch(&mut con).expect("the lease created a fleet epoch");
    let recorded = latest_job(&mut con).unwrap();
    let applied = JobMessage::decode(&recorded, &fleet_key()).unwrap();
    assert_eq!(applied.token, token_b);
    assert_eq!(applied.epoch.to_string(), old_epoch);

    // Redis comes back empty on the same port: the token counter starts again, below what the
    // engines have seen.
    let before = [
        e1.metric("sluice_jobs_published_total"),
        e2.metric("sluice_jobs_published_total"),
    ];
    m1.notifications.clear();
    m2.notifications.clear();
    redis.restart();
    let answering = Instant::now();
    let mut con = redis.connection();
    for (name, engine, miner, before) in [
        ("engine-1", &e1, &mut m1, before[0]),
        ("engine-2", &e2, &mut m2, before[1]),
    ] {
        let left = Duration::from_secs(3).saturating_sub(answering.elapsed());
        assert!(
            published_above(engine, before, left),
            "{name} takes the new leader's jobs within 3 s of Redis answering again\n{}\n--- jm-b\n{}",
            engine.log(),
            jm_b.log()
        );
        let left = Duration::from_secs(3).saturating_sub(answering.elapsed());
        assert!(
            miner.wait_for("mining.notify", left).is_some(),
            "miners on {name} get the new epoch's work within 3 s"
        );
    }
    let new_epoch = epoch(&mut con).expect("a new fleet epoch");
    assert_ne!(new_epoch, old_epoch, "an empty Redis starts a new epoch");
    let taken = latest_job_message(&mut con);
    assert_eq!(taken.epoch.to_string(), new_epoch);
    assert!(
        taken.token < token_b,
        "the new epoch's token {} counts again from 1 (was {token_b})",
        taken.token
    );
    for engine in [&e1, &e2] {
        // Logged once the job is in the feed, so it can trail the miners' notify a little.
        assert!(
            engine.logged_within(
                "fleet epoch changed (Redis lost its state or failed over)",
                Duration::from_secs(2)
            ),
            "{}",
            engine.log()
        );
    }

    // The fleet works in the new epoch: a block found on either engine brings clean work.
    find_a_block_and_get_clean_work(&mut m1, "engine-1");
    assert!(
        clean_work_within(&mut m2, Duration::from_secs(5)),
        "engine-2's miner gets the clean work too"
    );

    // The old epoch's job, recorded and published again (anyone who can write to Redis can):
    // signed, but older than what the engines follow, so refused, and miners stay on new work.
    let refused = e1.metric("sluice_jobs_refused_total");
    let published = e1.metric("sluice_jobs_published_total");
    publish_job(&mut con, &recorded);
    eventually(Duration::from_secs(3), || {
        (e1.metric("sluice_jobs_refused_total") > refused).then_some(())
    })
    .expect("the replayed job of the old epoch is refused");
    assert_eq!(e1.metric("sluice_jobs_published_total"), published);
    assert!(
        e1.logged_within("a replayed message?", Duration::from_secs(2)),
        "{}",
        e1.log()
    );
}

#[test]
fn forged_job_messages_are_refused_and_the_fleet_keeps_working() {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    let _jm = jobmanager(&redis, "jm-a");
    wait_for_leader(&mut con);
    let e1 = stratum(&redis, "engine-1");
    let e2 = stratum(&redis, "engine-2");
    let mut m1 = Miner::connect(e1.addr());
    m1.handshake();
    let mut m2 = Miner::connect(e2.addr());
    m2.handshake();

    let real_bytes = latest_job(&mut con).expect("the leader's latest job");
    let real = JobMessage::decode(&real_bytes, &fleet_key()).unwrap();
    let mut forged = real.clone();
    forged.token = u64::MAX;
    forged.sequence = u64::MAX;
    forged.clean = true;
    forged.parts.prev_hash = FORGED_PREV;
    // One signed with a key of the forger's own; one the real message with its signed fields
    // rewritten (token and prev_hash) and the leader's tag kept.
    let other_key = FleetKey::new(*b"not the fleet's key, but 32 long").unwrap();
    let with_other_key = forged.encode(&other_key);
    let mut altered = real_bytes.clone();
    altered[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
    let prev_at = 4 + 8 + 8 + 8 + 8 + 1 + 8;
    altered[prev_at..prev_at + 32].copy_from_slice(&FORGED_PREV);

    let refused_before = [
        e1.metric("sluice_jobs_refused_total"),
        e2.metric("sluice_jobs_refused_total"),
    ];
    let _: () = redis::cmd("SET")
        .arg(sluice_layout::Keys::new(PREFIX).latest_job())
        .arg(&with_other_key)
        .query(&mut con)
        .unwrap();
    // A flood: every one is counted, the log hears of it once.
    const FLOOD: usize = 100;
    for i in 0..FLOOD {
        let bytes = if i % 2 == 0 {
            &with_other_key
        } else {
            &altered
        };
        publish_job(&mut con, bytes);
    }
    for (name, engine, before) in [
        ("engine-1", &e1, refused_before[0]),
        ("engine-2", &e2, refused_before[1]),
    ] {
        eventually(Duration::from_secs(5), || {
            (engine.metric("sluice_jobs_refused_total") >= before + FLOOD as f64).then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "{name} refuses every forged message ({} refused)\n{}",
                engine.metric("sluice_jobs_refused_total"),
                engine.log()
            )
        });
        let logged = engine.log().matches("job message refused").count();
        assert_eq!(logged, 1, "{name} logs a flood once\n{}", engine.log());
    }
    // An engine starting now reads the forged latest job: refused too.
    let e3 = stratum(&redis, "engine-3");
    eventually(Duration::from_secs(5), || {
        (e3.metric("sluice_jobs_refused_total") >= 1.0).then_some(())
    })
    .expect("a starting engine refuses the forged latest job");
    let mut m3 = Miner::connect(e3.addr());
    m3.subscribe();
    assert_eq!(m3.authorize(support::miner::WORKER, "x")["result"], true);

    // No miner ever works on the forged prev_hash.
    for (name, miner) in [("engine-1", &mut m1), ("engine-2", &mut m2)] {
        for (n, prev_hash) in works_until_quiet(miner, Duration::from_millis(500)) {
            assert_ne!(
                prev_hash, FORGED_PREV,
                "a miner on {name} got forged work: {n}"
            );
        }
        assert_ne!(miner.work.as_ref().unwrap().prev_hash, FORGED_PREV);
    }

    // The leader's next job is still taken: a block found brings clean work to every engine,
    // the one that started on the forged latest job included.
    find_a_block_and_get_clean_work(&mut m1, "engine-1");
    for (name, miner) in [("engine-2", &mut m2), ("engine-3", &mut m3)] {
        assert!(
            clean_work_within(miner, Duration::from_secs(5)),
            "{name}'s miner gets the leader's clean work"
        );
        assert_ne!(miner.work.as_ref().unwrap().prev_hash, FORGED_PREV);
    }
    assert_ne!(m1.work.as_ref().unwrap().prev_hash, FORGED_PREV);
}

#[test]
fn a_signed_job_that_cannot_be_built_raises_no_fence() {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    let _jm = jobmanager(&redis, "jm-a");
    wait_for_leader(&mut con);
    let engine = stratum(&redis, "engine-1");
    let mut miner = Miner::connect(engine.addr());
    miner.handshake();

    // A job with the fleet's key (a jobmanager with a bug, not a forger) whose coinbase cannot
    // be built, with the highest token there is, in this epoch and in another.
    let real = latest_job_message(&mut con);
    let refused_before = engine.metric("sluice_jobs_refused_total");
    for epoch in [real.epoch, real.epoch ^ 1] {
        let mut broken = real.clone();
        broken.epoch = epoch;
        broken.token = u64::MAX;
        broken.sequence = u64::MAX;
        broken.parts.coinb1.clear();
        publish_job(&mut con, &broken.encode(&fleet_key()));
    }
    eventually(Duration::from_secs(5), || {
        (engine.metric("sluice_jobs_refused_total") >= refused_before + 2.0).then_some(())
    })
    .expect("the engine refuses both jobs it cannot build");
    assert!(
        !engine.log().contains("fleet epoch changed"),
        "a job that was not used switched the epoch\n{}",
        engine.log()
    );
    // The leader's jobs (its real token) are still taken.
    find_a_block_and_get_clean_work(&mut miner, "engine-1");
}
