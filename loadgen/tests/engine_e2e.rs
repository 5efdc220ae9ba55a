//! End to end: the real `sluice` binary under a short load from the generator, every kind of share
//! answered as a correct pool must answer it, and nothing lost.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;

struct Engine(Child);

impl Drop for Engine {
    fn drop(&mut self) {
        // SIGTERM: the engine sends client.reconnect to every miner and exits.
        // SAFETY: kill(2) on the pid of a child we started and have not reaped.
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("loadgen/ is inside the workspace")
        .to_path_buf()
}

fn engine_binary() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "-p", "sluice", "--bin", "sluice"])
        .current_dir(workspace())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the engine failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    target.join("debug").join("sluice")
}

/// Starts the engine and returns it with its Stratum port.
fn start_engine() -> (Engine, u16) {
    let mut child = Command::new(engine_binary())
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--threads",
            "1",
            "--no-pin",
            "--start-difficulty",
            "1e-9",
            "--min-difficulty",
            "1e-9",
            "--no-vardiff",
            "--network-difficulty",
            "1000000",
            "--block-interval",
            "0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the engine starts");
    let stdout = child.stdout.take().expect("piped");
    let engine = Engine(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the engine prints its ready line");
    // sluice ready stratum=127.0.0.1:PORT admin=off
    let port = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("stratum="))
        .and_then(|a| a.split(',').next())
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no stratum port in {line:?}"));
    (engine, port)
}

#[test]
fn every_kind_of_share_gets_its_answer_from_the_real_engine() {
    let (engine, port) = start_engine();
    let args = sluice_loadgen::Args::parse_from([
        "sluice-loadgen",
        "--target",
        &format!("127.0.0.1:{port}"),
        "--connections",
        "20",
        "--rate",
        "200",
        "--duration",
        "3",
        "--mix",
        "valid=70,invalid=10,duplicate=10,stale=10",
        "--engine-pid",
        &engine.0.id().to_string(),
    ]);
    let report = sluice_loadgen::run(&args).expect("the load runs");
    let pretty = serde_json::to_string_pretty(&report).unwrap();

    assert_eq!(report["connections"]["established"], 20, "{pretty}");
    assert_eq!(report["errors"]["total"], 0, "{pretty}");
    let sent = report["submits"]["sent"].as_u64().unwrap();
    // 200/s for 3 s, give or take the phase of each connection's first submit.
    assert!((560..=620).contains(&sent), "sent {sent}: {pretty}");
    assert_eq!(
        report["submits"]["answered"].as_u64().unwrap(),
        sent,
        "{pretty}"
    );
    let kinds = &report["submits"]["by_kind"];
    for (kind, answer) in [
        ("valid", None),
        ("invalid", Some("23")),
        ("duplicate", Some("22")),
        ("stale", Some("21")),
    ] {
        let k = &kinds[kind];
        let n = k["sent"].as_u64().unwrap_or(0);
        assert!(n > 0, "no {kind} shares were sent: {pretty}");
        assert_eq!(k["answered"].as_u64().unwrap(), n, "{kind}: {pretty}");
        match answer {
            None => {
                assert_eq!(k["accepted"].as_u64().unwrap(), n, "{kind}: {pretty}");
                assert_eq!(k["rejected"], serde_json::json!({}), "{kind}: {pretty}");
            }
            Some(code) => {
                assert_eq!(k["accepted"], 0, "{kind}: {pretty}");
                assert_eq!(k["rejected"][code].as_u64().unwrap(), n, "{kind}: {pretty}");
                assert_eq!(
                    k["rejected"].as_object().unwrap().len(),
                    1,
                    "{kind}: {pretty}"
                );
            }
        }
    }
    assert!(
        report["latency_us"]["p50"].as_u64().unwrap() > 0,
        "{pretty}"
    );
    assert!(report["engine"]["cpu_us_per_submit"].as_f64().unwrap() >= 0.0);
    assert!(
        report["engine"]["rss_bytes"].as_u64().unwrap() > 0,
        "{pretty}"
    );
    drop(engine);
}
