//! The admin listener of a real `sluice run`: its pages, and that slow or silent clients cannot keep
//! a scrape from being answered. And the fleet roles' pages on a real Redis: a jobmanager's
//! leadership and Redis health, and an engine's `/status` answering 503 while it drains.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use sluice::admin::{MAX_CONNECTIONS, READ_TIMEOUT, WRITE_TIMEOUT};
use support::engine::{eventually, EngineProcess};
use support::fleet;
use support::redis_server::RedisServer;

/// Room for a loaded machine on top of the listener's own deadlines.
const SLACK: Duration = Duration::from_secs(5);

/// One request on a fresh connection: the status line, the headers (lower-cased names) and the body.
fn get(admin: SocketAddr, request: &str) -> (String, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect(admin).unwrap();
    s.set_read_timeout(Some(READ_TIMEOUT + WRITE_TIMEOUT + SLACK))
        .unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a response head");
    let mut lines = head.lines();
    let status = lines.next().unwrap().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A connection that sent the start of a request and nothing more.
fn half_request(admin: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(admin).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: sl").unwrap();
    s
}

#[test]
fn pages_keep_their_status_codes_and_content_types() {
    let engine = EngineProcess::start_default(&[]);
    let admin = engine.admin.unwrap();
    for request in [
        "GET /metrics HTTP/1.0\r\n\r\n",
        // A 1.1 client is answered and closed too: a scrape needs no keep-alive.
        "GET /metrics HTTP/1.1\r\nHost: sluice\r\n\r\n",
    ] {
        let (status, headers, body) = get(admin, request);
        assert!(status.ends_with(" 200 OK"), "{status}");
        assert_eq!(
            header(&headers, "content-type"),
            Some("text/plain; version=0.0.4")
        );
        assert_eq!(
            header(&headers, "content-length"),
            Some(body.len().to_string().as_str())
        );
        assert!(body.contains("sluice_connections "), "{body}");
    }

    let (status, headers, body) = get(admin, "GET /status HTTP/1.0\r\n\r\n");
    assert!(status.ends_with(" 200 OK"), "{status}");
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(status["job"]["height"].is_u64(), "{status}");

    let (status, headers, body) = get(admin, "GET /nothing-here HTTP/1.0\r\n\r\n");
    assert!(status.ends_with(" 404 Not Found"), "{status}");
    assert_eq!(header(&headers, "content-type"), Some("text/plain"));
    assert_eq!(body, "not found: try /metrics or /status\n");
}

#[test]
fn a_half_sent_request_does_not_stop_a_second_client() {
    let engine = EngineProcess::start_default(&[]);
    let admin = engine.admin.unwrap();
    let mut slow = half_request(admin);
    let opened = Instant::now();

    // Well inside the slow client's read deadline, which a serial listener would wait out first.
    let (status, _, body) = get(admin, "GET /metrics HTTP/1.0\r\n\r\n");
    assert!(status.ends_with(" 200 OK"), "{status}");
    assert!(body.contains("sluice_connections "), "{body}");
    assert!(
        opened.elapsed() < READ_TIMEOUT,
        "the scrape waited {:?} behind a half-sent request",
        opened.elapsed()
    );

    // And the slow client is dropped once its read deadline has passed.
    slow.set_read_timeout(Some(READ_TIMEOUT + SLACK)).unwrap();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    let held = opened.elapsed();
    assert!(
        held >= READ_TIMEOUT - Duration::from_millis(500) && held < READ_TIMEOUT + SLACK,
        "a half-sent request was held {held:?}"
    );
}

#[test]
fn a_full_house_of_silent_clients_only_delays_a_scrape() {
    let engine = EngineProcess::start_default(&[]);
    let admin = engine.admin.unwrap();
    let silent: Vec<TcpStream> = (0..MAX_CONNECTIONS).map(|_| half_request(admin)).collect();
    let started = Instant::now();
    // Waits in the backlog for a slot, which the silent clients give up at their read deadline.
    let (status, _, body) = get(admin, "GET /metrics HTTP/1.0\r\n\r\n");
    assert!(status.ends_with(" 200 OK"), "{status}");
    assert!(body.contains("sluice_connections "), "{body}");
    assert!(
        started.elapsed() < READ_TIMEOUT + SLACK,
        "{:?}",
        started.elapsed()
    );
    drop(silent);
}

/// The value of the sample `name` (labels included) in a Prometheus page, if it is there.
fn sample(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

/// Waits (5 s at most) for `name` on `admin`'s `/metrics` to satisfy `want`.
fn metric_becomes(admin: SocketAddr, name: &str, want: impl Fn(f64) -> bool) -> bool {
    eventually(Duration::from_secs(5), || {
        let (_, _, page) = get(admin, "GET /metrics HTTP/1.0\r\n\r\n");
        sample(&page, name).filter(|v| want(*v))
    })
    .is_some()
}

#[test]
fn a_jobmanager_serves_its_leadership_and_its_redis_health() {
    let mut redis = RedisServer::start();
    let leader = fleet::jobmanager(&redis, "jm-1");
    let admin = leader.admin.expect("the jobmanager's admin listener is on");
    assert!(metric_becomes(admin, "sluice_jobmanager_leader", |v| v == 1.0));
    assert!(metric_becomes(
        admin,
        "sluice_jobmanager_fencing_token",
        |v| v >= 1.0
    ));
    assert!(metric_becomes(
        admin,
        "sluice_jobmanager_jobs_published_total",
        |v| v >= 1.0
    ));
    assert!(metric_becomes(admin, "sluice_redis_up", |v| v == 1.0));
    let (_, _, page) = get(admin, "GET /metrics HTTP/1.0\r\n\r\n");
    for name in [
        "sluice_redis_roundtrip_seconds",
        "sluice_jobmanager_publishes_fenced_total",
        "sluice_jobmanager_templates_total{result=\"failed\"}",
        "sluice_blocks_total{result=\"accepted\"}",
    ] {
        assert!(sample(&page, name).is_some(), "{name} in:\n{page}");
    }
    assert!(
        !page.contains("sluice_connections "),
        "no engine metric:\n{page}"
    );

    let (status, headers, body) = get(admin, "GET /status HTTP/1.0\r\n\r\n");
    assert!(status.ends_with(" 200 OK"), "{status}");
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["role"], "jobmanager", "{doc}");
    assert_eq!(doc["leader"], true, "{doc}");
    assert_eq!(doc["redis"]["up"], true, "{doc}");

    // A standby says so.
    let standby = fleet::jobmanager(&redis, "jm-2");
    let standby_admin = standby.admin.unwrap();
    assert!(metric_becomes(standby_admin, "sluice_redis_up", |v| v == 1.0));
    let (_, _, page) = get(standby_admin, "GET /metrics HTTP/1.0\r\n\r\n");
    assert_eq!(
        sample(&page, "sluice_jobmanager_leader"),
        Some(0.0),
        "{page}"
    );
    assert_eq!(sample(&page, "sluice_jobmanager_fencing_token"), Some(0.0));

    // Redis gone: the next heartbeat says so, and the leader steps down; back: up again.
    redis.stop();
    assert!(metric_becomes(admin, "sluice_redis_up", |v| v == 0.0));
    assert!(metric_becomes(admin, "sluice_jobmanager_leader", |v| v == 0.0));
    redis.restart();
    assert!(metric_becomes(admin, "sluice_redis_up", |v| v == 1.0));
}

#[test]
fn a_draining_engine_answers_status_503_until_undrained() {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    let _jm = fleet::still_jobmanager(&redis, "jm-1");
    let engine = fleet::stratum(&redis, "engine-1");
    let admin = engine.admin.expect("the engine's admin listener is on");
    let status = |admin| {
        let (status, _, body) = get(admin, "GET /status HTTP/1.0\r\n\r\n");
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        (status, doc)
    };
    let (line, doc) = status(admin);
    assert!(line.ends_with(" 200 OK"), "{line}");
    assert_eq!(doc["draining"], false, "{doc}");
    assert!(metric_becomes(admin, "sluice_redis_up", |v| v == 1.0));
    assert!(metric_becomes(admin, "sluice_sharelog_queue_depth", |v| v == 0.0));

    let ack = support::plane::command(&mut con, "engine-1", "drain", "drain-1");
    assert_eq!(ack["ok"], true, "{ack}");
    let (line, doc) = status(admin);
    assert!(line.ends_with(" 503 Service Unavailable"), "{line}");
    assert_eq!(doc["draining"], true, "the same document: {doc}");
    assert!(doc["connections"].is_u64(), "{doc}");

    let ack = support::plane::command(&mut con, "engine-1", "undrain", "undrain-1");
    assert_eq!(ack["ok"], true, "{ack}");
    let (line, doc) = status(admin);
    assert!(line.ends_with(" 200 OK"), "{line}");
    assert_eq!(doc["draining"], false, "{doc}");
}
