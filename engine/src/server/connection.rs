//! One miner connection on one core: the PROXY header (when the listener expects one), then a reader
//! that frames lines and feeds the session, and a writer that sends what the session and the fan-out
//! queue. The connection never leaves its core; its state is `Rc`-shared between its two tasks and
//! the core's fan-out and tick tasks, never across threads.
//!
//! With durable acknowledgement (`share_log.durable_ack`), the `true` of an accepted submit is
//! *held*: its bytes, and every byte queued after them, stay in the output buffer until the share
//! log's writer settles the share (`core.rs` answers them as it does). A settled one is released;
//! one the log could not keep is first rewritten by the session's [`write_not_recorded`]. The
//! connection only holds bytes; what a taken-back `true` becomes is the session's.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_uring::net::TcpStream;

use crate::clock::UnixMillis;
use crate::config::Listener;
use crate::plane::policies::PolicySet;
use crate::plane::sessions::{Claim, Release};
use crate::plane::sharelog::{DurableSeq, LoggedShare, Queued};
use crate::proxy::{self, ProxyHeader};
use crate::random::random_session_id;
use crate::server::limits::IpPermit;
use crate::server::limits::TotalPermit;
use crate::server::local::{self, Member};
use crate::server::shared::Shared;
use crate::session::policy::{PolicyLookup, PolicyScope};
use crate::session::{write_not_recorded, CloseReason, Context, Event, Flow, Session};
use crate::stratum::LineFramer;

/// Bytes read per receive. Small on purpose: a submit is about 200 bytes, and this buffer lives as
/// long as the connection.
const READ_BUFFER: usize = 512;

/// The output buffer capacity a connection keeps between writes.
const KEPT_OUTPUT_CAPACITY: usize = 512;

/// The core a connection lives on, as connections see it.
pub type Core = local::Core<Conn>;

/// The state a connection shares between its tasks.
pub struct Conn {
    pub id: u64,
    pub client: SocketAddr,
    stream: TcpStream,
    pub session: RefCell<Session>,
    /// Bytes queued for the miner; bounded by `max_pending_output`.
    pub out: RefCell<Vec<u8>>,
    wake_writer: Notify,
    closed: Cell<bool>,
    /// Close once the output is written (a drained miner gets its `client.reconnect` first).
    /// The reason stands even when the miner or the socket ends the connection first.
    closing: Cell<Option<CloseReason>>,
    /// The listener's index: its session settings (which policies override) live in `Shared`.
    listener: usize,
    /// The port the miner reached, which policies match on.
    port: u16,
    /// The session has left this connection (released to the fleet's store): no more lines are
    /// handled, so no share is accepted here that the released duplicate sets do not hold.
    released: Cell<bool>,
    /// Release without keeping the session resumable (an operator's kick).
    forget: Cell<bool>,
    /// Held `true` replies in `out`, in order (durable acknowledgement); bytes from the first
    /// one's start wait.
    holds: RefCell<VecDeque<Hold>>,
    /// Wakes a reader paused at `share_log.max_held_replies` once a hold is answered.
    hold_answered: Notify,
}

/// A held reply: the core's number of its accept, its bytes `out[start..end]`, since when.
#[derive(Debug, Clone, Copy)]
struct Hold {
    seq: u64,
    start: usize,
    end: usize,
    since: Instant,
}

impl Member for Conn {
    fn id(&self) -> u64 {
        self.id
    }

    fn extranonce1(&self) -> crate::units::Extranonce1 {
        *self.session.borrow().extranonce1()
    }
}

impl Conn {
    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Wakes the writer after output was queued.
    pub fn flush(&self) {
        self.wake_writer.notify_one();
    }

    /// Ends the connection: both tasks stop, and the socket is shut so a pending receive returns.
    pub fn close(&self, core: &Core, reason: CloseReason) {
        if self.closed.replace(true) {
            return;
        }
        // A drained miner that hangs up on its `client.reconnect` was still drained.
        let reason = self.closing.take().unwrap_or(reason);
        core.shared.metrics.count_close(reason);
        tracing::debug!(client = %self.client, reason = reason.as_str(), "closing connection");
        let _ = self.stream.shutdown(Shutdown::Both);
        // Held replies go with the connection: the core skips their numbers when they settle.
        self.holds.borrow_mut().clear();
        self.hold_answered.notify_one();
        self.wake_writer.notify_one();
    }

    /// Bytes of `out` the writer may send now: those before the first held reply.
    fn writable(&self) -> usize {
        self.holds
            .borrow()
            .front()
            .map_or_else(|| self.out.borrow().len(), |h| h.start)
    }

    /// The writer took the first `n` bytes of `out`.
    fn shift_holds(&self, n: usize) {
        for h in self.holds.borrow_mut().iter_mut() {
            h.start -= n;
            h.end -= n;
        }
    }

    /// The share log settled the accept numbered `seq`: its reply goes (a `true` when `kept`, else
    /// taken back), with the bytes behind it up to the next hold.
    pub fn answer_held(&self, core: &Core, seq: u64, kept: bool) {
        let mut holds = self.holds.borrow_mut();
        // Numbers settle in order, so it is the first; a closed connection holds none.
        let Some(i) = holds.iter().position(|h| h.seq == seq) else {
            return;
        };
        let hold = holds.remove(i).expect("found above");
        if let Ok(mut h) = core.shared.metrics.cores[core.index].durable_wait_us.lock() {
            let _ = h.record(hold.since.elapsed().as_micros().max(1) as u64);
        }
        if !kept {
            take_back(&mut self.out.borrow_mut(), hold, &mut holds);
        }
        drop(holds);
        self.hold_answered.notify_one();
        self.flush();
    }

    /// Replies held now.
    pub fn held_replies(&self) -> usize {
        self.holds.borrow().len()
    }

    pub fn pending_output(&self) -> usize {
        self.out.borrow().len()
    }

    /// Runs the session on the policy that matches it now (or the listener's configuration), for
    /// an authorized session; a difficulty change is announced at once.
    pub fn apply_policy(&self, policies: &PolicySet, shared: &Shared) {
        let mut session = self.session.borrow_mut();
        let Some(worker) = session.first_worker() else {
            return;
        };
        let base = shared.listener_session(self.listener);
        let config = policies.config_for(&base, self.port, Some(worker), session.user_agent());
        if !Arc::ptr_eq(&config, session.config()) {
            session.apply_config(config, &mut self.out.borrow_mut());
            drop(session);
            self.flush();
        }
    }

    /// This connection's name in the session store: unique in the process (ids count per core).
    fn store_conn(&self, core: &Core) -> u64 {
        (core.index as u64) << 48 | self.id
    }

    /// Saves the session to the fleet's store (while this connection holds it).
    pub fn save(&self, core: &Core) {
        if self.released.get() {
            return;
        }
        if let Some(store) = &core.shared.hooks.sessions {
            let session = self.session.borrow();
            if session.is_authorized() {
                store.save(
                    session.raw_session_id(),
                    self.store_conn(core),
                    session.export_held(),
                );
            }
        }
    }

    /// Lets the session go to the fleet's store, resumable elsewhere with its duplicate sets,
    /// once; from then on the connection handles no more lines. A session that was never
    /// authorized has no record to release.
    pub fn release(&self, core: &Core) {
        if self.released.replace(true) {
            return;
        }
        let Some(store) = &core.shared.hooks.sessions else {
            return;
        };
        let session = self.session.borrow();
        if !session.is_authorized() {
            return;
        }
        let release = if self.forget.get() {
            Release::Forget
        } else {
            match session.export(&core.shared.hooks.feed.load()) {
                Ok(state) => Release::Resumable(Box::new(state)),
                Err(why) => {
                    tracing::debug!(session = %session.session_id(), %why, "the session is not resumable");
                    Release::Forget
                }
            }
        };
        store.release(session.raw_session_id(), self.store_conn(core), release);
    }

    /// Kicked by an operator: closed, and its session not kept for a resume.
    pub fn kick(&self, core: &Core) {
        self.forget.set(true);
        self.close(core, CloseReason::Kicked);
    }

    /// Closes the connection once everything queued for the miner is written.
    pub fn close_after_flush(&self, core: &Core, reason: CloseReason) {
        if self.pending_output() == 0 {
            self.close(core, reason);
        } else {
            self.closing.set(Some(reason));
            self.wake_writer.notify_one();
        }
    }
}

/// Serves one accepted connection to its end.
pub async fn serve(
    core: Rc<Core>,
    stream: TcpStream,
    peer: SocketAddr,
    listener: Rc<Listener>,
    _total: TotalPermit,
    ip_permit: Option<IpPermit>,
) {
    let _ = stream.set_nodelay(true);
    let settings = &core.shared.settings;
    let mut buf = vec![0u8; READ_BUFFER];
    let mut framer = LineFramer::new(settings.max_line_length);
    let mut client = peer;
    let mut _ip_permit = ip_permit;

    if listener.proxy_protocol {
        let deadline = Duration::from_millis(listener.session.limits.unauthenticated_timeout_ms);
        let header = tokio::time::timeout(deadline, read_proxy_header(&stream, &mut buf)).await;
        match header {
            Ok(Ok((header, rest))) => {
                if let ProxyHeader::Proxied { source, .. } = header {
                    client = source;
                }
                framer.push(&rest);
            }
            Ok(Err(())) | Err(_) => {
                core.shared.metrics.count_close(CloseReason::ProxyHeader);
                return;
            }
        }
        match core.shared.limits.acquire_ip(client.ip()) {
            Ok(p) => _ip_permit = Some(p),
            Err(_) => {
                core.shared.metrics.count_close(CloseReason::LimitPerIp);
                return;
            }
        }
    }

    let Some(extranonce1) = core.allocate_extranonce() else {
        tracing::warn!("extranonce1 space of this core is exhausted; refusing a connection");
        return;
    };
    let id = core.next_connection_id();
    let mut session = Session::new(
        core.shared.listener_session(listener.index),
        extranonce1,
        random_session_id(),
        UnixMillis::now().as_millis(),
    );
    if core.shared.hooks.sessions.is_some() {
        session.allow_resume();
    }
    let conn = Rc::new(Conn {
        id,
        client,
        stream,
        session: RefCell::new(session),
        out: RefCell::new(Vec::new()),
        wake_writer: Notify::new(),
        closed: Cell::new(false),
        closing: Cell::new(None),
        listener: listener.index,
        port: listener.address.port(),
        released: Cell::new(false),
        forget: Cell::new(false),
        holds: RefCell::new(VecDeque::new()),
        hold_answered: Notify::new(),
    });
    core.register(Rc::clone(&conn));
    let writer = tokio_uring::spawn(write_loop(Rc::clone(&conn), Rc::clone(&core)));

    // Bytes that came with the PROXY header.
    process(&core, &conn, &mut framer).await;
    while !conn.is_closed() {
        let (result, b) = conn.stream.read(buf).await;
        buf = b;
        match result {
            Ok(0) => {
                conn.close(&core, CloseReason::Eof);
                break;
            }
            Err(_) => {
                conn.close(&core, CloseReason::SocketError);
                break;
            }
            Ok(n) => {
                framer.push(&buf[..n]);
                process(&core, &conn, &mut framer).await;
            }
        }
    }
    // Closed already, unless the read loop ended on a close from elsewhere.
    conn.close(&core, CloseReason::Eof);
    conn.release(&core);
    core.unregister(&conn);
    let _ = writer.await;
}

async fn read_proxy_header(
    stream: &TcpStream,
    buf: &mut Vec<u8>,
) -> Result<(ProxyHeader, Vec<u8>), ()> {
    let mut pending = Vec::new();
    loop {
        let (result, b) = stream.read(std::mem::take(buf)).await;
        *buf = b;
        let n = result.map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        pending.extend_from_slice(&buf[..n]);
        match proxy::parse(&pending) {
            Ok(Some((header, used))) => return Ok((header, pending[used..].to_vec())),
            Ok(None) if pending.len() <= proxy::V2_MAX => continue,
            _ => return Err(()),
        }
    }
}

/// What reading the buffered lines came to.
enum Input {
    Continue,
    Close(CloseReason),
    /// The session asks for the saved session with this id before its subscribe is answered.
    Resume(u64),
    /// `share_log.max_held_replies` accepts wait for the share log: no more lines until one is
    /// answered.
    HeldFull,
}

/// Feeds the buffered lines to the session; when it asks to resume a saved session, looks it up,
/// hands the session what was found and goes on with the lines after the subscribe.
async fn process(core: &Core, conn: &Rc<Conn>, framer: &mut LineFramer) {
    loop {
        match handle_input(core, conn, framer) {
            Input::Continue => return,
            Input::HeldFull => {
                conn.hold_answered.notified().await;
                if conn.is_closed() {
                    return;
                }
            }
            Input::Close(reason) => {
                conn.close(core, reason);
                return;
            }
            Input::Resume(id) => {
                // The session allows a resume only when there is a store.
                if let Some(store) = &core.shared.hooks.sessions {
                    let claim = store
                        .claim(id, conn.store_conn(core), SESSION_LOOKUP_DEADLINE)
                        .await;
                    resume(core, conn, id, claim);
                }
                if let Input::Close(reason) = after_line(core, conn, |session, ctx, out, events| {
                    session.answer_subscribe(ctx, out, events)
                }) {
                    conn.close(core, reason);
                    return;
                }
            }
        }
    }
}

/// Hands the session the saved session the store let this connection claim, if any.
fn resume(core: &Core, conn: &Conn, id: u64, claim: Claim) {
    let metrics = &core.shared.metrics;
    let text = crate::session::format_session_id(id);
    match claim {
        Claim::Resumed(state) => {
            let own = *conn.session.borrow().extranonce1();
            let book = core.shared.hooks.feed.load();
            let resumed = conn.session.borrow_mut().resume(id, &state, &book);
            match resumed {
                Ok(()) => {
                    let resumed = *conn.session.borrow().extranonce1();
                    core.swap_extranonce(&own, &resumed);
                    metrics
                        .sessions_resumed
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::debug!(session = %text, "session resumed");
                }
                Err(why) => {
                    // The claim is ours; let the record go rather than hold it.
                    if let Some(store) = &core.shared.hooks.sessions {
                        store.release(id, conn.store_conn(core), Release::Forget);
                    }
                    metrics.count_resume_refused("invalid");
                    tracing::debug!(session = %text, %why, "session not resumed");
                }
            }
        }
        refused => {
            let why = refused.refusal().unwrap_or("unknown");
            metrics.count_resume_refused(why);
            tracing::debug!(session = %text, why, "session not resumed: a fresh one");
        }
    }
}

/// The longest a subscribe waits for the session store before the miner gets a new session.
const SESSION_LOOKUP_DEADLINE: std::time::Duration = std::time::Duration::from_millis(500);

/// Feeds every complete line to the session, until the connection must close or the session
/// asks to resume a saved one.
fn handle_input(core: &Core, conn: &Rc<Conn>, framer: &mut LineFramer) -> Input {
    let max_held = core
        .shared
        .hooks
        .share_log
        .as_ref()
        .and_then(|log| log.durable())
        .map_or(usize::MAX, |(_, ack)| ack.max_held_replies);
    loop {
        if conn.held_replies() >= max_held {
            return Input::HeldFull;
        }
        let Some(line) = framer.next_line() else {
            return Input::Continue;
        };
        let Ok(line) = line else {
            conn.flush();
            return Input::Close(CloseReason::LineTooLong);
        };
        let input = after_line(core, conn, |session, ctx, out, events| {
            session.handle_line(line, ctx, out, events)
        });
        if !matches!(input, Input::Continue) {
            return input;
        }
    }
}

/// Runs one step of the session (a line, or the answer to a subscribe that waited for a resume)
/// and dispatches what came out: replies to the writer, events to metrics, the share log, the
/// block queue and the session store.
fn after_line(
    core: &Core,
    conn: &Rc<Conn>,
    step: impl FnOnce(&mut Session, &Context<'_>, &mut Vec<u8>, &mut Vec<Event>) -> Flow,
) -> Input {
    let shared = &core.shared;
    if conn.released.get() {
        return Input::Continue;
    }
    let book = shared.hooks.feed.load();
    let mut session = conn.session.borrow_mut();
    let mut out = conn.out.borrow_mut();
    let mut events = core.events.borrow_mut();
    let metrics = &shared.metrics.cores[core.index];
    // Only the first authorize asks for a policy: an authorized session's lines (its submits)
    // touch neither the policies nor the listener's configuration.
    let policies = (!session.is_authorized())
        .then(|| shared.hooks.policies.load())
        .filter(|p| !p.policies.is_empty());
    let base = policies
        .as_ref()
        .map(|_| shared.listener_session(conn.listener));
    let scope = policies
        .as_ref()
        .zip(base.as_ref())
        .map(|(set, base)| PolicyScope {
            set,
            base,
            port: conn.port,
        });
    let started = Instant::now();
    let before = out.len();
    let ctx = Context {
        book: &book,
        now_ms: UnixMillis::now().as_millis(),
        policies: scope.as_ref().map(|s| s as &dyn PolicyLookup),
    };
    let flow = step(&mut session, &ctx, &mut out, &mut events);
    let mut save = false;
    for event in events.drain(..) {
        match event {
            Event::Share(record) => {
                match record.result {
                    Ok(()) => metrics.credit(record.assigned_difficulty.get()),
                    Err(reason) => metrics.reject(reason),
                }
                record_submit_latency(metrics, started);
                if let Some(log) = &shared.hooks.share_log {
                    // With durable acknowledgement, an accept's `true` (the line this step
                    // wrote) waits for the log.
                    let held = (record.result.is_ok() && log.durable().is_some())
                        .then(|| reply_at(&out, before))
                        .flatten()
                        .map(|(start, end)| Hold {
                            seq: core.next_accept(),
                            start,
                            end,
                            since: started,
                        });
                    // Never waits; what the queue refuses it counts (accepted ones loudly).
                    let queued = log.push(LoggedShare {
                        record,
                        session: *session.extranonce1(),
                        client: conn.client.ip(),
                        user_agent: session.user_agent_shared(),
                        at_ms: ctx.now_ms,
                        durable: held.map(|h| DurableSeq {
                            core: core.index,
                            seq: h.seq,
                        }),
                    });
                    if let Some(hold) = held {
                        let mut holds = conn.holds.borrow_mut();
                        if queued == Queued::Yes {
                            holds.push_back(hold);
                            core.held
                                .borrow_mut()
                                .push_back((hold.seq, Rc::clone(conn)));
                        } else {
                            take_back(&mut out, hold, &mut holds);
                        }
                    }
                }
            }
            Event::Block(block) => {
                metrics
                    .blocks_found
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(hash = %block.hash, worker = %block.worker, height = block.job.height, "block found");
                if shared.hooks.blocks.try_send(block).is_err() {
                    tracing::error!(
                        "block submission queue is full or closed: a block was dropped"
                    );
                }
            }
            Event::Refused(reason) => {
                metrics.reject(reason);
                record_submit_latency(metrics, started);
            }
            Event::SessionChanged => save = true,
            Event::UnknownSessionId => shared.metrics.count_resume_refused("unknown"),
            Event::Difficulty(_) => {}
        }
    }
    let input = match flow {
        Flow::Continue if out.len() > shared.settings.max_pending_output => {
            Input::Close(CloseReason::PendingOutput)
        }
        Flow::Continue => Input::Continue,
        Flow::Close(reason) => Input::Close(reason),
        Flow::Resume(id) => Input::Resume(id),
    };
    drop(out);
    conn.flush();
    drop(session);
    if save {
        conn.save(core);
    }
    input
}

/// The first line written at `from` or after: the reply a step wrote.
fn reply_at(out: &[u8], from: usize) -> Option<(usize, usize)> {
    let len = out.get(from..)?.iter().position(|&b| b == b'\n')?;
    Some((from, from + len + 1))
}

/// Rewrites a held `true` into the session's "not recorded" error, moving the holds behind it.
/// Only when the share log loses a batch: the scratch buffer's allocation does not matter.
fn take_back(out: &mut Vec<u8>, hold: Hold, later: &mut VecDeque<Hold>) {
    let mut answer = Vec::with_capacity(128);
    if !write_not_recorded(&out[hold.start..hold.end], &mut answer) {
        return;
    }
    out.splice(hold.start..hold.end, answer.iter().copied());
    let grown = answer.len() as isize - (hold.end - hold.start) as isize;
    for h in later.iter_mut().filter(|h| h.start >= hold.end) {
        h.start = h.start.saturating_add_signed(grown);
        h.end = h.end.saturating_add_signed(grown);
    }
}

/// A submit's time from its line to its verdict (accepted, rejected or refused), in ns.
fn record_submit_latency(metrics: &crate::metrics::CoreMetrics, started: Instant) {
    if let Ok(mut h) = metrics.submit_latency_ns.lock() {
        let _ = h.record(started.elapsed().as_nanos().max(1) as u64);
    }
}

async fn write_loop(conn: Rc<Conn>, core: Rc<Core>) {
    let mut spare: Vec<u8> = Vec::new();
    loop {
        let writable = conn.writable();
        if writable == 0 {
            if conn.out.borrow().is_empty() {
                if let Some(reason) = conn.closing.get() {
                    conn.close(&core, reason);
                }
            }
            if conn.is_closed() {
                break;
            }
            conn.wake_writer.notified().await;
            continue;
        }
        {
            let mut out = conn.out.borrow_mut();
            if writable == out.len() {
                std::mem::swap(&mut *out, &mut spare);
            } else {
                // Bytes before a held reply go; the rest waits in place.
                spare.extend_from_slice(&out[..writable]);
                out.drain(..writable);
                conn.shift_holds(writable);
            }
        }
        let (result, b) = conn.stream.write_all(spare).await;
        spare = b;
        spare.clear();
        // Keep a buffer the size of share replies; let one that held a job go, so an idle
        // connection does not hold two job-sized buffers between jobs. Share replies never
        // reach this size, so the share path still allocates nothing.
        if spare.capacity() > KEPT_OUTPUT_CAPACITY {
            spare = Vec::new();
        }
        if result.is_err() {
            conn.close(&core, CloseReason::SocketError);
            break;
        }
    }
}
