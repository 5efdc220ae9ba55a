//! `session ls`, `session kick` and `engine drain|undrain|reload` end to end: a real `sluice jobmanager`
//! and `sluice stratum` on a real Redis, and raw TCP Stratum miners on the engine's port. What
//! sluicectl prints is checked against what the miners see on their sockets.

mod support;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{eventually, sluicectl, RedisServer, SluiceProcess};

const PREFIX: &str = "e2e";
const WORKER: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080.rig";

/// A miner speaking Stratum V1 over a raw socket, one JSON line at a time.
struct Miner {
    reader: BufReader<TcpStream>,
    /// Every line received so far, for failure messages.
    seen: Vec<String>,
}

/// How a socket ended, if it did.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// read returned 0 bytes: the engine closed it.
    Eof,
    /// The engine reset it.
    Reset,
    /// Still open at the deadline.
    Open,
}

impl Miner {
    fn connect(addr: &str) -> Miner {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Miner {
            reader: BufReader::new(stream),
            seen: Vec::new(),
        }
    }

    fn send(&mut self, line: &str) {
        let stream = self.reader.get_mut();
        stream.write_all(line.as_bytes()).unwrap();
        stream.write_all(b"\n").unwrap();
    }

    /// The next line, or None at the deadline or when the socket ends.
    fn line(&mut self, deadline: Instant) -> Option<Value> {
        let mut line = String::new();
        while Instant::now() < deadline {
            match self.reader.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) if line.ends_with('\n') => {
                    self.seen.push(line.trim_end().to_owned());
                    return Some(serde_json::from_str(line.trim_end()).unwrap_or_else(|e| {
                        panic!("the engine sent a line that is not JSON ({e}): {line:?}")
                    }));
                }
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return None,
            }
        }
        None
    }

    /// The first message `wanted` accepts within `timeout`.
    fn wait_for(&mut self, timeout: Duration, wanted: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        while let Some(v) = self.line(deadline) {
            if wanted(&v) {
                return Some(v);
            }
        }
        None
    }

    /// Subscribes and authorizes WORKER; gives the session id (`result[0][0][1]`) and the
    /// subscribe answer.
    fn subscribe_and_authorize(&mut self) -> (String, Value) {
        self.send(r#"{"id":1,"method":"mining.subscribe","params":["t/1"]}"#);
        self.send(&format!(
            r#"{{"id":2,"method":"mining.authorize","params":["{WORKER}","x"]}}"#
        ));
        let answer = self
            .wait_for(Duration::from_secs(5), |v| v["id"] == 1)
            .unwrap_or_else(|| panic!("no subscribe answer; received {:?}", self.seen));
        let id = answer["result"][0][0][1]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {answer}"))
            .to_owned();
        let auth = self
            .wait_for(Duration::from_secs(5), |v| v["id"] == 2)
            .unwrap_or_else(|| panic!("no authorize answer; received {:?}", self.seen));
        assert_eq!(auth["result"], true, "authorize: {auth}");
        (id, answer)
    }

    /// Reads (and keeps) whatever comes until the socket ends or `timeout` passes.
    fn end_within(&mut self, timeout: Duration) -> End {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            match self.reader.read(&mut buf) {
                Ok(0) => return End::Eof,
                Ok(n) => self
                    .seen
                    .push(String::from_utf8_lossy(&buf[..n]).trim_end().to_owned()),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return End::Reset,
                Err(e) => panic!("reading the miner's socket: {e}"),
            }
        }
        End::Open
    }
}

fn session_ids(redis: &RedisServer) -> Vec<String> {
    sluicectl(redis, PREFIX, &["session", "ls", "--json"]).json()["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn kick_drain_and_undrain_reach_a_real_engine_and_its_miners() {
    let redis = RedisServer::start();
    let _jm = SluiceProcess::jobmanager(&redis, PREFIX, "jm-a");
    let engine = SluiceProcess::stratum(&redis, PREFIX, "engine-1");
    let addr = engine.field("stratum");
    assert!(addr.starts_with("127.0.0.1:"), "{}", engine.ready);

    // A miner authorizes: its session is saved, and listed.
    let mut first = Miner::connect(&addr);
    let (session, answer) = first.subscribe_and_authorize();
    eventually(Duration::from_secs(5), || {
        session_ids(&redis).contains(&session).then_some(())
    })
    .unwrap_or_else(|| panic!("session {session} was not listed within 5 s"));
    let doc = sluicectl(&redis, PREFIX, &["session", "ls", "--json"]).json();
    let listed = doc["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == session.as_str())
        .unwrap()
        .clone();
    assert_eq!(listed["engine"], "engine-1", "{listed}");
    assert_eq!(listed["workers"], json!([WORKER]), "{listed}");
    assert_eq!(listed["extranonce1"], answer["result"][1], "{listed}");
    let shown = sluicectl(&redis, PREFIX, &["session", "show", &session, "--json"]).json();
    assert_eq!(shown["session"]["id"], session.as_str());

    // Kicked: the engine closes its connection.
    let run = sluicectl(&redis, PREFIX, &["session", "kick", &session, "--json"]);
    assert_eq!(
        run.json(),
        json!({"engine": "engine-1", "cmd": "kick", "ok": true, "result": {"kicked": 1}})
    );
    let end = first.end_within(Duration::from_secs(3));
    assert_ne!(
        end,
        End::Open,
        "the kicked miner's socket is still open 3 s after the acknowledgement; received {:?}",
        first.seen
    );

    // A second miner; then the engine drains.
    let mut second = Miner::connect(&addr);
    second.subscribe_and_authorize();
    let run = sluicectl(&redis, PREFIX, &["engine", "drain", "engine-1", "--json"]);
    assert_eq!(
        run.json(),
        json!({"engine": "engine-1", "cmd": "drain", "ok": true,
               "result": {"draining": true, "connections": 1}})
    );
    second
        .wait_for(Duration::from_secs(5), |v| {
            v["method"] == "client.reconnect"
        })
        .unwrap_or_else(|| {
            panic!(
                "no client.reconnect within 5 s of the drain; received {:?}",
                second.seen
            )
        });
    // While draining, a new connection is closed at once.
    let mut refused = Miner::connect(&addr);
    let end = refused.end_within(Duration::from_secs(2));
    assert_eq!(
        end,
        End::Eof,
        "a connection to a draining engine should read 0 bytes within 2 s; received {:?}",
        refused.seen
    );

    // Undrained: new connections are served again.
    let run = sluicectl(&redis, PREFIX, &["engine", "undrain", "engine-1", "--json"]);
    assert_eq!(
        run.json(),
        json!({"engine": "engine-1", "cmd": "undrain", "ok": true, "result": {"draining": false}})
    );
    let mut third = Miner::connect(&addr);
    third.send(r#"{"id":1,"method":"mining.subscribe","params":["t/1"]}"#);
    let answer = third
        .wait_for(Duration::from_secs(5), |v| v["id"] == 1)
        .unwrap_or_else(|| {
            panic!(
                "no subscribe answer after the undrain; received {:?}",
                third.seen
            )
        });
    assert!(answer["result"][0][0][1].is_string(), "{answer}");

    // Reload: the engine re-reads its configuration (here: its flags, unchanged) and says so.
    let run = sluicectl(&redis, PREFIX, &["engine", "reload", "engine-1", "--json"]);
    assert_eq!(
        run.json(),
        json!({"engine": "engine-1", "cmd": "reload", "ok": true,
            "result": {"reloaded": true, "restart_needed": []}})
    );
    let run = sluicectl(&redis, PREFIX, &["engine", "reload", "engine-1"]);
    assert!(
        run.stdout
            .contains("engine engine-1 reloaded its configuration"),
        "{}",
        run.stdout
    );
}
