//! PROXY protocol v1 and v2 through a real HAProxy in front of the engine: the miner's own address,
//! not HAProxy's, is what the per-address connection limit counts.

mod support;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use support::engine::{eventually, tempdir::TempDir, EngineProcess};
use support::miner::Miner;

struct Haproxy(Child, #[allow(dead_code)] TempDir);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// HAProxy with a v1 frontend and a v2 frontend, both in front of `engine_port`.
fn haproxy(engine_port: u16) -> (Haproxy, u16, u16) {
    let (v1, v2) = (free_port(), free_port());
    let dir = TempDir::new("haproxy");
    let config = format!(
        "global\n    maxconn 1000\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n\
         frontend v1\n    bind 127.0.0.1:{v1}\n    default_backend engine_v1\n\
         frontend v2\n    bind 127.0.0.1:{v2}\n    default_backend engine_v2\n\
         backend engine_v1\n    server engine 127.0.0.1:{engine_port} send-proxy\n\
         backend engine_v2\n    server engine 127.0.0.1:{engine_port} send-proxy-v2\n"
    );
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, config).unwrap();
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("haproxy is not installed: apt-get install haproxy (.ci/run does)");
    let proxy = Haproxy(child, dir);
    for port in [v1, v2] {
        eventually(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        })
        .expect("haproxy did not start listening");
    }
    (proxy, v1, v2)
}

#[test]
fn per_address_limit_counts_the_miners_address_through_haproxy_v1_and_v2() {
    let engine = EngineProcess::start_with_config(
        r#"
[engine]
threads = 2
pin_threads = false
[admin]
listen = "127.0.0.1:0"
[simulated_chain]
network_difficulty = 1000000.0
block_interval_secs = 0
[limits]
max_connections_per_ip = 2
[[listeners]]
address = "127.0.0.1:0"
proxy_protocol = true
start_difficulty = 1e-9
min_difficulty = 1e-12
"#,
        &[],
    );
    let (_haproxy, v1, v2) = haproxy(engine.addr().port());
    for (port, source) in [(v1, "127.0.0.2"), (v2, "127.0.0.3")] {
        let front: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        // Two miners from one address get work through the balancer...
        let mut miners: Vec<Miner> = (0..2)
            .map(|_| Miner::connect_from(front, source).unwrap())
            .collect();
        for m in &mut miners {
            m.handshake();
            let share = m.find_share(1e-9, true, None);
            assert_eq!(m.submit(&share)["result"], true);
        }
        // ...and a third from the same address is refused, though HAProxy's own address is the
        // same for every connection the engine sees.
        let mut third = Miner::connect_from(front, source).unwrap();
        assert!(
            third.is_closed_within(Duration::from_secs(5)),
            "third connection from {source} via port {port}"
        );
    }
    // Other addresses are still welcome through either frontend.
    for port in [v1, v2] {
        let mut m =
            Miner::connect_from(format!("127.0.0.1:{port}").parse().unwrap(), "127.0.0.4").unwrap();
        assert_eq!(
            m.request("mining.extranonce.subscribe", json!([]))["result"],
            true
        );
    }
    assert_eq!(
        engine.metric(r#"sluice_connections_closed_total{reason="limit-per-ip"}"#),
        2.0
    );

    // A connection straight to a PROXY listener without the header is closed.
    let mut direct = Miner::connect(engine.addr());
    direct
        .send_raw(b"{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[]}\n")
        .unwrap();
    assert!(direct.is_closed_within(Duration::from_secs(5)));
    assert_eq!(
        engine.metric(r#"sluice_connections_closed_total{reason="proxy-header"}"#),
        1.0
    );
}
