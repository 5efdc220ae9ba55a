//! The admin listener of a real `sluice run`: its pages, and that slow or silent clients cannot keep
//! a scrape from being answered.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use sluice::admin::{MAX_CONNECTIONS, READ_TIMEOUT, WRITE_TIMEOUT};
use support::engine::EngineProcess;

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
