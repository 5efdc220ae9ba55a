//! A flood of rejected submits with miner-chosen worker names against a real fleet (a
//! `redis-server` the test starts, `sluice jobmanager`, one `sluice stratum` engine) while an
//! honest miner on the same engine mines. Proved through the wire and Redis only:
//! - no name the flood chose reaches Redis (stream, rollups, any key), and Redis grows by less
//!   than 1 MB, however many distinct 4 KB names arrive;
//! - every accepted share of the honest miner is in `P:shares` exactly once, and the engine lost
//!   none (`sluice_share_log_total{kind="dropped_accepted"}` and its service hash's
//!   `shares_dropped` are 0).

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::engine::eventually;
use support::fleet::{role_with, shares_in_stream, wait_for_leader, PREFIX};
use support::miner::Miner;
use support::redis_server::RedisServer;

/// Rejected submits the flood sends.
const FLOOD: usize = 10_000;
/// Bytes in each flood worker name.
const NAME_BYTES: usize = 4096;
/// Submits per flood connection: under the invalid-share streak (100) that would close it.
const PER_CONNECTION: usize = 90;
/// Every flood name starts with this, so the test can look for any of them anywhere.
const MARK: &str = "zqflood";

fn flood_name(i: usize) -> String {
    let mut name = format!("{MARK}{i:06}.");
    name.extend(std::iter::repeat_n('x', NAME_BYTES - name.len()));
    name
}

/// One flood connection: a subscribe (or none: submits before subscribing), then its submits
/// written at once, then their answers read (so every submit is handled before the close).
/// Returns the error answers counted.
fn flood_connection(addr: SocketAddr, first: usize, count: usize, subscribe: bool) -> usize {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut lines = Vec::new();
    let mut expected = count;
    if subscribe {
        lines.extend_from_slice(b"{\"id\":0,\"method\":\"mining.subscribe\",\"params\":[]}\n");
        expected += 1;
    }
    for i in first..first + count {
        let line = serde_json::json!({
            "id": i + 1,
            "method": "mining.submit",
            "params": [flood_name(i), "1", "00000000", "6553f100", "00000001"],
        });
        lines.extend_from_slice(line.to_string().as_bytes());
        lines.push(b'\n');
    }
    writer.write_all(&lines).unwrap();
    let mut refused = 0;
    let mut line = String::new();
    for _ in 0..expected {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                if v["id"] != 0 && !v["error"].is_null() {
                    refused += 1;
                }
            }
        }
    }
    refused
}

/// Every key in Redis (`KEYS` is fine in a test), with everything it holds as text.
fn everything_in_redis(con: &mut redis::Connection) -> Vec<(String, String)> {
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(con).unwrap();
    let mut all = Vec::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE").arg(&key).query(con).unwrap();
        let text = match kind.as_str() {
            "string" => redis::cmd("GET")
                .arg(&key)
                .query::<Vec<u8>>(con)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap(),
            "hash" => format!(
                "{:?}",
                redis::cmd("HGETALL")
                    .arg(&key)
                    .query::<HashMap<String, String>>(con)
                    .unwrap()
            ),
            "zset" => format!(
                "{:?}",
                redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query::<Vec<String>>(con)
                    .unwrap()
            ),
            "stream" => format!(
                "{:?}",
                redis::cmd("XRANGE")
                    .arg(&key)
                    .arg("-")
                    .arg("+")
                    .query::<Vec<(String, Vec<(String, String)>)>>(con)
                    .unwrap()
            ),
            other => format!("<{other}>"),
        };
        all.push((key, text));
    }
    all
}

fn used_memory(con: &mut redis::Connection) -> i64 {
    let info: String = redis::cmd("INFO").arg("memory").query(con).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_flood_of_rejected_submits_with_4_kb_names_leaves_redis_alone_and_loses_no_accepted_share() {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    // No share is a block (a new block would make the honest miner's work stale): the chain's
    // difficulty is far above the shares'.
    let _jm = support::fleet::still_jobmanager(&redis, "jm-a");
    wait_for_leader(&mut con);
    // Lines long enough for a 4 KB worker name and the rest of a submit.
    let engine = role_with(
        &redis,
        "stratum",
        "engine-1",
        "[limits]\nmax_line_length = 8192\n",
        &[],
    );
    let mut honest = Miner::connect(engine.addr());
    honest.handshake();
    // The baseline: the fleet up, an honest miner connected, a few shares written.
    let mut accepted = Vec::new();
    for _ in 0..5 {
        let share = honest.find_share(honest.difficulty, true, None);
        let reply = honest.submit(&share);
        assert_eq!(reply["result"], true, "{reply}");
        accepted.push(share.hash.to_string());
    }
    eventually(Duration::from_secs(10), || {
        (shares_in_stream(&mut con).len() == accepted.len()).then_some(())
    })
    .expect("the first shares are logged");
    let memory_before = used_memory(&mut con);

    // The flood, from four threads, each opening connection after connection; every other
    // connection subscribes first (its workers are never authorized), the rest do not.
    let addr = engine.addr();
    let done = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicUsize::new(0));
    let chunks: Vec<(usize, usize)> = (0..FLOOD)
        .step_by(PER_CONNECTION)
        .map(|first| (first, PER_CONNECTION.min(FLOOD - first)))
        .collect();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let mine: Vec<(usize, usize)> = chunks.iter().copied().skip(t).step_by(4).collect();
            let refused = Arc::clone(&refused);
            std::thread::spawn(move || {
                for (n, (first, count)) in mine.into_iter().enumerate() {
                    let r = flood_connection(addr, first, count, n % 2 == 0);
                    refused.fetch_add(r, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let waiter = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            for t in threads {
                t.join().unwrap();
            }
            done.store(true, Ordering::Relaxed);
        })
    };
    // The honest miner keeps mining on the same engine meanwhile.
    while !done.load(Ordering::Relaxed) || accepted.len() < 50 {
        let share = honest.find_share(honest.difficulty, true, None);
        let reply = honest.submit(&share);
        assert_eq!(reply["result"], true, "{reply}");
        accepted.push(share.hash.to_string());
    }
    waiter.join().unwrap();
    assert_eq!(
        refused.load(Ordering::Relaxed),
        FLOOD,
        "every flood submit reached the engine and was refused"
    );

    // Every accepted share of the honest miner, exactly once.
    let logged = eventually(Duration::from_secs(20), || {
        let shares = shares_in_stream(&mut con);
        let n = shares
            .iter()
            .filter(|s| s["worker"] == support::miner::WORKER && s["verdict"] == "accepted")
            .count();
        (n >= accepted.len()).then_some(shares)
    })
    .unwrap_or_else(|| panic!("not every accepted share was logged\n{}", engine.log()));
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for s in logged.iter().filter(|s| s["verdict"] == "accepted") {
        *seen.entry(s["hash"].as_str()).or_default() += 1;
    }
    for hash in &accepted {
        assert_eq!(seen.get(hash.as_str()), Some(&1), "share {hash}");
    }
    assert_eq!(seen.len(), accepted.len(), "no other accepted share");
    assert_eq!(
        engine.metric("sluice_share_log_total{kind=\"dropped_accepted\"}"),
        0.0
    );
    let dropped = eventually(Duration::from_secs(5), || {
        redis::cmd("HGET")
            .arg(sluice_layout::Keys::new(PREFIX).service("engine-1"))
            .arg("shares_dropped")
            .query::<Option<String>>(&mut con)
            .unwrap()
    });
    assert_eq!(dropped.as_deref(), Some("0"));

    // No flood name anywhere: not in the stream, not in a rollup, not in any key or value.
    let flooded: Vec<String> = everything_in_redis(&mut con)
        .into_iter()
        .filter(|(key, text)| key.contains(MARK) || text.contains(MARK))
        .map(|(key, text)| {
            format!(
                "{key}: {} flood names",
                text.matches(MARK).count() + usize::from(key.contains(MARK))
            )
        })
        .collect();
    assert!(flooded.is_empty(), "flood names reached Redis: {flooded:?}");
    let grew = used_memory(&mut con) - memory_before;
    assert!(grew < 1 << 20, "Redis grew by {grew} bytes");
}
