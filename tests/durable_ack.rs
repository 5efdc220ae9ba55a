//! Durable acknowledgement (`share_log.durable_ack`), with real processes: a `redis-server`, a
//! `sluice jobmanager`, a `sluice stratum` engine and test miners. With it on, an engine killed
//! with SIGKILL under load has written every share it answered `true` to `P:shares`; with Redis
//! away the answers come from the fsynced spool; a share the log drops is never answered `true`;
//! and replies keep their order behind a held accept. The same SIGKILL run with it off prints
//! how many answered shares it lost (the window the option closes).

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::engine::{eventually, EngineProcess};
use support::fleet::{shares_in_stream, still_jobmanager, wait_for_leader, FLEET_KEY, PREFIX};
use support::miner::{error_code, Miner, Share, WORKER};
use support::redis_server::RedisServer;

/// An engine's files: its configuration and its share spool.
struct EngineFiles {
    _dir: sluice_testkit::TempDir,
    config: String,
    spool: PathBuf,
}

/// The fleet tests' engine settings, with these `[share_log]` keys.
fn engine_files(share_log: &str) -> EngineFiles {
    let dir = sluice_testkit::TempDir::new("durable");
    let spool = dir.path().join("shares.spool");
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "[redis]\nlease_secs = 1.0\nservice_ttl_secs = 1.0\nfleet_key = \"{FLEET_KEY}\"\n\
             [share_log]\nspool_path = \"{}\"\n{share_log}\n\
             [engine]\nthreads = 2\npin_threads = false\n[vardiff]\nenabled = false\n\
             [[listeners]]\naddress = \"127.0.0.1:0\"\nstart_difficulty = 0.000000001\nmin_difficulty = 0.000000001\n\
             [limits]\nmax_shares_per_job = 1000000\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            spool.display()
        ),
    )
    .unwrap();
    EngineFiles {
        config: config.to_str().unwrap().to_owned(),
        _dir: dir,
        spool,
    }
}

fn stratum(redis: &RedisServer, id: &str, files: &EngineFiles) -> EngineProcess {
    let url = redis.url();
    EngineProcess::start_role(
        "stratum",
        &[
            "--redis",
            url.as_str(),
            "--prefix",
            PREFIX,
            "--id",
            id,
            "--config",
            files.config.as_str(),
        ],
    )
}

fn submit_line(id: u64, share: &Share) -> String {
    json!({
        "id": id,
        "method": "mining.submit",
        "params": [WORKER, share.job_id, share.extranonce2, share.ntime, share.nonce],
    })
    .to_string()
        + "\n"
}

/// The answer to request `id`, or `None` once the connection ends (or says nothing for 10 s).
fn answer(miner: &mut Miner, id: u64) -> Option<Value> {
    loop {
        match miner.read_message(Duration::from_secs(10)) {
            Ok(Some(v)) if v["id"] == json!(id) => return Some(v),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return None,
        }
    }
}

/// What a SIGKILL under load came to: shares answered `true`, and of them, in `P:shares`.
struct KillRun {
    told: usize,
    lost: usize,
}

/// `miners` threads submit accepted shares as fast as they are answered, each recording the
/// hashes answered `true`, until the engine is killed (SIGKILL) after `run_for`; then every
/// answered hash is looked for in `P:shares`, where none may be twice.
fn kill_under_load(share_log: &str, miners: usize, run_for: Duration) -> KillRun {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    let _jm = still_jobmanager(&redis, "jm-a");
    wait_for_leader(&mut con);
    let files = engine_files(share_log);
    let mut engine = stratum(&redis, "engine-1", &files);
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..miners)
        .map(|_| {
            let addr = engine.addr();
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut miner = Miner::connect(addr);
                miner.handshake();
                let mut told = Vec::new();
                for id in 1_000_000u64.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let share = miner.find_share(miner.difficulty, true, None);
                    if miner.send_raw(submit_line(id, &share).as_bytes()).is_err() {
                        break;
                    }
                    match answer(&mut miner, id) {
                        Some(v) if v["result"] == true => told.push(share.hash.to_string()),
                        Some(v) => panic!("an honest share refused: {v}"),
                        None => break,
                    }
                }
                told
            })
        })
        .collect();
    std::thread::sleep(run_for);
    engine.kill();
    stop.store(true, Ordering::Relaxed);
    let told: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert!(told.len() > 100, "only {} shares answered", told.len());
    let mut in_stream = HashMap::<String, usize>::new();
    for share in shares_in_stream(&mut con) {
        if share["verdict"] == "accepted" {
            *in_stream.entry(share["hash"].clone()).or_default() += 1;
        }
    }
    let twice: Vec<_> = in_stream.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "logged twice: {twice:?}");
    let lost = told.iter().filter(|h| !in_stream.contains_key(*h)).count();
    KillRun {
        told: told.len(),
        lost,
    }
}

#[test]
fn with_durable_ack_a_sigkill_under_load_loses_no_share_answered_true() {
    let run = kill_under_load("durable_ack = true", 8, Duration::from_secs(4));
    println!(
        "durable_ack on: {} shares answered true, {} of them not in P:shares",
        run.told, run.lost
    );
    assert_eq!(run.lost, 0, "of {} answered true", run.told);
}

#[test]
fn without_durable_ack_a_sigkill_under_load_loses_the_unwritten_batch_and_says_how_many() {
    // The window the option closes: printed, not asserted (a given run may lose none).
    let run = kill_under_load("", 8, Duration::from_secs(4));
    println!(
        "durable_ack off: {} shares answered true, {} of them not in P:shares",
        run.told, run.lost
    );
}

/// A miner with its first job from a jobmanager, on an engine with these `[share_log]` keys.
struct Mining {
    redis: RedisServer,
    _jobmanager: EngineProcess,
    engine: EngineProcess,
    files: EngineFiles,
    miner: Miner,
}

fn mining(share_log: &str) -> Mining {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    let _jobmanager = still_jobmanager(&redis, "jm-a");
    wait_for_leader(&mut con);
    let files = engine_files(share_log);
    let engine = stratum(&redis, "engine-1", &files);
    let mut miner = Miner::connect(engine.addr());
    miner.handshake();
    Mining {
        redis,
        _jobmanager,
        engine,
        files,
        miner,
    }
}

fn spool_text(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

#[test]
fn with_redis_stopped_accepts_are_answered_from_the_fsynced_spool_which_holds_them() {
    let mut m = mining("durable_ack = true");
    m.redis.stop();
    let mut told = Vec::new();
    for _ in 0..20 {
        let share = m.miner.find_share(m.miner.difficulty, true, None);
        let reply = m.miner.submit(&share);
        assert_eq!(reply["result"], true, "{reply}\n{}", m.engine.log());
        told.push(share.hash.to_string());
    }
    // Answered, so already in the spool (fsynced before the answer left).
    let spool = spool_text(&m.files.spool);
    for hash in &told {
        assert!(spool.contains(hash.as_str()), "{hash} not in the spool");
    }
}

#[test]
fn with_the_spool_full_no_dropped_share_is_answered_true() {
    // Room for no batch at all: with Redis stopped every batch is dropped.
    let mut m = mining("durable_ack = true\nmax_spool_bytes = 1");
    m.redis.stop();
    for _ in 0..10 {
        let share = m.miner.find_share(m.miner.difficulty, true, None);
        let reply = m.miner.submit(&share);
        assert_eq!(error_code(&reply), 20, "{reply}");
        assert_eq!(reply["error"][1], "share not recorded, try again");
    }
    assert!(spool_text(&m.files.spool).is_empty());
    let dropped = eventually(Duration::from_secs(5), || {
        let n = m
            .engine
            .metric("sluice_share_log_total{kind=\"dropped_accepted\"}");
        (n >= 10.0).then_some(n)
    });
    assert!(dropped.is_some(), "{}", m.engine.metrics());
}

#[test]
fn a_reject_behind_a_held_accept_on_one_connection_is_answered_after_it() {
    // A long group commit (and batch interval): the accept is held a while, the reject behind it
    // would pass it if replies were not kept in order.
    let mut m = mining("durable_ack = true\ndurable_commit_ms = 300\nbatch_interval_ms = 1000");
    for round in 0..3 {
        let share = m.miner.find_share(m.miner.difficulty, true, None);
        // The share, then the same share again (a duplicate), in one write.
        let (a, b) = (10 + 2 * round, 11 + 2 * round);
        let both = submit_line(a, &share) + &submit_line(b, &share);
        let sent = Instant::now();
        m.miner.send_raw(both.as_bytes()).unwrap();
        let mut replies = Vec::new();
        while replies.len() < 2 {
            match m.miner.read_message(Duration::from_secs(10)) {
                Ok(Some(v)) if v.get("id").is_some_and(|id| !id.is_null()) => replies.push(v),
                Ok(Some(_)) => {}
                other => panic!("no replies: {other:?}"),
            }
        }
        assert_eq!(replies[0]["id"], a, "{replies:?}");
        assert_eq!(replies[0]["result"], true, "{replies:?}");
        assert_eq!(replies[1]["id"], b, "{replies:?}");
        assert_eq!(error_code(&replies[1]), 22, "{replies:?}");
        println!("round {round}: both answered after {:?}", sent.elapsed());
    }
}

#[test]
fn a_connection_at_max_held_replies_reads_on_once_they_are_answered() {
    let mut m = mining("durable_ack = true\nmax_held_replies = 2");
    // Ten accepts in one write: at most two wait at a time, and all are answered, in order.
    let mut lines = String::new();
    for id in 100..110 {
        let share = m.miner.find_share(m.miner.difficulty, true, None);
        lines += &submit_line(id, &share);
    }
    m.miner.send_raw(lines.as_bytes()).unwrap();
    for id in 100..110 {
        let reply = loop {
            match m.miner.read_message(Duration::from_secs(10)) {
                Ok(Some(v)) if v.get("id").is_some_and(|id| !id.is_null()) => break v,
                Ok(Some(_)) => {}
                other => panic!("no reply to {id}: {other:?}"),
            }
        };
        assert_eq!(reply["id"], id, "{reply}");
        assert_eq!(reply["result"], true, "{reply}");
    }
}

/// `share_log.durable_replicas = 1`: with the replica answering, batches are kept in Redis
/// alone; with the replica frozen, each batch Redis took but no replica confirmed is spooled too
/// (so a failover to that replica could not lose it) and the accepts are still answered; once the
/// replica answers again the spool is replayed and emptied, and every share answered `true` is in
/// the stream exactly once.
#[test]
fn with_durable_replicas_a_batch_no_replica_confirmed_is_spooled_too_and_logged_once() {
    let redis = RedisServer::start();
    let replica = RedisServer::start_replica_of(&redis, &[]);
    let mut con = redis.connection();
    let _jm = still_jobmanager(&redis, "jm-a");
    wait_for_leader(&mut con);
    let files = engine_files(
        "durable_ack = true\ndurable_replicas = 1\ndurable_replicas_timeout_ms = 1000",
    );
    let engine = stratum(&redis, "engine-1", &files);
    let mut miner = Miner::connect(engine.addr());
    miner.handshake();
    let mut told = Vec::new();
    let submit = |miner: &mut Miner, told: &mut Vec<String>| {
        let share = miner.find_share(miner.difficulty, true, None);
        let reply = miner.submit(&share);
        assert_eq!(reply["result"], true, "{reply}\n{}", engine.log());
        told.push(share.hash.to_string());
    };
    for _ in 0..5 {
        submit(&mut miner, &mut told);
    }
    let unreplicated = "sluice_share_log_total{kind=\"unreplicated_batches\"}";
    assert_eq!(engine.metric(unreplicated), 0.0, "{}", engine.metrics());
    assert!(spool_text(&files.spool).is_empty());

    replica.pause();
    let frozen_from = told.len();
    for _ in 0..5 {
        submit(&mut miner, &mut told);
    }
    assert!(engine.metric(unreplicated) >= 1.0, "{}", engine.metrics());
    let spool = spool_text(&files.spool);
    for hash in &told[frozen_from..] {
        assert!(
            spool.contains(hash.as_str()),
            "{hash} answered true but not in the spool"
        );
    }

    replica.resume();
    let emptied = eventually(Duration::from_secs(15), || {
        spool_text(&files.spool).is_empty().then_some(())
    });
    assert!(
        emptied.is_some(),
        "the spool is replayed once the replica confirms\n{}",
        engine.log()
    );
    let mut counts: HashMap<String, usize> = HashMap::new();
    for entry in shares_in_stream(&mut con) {
        if let Some(h) = entry.get("hash") {
            *counts.entry(h.clone()).or_default() += 1;
        }
    }
    for hash in &told {
        assert_eq!(
            counts.get(hash),
            Some(&1),
            "{hash} is in the stream exactly once"
        );
    }
    let mut on_replica = replica.connection();
    let replicated = eventually(Duration::from_secs(5), || {
        let n: usize = redis::cmd("XLEN")
            .arg(support::fleet::keys().shares())
            .query(&mut on_replica)
            .ok()?;
        (n >= told.len()).then_some(n)
    });
    assert!(replicated.is_some(), "the replica holds every share");
}
