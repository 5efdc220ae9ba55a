//! `blocks ls`, `shares tail` (with and without `--follow`) and `stats`, on block and share logs
//! written in the engine's format (`support::log_shares`, `support::record_block`).

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{
    claim_layout, log_shares, record_block, redis_now_ms, register_service, sluicectl,
    sluicectl_command, RedisServer, Share,
};

const PREFIX: &str = "pool3";

#[test]
fn blocks_ls_lists_the_block_log_newest_first() {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    claim_layout(&mut con, PREFIX);

    let run = sluicectl(&redis, PREFIX, &["blocks", "ls", "--json"]);
    assert_eq!(run.json()["blocks"], json!([]));

    let now = redis_now_ms(&mut con);
    let both = json!([
        {"node": "node-a", "result": "accepted", "reason": null},
        {"node": "node-b", "result": "rejected", "reason": "bad-prevblk"}
    ]);
    let refused = json!([{"node": "node-a", "result": "no_answer", "reason": "timed out"}]);
    let hash = |n: u8| format!("{:0>64}", format!("{n:x}abc"));
    let first = record_block(
        &mut con,
        PREFIX,
        &hash(1),
        840_000,
        "alice.rig1",
        now - 2000,
        &both,
    );
    record_block(
        &mut con,
        PREFIX,
        &hash(2),
        840_001,
        "bob.s9",
        now - 1000,
        &refused,
    );
    let third = record_block(
        &mut con,
        PREFIX,
        &hash(3),
        840_002,
        "alice.rig2",
        now,
        &both,
    );

    let doc = sluicectl(&redis, PREFIX, &["blocks", "ls", "--json"]).json();
    let blocks = doc["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 3);
    assert_eq!(blocks[0]["id"], third.as_str());
    assert_eq!(blocks[2]["id"], first.as_str());
    assert_eq!(blocks[0]["hash"], hash(3).as_str());
    assert_eq!(blocks[0]["height"], 840_002);
    assert_eq!(blocks[0]["worker"], "alice.rig2");
    assert_eq!(blocks[0]["accepted"], true);
    assert_eq!(blocks[0]["found_ms"], now);
    assert_eq!(blocks[0]["results"], both);
    assert_eq!(blocks[1]["accepted"], false);
    assert_eq!(blocks[1]["results"], refused);

    let doc = sluicectl(&redis, PREFIX, &["blocks", "ls", "--limit", "2", "--json"]).json();
    let heights: Vec<u64> = doc["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["height"].as_u64().unwrap())
        .collect();
    assert_eq!(heights, [840_002, 840_001]);

    let run = sluicectl(&redis, PREFIX, &["blocks", "ls"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines[0].starts_with("FOUND "), "{}", run.stdout);
    assert!(lines[1].contains(&hash(3)) && lines[1].contains("node-b rejected (bad-prevblk)"));
    assert!(lines[2].contains(" NO ") && lines[2].contains("node-a no_answer (timed out)"));

    let run = sluicectl(&redis, PREFIX, &["blocks", "ls", "--limit", "0"]);
    assert_eq!(run.code, 1, "a limit of 0 is a usage error");
}

fn workers(doc: &Value) -> Vec<(String, String)> {
    doc["shares"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["worker"].as_str().unwrap().to_owned(),
                s["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn shares_tail_prints_the_newest_matching_shares_oldest_first() {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    claim_layout(&mut con, PREFIX);
    let t0 = redis_now_ms(&mut con) - 60_000;

    // One share of carol's, then 1,500 of others': finding hers takes more than one page.
    let mut shares = vec![Share::rejected(t0, "carol.l3", "duplicate")];
    for i in 0..1500u64 {
        let ts = t0 + 1 + i;
        shares.push(match i % 3 {
            0 => Share::rejected(ts, "bob.s9", "stale"),
            _ => Share::accepted(
                ts,
                if i % 2 == 0 {
                    "alice.rig1"
                } else {
                    "alice.rig2"
                },
                0.5,
            ),
        });
    }
    log_shares(&mut con, PREFIX, &shares);

    // By default the newest 20, printed oldest first.
    let doc = sluicectl(&redis, PREFIX, &["shares", "tail", "--json"]).json();
    let got = doc["shares"].as_array().unwrap();
    assert_eq!(got.len(), 20);
    let ts: Vec<u64> = got.iter().map(|s| s["ts"].as_u64().unwrap()).collect();
    assert_eq!(ts, ((t0 + 1481)..=(t0 + 1500)).collect::<Vec<_>>());
    // Every field of the share log, typed.
    let last = &got[19];
    assert_eq!(last["worker"], "alice.rig2");
    assert_eq!(last["engine"], "engine-1");
    assert_eq!(last["verdict"], "accepted");
    assert_eq!(last["reason"], Value::Null);
    assert_eq!(last["assigned"], 0.5);
    assert_eq!(last["actual"], 1.5);
    assert_eq!(last["height"], 840_000);
    assert_eq!(last["block"], false);
    assert_eq!(last["client"], "10.0.0.7");
    assert_eq!(last["agent"], "cgminer/4.11.1");
    assert_eq!(last["session"], "0a0b0c0d");
    assert_eq!(last["job"], "5");
    assert_eq!(last["hash"], "00".repeat(32).as_str());
    assert!(last["batch"].is_string() && last["id"].is_string());

    let doc = sluicectl(
        &redis,
        PREFIX,
        &[
            "shares",
            "tail",
            "-n",
            "3",
            "--verdict",
            "rejected",
            "--json",
        ],
    )
    .json();
    assert_eq!(workers(&doc), vec![("bob.s9".into(), "rejected".into()); 3]);
    assert_eq!(doc["shares"][2]["reason"], "stale");

    let doc = sluicectl(
        &redis,
        PREFIX,
        &[
            "shares",
            "tail",
            "--worker",
            "alice.rig2",
            "--verdict",
            "accepted",
            "--count",
            "4",
            "--json",
        ],
    )
    .json();
    assert_eq!(
        workers(&doc),
        vec![("alice.rig2".into(), "accepted".into()); 4]
    );

    let doc = sluicectl(
        &redis,
        PREFIX,
        &["shares", "tail", "--worker", "carol.l3", "--json"],
    )
    .json();
    assert_eq!(workers(&doc), [("carol.l3".into(), "rejected".into())]);
    assert_eq!(doc["shares"][0]["ts"], t0);
    assert_eq!(doc["scanned"], 1501, "the whole stream was searched");
    assert_eq!(doc["scan_limit_reached"], false);

    let doc = sluicectl(
        &redis,
        PREFIX,
        &["shares", "tail", "--worker", "nobody", "--json"],
    )
    .json();
    assert_eq!(doc["shares"], json!([]));

    let run = sluicectl(&redis, PREFIX, &["shares", "tail", "-n", "2"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    assert!(lines[0].starts_with("TIME ") && lines[0].contains("VERDICT"));
    assert!(lines[2].contains("alice.rig2") && lines[2].contains("accepted"));

    let run = sluicectl(&redis, PREFIX, &["shares", "tail", "--verdict", "maybe"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
}

#[test]
fn shares_tail_follow_prints_shares_written_after_it_started() {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    claim_layout(&mut con, PREFIX);
    let now = redis_now_ms(&mut con);
    // Written before it starts: never printed.
    log_shares(&mut con, PREFIX, &[Share::accepted(now, "dave.new", 999.0)]);

    let url = redis.url();
    let mut child = sluicectl_command(&[
        "--redis", &url, "--prefix", PREFIX, "shares", "tail", "--follow", "--worker", "dave.new",
        "--json",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    // It says nothing when it is ready, so write until something comes: another worker's share
    // (filtered out) and then dave.new's, numbered.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut written = 0u64;
    let line = loop {
        written += 1;
        let ts = redis_now_ms(&mut con);
        log_shares(
            &mut con,
            PREFIX,
            &[
                Share::rejected(ts, "erin.other", "stale"),
                Share::accepted(ts, "dave.new", written as f64),
            ],
        );
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(300)) {
            break line;
        }
        assert!(Instant::now() < deadline, "follow printed nothing in 10 s");
    };
    let share: Value = serde_json::from_str(&line).expect("one JSON object per line");
    assert_eq!(share["worker"], "dave.new");
    assert_eq!(share["verdict"], "accepted");
    let first = share["assigned"].as_f64().unwrap() as u64;
    assert!((1..=written).contains(&first));

    // Every later one comes too, in order, one per line.
    let ts = redis_now_ms(&mut con);
    log_shares(&mut con, PREFIX, &[Share::accepted(ts, "dave.new", 1000.0)]);
    let mut seen = vec![first];
    while *seen.last().unwrap() != 1000 {
        let line = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the share written after start is printed");
        let share: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(share["worker"], "dave.new", "the filter holds: {line}");
        seen.push(share["assigned"].as_f64().unwrap() as u64);
    }
    let expected: Vec<u64> = (first..=written).chain([1000]).collect();
    assert_eq!(seen, expected, "nothing skipped or repeated");

    assert!(
        child.try_wait().unwrap().is_none(),
        "it follows until interrupted"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn stats_sums_the_rollups_of_the_window_and_counts_rejects_by_reason() {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    claim_layout(&mut con, PREFIX);
    let now = redis_now_ms(&mut con);
    let minute_ms = |ago: u64| (now / 60_000 - ago) * 60_000;

    let run = sluicectl(&redis, PREFIX, &["stats", "--json"]);
    let doc = run.json();
    assert_eq!(doc["workers"], json!([]));
    assert_eq!(doc["totals"]["accepted"], 0);

    // Seven minutes ago (outside a 5-minute window), two minutes ago, and this minute. A worker
    // name may hold a `|`.
    let mut shares = vec![
        Share::accepted(minute_ms(7) + 10, "alice.rig1", 64.0),
        Share::rejected(minute_ms(7) + 20, "bob.s9", "low-difficulty"),
    ];
    for i in 0..3 {
        shares.push(Share::accepted(minute_ms(2) + i, "alice.rig1", 2.0));
    }
    shares.push(Share::accepted(minute_ms(2) + 5, "pool|bob.s9", 0.5));
    shares.push(Share::rejected(minute_ms(2) + 6, "pool|bob.s9", "stale"));
    shares.push(Share::accepted(minute_ms(0), "alice.rig1", 2.0));
    shares.push(Share::rejected(minute_ms(0) + 1, "pool|bob.s9", "stale"));
    shares.push(Share::rejected(minute_ms(0) + 2, "carol.l3", "duplicate"));
    log_shares(&mut con, PREFIX, &shares);

    let doc = sluicectl(&redis, PREFIX, &["stats", "--minutes", "5", "--json"]).json();
    assert_eq!(doc["minutes"], 5);
    let seconds = doc["window"]["seconds"].as_f64().unwrap();
    // From the start of the first of the 5 minutes (the one under way included) to now.
    assert!((240.0..=300.0).contains(&seconds), "{seconds}");
    let start = doc["window"]["start_ms"].as_u64().unwrap();
    assert_eq!(start % 60_000, 0);
    let hashrate = |difficulty: f64| difficulty * 4_294_967_296.0 / seconds;

    let w = doc["workers"].as_array().unwrap();
    let row = |name: &str| w.iter().find(|r| r["worker"] == name).unwrap().clone();
    assert_eq!(w.len(), 3, "{doc}");
    assert_eq!(
        w[0]["worker"], "alice.rig1",
        "the biggest contributor first"
    );
    let alice = row("alice.rig1");
    assert_eq!(
        (alice["accepted"].as_u64(), alice["rejected"].as_u64()),
        (Some(4), Some(0))
    );
    assert_eq!(alice["difficulty"], 8.0);
    assert!((alice["hashrate"].as_f64().unwrap() - hashrate(8.0)).abs() < 1.0);
    let bob = row("pool|bob.s9");
    assert_eq!(
        (bob["accepted"].as_u64(), bob["rejected"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(bob["difficulty"], 0.5);
    let carol = row("carol.l3");
    assert_eq!(
        (carol["accepted"].as_u64(), carol["rejected"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(carol["hashrate"], 0.0);

    let totals = &doc["totals"];
    assert_eq!(totals["accepted"], 5);
    assert_eq!(totals["rejected"], 3);
    assert_eq!(totals["difficulty"], 8.5);
    assert!((totals["hashrate"].as_f64().unwrap() - hashrate(8.5)).abs() < 1.0);
    assert!((totals["shares_per_second"].as_f64().unwrap() - 8.0 / seconds).abs() < 1e-9);
    assert_eq!(
        doc["rejects_by_reason"],
        json!({"stale": 2, "duplicate": 1})
    );
    assert_eq!(doc["rejects_sample"]["covers_window"], true);

    // The default window is 10 minutes: the old minute counts too.
    let doc = sluicectl(&redis, PREFIX, &["stats", "--json"]).json();
    assert_eq!(doc["totals"]["accepted"], 6);
    assert_eq!(doc["totals"]["difficulty"], 72.5);
    assert_eq!(
        doc["rejects_by_reason"],
        json!({"stale": 2, "duplicate": 1, "low-difficulty": 1})
    );

    let run = sluicectl(&redis, PREFIX, &["stats", "--minutes", "5"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.starts_with("last 5 min ("), "{}", run.stdout);
    let total = run
        .stdout
        .lines()
        .find(|l| l.starts_with("TOTAL "))
        .unwrap();
    assert!(
        total.contains(" 5 ") && total.contains(" 3 ") && total.contains("37.50"),
        "{total}"
    );
    assert!(run
        .stdout
        .lines()
        .any(|l| l.starts_with("stale ") && l.ends_with(" 2")));

    for bad in ["0", "2881", "x"] {
        let run = sluicectl(&redis, PREFIX, &["stats", "--minutes", bad]);
        assert_eq!(run.code, 1, "--minutes {bad}");
    }
}

#[test]
fn stats_shows_the_workers_past_the_cap_as_one_row_and_engines_that_lost_accepted_shares() {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    claim_layout(&mut con, PREFIX);
    let now = redis_now_ms(&mut con);

    // Nothing lost: no alarm, in either form.
    register_service(&mut con, PREFIX, "engine-a", "stratum", 60_000);
    let run = sluicectl(&redis, PREFIX, &["stats"]);
    assert!(!run.stdout.contains("SHARES LOST"), "{}", run.stdout);
    let doc = sluicectl(&redis, PREFIX, &["stats", "--json"]).json();
    assert_eq!(doc["shares_dropped"]["accepted"], 0);

    // A minute past the cap, as the engine's script leaves it: the named workers, the count
    // field, and `~ other` with the rest.
    let minute = sluice_layout::Keys::new(PREFIX).rollup(now / 60_000);
    redis::cmd("HSET")
        .arg(&minute)
        .arg("alice.rig1|accepted")
        .arg(3)
        .arg("alice.rig1|difficulty")
        .arg(6)
        .arg("~ other|accepted")
        .arg(40)
        .arg("~ other|difficulty")
        .arg(80)
        .arg("~ other|rejected")
        .arg(7)
        .arg("~workers")
        .arg(1)
        .query::<()>(&mut con)
        .unwrap();
    // Two engines lost accepted shares; a third did not; an expired one is not counted.
    register_service(&mut con, PREFIX, "engine-b", "stratum", 60_000);
    register_service(&mut con, PREFIX, "engine-c", "stratum", 60_000);
    register_service(&mut con, PREFIX, "engine-gone", "stratum", -1_000);
    for (id, n) in [
        ("engine-a", 0),
        ("engine-b", 12),
        ("engine-c", 3),
        ("engine-gone", 99),
    ] {
        redis::cmd("HSET")
            .arg(sluice_layout::Keys::new(PREFIX).service(id))
            .arg("shares_dropped")
            .arg(n)
            .query::<()>(&mut con)
            .unwrap();
    }

    let doc = sluicectl(&redis, PREFIX, &["stats", "--json"]).json();
    let w = doc["workers"].as_array().unwrap();
    assert_eq!(w.len(), 2, "the count field is not a worker: {doc}");
    assert_eq!(w[0]["worker"], "alice.rig1");
    assert_eq!(
        w[1]["worker"], "~ other",
        "the summed workers come last, whatever their size"
    );
    assert_eq!(w[1]["other"], true);
    assert_eq!(w[0]["other"], false);
    assert_eq!(w[1]["accepted"], 40);
    assert_eq!(w[1]["rejected"], 7);
    assert_eq!(doc["totals"]["accepted"], 43);
    assert_eq!(doc["shares_dropped"]["accepted"], 15);
    assert_eq!(
        doc["shares_dropped"]["engines"],
        json!([{"engine": "engine-b", "accepted": 12}, {"engine": "engine-c", "accepted": 3}])
    );

    let run = sluicectl(&redis, PREFIX, &["stats"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let first = run.stdout.lines().next().unwrap();
    assert!(
        first.starts_with("!! SHARES LOST: 15 accepted shares")
            && first.contains("engine-b: 12")
            && first.contains("engine-c: 3")
            && !first.contains("engine-a")
            && !first.contains("engine-gone"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.lines().any(|l| l.starts_with("~ other ")));
    assert!(run.stdout.contains("share_log.max_rollup_workers"));
}
