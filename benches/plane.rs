//! The Redis plane's two figures (issue 5): jobmanager-to-engine job latency, and the share log's
//! throughput into Redis.
//!
//! ```text
//! cargo bench --bench plane                  # DURATION=20 MINERS=200 RECORDS=300000
//! ```
//!
//! 1. **Job latency.** A real `redis-server`, `sluice jobmanager` on the simulated chain refreshing
//!    its job every 50 ms, and one `sluice stratum` engine with MINERS connected miners. Each job
//!    carries the jobmanager's publish time; the engine records publish-to-applied for every job
//!    (`sluice_plane_job_latency_seconds`), read here after DURATION seconds. Both processes share this
//!    machine's clock.
//! 2. **Share log throughput.** The engine's share log writer (`plane::sharelog`), in this
//!    process, against a real `redis-server`: RECORDS share records queued as fast as the writer
//!    takes them, timed until Redis holds them all, for several batch sizes.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::plane::sharelog::{spawn_writer, LoggedShare, ShareLogSettings, ShareLogStats};
use sluice::plane::PlaneSettings;
use sluice::session::ShareRecord;
use sluice::units::{Difficulty, Extranonce1, HeaderHash, JobId};
use support::engine::{eventually, EngineProcess};
use support::miner::Miner;
use support::redis_server::RedisServer;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn job_latency(seconds: u64, miners: usize) {
    let redis = RedisServer::start();
    let url = redis.url();
    let dir = support::engine::tempdir::TempDir::new("plane-bench");
    let spool = dir.path().join("shares.spool");
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "[redis]\nfleet_key = \"{}\"\n[engine]\nthreads = 1\npin_threads = false\n[limits]\nmax_connections_per_ip = 100000\n[share_log]\nspool_path = \"{}\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            support::fleet::FLEET_KEY,
            spool.display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let common = ["--redis", url.as_str(), "--config", config];
    let mut jm_args = common.to_vec();
    jm_args.extend([
        "--id",
        "jm",
        "--block-interval",
        "0",
        "--refresh-interval",
        "0.05",
    ]);
    let _jm = EngineProcess::start_role("jobmanager", &jm_args);
    let mut e_args = common.to_vec();
    e_args.extend(["--id", "engine"]);
    let engine = EngineProcess::start_role("stratum", &e_args);
    let _miners: Vec<Miner> = (0..miners)
        .map(|_| {
            let mut m = Miner::connect(engine.addr());
            m.handshake();
            m
        })
        .collect();
    let count = |e: &EngineProcess| e.metric("sluice_plane_job_latency_seconds_count");
    let before = eventually(Duration::from_secs(10), || {
        let c = count(&engine);
        (c > 0.0).then_some(c)
    })
    .expect("jobs reach the engine");
    std::thread::sleep(Duration::from_secs(seconds));
    let q = |q: &str| {
        engine.metric(&format!(
            "sluice_plane_job_latency_seconds{{quantile=\"{q}\"}}"
        )) * 1000.0
    };
    println!(
        "job latency, jobmanager publish -> engine feed: {} jobs, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({miners} miners connected)",
        count(&engine) - before,
        q("0.5"),
        q("0.99"),
        q("1"),
    );
}

fn record(i: u64) -> LoggedShare {
    LoggedShare {
        record: ShareRecord {
            worker: Arc::from(format!("bcrt1qworker.rig{}", i % 100).as_str()),
            job_id: Some(JobId(i / 1000)),
            height: Some(840_000),
            assigned_difficulty: Difficulty::new(65_536.0).unwrap(),
            share_difficulty: Difficulty::new(91_234.5).ok(),
            result: Ok(()),
            is_block: false,
            hash: Some(HeaderHash([(i % 251) as u8; 32])),
        },
        session: Extranonce1::new(&(i as u32).to_be_bytes()).unwrap(),
        client: "10.1.2.3".parse().unwrap(),
        user_agent: Some(Arc::from("cgminer/4.11.1")),
        at_ms: 1_795_000_000_000 + i,
        durable: None,
    }
}

fn share_log_throughput(records: usize, batch_size: usize) {
    let redis = RedisServer::start();
    let dir = support::engine::tempdir::TempDir::new("sharelog-bench");
    let plane = PlaneSettings {
        url: redis.url().into(),
        prefix: "bench".into(),
        id: "engine".into(),
        service_ttl: Duration::from_secs(10),
        lease: Duration::from_secs(2),
        session_ttl: Duration::from_secs(600),
        fleet_key: support::fleet::fleet_key(),
    };
    let log = ShareLogSettings {
        batch_size,
        batch_interval: Duration::from_millis(100),
        stream_maxlen: 10_000_000,
        spool_path: dir.path().join("spool"),
        max_spool_bytes: 1 << 30,
        max_rollup_workers: sluice::plane::sharelog::DEFAULT_MAX_ROLLUP_WORKERS,
        durable_ack: None,
        durable_replicas: None,
    };
    let stats = Arc::new(ShareLogStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = crossbeam_channel::bounded(sluice::plane::sharelog::SHARE_QUEUE);
    let writer = spawn_writer(plane, log, rx, Arc::clone(&stats), Arc::clone(&stop)).unwrap();
    // Built before the clock starts: the figure is the writer's and Redis's, not ours.
    let shares: Vec<LoggedShare> = (0..records as u64).map(record).collect();
    let started = Instant::now();
    for share in shares {
        tx.send(share).unwrap();
    }
    while stats.written.load(Ordering::Relaxed) < records as u64 {
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the writer stalled"
        );
    }
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    drop(tx);
    writer.join().unwrap();
    let mut con = redis.connection();
    let len: u64 = redis::cmd("XLEN")
        .arg("bench:shares")
        .query(&mut con)
        .unwrap();
    assert_eq!(len, records as u64, "every record is in the stream");
    assert_eq!(stats.spooled_batches.load(Ordering::Relaxed), 0);
    println!(
        "share log into Redis: {records} records, batch_size {batch_size}: {:.2} s, {:.0} records/s",
        took.as_secs_f64(),
        records as f64 / took.as_secs_f64()
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let seconds = env_usize("DURATION", 20) as u64;
    let miners = env_usize("MINERS", 200);
    let records = env_usize("RECORDS", 300_000);
    job_latency(seconds, miners);
    for batch in [100, 500, 2000] {
        share_log_throughput(records, batch);
    }
}
