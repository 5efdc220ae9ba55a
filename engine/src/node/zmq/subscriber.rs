//! One blocking connection to a node's publisher: TCP connect with keepalive, the ZMTP handshake,
//! the `hashblock` subscription, then reads under deadlines into the codec's [`Inbox`], answering
//! PINGs. A timeout part-way through a frame loses nothing.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, TcpKeepalive, Type};

use super::codec::{
    check_greeting, check_ready, Inbound, Inbox, PingContext, FLAG_COMMAND, GREETING, GREETING_LEN,
    READY_SUB, SUBSCRIBE_HASHBLOCK,
};
use super::{Endpoint, HashBlock, ZmqError};

/// How often the background runner looks at its stop flag, at the longest.
pub(super) const STOP_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Blocks are minutes apart, so a silent connection is normal and says nothing about the peer; TCP
/// keepalive notices a node that vanished (power loss, network partition) within about a minute
/// instead of never. bitcoind does not enable ZMTP heartbeats, so the protocol cannot do it for us.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;

/// A live subscription to a node's `hashblock` publisher.
///
/// After [`next`](Subscriber::next) returns an error the stream is in an unknown state: every later
/// call returns [`ZmqError::Broken`], and a new `Subscriber` must be connected.
pub struct Subscriber {
    stream: TcpStream,
    inbox: Inbox,
    broken: bool,
}

impl fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber")
            .field("peer", &self.stream.peer_addr().ok())
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl Subscriber {
    /// Connects, handshakes and subscribes to `hashblock`, all within `timeout`, which also bounds
    /// every later write (they are a few bytes; one that cannot go through means the peer stopped
    /// reading).
    pub fn connect(endpoint: &str, timeout: Duration) -> Result<Subscriber, ZmqError> {
        Subscriber::open(&Endpoint::parse(endpoint)?, timeout, None)
    }

    /// Blocks up to `timeout` for the next hashblock; Ok(None) on timeout; Err when the connection is
    /// lost or the peer breaks the protocol. A timeout part-way through a message loses nothing: the
    /// bytes stay buffered for the next call.
    pub fn next(&mut self, timeout: Duration) -> Result<Option<HashBlock>, ZmqError> {
        if self.broken {
            return Err(ZmqError::Broken);
        }
        let result = self.next_inner(timeout);
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    fn next_inner(&mut self, timeout: Duration) -> Result<Option<HashBlock>, ZmqError> {
        let deadline = deadline_after(timeout);
        let mut first_read = true;
        loop {
            match self.inbox.poll()? {
                Some(Inbound::HashBlock(block)) => return Ok(Some(block)),
                Some(Inbound::Ping(context)) => {
                    self.pong(context)?;
                    continue;
                }
                None => {}
            }
            // Only the first read may start at the deadline: a peer trickling bytes must not keep
            // us past it.
            if !self.fill(deadline, None, first_read)? {
                return Ok(None);
            }
            first_read = false;
        }
    }

    /// The peer's address, for logs.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr()
    }

    /// `stop`, when given, is looked at every [`STOP_CHECK_INTERVAL`] while waiting.
    pub(super) fn open(
        endpoint: &Endpoint,
        timeout: Duration,
        stop: Option<&AtomicBool>,
    ) -> Result<Subscriber, ZmqError> {
        let deadline = deadline_after(timeout);
        let mut last_error = None;
        let mut stream = None;
        for addr in endpoint.resolve()? {
            match connect_tcp(addr, deadline, stop) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e @ (ZmqError::Cancelled | ZmqError::Timeout(_))) => return Err(e),
                Err(e) => last_error = Some(e),
            }
        }
        let Some(stream) = stream else {
            return Err(last_error.unwrap_or(ZmqError::Timeout("connecting")));
        };
        // The handshake is four small writes answered in turn; Nagle would hold some back for an ACK.
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        let mut sub = Subscriber {
            stream,
            inbox: Inbox::new(),
            broken: false,
        };

        sub.stream.write_all(&GREETING)?;
        while sub.inbox.buffered().len() < GREETING_LEN {
            if !sub.fill(deadline, stop, false)? {
                return Err(ZmqError::Timeout("waiting for the publisher's greeting"));
            }
        }
        check_greeting(&sub.inbox.buffered()[..GREETING_LEN])?;
        sub.inbox.consume(GREETING_LEN);

        sub.stream.write_all(&READY_SUB)?;
        let (flags, body) = loop {
            if let Some(frame) = sub.inbox.frame()? {
                break frame;
            }
            if !sub.fill(deadline, stop, false)? {
                return Err(ZmqError::Timeout("waiting for the publisher's READY"));
            }
        };
        if flags & FLAG_COMMAND == 0 {
            return Err(ZmqError::Protocol(
                "a message before the publisher's READY".into(),
            ));
        }
        check_ready(sub.inbox.bytes(body))?;

        sub.stream.write_all(&SUBSCRIBE_HASHBLOCK)?;
        Ok(sub)
    }

    /// Reads what has arrived into the inbox: Ok(false) if nothing did by `deadline`. With
    /// `at_least_once` it reads even at the deadline, so that a zero timeout still picks up what the
    /// kernel holds.
    fn fill(
        &mut self,
        deadline: Instant,
        stop: Option<&AtomicBool>,
        at_least_once: bool,
    ) -> Result<bool, ZmqError> {
        let mut tried = !at_least_once;
        loop {
            if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                return Err(ZmqError::Cancelled);
            }
            let now = Instant::now();
            if now >= deadline && tried {
                return Ok(false);
            }
            tried = true;
            // The socket cannot wait for zero (None would mean forever).
            let mut wait = deadline
                .saturating_duration_since(now)
                .max(Duration::from_micros(1));
            if stop.is_some() {
                wait = wait.min(STOP_CHECK_INTERVAL);
            }
            self.stream.set_read_timeout(Some(wait))?;
            let spare = self.inbox.spare();
            if spare.is_empty() {
                // Every frame fits once the buffer is compacted, so this is unreachable; refuse
                // rather than read zero bytes and take it for end of stream.
                return Err(ZmqError::Protocol("receive buffer full".into()));
            }
            match self.stream.read(spare) {
                Ok(0) => return Err(ZmqError::Closed),
                Ok(n) => {
                    self.inbox.filled(n);
                    return Ok(true);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn pong(&mut self, context: PingContext) -> Result<(), ZmqError> {
        let ctx = &context.bytes[..context.len];
        let mut frame = [0u8; 2 + 5 + 16];
        frame[0] = FLAG_COMMAND;
        frame[1] = (5 + ctx.len()) as u8;
        frame[2] = 4;
        frame[3..7].copy_from_slice(b"PONG");
        frame[7..7 + ctx.len()].copy_from_slice(ctx);
        self.stream.write_all(&frame[..7 + ctx.len()])?;
        Ok(())
    }
}

/// `timeout` from now, or as good as never if that is past what `Instant` can hold.
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// A TCP connect that gives up at `deadline` and notices `stop` meanwhile. std's connect_timeout
/// cannot be interrupted, and restarting it in short slices would never reach a node further than
/// one slice away.
fn connect_tcp(
    addr: SocketAddr,
    deadline: Instant,
    stop: Option<&AtomicBool>,
) -> Result<TcpStream, ZmqError> {
    let connect_error = |source| ZmqError::Connect { addr, source };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_tcp_keepalive(
        &TcpKeepalive::new()
            .with_time(KEEPALIVE_IDLE)
            .with_interval(KEEPALIVE_INTERVAL)
            .with_retries(KEEPALIVE_RETRIES),
    )?;
    socket.set_nonblocking(true)?;
    match socket.connect(&SockAddr::from(addr)) {
        Ok(()) => {}
        Err(e)
            if e.raw_os_error() == Some(libc::EINPROGRESS)
                || e.kind() == io::ErrorKind::WouldBlock =>
        {
            loop {
                if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                    return Err(ZmqError::Cancelled);
                }
                let now = Instant::now();
                if now >= deadline {
                    return Err(ZmqError::Timeout("connecting"));
                }
                let wait = (deadline - now).min(STOP_CHECK_INTERVAL);
                let mut fd = libc::pollfd {
                    fd: socket.as_raw_fd(),
                    events: libc::POLLOUT,
                    revents: 0,
                };
                let millis = wait.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
                // SAFETY: poll reads and writes the one pollfd we own, for the length we pass.
                let ready = unsafe { libc::poll(&mut fd, 1, millis) };
                if ready > 0 {
                    break;
                }
                if ready < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(connect_error(e));
                    }
                }
            }
            if let Some(e) = socket.take_error()? {
                return Err(connect_error(e));
            }
        }
        Err(e) => return Err(connect_error(e)),
    }
    socket.set_nonblocking(false)?;
    Ok(socket.into())
}
