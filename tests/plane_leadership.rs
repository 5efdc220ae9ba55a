//! Jobmanager leadership through the Redis control plane, with real processes: a `redis-server`
//! the test starts, two `sluice jobmanager` (simulated chains), `sluice stratum` engines and test
//! miners. Proved through the wire and Redis only:
//! - exactly one jobmanager leads; engines started after it have work at once;
//! - killing the leader: the standby publishes, and miners on both engines get its work, within
//!   3 s;
//! - a job carrying a stale fencing token (signed with the fleet key) is refused by the engines;
//! - the registry lists every live process without `KEYS`, and a dead one drops out with its TTL;
//! - operators pause and promote jobmanagers through `P:jm:control`;
//! - a deposed leader that wakes up publishes nothing.

mod support;

use std::time::{Duration, Instant};

use support::engine::eventually;
use support::fleet::{
    fleet_key, jobmanager, leader, live_services, role, stratum, wait_for_leader, PREFIX,
};
use support::leadership::{
    latest_job_message, next_work_within, publish_job, token_of, works_until_quiet, FORGED_PREV,
};
use support::miner::Miner;
use support::redis_server::RedisServer;

#[test]
fn the_standby_takes_over_within_3_s_and_stale_tokens_are_refused() {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    let mut jm_a = jobmanager(&redis, "jm-a");
    let leading = wait_for_leader(&mut con);
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
        .arg(sluice_layout::Keys::new(PREFIX).service("engine-1"))
        .arg("role")
        .query(&mut con)
        .unwrap();
    assert_eq!(role, "stratum");
    let state: String = redis::cmd("HGET")
        .arg(sluice_layout::Keys::new(PREFIX).service("jm-b"))
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
        let moved = next_work_within(miner, Duration::from_secs(3));
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
    let token_b = token_of(&leading);
    assert!(token_b >= 2);

    // A job from the deposed leader (its older token) reaches Redis's channel, as it could
    // through a partition: the engines refuse it.
    let mut stale = latest_job_message(&mut con);
    assert_eq!(stale.token, token_b);
    stale.token = token_b - 1;
    stale.sequence += 1000;
    stale.clean = true;
    stale.parts.prev_hash = FORGED_PREV;
    let refused_before = e1.metric("sluice_jobs_refused_total");
    publish_job(&mut con, &stale.encode(&fleet_key()));
    eventually(Duration::from_secs(3), || {
        (e1.metric("sluice_jobs_refused_total") > refused_before
            && e2.metric("sluice_jobs_refused_total") >= 1.0)
            .then_some(())
    })
    .expect("both engines refuse the stale token");
    for (n, prev_hash) in works_until_quiet(&mut m1, Duration::from_millis(500)) {
        assert_ne!(
            prev_hash, FORGED_PREV,
            "no miner works on the stale job: {n}"
        );
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
fn operators_pause_and_promote_jobmanagers_through_the_control_hash() {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    let _a = jobmanager(&redis, "jm-a");
    wait_for_leader(&mut con);
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
    let control = sluice_layout::Keys::new(PREFIX).jm_control();

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
    wait_for_leader(&mut con);
    let _jm_b = role(
        &redis,
        "jobmanager",
        "jm-b",
        &["--block-interval", "0", "--refresh-interval", "0.1"],
    );
    // jm-a freezes (a long GC pause, a stalled VM): its lease lapses and jm-b takes over.
    // SAFETY: kill(2) touches no memory of ours, and the pid is a child of this test not yet
    // reaped, so it names no other process.
    unsafe { libc::kill(jm_a.pid() as i32, libc::SIGSTOP) };
    let token_b = eventually(Duration::from_secs(5), || {
        leader(&mut con)
            .filter(|l| l.starts_with("jm-b|"))
            .map(|l| token_of(&l))
    })
    .expect("jm-b takes the lease");

    // Listen to the job channel, then wake jm-a up: every job published from now on carries
    // jm-b's token, never jm-a's older one.
    let mut sub = redis.connection();
    let mut pubsub = sub.as_pubsub();
    pubsub
        .subscribe(sluice_layout::Keys::new(PREFIX).jobs_channel())
        .unwrap();
    pubsub
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    // SAFETY: as for the SIGSTOP above: jm-a is still our unreaped child.
    unsafe { libc::kill(jm_a.pid() as i32, libc::SIGCONT) };
    let until = Instant::now() + Duration::from_secs(3);
    let mut seen = 0;
    while Instant::now() < until {
        if let Ok(msg) = pubsub.get_message() {
            let job = sluice_layout::job_message::JobMessage::decode(
                msg.get_payload_bytes(),
                &fleet_key(),
            )
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
