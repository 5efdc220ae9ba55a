//! One engine core: a pinned thread running its own tokio-uring runtime with its own listener
//! sockets (SO_REUSEPORT), its connections, the fan-out of new jobs to them, and their clock.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::clock::UnixMillis;
use crate::config::Listener;
use crate::server::connection::{self, Conn, Core};
use crate::server::shared::Shared;
use crate::session::{CloseReason, Event, Flow};
use crate::stratum::message;

/// How often each connection's clock (timeouts, vardiff) is advanced.
const TICK: Duration = Duration::from_secs(1);
/// How long shutdown waits for the sessions' releases to be written before miners are told to go.
const SESSION_RELEASE_WAIT: Duration = Duration::from_secs(1);
/// How long shutdown waits for `client.reconnect` to reach miners.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);

/// Pins the calling thread to one CPU.
fn pin_to_cpu(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu % libc::CPU_SETSIZE as usize, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            tracing::warn!(cpu, "could not pin engine thread");
        }
    }
}

/// Runs one core until shutdown. `sockets` are this core's listener sockets, one per listener.
pub fn run(
    index: usize,
    shared: Arc<Shared>,
    sockets: Vec<(std::net::TcpListener, Rc<Listener>)>,
    shutdown: watch::Receiver<bool>,
) {
    if shared.settings.pin_threads {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        pin_to_cpu(index % cpus);
    }
    let core = Rc::new(Core::new(index, shared));
    tokio_uring::builder().entries(1024).start(async move {
        for (socket, listener) in sockets {
            // Policies match on the port the miner reached: the bound one, when 0 was configured.
            let listener = match socket.local_addr() {
                Ok(bound) if bound.port() != listener.address.port() => {
                    let mut l = (*listener).clone();
                    l.address.set_port(bound.port());
                    Rc::new(l)
                }
                _ => listener,
            };
            let listener_socket = tokio_uring::net::TcpListener::from_std(socket);
            tokio_uring::spawn(accept_loop(
                Rc::clone(&core),
                listener_socket,
                listener,
                shutdown.clone(),
            ));
        }
        tokio_uring::spawn(fan_out(Rc::clone(&core), shutdown.clone()));
        tokio_uring::spawn(tick(Rc::clone(&core), shutdown.clone()));
        // Not stopped by the shutdown: the goodbye waits for held replies too.
        tokio_uring::spawn(answer_held(Rc::clone(&core)));
        let mut shutdown = shutdown;
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
        say_goodbye(&core).await;
    });
}

async fn accept_loop(
    core: Rc<Core>,
    socket: tokio_uring::net::TcpListener,
    listener: Rc<Listener>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last_accept_warning = None;
    loop {
        let accepted = tokio::select! {
            r = socket.accept() => r,
            _ = shutdown.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors, most likely: back off rather than spin, and say so at
                // most once a second.
                if last_accept_warning
                    .is_none_or(|t: Instant| t.elapsed() >= Duration::from_secs(1))
                {
                    tracing::warn!(error = %e, "accept failed");
                    last_accept_warning = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let metrics = &core.shared.metrics;
        if listener.proxy_protocol && !listener.trusts(peer.ip()) {
            // Its PROXY header would name any address it likes, and escape the per-address
            // limit: only the balancers listed in trusted_proxies may send one.
            metrics.count_close(CloseReason::UntrustedProxy);
            tracing::debug!(peer = %peer, "closing a connection from outside trusted_proxies");
            drop(stream);
            continue;
        }
        if core
            .shared
            .hooks
            .control
            .draining
            .load(std::sync::atomic::Ordering::Acquire)
        {
            // Draining: the balancer sends this miner to another engine.
            metrics.count_close(CloseReason::Draining);
            drop(stream);
            continue;
        }
        if core.shared.hooks.slot.as_ref().is_some_and(|l| l.is_lost()) {
            // Another engine holds our slot: a new miner here could get its extranonce1.
            metrics.count_close(CloseReason::SlotLost);
            drop(stream);
            continue;
        }
        let Ok(total) = core.shared.limits.acquire_total() else {
            metrics.count_close(CloseReason::LimitTotal);
            continue;
        };
        let ip_permit = if listener.proxy_protocol {
            None
        } else {
            match core.shared.limits.acquire_ip(peer.ip()) {
                Ok(p) => Some(p),
                Err(_) => {
                    metrics.count_close(CloseReason::LimitPerIp);
                    continue;
                }
            }
        };
        metrics.cores[core.index]
            .connections_accepted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio_uring::spawn(connection::serve(
            Rc::clone(&core),
            stream,
            peer,
            Rc::clone(&listener),
            total,
            ip_permit,
        ));
    }
}

/// Pushes each new job to every connection of this core.
async fn fan_out(core: Rc<Core>, mut shutdown: watch::Receiver<bool>) {
    let waker = core.shared.hooks.feed.waker(core.index);
    loop {
        tokio::select! {
            _ = waker.notified() => {}
            _ = shutdown.changed() => return,
        }
        let book = core.shared.hooks.feed.load();
        let Some(job) = book.current() else { continue };
        let started = Instant::now();
        let max_pending = core.shared.settings.max_pending_output;
        for conn in core.connections() {
            if conn.is_closed() {
                continue;
            }
            conn.session
                .borrow_mut()
                .push_job(job, &mut conn.out.borrow_mut());
            if conn.pending_output() > max_pending {
                conn.close(&core, CloseReason::PendingOutput);
            } else {
                conn.flush();
            }
        }
        if let Ok(mut h) = core.shared.metrics.cores[core.index]
            .notify_fanout_us
            .lock()
        {
            let _ = h.record(started.elapsed().as_micros().max(1) as u64);
        }
    }
}

/// Durable acknowledgement: answers the replies this core's connections hold, as the share log's
/// writer settles their accepts (in number order).
async fn answer_held(core: Rc<Core>) {
    let Some((marks, _)) = core
        .shared
        .hooks
        .share_log
        .as_ref()
        .and_then(|l| l.durable())
    else {
        return;
    };
    loop {
        marks.changed(core.index).await;
        let settled = marks.settled(core.index);
        loop {
            let next = {
                let mut held = core.held.borrow_mut();
                match held.front().and_then(|(seq, _)| settled.kept(*seq)) {
                    Some(kept) => held.pop_front().map(|(seq, conn)| (seq, conn, kept)),
                    None => None,
                }
            };
            let Some((seq, conn, kept)) = next else { break };
            conn.answer_held(&core, seq, kept);
        }
    }
}

/// Advances every connection's clock once a second.
async fn tick(core: Rc<Core>, mut shutdown: watch::Receiver<bool>) {
    let mut events = Vec::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.changed() => return,
        }
        let now = UnixMillis::now().as_millis();
        let conns = core.connections();
        for conn in &conns {
            let flow = conn.session.borrow_mut().tick(now, &mut events);
            if events.drain(..).any(|e| matches!(e, Event::SessionChanged)) {
                conn.save(&core);
            }
            if let Flow::Close(reason) = flow {
                conn.close(&core, reason);
            }
        }
        obey_control(&core, &conns);
    }
}

/// Carries out sluicectl's commands on this core: changed policies, kicks, and a wave of the
/// drain.
fn obey_control(core: &Rc<Core>, conns: &[Rc<Conn>]) {
    use std::sync::atomic::Ordering;
    let policies = core.shared.hooks.policies.load();
    let seen = (
        policies.generation,
        core.shared.hooks.control.reloads.load(Ordering::Acquire),
    );
    if seen != core.settings_seen.get() {
        core.settings_seen.set(seen);
        for conn in conns {
            if !conn.is_closed() {
                conn.apply_policy(&policies, &core.shared);
            }
        }
    }
    let control = &core.shared.hooks.control;
    for kick in control.kicks() {
        for conn in conns {
            if !conn.is_closed() && conn.session.borrow().session_id() == kick.session_id {
                conn.kick(core);
                kick.kicked.fetch_add(1, Ordering::AcqRel);
            }
        }
    }
    if control.draining.load(Ordering::Acquire) {
        // A tenth of the connections a second, at least one: miners move in waves.
        let live: Vec<&Rc<Conn>> = conns.iter().filter(|c| !c.is_closed()).collect();
        let wave = live.len().div_ceil(10).max(1);
        let target = core.shared.settings.reconnect_to.as_ref();
        for conn in live.into_iter().take(wave) {
            // Released before the miner hears it should go, so its resume elsewhere finds it.
            conn.release(core);
            message::write_reconnect(
                &mut conn.out.borrow_mut(),
                target.map(|t| (t.host.as_str(), t.port)),
                target.map_or(0, |t| t.wait_secs),
            );
            conn.flush();
            conn.close_after_flush(core, CloseReason::Drained);
        }
    }
}

/// Tells every miner to reconnect (elsewhere, or here after the wait), and gives the messages a
/// moment to leave.
async fn say_goodbye(core: &Rc<Core>) {
    let target = core.shared.settings.reconnect_to.as_ref();
    let conns = core.connections();
    // Sessions are released, and written, before miners hear they should go: a miner that
    // reconnects to another engine at once finds its session there.
    for conn in &conns {
        conn.release(core);
    }
    if let Some(store) = &core.shared.hooks.sessions {
        store.flush(SESSION_RELEASE_WAIT).await;
    }
    for conn in &conns {
        message::write_reconnect(
            &mut conn.out.borrow_mut(),
            target.map(|t| (t.host.as_str(), t.port)),
            target.map_or(0, |t| t.wait_secs),
        );
        conn.flush();
    }
    let deadline = Instant::now() + SHUTDOWN_FLUSH;
    while Instant::now() < deadline
        && conns
            .iter()
            .any(|c| !c.is_closed() && c.pending_output() > 0)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for conn in &conns {
        conn.close(core, CloseReason::Shutdown);
    }
}
