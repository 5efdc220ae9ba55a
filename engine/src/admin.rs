//! The admin listener: Prometheus `/metrics` and a `/status` JSON document over HTTP/1, served by
//! `hyper` on a current-thread tokio runtime of its own thread (`sluice-admin`), away from the cores.
//! Each connection is its own task, so a slow or silent client holds only its own slot: the request
//! head must arrive within [`READ_TIMEOUT`], the whole exchange within [`WRITE_TIMEOUT`] more, at
//! most [`MAX_CONNECTIONS`] are served at once and a head is at most `MAX_REQUEST_HEAD` bytes.
//! Every response closes its connection, as a scrape needs no keep-alive. One server for every role:
//! what it shows is a [`Pages`], an engine's (`sluice run`, `sluice stratum`) or a jobmanager's. An
//! engine's `/status` answers 503 (same body) while it drains, so a balancer's health check
//! (HAProxy's `httpchk`) stops sending it miners it would turn away. And the statsd sender, off
//! unless configured.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::Ordering::{self, Relaxed};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;

use crate::feed::JobFeed;
use crate::metrics::{JobmanagerView, Metrics};
use crate::plane::commands::Control;
use crate::plane::jobs::RedisJobSink;
use crate::plane::lease::Leadership;
use crate::source::SourceStatus;

/// The longest request head read (request line and headers), in bytes; a longer one is answered
/// 431 and closed.
const MAX_REQUEST_HEAD: usize = 8192;

/// How long a client has to send its whole request head once connected.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How much longer than [`READ_TIMEOUT`] a connection may last, for writing the response: a client
/// that never reads is dropped once its connection is `READ_TIMEOUT + WRITE_TIMEOUT` old.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Admin connections served at once. More wait in the listen backlog until one ends, which takes at
/// most [`READ_TIMEOUT`] + [`WRITE_TIMEOUT`]. Well below the descriptors the engine keeps for itself
/// (`FILES_KEPT_FOR_THE_ENGINE`).
pub const MAX_CONNECTIONS: usize = 16;

/// A pause after a failed accept (out of descriptors, say), so the loop does not spin on it.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// What one role's admin pages read.
pub enum Pages {
    /// An engine: its metrics, its jobs, its job source (`sluice run`, or a stratum engine's own
    /// nodes) and its drain state.
    Engine {
        metrics: Arc<Metrics>,
        feed: Arc<JobFeed>,
        source: Arc<SourceStatus>,
        control: Arc<Control>,
    },
    /// A jobmanager: its lease, its job sink and its job source.
    Jobmanager {
        metrics: Arc<Metrics>,
        leadership: Arc<Leadership>,
        sink: Arc<RedisJobSink>,
        source: Arc<SourceStatus>,
    },
}

/// Binds the admin listener and serves `pages` on a thread of its own.
pub fn start(addr: SocketAddr, pages: Pages) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    // Registering the socket needs the runtime's reactor; doing it here lets a failure reach the caller.
    let listener = {
        let _entered = runtime.enter();
        tokio::net::TcpListener::from_std(listener)?
    };
    let pages = Arc::new(pages);
    std::thread::Builder::new()
        .name("sluice-admin".into())
        .spawn(move || runtime.block_on(serve(listener, pages)))?;
    Ok(bound)
}

async fn serve(listener: tokio::net::TcpListener, pages: Arc<Pages>) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(READ_TIMEOUT)
        .max_header_size(MAX_REQUEST_HEAD)
        .keep_alive(false);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return; // The semaphore is never closed.
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "admin listener: accept failed");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let pages = Arc::clone(&pages);
        let connection = http.serve_connection(
            TokioIo::new(stream),
            hyper::service::service_fn(move |request| {
                let response = respond(&request, &pages);
                async move { Ok::<_, Infallible>(response) }
            }),
        );
        tokio::spawn(async move {
            // The head's own deadline is hyper's; this one also bounds writing the response.
            match tokio::time::timeout(READ_TIMEOUT + WRITE_TIMEOUT, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "admin connection failed"),
                Err(_) => tracing::debug!("admin connection dropped: past its deadline"),
            }
            drop(slot);
        });
    }
}

/// The page for a request: any method, matched on the path as sent (a query string makes it another
/// path).
fn respond(request: &Request<Incoming>, pages: &Pages) -> Response<Full<Bytes>> {
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let (status, kind, body) = match path {
        "/metrics" => (StatusCode::OK, "text/plain; version=0.0.4", pages.metrics()),
        "/status" => {
            let (draining, body) = pages.status();
            let status = if draining {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            (status, "application/json", body)
        }
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /metrics or /status\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    response
}

impl Pages {
    /// The Prometheus text.
    fn metrics(&self) -> String {
        match self {
            Pages::Engine { metrics, .. } => metrics.prometheus(),
            Pages::Jobmanager { metrics, .. } => metrics.jobmanager_prometheus(&self.view()),
        }
    }

    /// Whether the process drains (so the status is 503), and the `/status` document.
    fn status(&self) -> (bool, String) {
        match self {
            Pages::Engine {
                metrics,
                feed,
                source,
                control,
            } => {
                let book = feed.load();
                let job = book.current().map(|j| {
                    serde_json::json!({"id": j.id.to_string(), "height": j.height, "clean": j.clean,
                        "transactions": j.transaction_count(), "network_difficulty": j.network_target.difficulty()})
                });
                let draining = control.draining.load(Ordering::Acquire);
                let body = metrics.status_json(serde_json::json!({
                    "job": job, "job_source": source.to_json(), "draining": draining }));
                (draining, body)
            }
            Pages::Jobmanager {
                metrics, source, ..
            } => (
                false,
                metrics.jobmanager_status_json(
                    &self.view(),
                    serde_json::json!({ "job_source": source.to_json() }),
                ),
            ),
        }
    }

    /// A jobmanager's lease, sink and nodes as the metrics read them (empty for an engine).
    fn view(&self) -> JobmanagerView {
        match self {
            Pages::Engine { .. } => JobmanagerView::default(),
            Pages::Jobmanager {
                leadership,
                sink,
                source,
                ..
            } => {
                let (published, fenced) = sink.counts();
                JobmanagerView {
                    token: leadership.token(),
                    published,
                    fenced,
                    nodes: source.node_health(),
                }
            }
        }
    }
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
