//! The admin listener (HTTP/1.0 on a plain thread, away from the cores): Prometheus `/metrics` and
//! a `/status` JSON document. And the statsd sender, off unless configured.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Metrics;
use crate::server::feed::JobFeed;
use crate::server::jobmanager::SourceStatus;

/// The longest request head read, in bytes.
const MAX_REQUEST_HEAD: u64 = 8192;

/// Binds the admin listener and serves it on a thread of its own.
pub fn start(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    feed: Arc<JobFeed>,
    source: Arc<SourceStatus>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("sluice-admin".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = serve(stream, &metrics, &feed, &source);
            }
        })?;
    Ok(bound)
}

fn serve(
    stream: std::net::TcpStream,
    metrics: &Metrics,
    feed: &JobFeed,
    source: &SourceStatus,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(std::io::Read::take(&stream, MAX_REQUEST_HEAD));
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Drain the headers.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (status, kind, body) = match path {
        "/metrics" => ("200 OK", "text/plain; version=0.0.4", metrics.prometheus()),
        "/status" => {
            let book = feed.load();
            let job = book.current().map(|j| {
                serde_json::json!({"id": j.id.to_string(), "height": j.height, "clean": j.clean,
                    "transactions": j.transaction_count(), "network_difficulty": j.network_target.difficulty()})
            });
            (
                "200 OK",
                "application/json",
                metrics
                    .status_json(serde_json::json!({ "job": job, "job_source": source.to_json() })),
            )
        }
        _ => (
            "404 Not Found",
            "text/plain",
            "not found: try /metrics or /status\n".to_owned(),
        ),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.0 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Sends gauges and counters to statsd every `interval` on a thread of its own.
pub fn start_statsd(
    addr: SocketAddr,
    prefix: String,
    interval: Duration,
    metrics: Arc<Metrics>,
) -> std::io::Result<()> {
    let socket = UdpSocket::bind(if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })?;
    socket.connect(addr)?;
    std::thread::Builder::new().name("sluice-statsd".into()).spawn(move || {
        let mut last_accepted = 0u64;
        loop {
            std::thread::sleep(interval);
            let accepted = metrics.shares_accepted();
            let rejected: u64 = crate::share::Reject::ALL.iter().map(|r| metrics.shares_rejected(*r)).sum();
            let payload = format!(
                "{prefix}.connections:{}|g\n{prefix}.shares.accepted:{}|c\n{prefix}.shares.rejected_total:{}|g\n{prefix}.hashrate:{:.0}|g\n{prefix}.blocks.accepted:{}|g",
                metrics.connections(),
                accepted - last_accepted,
                rejected,
                metrics.hashrate(),
                metrics.blocks_accepted.load(Relaxed),
            );
            last_accepted = accepted;
            let _ = socket.send(payload.as_bytes());
        }
    })?;
    Ok(())
}
