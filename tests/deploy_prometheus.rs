//! The deploy kit's monitoring, proven: a real Prometheus (Debian's `prometheus`) scrapes a live
//! fleet (a `sluice jobmanager` and a `sluice stratum` on a test Redis) with the shipped
//! `deploy/prometheus/prometheus.yml` (only its target addresses rewritten), a miner submits
//! shares, and then every query of the shipped Grafana dashboard (`deploy/grafana/sluice.json`)
//! must return data from Prometheus's HTTP API. A dashboard query naming a metric a role does not
//! export, or a label it does not have, fails here.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use sluice_testkit::{eventually, free_port, TempDir};
use support::fleet;
use support::miner::Miner;
use support::redis_server::RedisServer;

fn shipped(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The shipped scrape configuration with each scrape job's (uncommented) `targets:` list replaced
/// by the admin address given for that job's name.
fn scrape_config(admins: &[(&str, SocketAddr)]) -> String {
    let mut job = String::new();
    let mut rewritten = Vec::new();
    let out: String = shipped("deploy/prometheus/prometheus.yml")
        .lines()
        .map(|line| {
            let trimmed = line.trim_start();
            if let Some(name) = trimmed.strip_prefix("- job_name:") {
                job = name.trim().to_owned();
            }
            if trimmed.starts_with("- targets:") {
                let (_, admin) = admins
                    .iter()
                    .find(|(name, _)| *name == job)
                    .unwrap_or_else(|| panic!("a scrape job the test does not run: {job}"));
                rewritten.push(job.clone());
                let indent = &line[..line.len() - trimmed.len()];
                format!("{indent}- targets: ['{admin}']\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    assert_eq!(
        rewritten,
        admins
            .iter()
            .map(|(n, _)| n.to_string())
            .collect::<Vec<_>>(),
        "one scrape job with targets per role, in this order"
    );
    out
}

/// Every `expr` in the dashboard, with its panel's title.
fn dashboard_queries() -> Vec<(String, String)> {
    fn walk(v: &Value, title: &str, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(map) => {
                let title = map.get("title").and_then(Value::as_str).unwrap_or(title);
                if let Some(Value::String(expr)) = map.get("expr") {
                    out.push((title.to_owned(), expr.clone()));
                }
                for child in map.values() {
                    walk(child, title, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, title, out)),
            _ => {}
        }
    }
    let dashboard: Value = serde_json::from_str(&shipped("deploy/grafana/sluice.json")).unwrap();
    let mut out = Vec::new();
    walk(&dashboard, "", &mut out);
    out
}

struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: TempDir,
}

impl Prometheus {
    fn start(config: &str) -> Prometheus {
        let dir = TempDir::new("prometheus");
        let file = dir.path().join("prometheus.yml");
        std::fs::write(&file, config).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new("/usr/bin/prometheus")
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "prometheus is not installed: apt-get install prometheus (scripts/setup.sh does)",
            );
        let prometheus = Prometheus {
            child,
            addr,
            _dir: dir,
        };
        eventually(Duration::from_secs(30), || {
            let (status, _) = prometheus.get("/-/ready").ok()?;
            (status == 200).then_some(())
        })
        .expect("prometheus is ready");
        prometheus
    }

    /// GET over HTTP/1.0: (status, body).
    fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        let mut s = TcpStream::connect(self.addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr)?;
        let mut response = String::new();
        s.read_to_string(&mut response)?;
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_owned();
        Ok((status, body))
    }

    /// `/api/v1/query`: the result vector.
    fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let (status, body) = self
            .get(&format!("/api/v1/query?query={}", percent_encode(expr)))
            .map_err(|e| e.to_string())?;
        let doc: Value =
            serde_json::from_str(&body).map_err(|e| format!("{status} {body}: {e}"))?;
        if doc["status"] != "success" {
            return Err(format!("{status}: {body}"));
        }
        Ok(doc["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn every_dashboard_query_returns_data_from_a_live_fleet() {
    let redis = RedisServer::start();
    // A chain that stays put, so no share goes stale while the test submits.
    let jobmanager = fleet::still_jobmanager(&redis, "jm-1");
    let engine = fleet::stratum(&redis, "engine-1");
    let prometheus = Prometheus::start(&scrape_config(&[
        (
            "sluice-stratum",
            engine.admin.expect("the engine's admin listener"),
        ),
        (
            "sluice-jobmanager",
            jobmanager.admin.expect("the jobmanager's admin listener"),
        ),
    ]));

    let mut miner = Miner::connect(engine.addr());
    miner.handshake();
    for _ in 0..5 {
        let share = miner.find_share(miner.difficulty, true, None);
        assert_eq!(miner.submit(&share)["result"], true);
    }
    let bad = miner.find_share(miner.difficulty, true, None);
    miner.submit(&bad);
    assert_ne!(miner.submit(&bad)["result"], true, "a duplicate is refused");

    // The engine is scraped and the shares are in (rates need two samples after them).
    let up = eventually(Duration::from_secs(30), || {
        let r = prometheus
            .query("sluice_shares_total{job=\"sluice-stratum\",verdict=\"accepted\"}")
            .ok()?;
        let n: f64 = r.first()?["value"][1].as_str()?.parse().ok()?;
        (n >= 6.0).then_some(())
    });
    assert!(
        up.is_some(),
        "prometheus scrapes the engine with the shipped job name"
    );
    let leads = eventually(Duration::from_secs(30), || {
        let r = prometheus
            .query("sluice_jobmanager_leader{job=\"sluice-jobmanager\"} == 1")
            .ok()?;
        (!r.is_empty()).then_some(())
    });
    assert!(
        leads.is_some(),
        "prometheus scrapes the leading jobmanager with the shipped job name"
    );

    let queries = dashboard_queries();
    assert!(
        queries.len() >= 20,
        "the dashboard's queries are found: {queries:?}"
    );
    let mut empty = Vec::new();
    for (title, expr) in &queries {
        let answered = eventually(Duration::from_secs(20), || {
            prometheus.query(expr).ok().filter(|r| !r.is_empty())
        });
        if answered.is_none() {
            empty.push(format!("{title}: {expr} -> {:?}", prometheus.query(expr)));
        }
    }
    assert!(
        empty.is_empty(),
        "dashboard queries without data:\n{}",
        empty.join("\n")
    );
}
