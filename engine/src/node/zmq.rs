//! A minimal ZeroMQ SUB client for a node's `hashblock` publisher
//! (`-zmqpubhashblock=tcp://HOST:PORT`).
//!
//! The jobmanager learns of new blocks from this subscription rather than by polling, so miners get
//! a clean job within milliseconds of a block; while the subscription is not live (never connected,
//! node restarting, connection lost) it falls back to polling `getbestblockhash`. ZeroMQ never
//! replays what was published while we were away, so on every (re)connection the jobmanager should
//! check the tip once.
//!
//! Only what talking to bitcoind needs is implemented, over a plain blocking [`TcpStream`]: ZMTP 3.0
//! (RFC 23) with the NULL security mechanism, one subscription, and multipart messages. It avoids a
//! libzmq binding (and its C build) and keeps every byte the peer sends under our bounds: no frame
//! may exceed [`MAX_FRAME_SIZE`], and nothing the peer sends can make us panic or allocate beyond
//! one receive buffer (save an error message).
//!
//! Use [`Subscriber`] to drive a connection yourself, or [`spawn_subscriber`] for a thread that keeps
//! one alive and reports [`SubscriberEvent`]s.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, TcpKeepalive, Type};

/// The largest frame body accepted from the peer. bitcoind's hashblock frames are at most 32 bytes
/// and its READY about 30; the limit bounds our receive buffer, and a peer that passes it is not a
/// hashblock publisher, so the connection is dropped rather than the frame skipped.
pub const MAX_FRAME_SIZE: usize = 64 * 1024;

/// The topic bitcoind publishes block hashes under.
pub const HASHBLOCK_TOPIC: &[u8] = b"hashblock";

/// How often the background runner looks at its stop flag, at the longest.
const STOP_CHECK_INTERVAL: Duration = Duration::from_millis(100);
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Bounds the runner's TCP connect and handshake; a node that answers at all answers in far less.
const RUNNER_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Blocks are minutes apart, so a silent connection is normal and says nothing about the peer; TCP
/// keepalive notices a node that vanished (power loss, network partition) within about a minute
/// instead of never. bitcoind does not enable ZMTP heartbeats, so the protocol cannot do it for us.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;

const FLAG_MORE: u8 = 0x01;
const FLAG_LONG: u8 = 0x02;
const FLAG_COMMAND: u8 = 0x04;

/// Flags byte plus an 8-byte size.
const MAX_HEADER: usize = 9;
const GREETING_LEN: usize = 64;

/// Our greeting: ZMTP 3.0, NULL mechanism, as client. We announce 3.0 rather than 3.1 so that the
/// message-form subscription below is the one the spec prescribes for us, whatever libzmq the node
/// links.
const GREETING: [u8; GREETING_LEN] = {
    let mut g = [0u8; GREETING_LEN];
    g[0] = 0xFF; // signature; bytes 1-8 are padding
    g[9] = 0x7F;
    g[10] = 3; // major
    g[11] = 0; // minor
    g[12] = b'N'; // mechanism, zero-padded to 20 bytes
    g[13] = b'U';
    g[14] = b'L';
    g[15] = b'L';
    // g[32] as-server = 0, then 31 bytes of filler
    g
};

/// READY with the single property Socket-Type = "SUB": command flag, body size 25, then the name
/// and one property (name size, name, 4-byte value size, value).
const READY_SUB: [u8; 27] = *b"\x04\x19\x05READY\x0bSocket-Type\x00\x00\x00\x03SUB";

/// The subscription as ZMTP 3.0 has it: a one-part message of 0x01 then the topic prefix. (3.1 adds
/// a SUBSCRIBE command, but only newer libzmq reads that; every libzmq reads this.)
const SUBSCRIBE_HASHBLOCK: [u8; 12] = *b"\x00\x0a\x01hashblock";

/// Why a subscription could not be set up or went away.
#[derive(Debug, thiserror::Error)]
pub enum ZmqError {
    #[error("bad ZMQ endpoint {endpoint:?}: {reason}")]
    BadEndpoint {
        endpoint: String,
        reason: &'static str,
    },
    #[error("cannot resolve {endpoint}: {source}")]
    Resolve { endpoint: String, source: io::Error },
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error("ZMQ connection: {0}")]
    Io(#[from] io::Error),
    #[error("the ZMQ publisher closed the connection")]
    Closed,
    #[error("ZMTP protocol violation: {0}")]
    Protocol(String),
    #[error("ZMTP frame of {size} bytes is over the {MAX_FRAME_SIZE}-byte limit")]
    FrameTooLarge { size: u64 },
    #[error("the ZMQ publisher refused the handshake: {0}")]
    Refused(String),
    #[error("stopped")]
    Cancelled,
    #[error("the ZMQ connection already failed")]
    Broken,
}

/// A `tcp://HOST:PORT` endpoint, the only transport bitcoind's publisher can be reached over from
/// another process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// An IP address literal (IPv6 without brackets) or a name, resolved on every connection so
    /// that a node that moves is found again.
    host: String,
    port: u16,
}

impl Endpoint {
    pub fn parse(endpoint: &str) -> Result<Endpoint, ZmqError> {
        let bad = |reason| ZmqError::BadEndpoint {
            endpoint: endpoint.to_string(),
            reason,
        };
        let rest = endpoint
            .strip_prefix("tcp://")
            .ok_or_else(|| bad("only tcp://HOST:PORT is supported"))?;
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| bad("missing ']' after an IPv6 address"))?;
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| bad("missing :PORT"))?;
            host.parse::<std::net::Ipv6Addr>()
                .map_err(|_| bad("not an IPv6 address between the brackets"))?;
            (host, port)
        } else {
            let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("missing :PORT"))?;
            if host.contains(':') {
                return Err(bad("an IPv6 address must be in brackets"));
            }
            (host, port)
        };
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        if host == "*" {
            return Err(bad("'*' is for binding; name the node's address"));
        }
        if host
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == b'/')
        {
            return Err(bad("host contains a character no host name has"));
        }
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("port is not a number"));
        }
        let port = match port.parse::<u16>() {
            Ok(0) | Err(_) => return Err(bad("port must be 1-65535")),
            Ok(p) => p,
        };
        Ok(Endpoint {
            host: host.to_string(),
            port,
        })
    }

    fn resolve(&self) -> Result<Vec<SocketAddr>, ZmqError> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, self.port)]);
        }
        let resolve_error = |source| ZmqError::Resolve {
            endpoint: self.to_string(),
            source,
        };
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(resolve_error)?
            .collect();
        if addrs.is_empty() {
            return Err(resolve_error(io::Error::new(
                io::ErrorKind::NotFound,
                "no addresses",
            )));
        }
        Ok(addrs)
    }
}

/// Checks an endpoint without connecting, e.g. when loading configuration.
pub fn parse_endpoint(endpoint: &str) -> Result<Endpoint, ZmqError> {
    Endpoint::parse(endpoint)
}

impl FromStr for Endpoint {
    type Err = ZmqError;
    fn from_str(s: &str) -> Result<Endpoint, ZmqError> {
        Endpoint::parse(s)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "tcp://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "tcp://{}:{}", self.host, self.port)
        }
    }
}

/// One `hashblock` notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HashBlock {
    /// The new tip's hash in display order: exactly the bytes bitcoind sent, which are already
    /// reversed from the internal (header) order, so `hash_hex()` equals what `getbestblockhash`
    /// prints (checked against a Bitcoin SV regtest node).
    pub hash: [u8; 32],
    /// The publisher's count of hashblock messages, starting at 0 when the node starts. A gap means
    /// notifications were lost (ZeroMQ drops rather than blocks when we fall behind), so the tip
    /// should be fetched; a drop to a small number means the node restarted.
    pub sequence: u32,
}

impl HashBlock {
    /// As `getbestblockhash` and block explorers print it.
    pub fn hash_hex(&self) -> String {
        crate::hex::encode(&self.hash)
    }

    /// The hash in internal byte order, as it appears in a block header's previous-block field.
    pub fn hash_internal(&self) -> [u8; 32] {
        let mut h = self.hash;
        h.reverse();
        h
    }
}

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
    fn open(
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

fn check_greeting(g: &[u8]) -> Result<(), ZmqError> {
    // Bytes 1-8 are padding (libzmq puts a ZMTP 1.0 length there), so only the ends are checked.
    if g[0] != 0xFF || g[9] != 0x7F {
        return Err(ZmqError::Protocol(
            "the peer's greeting does not start with the ZMTP signature".into(),
        ));
    }
    if g[10] < 3 {
        return Err(ZmqError::Protocol(format!(
            "the peer speaks ZMTP {}.{}, not 3.x",
            g[10], g[11]
        )));
    }
    let mechanism = &g[12..32];
    let name_len = mechanism.iter().position(|&b| b == 0).unwrap_or(20);
    if &mechanism[..name_len] != b"NULL" || mechanism[name_len..].iter().any(|&b| b != 0) {
        return Err(ZmqError::Protocol(format!(
            "the peer wants security mechanism {:?}; only NULL is supported",
            String::from_utf8_lossy(&mechanism[..name_len])
        )));
    }
    Ok(())
}

/// Checks the peer's first command: READY from a PUB or XPUB socket.
fn check_ready(body: &[u8]) -> Result<(), ZmqError> {
    let bad = |what: &str| ZmqError::Protocol(format!("malformed READY: {what}"));
    let (name, mut props) = split_command(body).ok_or_else(|| bad("no command name"))?;
    if name == b"ERROR" {
        let reason = props
            .split_first()
            .and_then(|(&len, rest)| rest.get(..usize::from(len)))
            .unwrap_or(b"");
        return Err(ZmqError::Refused(
            String::from_utf8_lossy(reason).into_owned(),
        ));
    }
    if name != b"READY" {
        return Err(ZmqError::Protocol(format!(
            "expected READY, got command {:?}",
            String::from_utf8_lossy(name)
        )));
    }
    let mut socket_type = None;
    while let Some((&name_len, rest)) = props.split_first() {
        let name = rest
            .get(..usize::from(name_len))
            .ok_or_else(|| bad("property name runs past the frame"))?;
        let rest = &rest[name.len()..];
        let value_len = rest
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| bad("property value size runs past the frame"))?;
        let rest = &rest[4..];
        let value = usize::try_from(value_len)
            .ok()
            .and_then(|len| rest.get(..len))
            .ok_or_else(|| bad("property value runs past the frame"))?;
        if name.eq_ignore_ascii_case(b"Socket-Type") {
            socket_type = Some(value);
        }
        props = &rest[value.len()..];
    }
    match socket_type {
        Some(b"PUB" | b"XPUB") => Ok(()),
        Some(other) => Err(ZmqError::Protocol(format!(
            "the peer is a {} socket, not PUB or XPUB",
            String::from_utf8_lossy(other)
        ))),
        None => Err(bad("no Socket-Type")),
    }
}

/// Splits a command frame's body into its name and the rest.
fn split_command(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&len, rest) = body.split_first()?;
    let len = usize::from(len);
    if len == 0 || rest.len() < len {
        return None;
    }
    Some(rest.split_at(len))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PingContext {
    bytes: [u8; 16],
    len: usize,
}

/// A ZMTP 3.1 PING (name, 2-byte TTL, up to 16 bytes of context), or None for anything else.
fn parse_ping(body: &[u8]) -> Option<PingContext> {
    let (name, rest) = split_command(body)?;
    if name != b"PING" || rest.len() < 2 || rest.len() - 2 > 16 {
        return None;
    }
    let context = &rest[2..];
    let mut bytes = [0u8; 16];
    bytes[..context.len()].copy_from_slice(context);
    Some(PingContext {
        bytes,
        len: context.len(),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inbound {
    HashBlock(HashBlock),
    Ping(PingContext),
}

/// Received bytes and the multipart message in progress. Kept apart from the socket so that a read
/// that times out part-way through a frame or a message loses nothing, and so it can be fed bytes in
/// tests.
struct Inbox {
    /// Allocated once; a whole frame always fits.
    buf: Box<[u8]>,
    /// `buf[start..end]` has been received and not yet consumed.
    start: usize,
    end: usize,
    /// Index of the next part of the current message.
    part: usize,
    /// Whether the current message's topic is exactly `hashblock`. Subscriptions match prefixes, so
    /// a Bitcoin SV node with `-zmqpubhashblock2` on the same endpoint sends us `hashblock2` too
    /// (seen on a real node: it comes just before each `hashblock`).
    wanted: bool,
    hash: [u8; 32],
    sequence: u32,
}

impl Inbox {
    fn new() -> Inbox {
        Inbox {
            buf: vec![0u8; MAX_HEADER + MAX_FRAME_SIZE].into_boxed_slice(),
            start: 0,
            end: 0,
            part: 0,
            wanted: false,
            hash: [0; 32],
            sequence: 0,
        }
    }

    fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn bytes(&self, range: Range<usize>) -> &[u8] {
        &self.buf[range]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Room for the next read, made by moving unconsumed bytes to the front.
    fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    fn filled(&mut self, n: usize) {
        self.end += n;
    }

    /// Takes the next complete frame: its flags and where its body is in the buffer (valid until
    /// the next `spare`).
    fn frame(&mut self) -> Result<Option<(u8, Range<usize>)>, ZmqError> {
        let b = self.buffered();
        let Some((flags, header, size)) = parse_header(b)? else {
            return Ok(None);
        };
        if b.len() - header < size {
            return Ok(None);
        }
        let body = self.start + header..self.start + header + size;
        self.consume(header + size);
        Ok(Some((flags, body)))
    }

    /// Works through buffered frames until something the caller must see: None when more bytes are
    /// needed.
    fn poll(&mut self) -> Result<Option<Inbound>, ZmqError> {
        while let Some((flags, body)) = self.frame()? {
            let body = &self.buf[body];
            if flags & FLAG_COMMAND != 0 {
                // Commands come between messages; all but PING are of no use to a subscriber.
                if let Some(context) = parse_ping(body) {
                    return Ok(Some(Inbound::Ping(context)));
                }
                continue;
            }
            let part = self.part;
            if part == 0 {
                self.wanted = body == HASHBLOCK_TOPIC;
            } else if self.wanted {
                match (part, body.len()) {
                    (1, 32) => self.hash.copy_from_slice(body),
                    (2, 4) => {
                        self.sequence = u32::from_le_bytes([body[0], body[1], body[2], body[3]])
                    }
                    _ => {
                        return Err(ZmqError::Protocol(format!(
                            "hashblock message part {part} has {} bytes",
                            body.len()
                        )))
                    }
                }
            }
            if flags & FLAG_MORE != 0 {
                self.part = part.saturating_add(1);
                continue;
            }
            self.part = 0;
            if self.wanted {
                if part != 2 {
                    return Err(ZmqError::Protocol(format!(
                        "hashblock message has {} parts, not 3",
                        part + 1
                    )));
                }
                return Ok(Some(Inbound::HashBlock(HashBlock {
                    hash: self.hash,
                    sequence: self.sequence,
                })));
            }
        }
        Ok(None)
    }
}

/// Parses a frame header: Ok(None) until it is all there, else (flags, header length, body length).
fn parse_header(b: &[u8]) -> Result<Option<(u8, usize, usize)>, ZmqError> {
    let Some(&flags) = b.first() else {
        return Ok(None);
    };
    if flags & !(FLAG_MORE | FLAG_LONG | FLAG_COMMAND) != 0 {
        return Err(ZmqError::Protocol(format!(
            "reserved frame flags set in {flags:#04x}"
        )));
    }
    if flags & FLAG_COMMAND != 0 && flags & FLAG_MORE != 0 {
        return Err(ZmqError::Protocol("a command frame with MORE set".into()));
    }
    let (header, size) = if flags & FLAG_LONG != 0 {
        let Some(s) = b.get(1..MAX_HEADER) else {
            return Ok(None);
        };
        let mut size = [0u8; 8];
        size.copy_from_slice(s);
        (MAX_HEADER, u64::from_be_bytes(size))
    } else {
        let Some(&s) = b.get(1) else {
            return Ok(None);
        };
        (2, u64::from(s))
    };
    if size > MAX_FRAME_SIZE as u64 {
        return Err(ZmqError::FrameTooLarge { size });
    }
    Ok(Some((flags, header, size as usize)))
}

/// What the background subscriber reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriberEvent {
    /// Subscribed: new blocks will now be reported. Blocks found while not connected are not
    /// replayed, and one found in the instant the publisher takes to apply the subscription may be
    /// missed, so fetch the tip once now.
    Connected,
    /// The subscription is not live (poll the node instead): a live one ended, or an attempt to
    /// connect failed. Reported for every failed attempt, so at most every 2 s while the node is
    /// down.
    Disconnected(String),
    HashBlock(HashBlock),
}

/// Keeps a subscription to `endpoint` alive on its own thread and reports what happens, until
/// `stop` is set (looked at every 100 ms at the longest). Reconnects with a back-off from 100 ms
/// doubling to 2 s, reset after each successful connection. A malformed endpoint is refused here
/// with `InvalidInput` rather than retried forever.
pub fn spawn_subscriber(
    endpoint: String,
    mut on_event: impl FnMut(SubscriberEvent) + Send + 'static,
    stop: Arc<AtomicBool>,
) -> io::Result<JoinHandle<()>> {
    let endpoint =
        Endpoint::parse(&endpoint).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    std::thread::Builder::new()
        .name("sluice-zmq".into())
        .spawn(move || {
            let mut backoff = INITIAL_BACKOFF;
            while !stop.load(Ordering::Relaxed) {
                match Subscriber::open(&endpoint, RUNNER_CONNECT_TIMEOUT, Some(&stop)) {
                    Ok(mut sub) => {
                        backoff = INITIAL_BACKOFF;
                        on_event(SubscriberEvent::Connected);
                        let reason = loop {
                            if stop.load(Ordering::Relaxed) {
                                return;
                            }
                            match sub.next(STOP_CHECK_INTERVAL) {
                                Ok(Some(block)) => on_event(SubscriberEvent::HashBlock(block)),
                                Ok(None) => {}
                                Err(e) => break e.to_string(),
                            }
                        };
                        on_event(SubscriberEvent::Disconnected(reason));
                    }
                    Err(ZmqError::Cancelled) => return,
                    Err(e) => on_event(SubscriberEvent::Disconnected(e.to_string())),
                }
                let wake = Instant::now() + backoff;
                loop {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let now = Instant::now();
                    if now >= wake {
                        break;
                    }
                    std::thread::sleep((wake - now).min(STOP_CHECK_INTERVAL));
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::mpsc;

    const WAIT: Duration = Duration::from_secs(5);

    fn greeting(major: u8, mechanism: &[u8]) -> [u8; 64] {
        let mut g = [0u8; 64];
        g[0] = 0xFF;
        // libzmq puts a ZMTP 1.0 length in the padding; it must be ignored.
        g[8] = 1;
        g[9] = 0x7F;
        g[10] = major;
        g[11] = 1;
        g[12..12 + mechanism.len()].copy_from_slice(mechanism);
        g[32] = 1; // as-server
        g
    }

    fn command(name: &[u8], data: &[u8]) -> Vec<u8> {
        let mut body = vec![name.len() as u8];
        body.extend_from_slice(name);
        body.extend_from_slice(data);
        frame(FLAG_COMMAND, &body)
    }

    fn ready(socket_type: &[u8]) -> Vec<u8> {
        let mut props = Vec::new();
        // An unrelated property first, as a newer peer might send.
        props.push(8);
        props.extend_from_slice(b"Identity");
        props.extend_from_slice(&0u32.to_be_bytes());
        props.push(11);
        props.extend_from_slice(b"socket-type");
        props.extend_from_slice(&(socket_type.len() as u32).to_be_bytes());
        props.extend_from_slice(socket_type);
        command(b"READY", &props)
    }

    fn frame(flags: u8, body: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        if body.len() > 255 {
            f.push(flags | FLAG_LONG);
            f.extend_from_slice(&(body.len() as u64).to_be_bytes());
        } else {
            f.push(flags);
            f.push(body.len() as u8);
        }
        f.extend_from_slice(body);
        f
    }

    fn message(parts: &[&[u8]]) -> Vec<u8> {
        let mut m = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let more = if i + 1 < parts.len() { FLAG_MORE } else { 0 };
            m.extend(frame(more, part));
        }
        m
    }

    fn hashblock(hash: [u8; 32], sequence: u32) -> Vec<u8> {
        message(&[b"hashblock", &hash, &sequence.to_le_bytes()])
    }

    fn read_exact(s: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        s.read_exact(&mut v).unwrap();
        v
    }

    /// Plays bitcoind's side of the handshake, checking every byte we send.
    fn handshake(
        s: &mut TcpStream,
        peer_greeting: &[u8],
        peer_ready: &[u8],
        write: &dyn Fn(&mut TcpStream, &[u8]),
    ) {
        s.set_read_timeout(Some(WAIT)).unwrap();
        let ours = read_exact(s, 64);
        assert_eq!(ours[0], 0xFF);
        assert_eq!(ours[9], 0x7F);
        assert_eq!(&ours[10..12], &[3, 0]);
        assert_eq!(&ours[12..32], b"NULL\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
        assert_eq!(ours[32], 0);
        assert!(ours[33..].iter().all(|&b| b == 0));
        write(s, peer_greeting);
        let mut expected_ready = vec![0x04, 25, 5];
        expected_ready.extend_from_slice(b"READY");
        expected_ready.push(11);
        expected_ready.extend_from_slice(b"Socket-Type");
        expected_ready.extend_from_slice(&[0, 0, 0, 3]);
        expected_ready.extend_from_slice(b"SUB");
        assert_eq!(read_exact(s, expected_ready.len()), expected_ready);
        write(s, peer_ready);
        let mut expected_sub = vec![0x00, 10, 0x01];
        expected_sub.extend_from_slice(b"hashblock");
        assert_eq!(read_exact(s, expected_sub.len()), expected_sub);
    }

    fn write_all(s: &mut TcpStream, b: &[u8]) {
        s.write_all(b).unwrap();
    }

    fn write_bytewise(s: &mut TcpStream, b: &[u8]) {
        for byte in b {
            s.write_all(std::slice::from_ref(byte)).unwrap();
            std::thread::sleep(Duration::from_micros(300));
        }
    }

    fn listener() -> (TcpListener, String) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("tcp://{}", l.local_addr().unwrap());
        (l, endpoint)
    }

    #[test]
    fn sends_the_zmtp_handshake_and_receives_hashblocks() {
        let (l, endpoint) = listener();
        let hash_a = [0xAB; 32];
        let mut hash_b = [0u8; 32];
        hash_b[0] = 0x00;
        hash_b[31] = 0x7F;
        let publisher = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            handshake(&mut s, &greeting(3, b"NULL"), &ready(b"PUB"), &write_all);
            let mut out = hashblock(hash_a, 7);
            out.extend(message(&[b"hashtx", &[1; 32], &[0; 4]]));
            // A longer topic the prefix subscription lets through.
            out.extend(message(&[b"hashblock2", &[2; 32], &[0; 4]]));
            out.extend(command(b"PING", &[0, 10, b'c', b't', b'x']));
            out.extend(command(b"SUBSCRIBE", b"whatever"));
            out.extend(hashblock(hash_b, 8));
            s.write_all(&out).unwrap();
            // The PONG echoes the context.
            let mut pong = vec![0x04, 8, 4];
            pong.extend_from_slice(b"PONGctx");
            assert_eq!(read_exact(&mut s, pong.len()), pong);
            s
        });
        let mut sub = Subscriber::connect(&endpoint, WAIT).unwrap();
        // Once the bytes are in the kernel, a zero timeout still reads them.
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            sub.next(Duration::ZERO).unwrap(),
            Some(HashBlock {
                hash: hash_a,
                sequence: 7
            })
        );
        // A timeout past what Instant can add does not panic.
        let b = sub.next(Duration::MAX).unwrap().unwrap();
        assert_eq!(b.sequence, 8);
        assert_eq!(b.hash_hex(), format!("00{}7f", "00".repeat(30)));
        assert_eq!(b.hash_internal()[0], 0x7F);
        let s = publisher.join().unwrap();
        assert_eq!(sub.next(Duration::from_millis(20)).unwrap(), None);
        drop(s);
        assert!(matches!(sub.next(WAIT), Err(ZmqError::Closed)));
        assert!(matches!(sub.next(WAIT), Err(ZmqError::Broken)));
    }

    #[test]
    fn survives_timeouts_in_the_middle_of_frames() {
        let (l, endpoint) = listener();
        let blocks: Vec<HashBlock> = (0..3u8)
            .map(|i| HashBlock {
                hash: [i + 1; 32],
                sequence: u32::from(i) * 0x0101_0101,
            })
            .collect();
        let to_send = blocks.clone();
        let publisher = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.set_nodelay(true).unwrap();
            handshake(
                &mut s,
                &greeting(3, b"NULL"),
                &ready(b"XPUB"),
                &write_bytewise,
            );
            let mut out = Vec::new();
            for b in &to_send {
                out.extend(hashblock(b.hash, b.sequence));
                out.extend(message(&[b"other", &[9; 300]]));
            }
            write_bytewise(&mut s, &out);
            s
        });
        let mut sub = Subscriber::connect(&endpoint, WAIT).unwrap();
        let mut got = Vec::new();
        let mut timeouts = 0;
        let give_up = Instant::now() + WAIT;
        while got.len() < blocks.len() && Instant::now() < give_up {
            match sub.next(Duration::from_micros(200)).unwrap() {
                Some(b) => got.push(b),
                None => timeouts += 1,
            }
        }
        assert_eq!(got, blocks);
        assert!(timeouts > 10, "only {timeouts} timeouts");
        drop(publisher.join().unwrap());
    }

    #[test]
    fn an_oversized_frame_is_an_error() {
        for header in [
            vec![FLAG_LONG, 0, 0, 0, 0, 0, 1, 0, 1], // MAX_FRAME_SIZE + 1
            vec![
                FLAG_LONG | FLAG_MORE,
                0xFF,
                0xFF,
                0xFF,
                0xFF,
                0xFF,
                0xFF,
                0xFF,
                0xFF,
            ],
        ] {
            let (l, endpoint) = listener();
            let publisher = std::thread::spawn(move || {
                let (mut s, _) = l.accept().unwrap();
                handshake(&mut s, &greeting(3, b"NULL"), &ready(b"PUB"), &write_all);
                s.write_all(&header).unwrap();
                s
            });
            let mut sub = Subscriber::connect(&endpoint, WAIT).unwrap();
            let err = sub.next(WAIT).unwrap_err();
            assert!(matches!(err, ZmqError::FrameTooLarge { .. }), "{err}");
            drop(publisher.join().unwrap());
        }
    }

    #[test]
    fn a_frame_at_the_limit_is_accepted() {
        let mut inbox = Inbox::new();
        let mut bytes = message(&[b"other", &vec![0u8; MAX_FRAME_SIZE]]);
        bytes.extend(hashblock([5; 32], 1));
        assert_eq!(
            feed(&mut inbox, &bytes, 1000).unwrap(),
            vec![Inbound::HashBlock(HashBlock {
                hash: [5; 32],
                sequence: 1
            })]
        );
    }

    /// Runs a scripted publisher that sends `greeting` and `ready` without checking what we send.
    fn connect_to(greeting: Vec<u8>, ready: Vec<u8>) -> ZmqError {
        connect_within(greeting, ready, Duration::from_secs(2))
    }

    fn connect_within(greeting: Vec<u8>, ready: Vec<u8>, timeout: Duration) -> ZmqError {
        let (l, endpoint) = listener();
        let publisher = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.write_all(&greeting).unwrap();
            s.write_all(&ready).unwrap();
            // Hold the connection open until the client gives up.
            let mut sink = [0u8; 256];
            s.set_read_timeout(Some(WAIT)).unwrap();
            while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
        });
        let err = Subscriber::connect(&endpoint, timeout).unwrap_err();
        publisher.join().unwrap();
        err
    }

    #[test]
    fn handshake_errors() {
        let mut wrong_signature = greeting(3, b"NULL");
        wrong_signature[0] = 0x00;
        let err = connect_to(wrong_signature.to_vec(), ready(b"PUB"));
        assert!(
            matches!(&err, ZmqError::Protocol(m) if m.contains("signature")),
            "{err}"
        );

        let mut wrong_end = greeting(3, b"NULL");
        wrong_end[9] = 0x7E;
        let err = connect_to(wrong_end.to_vec(), ready(b"PUB"));
        assert!(matches!(err, ZmqError::Protocol(_)), "{err}");

        let err = connect_to(greeting(2, b"NULL").to_vec(), ready(b"PUB"));
        assert!(
            matches!(&err, ZmqError::Protocol(m) if m.contains("2.1")),
            "{err}"
        );

        let err = connect_to(greeting(3, b"CURVE").to_vec(), ready(b"PUB"));
        assert!(
            matches!(&err, ZmqError::Protocol(m) if m.contains("CURVE")),
            "{err}"
        );

        let mut trailing = greeting(3, b"NULL");
        trailing[20] = b'X';
        let err = connect_to(trailing.to_vec(), ready(b"PUB"));
        assert!(matches!(err, ZmqError::Protocol(_)), "{err}");

        let err = connect_to(greeting(3, b"NULL").to_vec(), ready(b"REP"));
        assert!(
            matches!(&err, ZmqError::Protocol(m) if m.contains("REP")),
            "{err}"
        );

        let err = connect_to(greeting(3, b"NULL").to_vec(), command(b"READY", &[]));
        assert!(
            matches!(&err, ZmqError::Protocol(m) if m.contains("Socket-Type")),
            "{err}"
        );

        // A property that claims more bytes than the frame has.
        let err = connect_to(
            greeting(3, b"NULL").to_vec(),
            command(
                b"READY",
                &[
                    11, b'S', b'o', b'c', b'k', b'e', b't', b'-', b'T', b'y', b'p', b'e', 0xFF,
                    0xFF, 0xFF, 0xFF, b'P',
                ],
            ),
        );
        assert!(matches!(err, ZmqError::Protocol(_)), "{err}");

        let err = connect_to(
            greeting(3, b"NULL").to_vec(),
            command(b"ERROR", &[6, b'd', b'e', b'n', b'i', b'e', b'd']),
        );
        assert!(
            matches!(&err, ZmqError::Refused(m) if m == "denied"),
            "{err}"
        );

        let err = connect_to(greeting(3, b"NULL").to_vec(), message(&[b"hashblock"]));
        assert!(matches!(err, ZmqError::Protocol(_)), "{err}");

        // Silence: the handshake times out rather than hanging.
        let err = connect_within(
            greeting(3, b"NULL")[..40].to_vec(),
            Vec::new(),
            Duration::from_millis(200),
        );
        assert!(matches!(err, ZmqError::Timeout(_)), "{err}");
    }

    #[test]
    fn refused_connection_is_a_connect_error() {
        let (l, endpoint) = listener();
        drop(l);
        let err = Subscriber::connect(&endpoint, WAIT).unwrap_err();
        assert!(matches!(err, ZmqError::Connect { .. }), "{err}");
    }

    /// Feeds `bytes` to an inbox `chunk` bytes at a time, collecting what it hands out.
    fn feed(inbox: &mut Inbox, bytes: &[u8], chunk: usize) -> Result<Vec<Inbound>, ZmqError> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            // Like a socket read: no more than there is room for.
            let spare = inbox.spare();
            let n = chunk.max(1).min(rest.len()).min(spare.len());
            assert!(n > 0, "the inbox is full");
            spare[..n].copy_from_slice(&rest[..n]);
            inbox.filled(n);
            rest = &rest[n..];
            while let Some(event) = inbox.poll()? {
                out.push(event);
            }
        }
        Ok(out)
    }

    #[test]
    fn malformed_hashblock_messages_are_errors() {
        for bad in [
            message(&[b"hashblock", &[0; 31], &[0; 4]]),
            message(&[b"hashblock", &[0; 32], &[0; 3]]),
            message(&[b"hashblock", &[0; 32]]),
            message(&[b"hashblock"]),
            message(&[b"hashblock", &[0; 32], &[0; 4], b"extra"]),
        ] {
            assert!(matches!(
                feed(&mut Inbox::new(), &bad, 3),
                Err(ZmqError::Protocol(_))
            ));
        }
        // Reserved flag bits and a command with MORE.
        assert!(feed(&mut Inbox::new(), &[0x08, 0], 1).is_err());
        assert!(feed(&mut Inbox::new(), &[0x05, 0], 1).is_err());
    }

    #[test]
    fn other_topics_of_any_shape_are_skipped() {
        let mut bytes = message(&[b"rawtx", &[1; 300], &[0; 4], b"4th part"]);
        bytes.extend(message(&[b"hashblock2"]));
        bytes.extend(message(&[b""]));
        bytes.extend(hashblock([3; 32], 99));
        assert_eq!(
            feed(&mut Inbox::new(), &bytes, 7).unwrap(),
            vec![Inbound::HashBlock(HashBlock {
                hash: [3; 32],
                sequence: 99
            })]
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000),
            chunk in 1usize..64,
        ) {
            let _ = feed(&mut Inbox::new(), &bytes, chunk);
            let _ = check_ready(&bytes);
            if bytes.len() >= 64 {
                let _ = check_greeting(&bytes[..64]);
            }
        }

        #[test]
        fn hashblocks_survive_any_split(
            hash in proptest::prelude::any::<[u8; 32]>(),
            sequence in proptest::prelude::any::<u32>(),
            chunk in 1usize..40,
        ) {
            let mut bytes = message(&[b"hash", &[0; 40]]);
            bytes.extend(hashblock(hash, sequence));
            bytes.extend(command(b"PING", &[0, 1]));
            let got = feed(&mut Inbox::new(), &bytes, chunk).unwrap();
            proptest::prop_assert_eq!(got, vec![
                Inbound::HashBlock(HashBlock { hash, sequence }),
                Inbound::Ping(PingContext { bytes: [0; 16], len: 0 }),
            ]);
        }
    }

    #[test]
    fn endpoints() {
        let ok = |s: &str, host: &str, port: u16| {
            let e = Endpoint::parse(s).unwrap();
            assert_eq!((e.host.as_str(), e.port), (host, port), "{s}");
            assert_eq!(e.to_string(), s);
        };
        ok("tcp://127.0.0.1:28332", "127.0.0.1", 28332);
        ok("tcp://[::1]:28332", "::1", 28332);
        ok("tcp://node.example:1", "node.example", 1);
        for bad in [
            "127.0.0.1:28332",
            "ipc:///tmp/zmq",
            "tcp://127.0.0.1",
            "tcp://127.0.0.1:",
            "tcp://127.0.0.1:0",
            "tcp://127.0.0.1:65536",
            "tcp://127.0.0.1:+1",
            "tcp://127.0.0.1:28332/",
            "tcp://:28332",
            "tcp://*:28332",
            "tcp://::1:28332",
            "tcp://[::1:28332",
            "tcp://[::1]28332",
            "tcp://[nothost]:1",
            "tcp://a b:1",
        ] {
            assert!(
                matches!(Endpoint::parse(bad), Err(ZmqError::BadEndpoint { .. })),
                "{bad}"
            );
        }
        let addrs = Endpoint::parse("tcp://localhost:28332")
            .unwrap()
            .resolve()
            .unwrap();
        assert!(addrs
            .iter()
            .all(|a| a.port() == 28332 && a.ip().is_loopback()));
        assert_eq!(
            spawn_subscriber("nonsense".into(), |_| {}, Arc::default())
                .unwrap_err()
                .kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn spawn_subscriber_reconnects_after_the_publisher_closes() {
        let (l, endpoint) = listener();
        let publisher = std::thread::spawn(move || {
            for i in 0..2u8 {
                let (mut s, _) = l.accept().unwrap();
                handshake(&mut s, &greeting(3, b"NULL"), &ready(b"PUB"), &write_all);
                s.write_all(&hashblock([i; 32], u32::from(i))).unwrap();
                // Close once the subscriber has had time to read it.
                std::thread::sleep(Duration::from_millis(50));
            }
            l
        });
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let runner =
            spawn_subscriber(endpoint, move |e| tx.send(e).unwrap(), Arc::clone(&stop)).unwrap();
        let next = || rx.recv_timeout(WAIT).unwrap();
        for i in 0..2u8 {
            assert_eq!(next(), SubscriberEvent::Connected);
            assert_eq!(
                next(),
                SubscriberEvent::HashBlock(HashBlock {
                    hash: [i; 32],
                    sequence: u32::from(i)
                })
            );
            assert!(
                matches!(next(), SubscriberEvent::Disconnected(reason) if reason.contains("closed"))
            );
        }
        // Nothing listens now: refused attempts are reported, and stop is honoured promptly.
        drop(publisher.join().unwrap());
        assert!(matches!(next(), SubscriberEvent::Disconnected(r) if r.contains("connect")));
        stop.store(true, Ordering::Relaxed);
        let stopping = Instant::now();
        runner.join().unwrap();
        assert!(stopping.elapsed() < Duration::from_millis(500));
    }

    #[test]
    fn spawn_subscriber_stops_while_waiting_for_a_silent_peer() {
        let (l, endpoint) = listener();
        let stop = Arc::new(AtomicBool::new(false));
        let runner = spawn_subscriber(endpoint, |_| {}, Arc::clone(&stop)).unwrap();
        // Accept but never greet: the runner sits in the handshake.
        let (_s, _) = l.accept().unwrap();
        std::thread::sleep(Duration::from_millis(150));
        stop.store(true, Ordering::Relaxed);
        let stopping = Instant::now();
        runner.join().unwrap();
        assert!(stopping.elapsed() < Duration::from_millis(500));
    }
}
