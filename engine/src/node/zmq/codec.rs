//! The bytes of ZMTP 3.0 as a `hashblock` subscriber needs them, without I/O: the greeting, READY
//! and subscription we send, the checks of the publisher's greeting and READY, frame headers under
//! [`MAX_FRAME_SIZE`], and the [`Inbox`] that turns received bytes into `hashblock` notifications
//! and PINGs. `subscriber` moves the bytes.

use std::ops::Range;

use super::ZmqError;

/// and its READY about 30; the limit bounds our receive buffer, and a peer that passes it is not a
/// hashblock publisher, so the connection is dropped rather than the frame skipped.
pub const MAX_FRAME_SIZE: usize = 64 * 1024;

/// The topic bitcoind publishes block hashes under.
pub const HASHBLOCK_TOPIC: &[u8] = b"hashblock";

pub(super) const FLAG_MORE: u8 = 0x01;
pub(super) const FLAG_LONG: u8 = 0x02;
pub(super) const FLAG_COMMAND: u8 = 0x04;

/// Flags byte plus an 8-byte size.
const MAX_HEADER: usize = 9;
pub(super) const GREETING_LEN: usize = 64;

/// Our greeting: ZMTP 3.0, NULL mechanism, as client. We announce 3.0 rather than 3.1 so that the
/// message-form subscription below is the one the spec prescribes for us, whatever libzmq the node
/// links.
pub(super) const GREETING: [u8; GREETING_LEN] = {
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
pub(super) const READY_SUB: [u8; 27] = *b"\x04\x19\x05READY\x0bSocket-Type\x00\x00\x00\x03SUB";

/// The subscription as ZMTP 3.0 has it: a one-part message of 0x01 then the topic prefix. (3.1 adds
/// a SUBSCRIBE command, but only newer libzmq reads that; every libzmq reads this.)
pub(super) const SUBSCRIBE_HASHBLOCK: [u8; 12] = *b"\x00\x0a\x01hashblock";

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

pub(super) fn check_greeting(g: &[u8]) -> Result<(), ZmqError> {
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
pub(super) fn check_ready(body: &[u8]) -> Result<(), ZmqError> {
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
pub(super) struct PingContext {
    pub(super) bytes: [u8; 16],
    pub(super) len: usize,
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
pub(super) enum Inbound {
    HashBlock(HashBlock),
    Ping(PingContext),
}

/// Received bytes and the multipart message in progress. Kept apart from the socket so that a read
/// that times out part-way through a frame or a message loses nothing, and so it can be fed bytes in
/// tests.
pub(super) struct Inbox {
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
    pub(super) fn new() -> Inbox {
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

    pub(super) fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub(super) fn bytes(&self, range: Range<usize>) -> &[u8] {
        &self.buf[range]
    }

    pub(super) fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Room for the next read, made by moving unconsumed bytes to the front.
    pub(super) fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    pub(super) fn filled(&mut self, n: usize) {
        self.end += n;
    }

    /// Takes the next complete frame: its flags and where its body is in the buffer (valid until
    /// the next `spare`).
    pub(super) fn frame(&mut self) -> Result<Option<(u8, Range<usize>)>, ZmqError> {
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
    pub(super) fn poll(&mut self) -> Result<Option<Inbound>, ZmqError> {
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
