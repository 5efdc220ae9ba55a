//! PROXY protocol v1 and v2 through a real HAProxy in front of the engine: the miner's own address,
//! not HAProxy's, is what the per-address connection limit counts; a header is believed only from
//! `listeners[N].trusted_proxies`; and an IPv6 client is counted by its /64.

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

/// A PROXY v2 header for a TCP connection from `source` to `destination`.
fn proxy_v2(source: std::net::SocketAddr, destination: std::net::SocketAddr) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x21); // version 2, PROXY
    let mut addresses = Vec::new();
    match (source, destination) {
        (std::net::SocketAddr::V4(s), std::net::SocketAddr::V4(d)) => {
            h.push(0x11); // TCP over IPv4
            addresses.extend_from_slice(&s.ip().octets());
            addresses.extend_from_slice(&d.ip().octets());
        }
        (std::net::SocketAddr::V6(s), std::net::SocketAddr::V6(d)) => {
            h.push(0x21); // TCP over IPv6
            addresses.extend_from_slice(&s.ip().octets());
            addresses.extend_from_slice(&d.ip().octets());
        }
        _ => panic!("one family for both addresses"),
    }
    addresses.extend_from_slice(&source.port().to_be_bytes());
    addresses.extend_from_slice(&destination.port().to_be_bytes());
    h.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
    h.extend_from_slice(&addresses);
    h
}

const SUBSCRIBE: &[u8] = b"{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[]}\n";

/// An engine with one PROXY protocol listener; `listener_extra` goes into its `[[listeners]]`.
fn proxied_engine(listener_extra: &str, max_per_ip: usize) -> EngineProcess {
    EngineProcess::start_with_config(
        &format!(
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
max_connections_per_ip = {max_per_ip}
[[listeners]]
address = "127.0.0.1:0"
proxy_protocol = true
start_difficulty = 1e-9
min_difficulty = 1e-12
{listener_extra}
"#
        ),
        &[],
    )
}

#[test]
fn a_proxy_header_from_outside_trusted_proxies_is_closed_unanswered() {
    let engine = proxied_engine(r#"trusted_proxies = ["10.0.0.0/8"]"#, 100);
    // A valid header naming a made-up miner, straight from 127.0.0.1 (not a listed balancer).
    let mut forger = Miner::connect(engine.addr());
    let mut bytes = proxy_v2(
        "203.0.113.9:40000".parse().unwrap(),
        "192.0.2.1:3333".parse().unwrap(),
    );
    bytes.extend_from_slice(SUBSCRIBE);
    // The engine may close before the write lands; the answer (none) is what matters.
    let _ = forger.send_raw(&bytes);
    // Closed (EOF, or a reset: the header was never read) with nothing sent first.
    let answer = forger.read_message(Duration::from_secs(5));
    assert!(
        answer.is_err(),
        "the subscribe of an untrusted peer was answered, or the connection stayed open: {answer:?}"
    );
    assert_eq!(
        engine.metric(r#"sluice_connections_closed_total{reason="untrusted-proxy"}"#),
        1.0
    );
    assert_eq!(
        engine.metric(r#"sluice_connections_closed_total{reason="proxy-header"}"#),
        0.0,
        "refused before its header was read"
    );

    // The default list (loopback) believes HAProxy on this host.
    let engine = proxied_engine("", 100);
    let (_haproxy, _v1, v2) = haproxy(engine.addr().port());
    let mut miner =
        Miner::connect_from(format!("127.0.0.1:{v2}").parse().unwrap(), "127.0.0.5").unwrap();
    assert!(miner.subscribe()["result"].is_array());
    assert_eq!(
        engine.metric(r#"sluice_connections_closed_total{reason="untrusted-proxy"}"#),
        0.0
    );
}

#[test]
fn per_address_limit_counts_an_ipv6_slash_64_as_one_client() {
    let engine = proxied_engine("", 1);
    let destination: std::net::SocketAddr = "[2001:db8::3333]:3333".parse().unwrap();
    let from = |source: &str| {
        let mut m = Miner::connect(engine.addr());
        let mut bytes = proxy_v2(source.parse().unwrap(), destination);
        bytes.extend_from_slice(SUBSCRIBE);
        let _ = m.send_raw(&bytes);
        m
    };
    let answered = |m: &mut Miner| match m.read_message(Duration::from_secs(5)) {
        Ok(Some(v)) => v["id"] == 1 && v["result"].is_array(),
        _ => false,
    };
    let mut first = from("[2001:db8:1:2::1]:40000");
    assert!(answered(&mut first), "the first miner of 2001:db8:1:2::/64");
    // Another address of the same /64 is the same customer: over the limit of one.
    let mut second = from("[2001:db8:1:2:ffff:ffff:ffff:fffe]:40001");
    let answer = second.read_message(Duration::from_secs(5));
    assert!(
        answer.is_err(),
        "a second address of the same /64 was served: {answer:?}"
    );
    // The next /64 is another customer.
    let mut other = from("[2001:db8:1:3::1]:40002");
    assert!(answered(&mut other), "a miner of 2001:db8:1:3::/64");
    assert_eq!(
        engine.metric(r#"sluice_connections_closed_total{reason="limit-per-ip"}"#),
        1.0
    );
    // Once the first leaves, its /64 has its place back.
    drop(first);
    let mut back = eventually(Duration::from_secs(5), || {
        let mut m = from("[2001:db8:1:2::99]:40003");
        answered(&mut m).then_some(m)
    });
    assert!(back.is_some(), "the /64's place was not released");
    back.take();
}
