//! The ZMQ client's unit tests, against scripted publishers on loopback and fed bytes.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use super::codec::{
    check_greeting, check_ready, Inbound, Inbox, PingContext, FLAG_COMMAND, FLAG_LONG, FLAG_MORE,
};
use super::*;

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
                11, b'S', b'o', b'c', b'k', b'e', b't', b'-', b'T', b'y', b'p', b'e', 0xFF, 0xFF,
                0xFF, 0xFF, b'P',
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
