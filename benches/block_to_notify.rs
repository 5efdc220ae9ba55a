//! End-to-end: the time from a block on the node to a clean `mining.notify` on connected miners,
//! learned by ZMQ and by `getbestblockhash` polling (DESIGN.md section 5; issue 4).
//!
//! ```text
//! cargo bench --bench block_to_notify            # BLOCKS=30 MINERS=200 by default
//! ```
//!
//! Real parts: two regtest `bitcoind` joined to each other (`scripts/fetch-node.sh`), the release
//! `sluice` binary mining on the first, and MINERS Stratum connections. Each round mines one block
//! on the first node with `generatetoaddress` over JSON-RPC and times, from the moment that call is
//! sent, the clean notify on the first connection and on the last. The call returns after the
//! block is connected, and ZMQ is published during connection, so the figure includes the node's
//! own work on the block (a few milliseconds at regtest, shown as "generate" below).
//!
//! Not a criterion bench: each sample needs a block, and the figures of interest are the median and
//! the tail over a few dozen blocks. Every round checks that the notify builds on the new block.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use bitcoin::hashes::Hash;
use sluice::node::rpc::{Auth, Endpoint, RpcClient};
use support::engine::{eventually, EngineProcess};
use support::miner::Miner;
use support::node::{start_pair, RegtestNode};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(node1: &RegtestNode, node2: &RegtestNode, payout: &str, zmq: bool) -> String {
    let mut toml = format!(
        r#"[pool]
network = "regtest"
payout_address = "{payout}"

[engine]
threads = 1
pin_threads = false

[[listeners]]
address = "127.0.0.1:0"

[limits]
max_connections_per_ip = 100000

[admin]
listen = "127.0.0.1:0"

[jobs]
poll_interval_ms = 100
# ZMQ alone is measured: the safety poll stays out of the way.
zmq_check_interval_secs = 600

[[nodes]]
url = "{}"
rpc_user = "{}"
rpc_password = "{}"
"#,
        node1.rpc_url(),
        node1.user(),
        node1.password()
    );
    if zmq {
        toml.push_str(&format!(
            "zmq_hashblock = \"{}\"\n",
            node1.zmq_endpoint().unwrap()
        ));
    }
    toml.push_str(&format!(
        "\n[[nodes]]\nurl = \"{}\"\nrpc_user = \"{}\"\nrpc_password = \"{}\"\npriority = 1\n",
        node2.rpc_url(),
        node2.user(),
        node2.password()
    ));
    toml
}

fn prev_of(miner: &Miner) -> String {
    bitcoin::BlockHash::from_byte_array(miner.work.as_ref().unwrap().prev_hash).to_string()
}

/// Reads until a clean notify on top of `block`.
fn clean_on(miner: &mut Miner, block: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if miner
            .wait_for("mining.notify", Duration::from_secs(5))
            .is_none()
        {
            return false;
        }
        if miner.work.as_ref().unwrap().clean && prev_of(miner) == block {
            return true;
        }
    }
    false
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn measure(zmq: bool, blocks: usize, miners: usize) {
    let (node1, node2) = start_pair(zmq);
    let payout = node1.cli_ok(&["getnewaddress"]);
    let payout = payout.as_str().unwrap().to_owned();
    let engine = EngineProcess::start_with_config(&config(&node1, &node2, &payout, zmq), &[]);
    if zmq {
        eventually(Duration::from_secs(10), || {
            (engine.status()["job_source"]["nodes"][0]["zmq_live"] == true).then_some(())
        })
        .expect("ZMQ subscription up");
    }
    let mut conns: Vec<Miner> = (0..miners)
        .map(|_| {
            let mut m = Miner::connect(engine.addr());
            m.handshake();
            m
        })
        .collect();
    let endpoint = Endpoint::parse(
        &node1.rpc_url(),
        Auth::UserPassword {
            user: node1.user().into(),
            password: node1.password().into(),
        },
    )
    .unwrap();
    let mut rpc = RpcClient::new(endpoint, Duration::from_secs(30));
    let mut first = Vec::new();
    let mut last = Vec::new();
    let mut generate = Vec::new();
    // A cheap generator for the pause between rounds: the poll phase must be sampled evenly, not
    // locked to the round length.
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    for _ in 0..blocks {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(150 + seed % 200));
        let sent = Instant::now();
        let hashes: Vec<String> = rpc
            .call("generatetoaddress", &serde_json::json!([1, payout]))
            .expect("generatetoaddress");
        generate.push(sent.elapsed());
        let block = &hashes[0];
        for (i, m) in conns.iter_mut().enumerate() {
            assert!(
                clean_on(m, block),
                "connection {i} got clean work on {block}"
            );
            if i == 0 {
                first.push(sent.elapsed());
            }
        }
        last.push(sent.elapsed());
    }
    for v in [&mut first, &mut last, &mut generate] {
        v.sort();
    }
    println!(
        "{:<28} blocks={blocks} miners={miners}: first miner median {:.1} ms p90 {:.1} ms max {:.1} ms | last miner median {:.1} ms p90 {:.1} ms max {:.1} ms | generate median {:.1} ms",
        if zmq { "zmq hashblock" } else { "polling every 100 ms" },
        ms(percentile(&first, 0.5)),
        ms(percentile(&first, 0.9)),
        ms(*first.last().unwrap()),
        ms(percentile(&last, 0.5)),
        ms(percentile(&last, 0.9)),
        ms(*last.last().unwrap()),
        ms(percentile(&generate, 0.5)),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would pass nothing we use either.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let blocks = env_usize("BLOCKS", 30);
    let miners = env_usize("MINERS", 200);
    measure(true, blocks, miners);
    measure(false, blocks, miners);
}
