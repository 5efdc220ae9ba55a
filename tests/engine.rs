//! The engine over real TCP: the built `sluice` binary, started by each test, driven by test miners.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::engine::{eventually, EngineProcess};
use support::miner::{error_code, Miner, WORKER};

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn every_method_and_error_code_over_tcp() {
    let engine = EngineProcess::start_default(&[]);
    let mut m = Miner::connect(engine.addr());

    // Before subscribing: authorize and submit are refused with 25.
    assert_eq!(error_code(&m.authorize(WORKER, "x")), 25);
    let r = m.request(
        "mining.submit",
        json!([WORKER, "1", "0000000000000000", "00000000", "00000000"]),
    );
    assert_eq!(error_code(&r), 25);

    let r = m.configure_version_rolling("ffffffff");
    assert_eq!(r["result"]["version-rolling"], true);
    assert_eq!(r["result"]["version-rolling.mask"], "1fffe000");
    let r = m.subscribe();
    assert_eq!(r["error"], Value::Null);
    assert_eq!(m.extranonce1.len(), 4);
    assert_eq!(m.extranonce2_size, 8);
    assert_eq!(
        m.authorize("not-a-valid-address-but-free-names-are-on", "x")["result"],
        true
    );
    let r = m.authorize(WORKER, "x");
    assert_eq!(r["result"], true);
    let set_difficulty = m.wait_for("mining.set_difficulty", 5 * SECOND).unwrap();
    assert_eq!(set_difficulty["params"][0].as_f64(), Some(1e-9));
    let notify = m.wait_for("mining.notify", 5 * SECOND).unwrap();
    assert_eq!(notify["params"][8], true, "first work is clean");
    assert_eq!(
        m.request("mining.extranonce.subscribe", json!([]))["result"],
        true
    );
    assert_eq!(
        error_code(&m.request("mining.get_transactions", json!([]))),
        20
    );

    // Shares: accepted, duplicate, low difficulty, unknown job, unknown worker, malformed.
    let good = m.find_share(1e-9, true, None);
    assert_eq!(m.submit(&good)["result"], true);
    assert_eq!(error_code(&m.submit(&good)), 22);
    let low = m.find_share(1e-9, false, None);
    assert_eq!(error_code(&m.submit(&low)), 23);
    let mut unknown_job = m.find_share(1e-9, true, None);
    unknown_job.job_id = "ffff".into();
    assert_eq!(error_code(&m.submit(&unknown_job)), 21);
    let other = m.find_share(1e-9, true, None);
    assert_eq!(error_code(&m.submit_as("nobody.rig", &other)), 24);
    let mut short = m.find_share(1e-9, true, None);
    short.nonce.pop();
    assert_eq!(error_code(&m.submit(&short)), 20);

    // Version rolling: bits inside the negotiated mask are accepted, outside refused.
    let rolled = m.find_share(1e-9, true, Some(0x0000_6000));
    assert_eq!(m.submit(&rolled)["result"], true);
    let mut outside = m.find_share(1e-9, true, Some(0x0000_2000));
    outside.version_bits = Some("40000000".into());
    assert_eq!(error_code(&m.submit(&outside)), 20);

    // suggest_difficulty answers true and sends the new difficulty.
    assert_eq!(
        m.request("mining.suggest_difficulty", json!([0.5]))["result"],
        true
    );
    let d = m.wait_for("mining.set_difficulty", 5 * SECOND).unwrap();
    assert_eq!(d["params"][0].as_f64(), Some(0.5));

    // Malformed JSON: error 20 with a null id, and the connection stays.
    m.send_raw(b"{this is not json\n").unwrap();
    let v = m.read_message(5 * SECOND).unwrap().unwrap();
    assert_eq!((error_code(&v), v["id"].clone()), (20, Value::Null));
    assert_eq!(
        m.request("mining.extranonce.subscribe", json!([]))["result"],
        true
    );

    let status = engine.status();
    assert_eq!(status["shares"]["accepted"], 2);
    assert_eq!(status["shares"]["rejected"]["duplicate"], 1);
    assert_eq!(status["shares"]["rejected"]["low-difficulty"], 1);
    assert_eq!(status["shares"]["rejected"]["job-not-found"], 1);
    assert_eq!(status["shares"]["rejected"]["unauthorized-worker"], 1);
    assert_eq!(status["shares"]["rejected"]["version-bits-outside-mask"], 1);
    assert!(engine.metric("sluice_submit_latency_seconds_count") >= 7.0);
}

#[test]
fn a_block_found_gives_every_connection_clean_work() {
    // One hash in about 40 is a block; shares are one in four.
    let engine = EngineProcess::start_default(&["--network-difficulty", "1e-8"]);
    let mut miners: Vec<Miner> = (0..20).map(|_| Miner::connect(engine.addr())).collect();
    for m in &mut miners {
        m.handshake();
    }
    let first_job = miners[0].work.as_ref().unwrap().job_id.clone();
    let block = loop {
        let share = miners[0].find_share(1e-9, true, None);
        if miners[0].is_block(&share) {
            break share;
        }
    };
    assert_eq!(miners[0].submit(&block)["result"], true);
    let block_hash = Miner::hash_bytes(&block);
    for (i, m) in miners.iter_mut().enumerate() {
        let notify = m
            .wait_for("mining.notify", 10 * SECOND)
            .unwrap_or_else(|| panic!("miner {i} got no new work"));
        assert_eq!(
            notify["params"][8], true,
            "miner {i}: work after a block is clean"
        );
        assert_ne!(notify["params"][0].as_str().unwrap(), first_job);
        let work = m.work.as_ref().unwrap();
        assert_eq!(
            work.prev_hash, block_hash,
            "miner {i}: new work builds on the block"
        );
    }
    let status = eventually(5 * SECOND, || {
        let s = engine.status();
        (s["blocks"]["accepted"] == 1).then_some(s)
    })
    .expect("the simulated chain accepted the block");
    assert_eq!(status["blocks"]["found"], 1);
    assert_eq!(status["job"]["height"], 102);
    assert!(engine
        .log()
        .contains("block accepted by the simulated chain"));
}

/// A miner hashing at a fixed rate for `duration`, always on the newest work at the newest
/// difficulty. Returns the difficulty it ends at.
fn mine_at_rate(m: &mut Miner, hashes_per_sec: f64, duration: Duration) -> f64 {
    let start = std::time::Instant::now();
    let mut hashes = 0.0;
    while start.elapsed() < duration {
        while let Ok(Some(v)) = m.read_message(Duration::from_millis(1)) {
            let _ = v;
        }
        let difficulty = m.difficulty;
        // One share's worth of hashing takes difficulty * 2^32 hashes on average: sleep to keep
        // the rate, then submit.
        let share = m.find_share(difficulty, true, None);
        hashes += difficulty * 4_294_967_296.0;
        let due = Duration::from_secs_f64(hashes / hashes_per_sec);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        let r = m.submit(&share);
        assert!(
            r["result"] == true || error_code(&r) == 21 || error_code(&r) == 23,
            "{r}"
        );
    }
    m.difficulty
}

#[test]
fn vardiff_converges_from_too_low_and_too_high() {
    // 600 shares a minute wanted; a miner at 20,000 hashes/s wants 20000 * 60 / 600 / 2^32.
    let ideal = 20_000.0 * 60.0 / 600.0 / 4_294_967_296.0;
    let config = format!(
        r#"
[vardiff]
target_shares_per_minute = 600.0
retarget_shares = 10
retarget_interval_secs = 1.0
tolerance = 0.2
[jobs]
refresh_interval_secs = 0.5
[simulated_chain]
network_difficulty = 1000000.0
block_interval_secs = 0
[engine]
threads = 2
pin_threads = false
[[listeners]]
address = "127.0.0.1:0"
start_difficulty = {low}
min_difficulty = 1e-12
[[listeners]]
address = "127.0.0.1:0"
start_difficulty = {high}
min_difficulty = 1e-12
"#,
        low = ideal / 50.0,
        high = ideal * 50.0
    );
    let engine = EngineProcess::start_with_config(&config, &[]);
    let handles: Vec<_> = engine
        .stratum
        .iter()
        .map(|&addr| {
            std::thread::spawn(move || {
                let mut m = Miner::connect(addr);
                m.handshake();
                let start = m.difficulty;
                (
                    start,
                    mine_at_rate(&mut m, 20_000.0, Duration::from_secs(25)),
                )
            })
        })
        .collect();
    for h in handles {
        let (start, end) = h.join().unwrap();
        assert!(
            (end / ideal - 1.0).abs() < 0.5,
            "from {start}: ended at {end}, ideal {ideal}"
        );
    }
}

fn limits_config(extra: &str) -> String {
    format!(
        r#"
[engine]
threads = 2
pin_threads = false
[vardiff]
enabled = false
[simulated_chain]
network_difficulty = 1000000.0
block_interval_secs = 0
[admin]
listen = "127.0.0.1:0"
[[listeners]]
address = "127.0.0.1:0"
start_difficulty = 1e-9
min_difficulty = 1e-12
{extra}
"#
    )
}

#[test]
fn line_length_limit_at_its_edge() {
    let engine =
        EngineProcess::start_with_config(&limits_config("[limits]\nmax_line_length = 256"), &[]);
    let mut m = Miner::connect(engine.addr());
    let request = r#"{"id":1,"method":"mining.extranonce.subscribe","params":[]}"#;
    let at_limit = format!("{request}{}\n", " ".repeat(256 - request.len()));
    assert_eq!(at_limit.len(), 257);
    m.send_raw(at_limit.as_bytes()).unwrap();
    assert_eq!(m.read_message(5 * SECOND).unwrap().unwrap()["result"], true);
    m.send_raw(format!("{request}{}", " ".repeat(257 - request.len())).as_bytes())
        .unwrap();
    assert!(
        m.is_closed_within(5 * SECOND),
        "one byte over the limit closes the connection"
    );
    assert_eq!(
        engine.metric(r#"sluice_connections_closed_total{reason="line-too-long"}"#),
        1.0
    );
}

#[test]
fn connection_limits_total_and_per_ip() {
    let engine = EngineProcess::start_with_config(
        &limits_config("[limits]\nmax_connections = 5\nmax_connections_per_ip = 3"),
        &[],
    );
    let addr = engine.addr();
    let mut from_2: Vec<Miner> = (0..3)
        .map(|_| Miner::connect_from(addr, "127.0.0.2").unwrap())
        .collect();
    for m in &mut from_2 {
        assert_eq!(
            m.request("mining.extranonce.subscribe", json!([]))["result"],
            true
        );
    }
    let mut fourth = Miner::connect_from(addr, "127.0.0.2").unwrap();
    assert!(
        fourth.is_closed_within(5 * SECOND),
        "a 4th connection from one address is refused"
    );
    let mut from_3: Vec<Miner> = (0..2)
        .map(|_| Miner::connect_from(addr, "127.0.0.3").unwrap())
        .collect();
    for m in &mut from_3 {
        assert_eq!(
            m.request("mining.extranonce.subscribe", json!([]))["result"],
            true
        );
    }
    let mut sixth = Miner::connect_from(addr, "127.0.0.4").unwrap();
    assert!(
        sixth.is_closed_within(5 * SECOND),
        "a 6th connection in total is refused"
    );
    assert_eq!(
        engine.metric(r#"sluice_connections_closed_total{reason="limit-per-ip"}"#),
        1.0
    );
    assert_eq!(
        engine.metric(r#"sluice_connections_closed_total{reason="limit-total"}"#),
        1.0
    );
    // A place frees when a connection ends.
    drop(from_2.pop());
    let mut again = eventually(5 * SECOND, || {
        let mut m = Miner::connect_from(addr, "127.0.0.2").ok()?;
        (!m.is_closed_within(Duration::from_millis(300))).then_some(m)
    })
    .expect("a freed place is given again");
    assert_eq!(
        again.request("mining.extranonce.subscribe", json!([]))["result"],
        true
    );
}

#[test]
fn unauthenticated_and_idle_timeouts() {
    let engine = EngineProcess::start_with_config(
        &limits_config("[limits]\nunauthenticated_timeout_secs = 1.0\nidle_timeout_secs = 3.0"),
        &[],
    );
    let mut silent = Miner::connect(engine.addr());
    let mut working = Miner::connect(engine.addr());
    working.handshake();
    assert!(
        silent.is_closed_within(5 * SECOND),
        "no authorize within 1 s"
    );
    // The authorized miner outlived the unauthenticated timeout; keep it busy, then let it idle.
    assert_eq!(
        working.request("mining.extranonce.subscribe", json!([]))["result"],
        true
    );
    assert!(working.is_closed_within(8 * SECOND), "idle for 3 s");
    assert_eq!(
        engine.metric(r#"sluice_connections_closed_total{reason="unauthenticated-timeout"}"#),
        1.0
    );
    assert_eq!(
        engine.metric(r#"sluice_connections_closed_total{reason="idle-timeout"}"#),
        1.0
    );
}

#[test]
fn invalid_share_streak_and_failed_authorize() {
    let config = limits_config("allow_free_worker_names = false\n[limits]\nmax_invalid_streak = 3\nmax_failed_authorize = 2")
        .replace("[engine]", "[pool]\nallow_free_worker_names = false\n[engine]")
        .replace("allow_free_worker_names = false\n[limits]", "[limits]");
    let engine = EngineProcess::start_with_config(&config, &[]);
    let mut m = Miner::connect(engine.addr());
    m.handshake();
    for i in 0..2 {
        let low = m.find_share(1e-9, false, None);
        assert_eq!(error_code(&m.submit(&low)), 23, "share {i}");
    }
    // A good share resets the streak.
    let good = m.find_share(1e-9, true, None);
    assert_eq!(m.submit(&good)["result"], true);
    for _ in 0..2 {
        let low = m.find_share(1e-9, false, None);
        assert_eq!(error_code(&m.submit(&low)), 23);
    }
    let low = m.find_share(1e-9, false, None);
    m.send_raw(
        (json!({"id": 99, "method": "mining.submit", "params": [WORKER, low.job_id, low.extranonce2, low.ntime, low.nonce]})
            .to_string()
            + "\n")
            .as_bytes(),
    )
    .unwrap();
    assert!(
        m.is_closed_within(5 * SECOND),
        "the third invalid share in a row closes"
    );

    let mut a = Miner::connect(engine.addr());
    a.subscribe();
    assert_eq!(error_code(&a.authorize("alice", "x")), 24);
    std::thread::sleep(Duration::from_millis(1100));
    a.send_raw(b"{\"id\":5,\"method\":\"mining.authorize\",\"params\":[\"bob\",\"x\"]}\n")
        .unwrap();
    assert!(
        a.is_closed_within(5 * SECOND),
        "the second failed authorize closes"
    );
    assert_eq!(
        engine.metric(r#"sluice_connections_closed_total{reason="invalid-share-streak"}"#),
        1.0
    );
    assert_eq!(
        engine.metric(r#"sluice_connections_closed_total{reason="failed-authorize"}"#),
        1.0
    );
}

#[test]
fn a_miner_that_does_not_read_is_dropped() {
    let engine = EngineProcess::start_with_config(
        &limits_config("[limits]\nmax_pending_output = 65536"),
        &[],
    );
    let mut m = Miner::connect(engine.addr());
    m.handshake();
    // Ask for replies and never read them: the kernel buffers fill, then the engine's bound.
    let request =
        b"{\"id\":1,\"method\":\"mining.extranonce.subscribe\",\"params\":[]}\n".repeat(1000);
    let closed = (0..2000).any(|_| m.send_raw(&request).is_err());
    assert!(
        closed,
        "the engine never dropped a miner that does not read"
    );
    assert!(eventually(5 * SECOND, || (engine
        .metric(r#"sluice_connections_closed_total{reason="pending-output"}"#)
        == 1.0)
        .then_some(()))
    .is_some());
}

#[test]
fn shutdown_sends_client_reconnect() {
    let mut engine = EngineProcess::start_default(&[]);
    let mut miners: Vec<Miner> = (0..4).map(|_| Miner::connect(engine.addr())).collect();
    for m in &mut miners {
        m.handshake();
    }
    let status = engine.terminate();
    assert!(status.success(), "{status:?}");
    for m in &mut miners {
        let v = m
            .wait_for("client.reconnect", 5 * SECOND)
            .expect("client.reconnect before the end");
        assert_eq!(v["id"], Value::Null);
        assert!(m.is_closed_within(5 * SECOND));
    }
}

#[test]
fn config_check_names_the_bad_key() {
    let dir = support::engine::tempdir::TempDir::new("check");
    let good = dir.path().join("good.toml");
    std::fs::write(&good, include_str!("../sluice.example.toml")).unwrap();
    let out = std::process::Command::new(support::engine::sluice_binary())
        .args(["config", "check"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[listeners]]\naddress = \"0.0.0.0:3333\"\nstart_difficulty = -1\n",
    )
    .unwrap();
    let out = std::process::Command::new(support::engine::sluice_binary())
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("listeners[0].start_difficulty"), "{stderr}");
}

#[test]
fn statsd_sends_gauges_when_configured() {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(5 * SECOND)).unwrap();
    let config = limits_config("").replace(
        "[admin]",
        &format!(
            "[statsd]\naddress = \"{}\"\nprefix = \"pool7\"\ninterval_secs = 0.2\n[admin]",
            udp.local_addr().unwrap()
        ),
    );
    let engine = EngineProcess::start_with_config(&config, &[]);
    let mut m = Miner::connect(engine.addr());
    m.handshake();
    let mut buf = [0u8; 2048];
    let seen = eventually(5 * SECOND, || {
        let n = udp.recv(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        text.contains("pool7.connections:1|g").then_some(text)
    });
    let text = seen.expect("a statsd datagram counting the connection");
    assert!(text.contains("pool7.hashrate:"), "{text}");
}

/// An ordinary Stratum V1 miner, written apart from the engine (Python, standard library), mines on
/// `sluice run`'s embedded simulated chain: work arrives, shares are accepted, blocks are found.
#[test]
fn an_ordinary_miner_mines_blocks_on_sluice_run() {
    let engine = EngineProcess::start(&[
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--no-pin",
        "--start-difficulty",
        "1e-6",
        "--min-difficulty",
        "1e-9",
        "--network-difficulty",
        "2e-5",
    ]);
    let out = std::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pyminer.py"))
        .args(["--url", &format!("stratum+tcp://{}", engine.addr())])
        .args([
            "--user",
            WORKER,
            "--shares",
            "5",
            "--blocks",
            "2",
            "--timeout",
            "60",
        ])
        .output()
        .expect("python3 runs the reference miner");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "miner failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert!(summary["blocks"].as_u64().unwrap() >= 2, "{summary}");
    let accepted = eventually(5 * SECOND, || {
        let s = engine.status();
        (s["blocks"]["accepted"].as_u64()? >= 2).then_some(s)
    });
    assert!(
        accepted.is_some(),
        "the simulated chain accepted the miner's blocks"
    );
}

/// Runs `sluice ARGS` to its end (at most 30 s) and returns its stderr.
fn stderr_of_failed_start(args: &[&str]) -> String {
    let mut child = std::process::Command::new(support::engine::sluice_binary())
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = eventually(Duration::from_secs(30), || child.try_wait().unwrap());
    let Some(status) = status else {
        let _ = child.kill();
        panic!("sluice {args:?} did not stop");
    };
    assert!(!status.success(), "sluice {args:?} started");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    stderr
}

#[test]
fn redis_passwords_never_reach_the_log_stderr_or_help() {
    use support::fleet::{config_file, PREFIX};
    use support::redis_server::RedisServer;

    // Redis down: nothing listens on the port.
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://:sekrit@127.0.0.1:{down}");
    for role in ["jobmanager", "stratum"] {
        let config = config_file();
        let stderr = stderr_of_failed_start(&[
            role, "--redis", &url, "--prefix", PREFIX, "--config", &config,
        ]);
        assert!(stderr.contains("redis.url"), "{role}: {stderr}");
        assert!(!stderr.contains("sekrit"), "{role}: {stderr}");
    }
    // The jobmanager names where it looked, without the password.
    let config = config_file();
    let stderr = stderr_of_failed_start(&["jobmanager", "--redis", &url, "--config", &config]);
    assert!(
        stderr.contains(&format!("redis://:***@127.0.0.1:{down}")),
        "{stderr}"
    );
    // A URL that is not one is quoted back redacted too.
    let stderr = stderr_of_failed_start(&["stratum", "--redis", "ops:sekrit@127.0.0.1:6379"]);
    assert!(stderr.contains("ops:***@127.0.0.1:6379"), "{stderr}");
    assert!(!stderr.contains("sekrit"), "{stderr}");

    // A Redis that wants another password refuses this one: still not in the message.
    let redis = RedisServer::start();
    let mut con = redis.connection();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("sekrit")
        .query(&mut con)
        .unwrap();
    let port = redis.url().rsplit(':').next().unwrap().to_owned();
    let wrong = format!("redis://:wrongsekrit@127.0.0.1:{port}");
    for role in ["jobmanager", "stratum"] {
        let config = config_file();
        let stderr = stderr_of_failed_start(&[role, "--redis", &wrong, "--config", &config]);
        assert!(!stderr.contains("wrongsekrit"), "{role}: {stderr}");
    }

    // The right password: a fleet runs, and its logs (at debug) never show it.
    let url = format!("redis://:sekrit@127.0.0.1:{port}");
    let jm_config = config_file();
    let jm = EngineProcess::start_role(
        "jobmanager",
        &[
            "--redis", &url, "--prefix", PREFIX, "--id", "jm-1", "--config", &jm_config,
        ],
    );
    let config = config_file();
    let mut engine = EngineProcess::start_role(
        "stratum",
        &[
            "--redis", &url, "--prefix", PREFIX, "--id", "engine-1", "--config", &config,
        ],
    );
    let mut m = Miner::connect(engine.addr());
    m.handshake();
    engine.terminate();
    for (name, log) in [("jobmanager", jm.log()), ("stratum", engine.log())] {
        assert!(!log.is_empty(), "{name} logged nothing");
        assert!(!log.contains("sekrit"), "{name}: {log}");
    }

    // `--help` shows where the URL comes from, not the environment's value.
    let help = std::process::Command::new(support::engine::sluice_binary())
        .args(["stratum", "--help"])
        .env("SLUICE_REDIS", &url)
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("SLUICE_REDIS"), "{help}");
    assert!(!help.contains("sekrit"), "{help}");
}
