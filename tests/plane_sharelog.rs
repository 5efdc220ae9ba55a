//! The share log through a Redis outage, with real processes (a `redis-server` the test stops
//! and starts, a `sluice jobmanager`, a `sluice stratum` engine, a test miner): mining goes on
//! while Redis is away, and every share reaches `P:shares` exactly once when it returns.

mod support;

use std::time::{Duration, Instant};

use support::engine::eventually;
use support::fleet::{leader, shares_in_stream, stratum, PREFIX};
use support::miner::Miner;
use support::redis_server::RedisServer;

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
            .arg(sluice_layout::Keys::new(PREFIX).rollup(minute))
            .arg(format!("{}|accepted", support::miner::WORKER))
            .query(&mut con)
            .unwrap();
        rolled += n.unwrap_or(0);
    }
    assert_eq!(rolled as usize, accepted.len());
}
