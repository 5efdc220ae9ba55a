//! One simulated miner connection: connect (from a chosen source address), the handshake, tracking
//! the server's difficulty, jobs and extranonce, the open-loop stream of submits, and what the answers
//! say. It speaks plain Stratum V1 and relies on nothing particular to one server.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::value::RawValue;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::mix::{Kind, Mix, Outcome};
use crate::report::{Arrivals, Partial};
use crate::work::{JobView, Miner, Share};
use sluice_core::units::HeaderHash;

/// Linux's SO_TIMESTAMPNS / SCM_TIMESTAMPNS (x86-64 and arm64 share the value).
const SO_TIMESTAMPNS: libc::c_int = 35;
/// Jobs kept per connection (since the last clean one).
const JOBS_KEPT: usize = 8;
/// Accepted shares kept per connection, to send again as duplicates.
const ACCEPTED_KEPT: usize = 16;
/// Answers buffered per connection before they are added to the shared tallies.
const TALLY_BATCH: usize = 64;
/// The most submits one connection sends at once when it has fallen behind its schedule.
const MAX_BURST: u32 = 256;
/// Pause between a lost connection and the next attempt (`--reconnect`), so a refused connect
/// does not spin.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);

/// What every connection of this process shares: the plan, and where results go.
pub struct Plan {
    pub target: SocketAddr,
    /// Source addresses, used round-robin by global connection index (empty: the kernel chooses).
    pub sources: Vec<IpAddr>,
    /// Connections of this process, and the global index of its first one.
    pub connections: usize,
    pub first_index: usize,
    /// Submits per second per connection.
    pub rate_per_connection: f64,
    pub duration: Duration,
    pub mix: Mix,
    /// `{i}` is replaced by the global connection index.
    pub worker: String,
    pub password: String,
    pub ramp: Duration,
    pub handshake_only: bool,
    pub handshake_concurrency: usize,
    pub handshake_timeout: Duration,
    pub response_timeout: Duration,
    pub drain: Duration,
    /// `--reconnect`: a connection the server closes (or that errors) connects again, resumes its
    /// session (`mining.subscribe` naming its subscription id), re-authorizes and goes on.
    pub reconnect: bool,
    /// `--accepted-log`: one line per share answered `true`, `HASH WORKER`.
    pub accepted_log: Option<Mutex<std::fs::File>>,
}

/// The measured window: submits go out in `[start, end)`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub start: Instant,
    pub end: Instant,
}

/// Counts down once per connection; the runner waits for zero.
pub struct Countdown(watch::Sender<usize>);

impl Countdown {
    pub fn new(n: usize) -> Countdown {
        Countdown(watch::Sender::new(n))
    }

    fn done(&self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }

    pub async fn wait(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}

/// Marks a connection's step done exactly once, whichever way the connection ends.
struct Step<'a>(Option<&'a Countdown>);

impl Step<'_> {
    fn done(&mut self) {
        if let Some(c) = self.0.take() {
            c.done();
        }
    }
}

impl Drop for Step<'_> {
    fn drop(&mut self) {
        self.done();
    }
}

pub struct Shared {
    pub plan: Plan,
    pub t0: Instant,
    shards: Vec<Mutex<Partial>>,
    clean: Mutex<std::collections::BTreeMap<String, Arrivals>>,
    first_connect_ns: AtomicU64,
    last_handshake_ns: AtomicU64,
    handshakes: Semaphore,
    /// Every connection has either finished its handshake or given up.
    pub attempted: Countdown,
    /// Every connection has stopped submitting and had its answers (or given up waiting).
    pub drained: Countdown,
    pub window: watch::Sender<Option<Window>>,
    pub close: watch::Sender<bool>,
}

impl Shared {
    pub fn new(plan: Plan) -> Shared {
        let n = plan.connections;
        let permits = plan.handshake_concurrency.max(1);
        Shared {
            shards: (0..64).map(|_| Mutex::new(Partial::default())).collect(),
            clean: Mutex::new(Default::default()),
            first_connect_ns: AtomicU64::new(u64::MAX),
            last_handshake_ns: AtomicU64::new(0),
            handshakes: Semaphore::new(permits),
            attempted: Countdown::new(n),
            drained: Countdown::new(n),
            window: watch::Sender::new(None),
            close: watch::Sender::new(false),
            t0: Instant::now(),
            plan,
        }
    }

    fn shard(&self, index: usize) -> std::sync::MutexGuard<'_, Partial> {
        self.shards[index % self.shards.len()]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Everything the connections recorded, merged.
    pub fn collect(&self) -> Partial {
        let mut p = Partial::default();
        for s in &self.shards {
            p.merge(&s.lock().unwrap_or_else(|e| e.into_inner()));
        }
        p.clean_jobs = self.clean.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let first = self.first_connect_ns.load(Ordering::Relaxed);
        p.first_connect_ns = (first != u64::MAX).then_some(first);
        let last = self.last_handshake_ns.load(Ordering::Relaxed);
        p.last_handshake_ns = (last != 0).then_some(last);
        p
    }
}

pub fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A small, fast, seeded generator (xorshift64*); good enough for phases and mix draws.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn setsockopt_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) {
    // SAFETY: a valid socket and a pointer to an int of the size given.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Opens a connection from `source` (port chosen at connect time, so each source address has the
/// whole ephemeral range to itself), with receive timestamps on.
async fn connect(target: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_nonblocking(true)?;
    socket.set_nodelay(true)?;
    setsockopt_int(socket.as_raw_fd(), libc::SOL_SOCKET, SO_TIMESTAMPNS, 1);
    if let Some(ip) = source {
        if ip.is_ipv4() {
            setsockopt_int(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                1,
            );
        }
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    let socket = TcpSocket::from_std_stream(std::net::TcpStream::from(socket));
    socket.connect(target).await
}

/// One receive, with the kernel's timestamp of the data (Unix ns) when it gives one.
fn recv_timestamped(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, Option<u64>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 16];
    // SAFETY: msghdr is plain data; every pointer in it refers to live buffers of the sizes given;
    // the control messages are walked with the libc macros within msg_controllen.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut stamp = None;
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == SO_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                stamp = Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        Ok((n as usize, stamp))
    }
}

async fn write_all(stream: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match stream.try_write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 64 * 1024]);
}

/// A line from the server.
#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default, borrow)]
    params: Option<&'a RawValue>,
    #[serde(default, borrow)]
    result: Option<&'a RawValue>,
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
}

fn raw_id(id: Option<&RawValue>) -> Option<u64> {
    let text = id?.get().trim().trim_matches('"');
    text.parse().ok()
}

fn is_null(v: Option<&RawValue>) -> bool {
    v.is_none_or(|v| v.get().trim() == "null")
}

/// The answer to a request: `true`, `false`/null, or an error code (`[code, message, …]` or
/// `{"code": …}`).
fn outcome(result: Option<&RawValue>, error: Option<&RawValue>) -> Outcome {
    if !is_null(error) {
        let e: serde_json::Value =
            serde_json::from_str(error.expect("not null").get()).unwrap_or_default();
        let code = match &e {
            serde_json::Value::Array(a) => a.first().and_then(|c| c.as_i64()),
            serde_json::Value::Object(o) => o.get("code").and_then(|c| c.as_i64()),
            _ => None,
        };
        return Outcome::Error(code.unwrap_or(-1));
    }
    match result.map(|r| r.get().trim()) {
        Some("true") => Outcome::Accepted,
        _ => Outcome::False,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handshake,
    WaitGo,
    Running,
    Draining,
    Holding,
}

struct Pending {
    id: u64,
    sent: Instant,
    /// The same moment in Unix ns, to compare with the kernel's receive timestamp of the answer.
    sent_ns: u64,
    kind: Kind,
    /// For valid shares: kept to be sent again as a duplicate once accepted.
    share: Option<Share>,
    /// The job the share names.
    job_id: String,
    /// The header hash the share was found at, for the accepted log.
    hash: HeaderHash,
}

const ID_CONFIGURE: u64 = 1;
const ID_SUBSCRIBE: u64 = 2;
const ID_AUTHORIZE: u64 = 3;

struct Conn<'a> {
    shared: &'a Shared,
    index: usize,
    rng: Rng,
    worker: String,
    out: Vec<u8>,
    inbuf: Vec<u8>,
    next_id: u64,
    phase: Phase,
    connected_at: Instant,
    subscribed: bool,
    authorized: bool,
    failed: bool,
    extranonce1: Arc<[u8]>,
    extranonce2_size: usize,
    difficulty: f64,
    jobs: VecDeque<Arc<JobView>>,
    stale_job: Option<Arc<JobView>>,
    jobs_seen: u64,
    fake_job_id: String,
    accepted: VecDeque<Share>,
    miner: Miner,
    pending: VecDeque<Pending>,
    /// Submits queued since the last write (at the back of `pending`).
    unstamped: usize,
    /// (kind, answer, latency, latency to the kernel's receive timestamp), in microseconds.
    /// and whether a clean notify overtook the share.
    answers: Vec<(Kind, Outcome, u64, Option<u64>, bool)>,
    local: Partial,
    /// The subscription id of the last subscribe answer, named again on a resume.
    session_id: Option<String>,
    /// While reconnecting (`--reconnect`): the phase to go back to once the handshake is done, and
    /// the extranonce1 and difficulty the connection had before it was lost.
    resuming: Option<(Phase, Arc<[u8]>, f64)>,
    /// When the connection was lost (reconnects give up a handshake timeout later).
    lost_at: Option<Instant>,
    /// `HASH WORKER` lines of accepted shares not yet written to the accepted log.
    accepted_lines: Vec<u8>,
}

impl<'a> Conn<'a> {
    fn new(shared: &'a Shared, index: usize) -> Conn<'a> {
        let mut rng = Rng::new(index as u64 ^ unix_ns().rotate_left(32));
        let fake = rng.next_u64() | (1 << 63);
        let seed = rng.next_u64();
        Conn {
            shared,
            index,
            worker: shared.plan.worker.replace("{i}", &index.to_string()),
            out: Vec::new(),
            inbuf: Vec::new(),
            next_id: ID_AUTHORIZE + 1,
            phase: Phase::Handshake,
            connected_at: Instant::now(),
            subscribed: false,
            authorized: false,
            failed: false,
            extranonce1: Arc::from(&[][..]),
            extranonce2_size: 4,
            // Stratum's default until the server says otherwise.
            difficulty: 1.0,
            jobs: VecDeque::with_capacity(JOBS_KEPT),
            stale_job: None,
            jobs_seen: 0,
            fake_job_id: format!("{fake:x}"),
            accepted: VecDeque::new(),
            miner: Miner::new(seed, 0),
            pending: VecDeque::new(),
            unstamped: 0,
            answers: Vec::new(),
            local: Partial::default(),
            session_id: None,
            resuming: None,
            lost_at: None,
            accepted_lines: Vec::new(),
            rng,
        }
    }

    fn handshake_done(&self) -> bool {
        self.authorized && !self.jobs.is_empty()
    }

    fn protocol_error(&mut self) {
        self.local.errors.protocol += 1;
    }

    fn on_line(&mut self, line: &[u8], kernel_ns: Option<u64>, read_ns: u64, now: Instant) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let Ok(msg) = serde_json::from_slice::<Incoming<'_>>(line) else {
            self.protocol_error();
            return;
        };
        if let Some(method) = msg.method.as_deref() {
            self.on_notification(method, msg.params, kernel_ns, read_ns);
            return;
        }
        let Some(id) = raw_id(msg.id) else {
            self.protocol_error();
            return;
        };
        let answer = outcome(msg.result, msg.error);
        match id {
            ID_CONFIGURE => {
                // {"version-rolling": true, "version-rolling.mask": "1fffe000"}; anything else: none.
                let granted = msg
                    .result
                    .and_then(|r| serde_json::from_str::<serde_json::Value>(r.get()).ok())
                    .filter(|r| r["version-rolling"] == serde_json::Value::Bool(true))
                    .and_then(|r| {
                        r["version-rolling.mask"]
                            .as_str()
                            .and_then(|m| u32::from_str_radix(m, 16).ok())
                    })
                    .unwrap_or(0);
                self.miner.version_mask = granted & 0x1fff_e000;
            }
            ID_SUBSCRIBE => {
                let parsed = msg.result.and_then(|r| {
                    serde_json::from_str::<(serde_json::Value, String, usize)>(r.get()).ok()
                });
                match parsed.and_then(|(_, en1, size)| {
                    sluice_core::hex::decode_vec(&en1).ok().map(|b| (b, size))
                }) {
                    Some((en1, size)) if (1..=16).contains(&size) => {
                        self.extranonce1 = en1.into();
                        self.extranonce2_size = size;
                        self.subscribed = true;
                        self.session_id = msg
                            .result
                            .and_then(|r| serde_json::from_str::<serde_json::Value>(r.get()).ok())
                            .and_then(|r| r[0][0][1].as_str().map(str::to_owned));
                        let _ = std::io::Write::write_fmt(
                            &mut self.out,
                            format_args!(
                                "{{\"id\":{ID_AUTHORIZE},\"method\":\"mining.authorize\",\"params\":[{},{}]}}\n",
                                serde_json::Value::String(self.worker.clone()),
                                serde_json::Value::String(self.shared.plan.password.clone()),
                            ),
                        );
                    }
                    _ => self.failed = true,
                }
            }
            ID_AUTHORIZE => {
                if answer == Outcome::Accepted {
                    self.authorized = true;
                } else {
                    self.failed = true;
                }
            }
            _ => {
                self.local.last_answer_ns = self.local.last_answer_ns.max(read_ns);
                self.on_answer(id, answer, now, kernel_ns)
            }
        }
    }

    fn on_notification(
        &mut self,
        method: &str,
        params: Option<&RawValue>,
        kernel_ns: Option<u64>,
        read_ns: u64,
    ) {
        match method {
            "mining.set_difficulty" => {
                let d = params
                    .and_then(|p| serde_json::from_str::<Vec<f64>>(p.get()).ok())
                    .and_then(|v| v.first().copied());
                match d {
                    Some(d) if d.is_finite() && d > 0.0 => self.difficulty = d,
                    _ => self.protocol_error(),
                }
            }
            "mining.set_extranonce" => {
                let v = params.and_then(|p| serde_json::from_str::<(String, usize)>(p.get()).ok());
                match v.and_then(|(en1, size)| {
                    sluice_core::hex::decode_vec(&en1).ok().map(|b| (b, size))
                }) {
                    // Applies to jobs sent from now on: each job keeps the extranonce1 it came with.
                    Some((en1, size)) if (1..=16).contains(&size) => {
                        self.extranonce1 = en1.into();
                        self.extranonce2_size = size;
                    }
                    _ => self.protocol_error(),
                }
            }
            "mining.notify" => {
                let Some(params) = params else {
                    self.protocol_error();
                    return;
                };
                let job = match JobView::from_notify(
                    params,
                    self.difficulty,
                    Arc::clone(&self.extranonce1),
                    self.extranonce2_size,
                ) {
                    Ok(j) => Arc::new(j),
                    Err(_) => {
                        self.protocol_error();
                        return;
                    }
                };
                if job.clean {
                    if matches!(
                        self.phase,
                        Phase::Running | Phase::Draining | Phase::Holding
                    ) && self.jobs_seen > 0
                    {
                        let arrival = Arrivals::one(kernel_ns.unwrap_or(read_ns), read_ns);
                        self.shared
                            .clean
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .entry(job.id.clone())
                            .and_modify(|a| a.merge(&arrival))
                            .or_insert(arrival);
                    }
                    if let Some(last) = self.jobs.back() {
                        self.stale_job = Some(Arc::clone(last));
                    }
                    self.jobs.clear();
                    self.accepted.clear();
                }
                if self.jobs.len() == JOBS_KEPT {
                    self.jobs.pop_front();
                }
                self.jobs.push_back(job);
                self.jobs_seen += 1;
            }
            // client.reconnect, client.show_message, requests from the server: not answered.
            _ => {}
        }
    }

    fn on_answer(&mut self, id: u64, answer: Outcome, now: Instant, kernel_ns: Option<u64>) {
        let Some(pos) = self.pending.iter().position(|p| p.id == id) else {
            if id >= self.next_id {
                self.protocol_error();
            }
            // Else an answer after its timeout, already counted.
            return;
        };
        let p = self.pending.remove(pos).expect("found above");
        if answer == Outcome::Accepted && self.shared.plan.accepted_log.is_some() {
            use std::io::Write as _;
            let _ = writeln!(self.accepted_lines, "{} {}", p.hash, self.worker);
        }
        let latency = now.saturating_duration_since(p.sent).as_micros() as u64;
        if p.kind == Kind::Valid && answer == Outcome::Accepted {
            if let Some(share) = p.share {
                // Only shares on current work can come back as duplicates rather than stale.
                if self.jobs.iter().any(|j| j.id == share.job_id) {
                    if self.accepted.len() == ACCEPTED_KEPT {
                        self.accepted.pop_front();
                    }
                    self.accepted.push_back(share);
                }
            }
        }
        let rx_latency = kernel_ns.map(|ns| (ns.saturating_sub(p.sent_ns) / 1000).max(1));
        // A share sent on work that a clean notify (already here, since servers answer in order)
        // made stale while the share was on its way: 21 is then the right answer.
        let raced = answer == Outcome::Error(21)
            && p.kind != Kind::Stale
            && !self.jobs.iter().any(|j| j.id == p.job_id);
        self.answers
            .push((p.kind, answer, latency.max(1), rx_latency, raced));
        if self.answers.len() >= TALLY_BATCH {
            self.flush_answers();
        }
    }

    fn flush_answers(&mut self) {
        if let (Some(log), false) = (
            &self.shared.plan.accepted_log,
            self.accepted_lines.is_empty(),
        ) {
            use std::io::Write as _;
            // One write per batch to a file opened for appending: lines of several connections
            // (and processes) never interleave.
            let mut f = log.lock().unwrap_or_else(|e| e.into_inner());
            if f.write_all(&self.accepted_lines).is_err() {
                self.local.errors.accepted_log += 1;
            }
            self.accepted_lines.clear();
        }
        if self.answers.is_empty() {
            return;
        }
        let mut shard = self.shared.shard(self.index);
        for (kind, answer, latency, rx_latency, raced) in self.answers.drain(..) {
            shard.latency_us.record(latency);
            if let Some(l) = rx_latency {
                shard.latency_rx_us.record(l);
            }
            shard.kind(kind).count(answer, 1);
            if raced {
                shard.stale_after_clean += 1;
            } else if answer != kind.expected() {
                *shard
                    .errors
                    .mismatches
                    .entry(format!("{}:{}", kind.name(), answer.key()))
                    .or_default() += 1;
            }
        }
    }

    /// Appends one submit to the output; the caller stamps its send time.
    fn queue_submit(&mut self) {
        let Some(job) = self.jobs.back().cloned() else {
            return;
        };
        let mut kind = self.shared.plan.mix.pick(self.rng.next_u32());
        if kind == Kind::Duplicate && self.accepted.is_empty() {
            kind = Kind::Valid;
            self.local.duplicates_sent_as_valid += 1;
        }
        let (share, keep) = match kind {
            Kind::Valid => {
                let s = self.miner.find(&job, true);
                (s.clone(), Some(s))
            }
            Kind::Invalid => (self.miner.find(&job, false), None),
            Kind::Duplicate => {
                let i = (self.rng.next_u64() % self.accepted.len() as u64) as usize;
                (self.accepted[i].clone(), None)
            }
            Kind::Stale => match self.stale_job.clone() {
                Some(old) => (self.miner.find(&old, true), None),
                None => {
                    let mut s = self.miner.find(&job, true);
                    s.job_id = self.fake_job_id.clone();
                    (s, None)
                }
            },
        };
        let id = self.next_id;
        self.next_id += 1;
        share.write_submit(&mut self.out, id, &self.worker);
        let job_id = share.job_id.clone();
        self.local.kind(kind).sent += 1;
        self.pending.push_back(Pending {
            id,
            sent: Instant::now(),
            sent_ns: 0,
            kind,
            share: keep,
            job_id,
            hash: share.hash,
        });
        self.unstamped += 1;
    }

    fn expire(&mut self, now: Instant) {
        let timeout = self.shared.plan.response_timeout;
        while let Some(p) = self.pending.front() {
            if now.saturating_duration_since(p.sent) < timeout {
                break;
            }
            self.pending.pop_front();
            self.unstamped = self.unstamped.min(self.pending.len());
            self.local.errors.timeouts += 1;
        }
    }

    /// Adds what this connection counted to the shared tallies.
    fn finish(&mut self) {
        self.flush_answers();
        self.local.hashes = self.miner.hashes;
        self.miner.hashes = 0;
        let local = std::mem::take(&mut self.local);
        self.shared.shard(self.index).merge(&local);
    }

    /// Reads what is there; returns false when the connection is closed.
    fn read(&mut self, stream: &TcpStream) -> io::Result<bool> {
        let fd = stream.as_raw_fd();
        let got = SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            stream
                .try_io(Interest::READABLE, || recv_timestamped(fd, &mut s))
                .map(|(n, ts)| {
                    self.inbuf.extend_from_slice(&s[..n]);
                    (n, ts)
                })
        });
        let (n, ts) = match got {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(false);
        }
        let now = Instant::now();
        let read_ns = unix_ns();
        let mut input = std::mem::take(&mut self.inbuf);
        let mut start = 0;
        while let Some(nl) = input[start..].iter().position(|&b| b == b'\n') {
            self.on_line(&input[start..start + nl], ts, read_ns, now);
            start += nl + 1;
        }
        input.drain(..start);
        if input.capacity() > 16 * 1024 && input.len() < 1024 {
            input.shrink_to(1024);
        }
        self.inbuf = input;
        Ok(true)
    }
}

/// `mining.configure` and `mining.subscribe`, the subscribe naming the session to resume when the
/// connection is a reconnect.
fn hello(c: &mut Conn<'_>) {
    c.out.extend_from_slice(
        b"{\"id\":1,\"method\":\"mining.configure\",\"params\":[[\"version-rolling\"],{\"version-rolling.mask\":\"1fffe000\",\"version-rolling.min-bit-count\":2}]}\n",
    );
    match (&c.resuming, &c.session_id) {
        (Some(_), Some(sid)) => {
            let sid = serde_json::Value::String(sid.clone());
            let _ = std::io::Write::write_fmt(
                &mut c.out,
                format_args!(
                    "{{\"id\":{ID_SUBSCRIBE},\"method\":\"mining.subscribe\",\"params\":[\"sluice-loadgen/0.1\",{sid}]}}\n"
                ),
            );
        }
        _ => c.out.extend_from_slice(
            b"{\"id\":2,\"method\":\"mining.subscribe\",\"params\":[\"sluice-loadgen/0.1\"]}\n",
        ),
    }
}

impl Conn<'_> {
    /// The connection was lost: with `--reconnect` (and not before its first handshake, nor
    /// once the run is over) forget the connection's protocol state, keep what a resume is
    /// checked against, and say to connect again.
    fn lose(&mut self, now: Instant) -> bool {
        let plan = &self.shared.plan;
        if !plan.reconnect
            || self.phase == Phase::Holding
            || (self.phase == Phase::Handshake && self.resuming.is_none())
        {
            return false;
        }
        let since = *self.lost_at.get_or_insert(now);
        if now.saturating_duration_since(since) > plan.handshake_timeout {
            self.local.reconnect.failed += 1;
            return false;
        }
        self.local.reconnect.unanswered += self.pending.len() as u64;
        self.pending.clear();
        self.unstamped = 0;
        if self.resuming.is_none() {
            self.local.reconnect.reconnects += 1;
            self.resuming = Some((self.phase, Arc::clone(&self.extranonce1), self.difficulty));
        }
        self.subscribed = false;
        self.authorized = false;
        self.jobs.clear();
        self.stale_job = None;
        self.accepted.clear();
        // Stratum's default until the new server says otherwise.
        self.difficulty = 1.0;
        self.inbuf.clear();
        self.out.clear();
        self.phase = Phase::Handshake;
        true
    }

    /// The handshake of a reconnect is done: what the resume gave back, counted.
    fn resumed(&mut self, extranonce1: &[u8], difficulty: f64) {
        self.lost_at = None;
        let r = &mut self.local.reconnect;
        if *self.extranonce1 == *extranonce1 {
            r.resumed_same_extranonce1 += 1;
        } else {
            r.resumed_fresh_extranonce1 += 1;
        }
        if self.difficulty == difficulty {
            r.resumed_same_difficulty += 1;
        } else {
            r.resumed_other_difficulty += 1;
        }
    }
}

/// Connects again after a pause, until connected or a handshake timeout after the loss.
async fn reconnect(c: &mut Conn<'_>, source: Option<IpAddr>) -> Option<TcpStream> {
    let plan = &c.shared.plan;
    loop {
        tokio::time::sleep(RECONNECT_PAUSE).await;
        if let Ok(Ok(s)) =
            tokio::time::timeout(plan.handshake_timeout, connect(plan.target, source)).await
        {
            return Some(s);
        }
        let since = c.lost_at.unwrap_or_else(Instant::now);
        if since.elapsed() > plan.handshake_timeout {
            c.local.reconnect.failed += 1;
            return None;
        }
    }
}

/// Runs one connection from connect to close. `local` is its index in this process.
pub async fn run_connection(shared: Arc<Shared>, local: usize) {
    let shared = &*shared;
    let plan = &shared.plan;
    let index = plan.first_index + local;
    let mut attempted = Step(Some(&shared.attempted));
    let mut drained = Step(Some(&shared.drained));
    if !plan.ramp.is_zero() && plan.connections > 1 {
        let at = shared.t0 + plan.ramp.mul_f64(local as f64 / plan.connections as f64);
        tokio::time::sleep_until(at.into()).await;
    }
    let permit = shared.handshakes.acquire().await.ok();
    let source = (!plan.sources.is_empty()).then(|| plan.sources[index % plan.sources.len()]);
    let mut c = Conn::new(shared, index);
    c.connected_at = Instant::now();
    shared
        .first_connect_ns
        .fetch_min(unix_ns(), Ordering::Relaxed);
    let mut stream =
        match tokio::time::timeout(plan.handshake_timeout, connect(plan.target, source)).await {
            Ok(Ok(s)) => s,
            Ok(Err(_)) | Err(_) => {
                c.local.errors.connect += 1;
                c.finish();
                return;
            }
        };
    hello(&mut c);
    let mut permit = permit;
    let mut window: Option<Window> = None;
    let mut window_rx = shared.window.subscribe();
    let mut close_rx = shared.close.subscribe();
    let interval = (plan.rate_per_connection > 0.0 && !plan.handshake_only)
        .then(|| Duration::from_secs_f64(1.0 / plan.rate_per_connection));
    let mut next_due: Option<Instant> = None;
    let sleep = tokio::time::sleep_until((c.connected_at + plan.handshake_timeout).into());
    tokio::pin!(sleep);

    'conn: loop {
        // Whether the connection was lost this turn (the server closed it, or it errored).
        let lost = 'turn: {
            if !c.out.is_empty() {
                // Submits queued in this round get the time they actually leave.
                let stamp = Instant::now();
                let stamp_ns = unix_ns();
                let n = c.pending.len();
                for p in c.pending.range_mut(n - c.unstamped..) {
                    p.sent = stamp;
                    p.sent_ns = stamp_ns;
                }
                c.unstamped = 0;
                let out = std::mem::take(&mut c.out);
                if write_all(&stream, &out).await.is_err() {
                    break 'turn true;
                }
                c.out = out;
                c.out.clear();
            }
            let now = Instant::now();
            // Phase changes.
            match c.phase {
                Phase::Handshake => {
                    if c.failed {
                        if c.resuming.is_some() {
                            c.local.reconnect.failed += 1;
                        } else {
                            c.local.errors.handshake += 1;
                        }
                        break 'conn;
                    }
                    if c.handshake_done() {
                        if let Some((back, extranonce1, difficulty)) = c.resuming.take() {
                            c.resumed(&extranonce1, difficulty);
                            c.phase = back;
                            if back == Phase::Running {
                                next_due = interval.map(|i| now + i.mul_f64(c.rng.unit()));
                            }
                            continue 'conn;
                        }
                        c.local.established += 1;
                        c.local
                            .handshake_us
                            .record(now.duration_since(c.connected_at).as_micros().max(1) as u64);
                        shared
                            .last_handshake_ns
                            .fetch_max(unix_ns(), Ordering::Relaxed);
                        drop(permit.take());
                        attempted.done();
                        c.phase = Phase::WaitGo;
                        continue 'conn;
                    }
                    if now >= c.connected_at + plan.handshake_timeout {
                        if c.resuming.is_some() {
                            break 'turn true;
                        }
                        c.local.errors.handshake += 1;
                        break 'conn;
                    }
                    sleep
                        .as_mut()
                        .reset((c.connected_at + plan.handshake_timeout).into());
                }
                Phase::WaitGo => {
                    if let Some(w) = *window_rx.borrow_and_update() {
                        window = Some(w);
                        c.phase = Phase::Running;
                        next_due = interval.map(|i| w.start + i.mul_f64(c.rng.unit()));
                        continue 'conn;
                    }
                }
                Phase::Running => {
                    let w = window.expect("running has a window");
                    if now >= w.end {
                        c.phase = Phase::Draining;
                        continue 'conn;
                    }
                    if let (Some(due), Some(i)) = (next_due.as_mut(), interval) {
                        let mut burst = 0;
                        while *due <= now && *due < w.end && burst < MAX_BURST {
                            c.queue_submit();
                            *due += i;
                            burst += 1;
                        }
                        if burst == MAX_BURST && *due <= now {
                            // Far behind: drop the backlog rather than burst without end.
                            *due = now + i;
                        }
                        c.expire(now);
                        if !c.out.is_empty() {
                            continue 'conn;
                        }
                        sleep.as_mut().reset((*due).min(w.end).into());
                    } else {
                        sleep.as_mut().reset(w.end.into());
                    }
                }
                Phase::Draining => {
                    let w = window.expect("draining has a window");
                    c.expire(now);
                    if c.pending.is_empty() || now >= w.end + plan.drain {
                        c.local.errors.unanswered_at_end += c.pending.len() as u64;
                        c.pending.clear();
                        c.finish();
                        drained.done();
                        c.phase = Phase::Holding;
                        continue 'conn;
                    }
                    sleep.as_mut().reset((w.end + plan.drain).into());
                }
                Phase::Holding => {
                    if *close_rx.borrow_and_update() {
                        break 'conn;
                    }
                }
            }
            let timed = matches!(c.phase, Phase::Handshake | Phase::Running | Phase::Draining);
            let waiting_go = c.phase == Phase::WaitGo;
            let holding = c.phase == Phase::Holding;
            tokio::select! {
                r = stream.readable() => {
                    if r.is_err() {
                        break 'turn true;
                    }
                    match c.read(&stream) {
                        Ok(true) => {}
                        Ok(false) | Err(_) => {
                            if c.phase == Phase::Holding && *close_rx.borrow() {
                                break 'conn;
                            }
                            break 'turn true;
                        }
                    }
                }
                _ = &mut sleep, if timed => {}
                _ = window_rx.changed(), if waiting_go => {}
                _ = close_rx.changed(), if holding => {}
            }
            false
        };
        if !lost {
            continue;
        }
        let resuming = c.resuming.is_some();
        let first_handshake = c.phase == Phase::Handshake && !resuming;
        if c.lose(Instant::now()) {
            if let Some(s) = reconnect(&mut c, source).await {
                stream = s;
                c.connected_at = Instant::now();
                hello(&mut c);
                continue;
            }
        } else if first_handshake {
            c.local.errors.handshake += 1;
        } else if !resuming && (!plan.reconnect || c.phase == Phase::Holding) {
            // Not a reconnect that gave up (those are counted as failed): a plain disconnect.
            c.local.errors.disconnects += 1;
        }
        break;
    }
    // Ended early (refused, timed out or disconnected): what was in flight is lost with it.
    if c.phase != Phase::Holding {
        c.local.errors.unanswered_at_end += c.pending.len() as u64;
        c.pending.clear();
        c.finish();
    }
    drop(permit);
    attempted.done();
    drained.done();
    if c.phase != Phase::Holding {
        // Connections that end early still wait for the end, so the process does not exit early.
        let mut close_rx = close_rx;
        let _ = close_rx.wait_for(|c| *c).await;
    }
    drop(stream);
}
