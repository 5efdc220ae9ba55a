//! The job message jobmanagers publish through Redis and engines read: a compact binary encoding of
//! [`JobParts`] with the publisher's fleet epoch and fencing token, signed with the fleet key
//! ([`FleetKey`], here too: the key is what the format is checked with).
//!
//! Here, with the rest of what crosses Redis, and not in the engine, so that the format has one home
//! that the engine's plane, its tests and the fuzz target read without the engine's I/O. Behind the
//! `job-message` feature, because it needs the core crate's `JobParts` and sluicectl does not.
//!
//! Binary rather than JSON because a mainnet job carries the template's transactions (megabytes in
//! hex) to every engine; engines need them to assemble a block. Decoding is total: any bytes give a
//! job or a [`WireError`], never a panic, and every length is checked against what is left.
//!
//! Anyone who can `PUBLISH` on the fleet's Redis could otherwise hand every miner work that pays
//! another address, or a token so high that engines refuse every real job after it. So the message
//! ends in an HMAC-SHA256 tag over every byte before it, keyed with the fleet key
//! (`redis.fleet_key_file` or `redis.fleet_key`) that only jobmanagers and engines hold, and the
//! tag is checked, in constant time, before any other field is read.
//!
//! Layout (integers little-endian): magic `SLJ2`, epoch u64, token u64, sequence u64, published_us
//! u64 (the publisher's clock, microseconds since the Unix epoch), clean u8, height u64,
//! prev_hash [32], version u32, nbits u32, ntime u32, mintime u32, extranonce1 size u8, extranonce2
//! size u8, coinb1 (u32 length + bytes), coinb2 (u32 + bytes), txid count u32 then txids [32] each,
//! transactions (u32 + bytes), witness flag u8 then the reserved value [32] when 1; then the tag
//! [32]. `SLJ1` (the same without epoch and tag) came before fleet keys and is refused.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use sluice_core::chain::JobParts;
use sluice_core::units::ExtranonceSizes;

const MAGIC: &[u8; 4] = b"SLJ2";
const UNSIGNED_MAGIC: &[u8; 4] = b"SLJ1";

/// The largest field accepted: far above any block's transactions.
pub const MAX_FIELD_BYTES: usize = 64 * 1024 * 1024;

/// The tag at the end of every message (HMAC-SHA256).
pub const TAG_BYTES: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// The shortest fleet key accepted: 256 bits, HMAC-SHA256's full strength.
pub const MIN_FLEET_KEY_BYTES: usize = 32;

/// The fleet's shared secret, which signs and checks job messages. It never prints: `Debug` shows
/// `FleetKey(..)`, and there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct FleetKey(Vec<u8>);

/// Why a secret cannot be a fleet key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FleetKeyError {
    #[error("the fleet key is {len} bytes, it must be at least {MIN_FLEET_KEY_BYTES}")]
    TooShort { len: usize },
}

impl FleetKey {
    /// The key from its secret bytes, as given (callers trim text first).
    pub fn new(secret: impl Into<Vec<u8>>) -> Result<FleetKey, FleetKeyError> {
        let secret = secret.into();
        if secret.len() < MIN_FLEET_KEY_BYTES {
            return Err(FleetKeyError::TooShort { len: secret.len() });
        }
        Ok(FleetKey(secret))
    }

    /// The secret bytes, for the message's HMAC and nothing else.
    fn secret(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for FleetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FleetKey(..)")
    }
}

impl FleetKey {
    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(self.secret()).expect("HMAC takes a key of any length")
    }
}

/// `body` followed by its tag under `key`: what [`JobMessage::encode`] sends, for any bytes (tests
/// and the fuzz target sign bodies of their own with it).
pub fn seal(key: &FleetKey, body: &[u8]) -> Vec<u8> {
    let mut mac = key.mac();
    mac.update(body);
    let mut out = Vec::with_capacity(body.len() + TAG_BYTES);
    out.extend_from_slice(body);
    out.extend_from_slice(&mac.finalize().into_bytes());
    out
}

/// A job as it travels: who published it (the fleet epoch and fencing token of its lease) and in
/// which order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobMessage {
    /// The fleet epoch of the lease (`P:jm:epoch`): a new one means Redis lost its state, and the
    /// tokens counted again from 1.
    pub epoch: u64,
    /// The fencing token of the lease the publisher held; engines ignore jobs with a token below
    /// the highest they have seen in the same epoch.
    pub token: u64,
    /// Increases with every job one leader publishes.
    pub sequence: u64,
    /// When the jobmanager published it (its clock, µs since the epoch): engines measure the
    /// fan-out's latency with it.
    pub published_us: u64,
    pub clean: bool,
    pub parts: JobParts,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("not a Sluice job message (bad magic)")]
    Magic,
    #[error("an unsigned job message (SLJ1, from a Sluice without fleet keys): upgrade every jobmanager")]
    Unsigned,
    #[error(
        "job message is not signed with this fleet's key (redis.fleet_key / redis.fleet_key_file)"
    )]
    BadTag,
    #[error("job message ends early, in {0}")]
    Truncated(&'static str),
    #[error("job message field {0} is over the size limit")]
    TooLarge(&'static str),
    #[error("job message field {0} is invalid")]
    Invalid(&'static str),
    #[error("{0} bytes left over after the job message")]
    Trailing(usize),
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

impl JobMessage {
    /// The message signed with `key`.
    pub fn encode(&self, key: &FleetKey) -> Vec<u8> {
        let p = &self.parts;
        let mut out = Vec::with_capacity(
            128 + p.coinb1.len() + p.coinb2.len() + 32 * p.txids.len() + p.transactions.len(),
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(&self.token.to_le_bytes());
        out.extend_from_slice(&self.sequence.to_le_bytes());
        out.extend_from_slice(&self.published_us.to_le_bytes());
        out.push(u8::from(self.clean));
        out.extend_from_slice(&p.height.to_le_bytes());
        out.extend_from_slice(&p.prev_hash);
        for v in [p.version, p.nbits, p.ntime, p.mintime] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.push(p.extranonce.extranonce1() as u8);
        out.push(p.extranonce.extranonce2() as u8);
        put_bytes(&mut out, &p.coinb1);
        put_bytes(&mut out, &p.coinb2);
        out.extend_from_slice(&(p.txids.len() as u32).to_le_bytes());
        for txid in &p.txids {
            out.extend_from_slice(txid);
        }
        put_bytes(&mut out, &p.transactions);
        match p.witness_reserved_value {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                out.extend_from_slice(&v);
            }
        }
        seal(key, &out)
    }

    /// The message, only if `key` signed it: nothing but the magic is read before the tag checks.
    pub fn decode(bytes: &[u8], key: &FleetKey) -> Result<JobMessage, WireError> {
        let magic = bytes.get(..4).ok_or(WireError::Truncated("magic"))?;
        if magic == UNSIGNED_MAGIC {
            return Err(WireError::Unsigned);
        }
        if magic != MAGIC {
            return Err(WireError::Magic);
        }
        let Some(split) = bytes.len().checked_sub(TAG_BYTES).filter(|&n| n >= 4) else {
            return Err(WireError::Truncated("tag"));
        };
        let (body, tag) = bytes.split_at(split);
        let mut mac = key.mac();
        mac.update(body);
        // verify_slice compares in constant time: a forger learns nothing from how long it took.
        mac.verify_slice(tag).map_err(|_| WireError::BadTag)?;
        let mut r = Reader(&body[4..]);
        let epoch = r.u64("epoch")?;
        let token = r.u64("token")?;
        let sequence = r.u64("sequence")?;
        let published_us = r.u64("published_us")?;
        let clean = match r.u8("clean")? {
            0 => false,
            1 => true,
            _ => return Err(WireError::Invalid("clean")),
        };
        let height = r.u64("height")?;
        let prev_hash: [u8; 32] = r.array("prev_hash")?;
        let version = r.u32("version")?;
        let nbits = r.u32("nbits")?;
        let ntime = r.u32("ntime")?;
        let mintime = r.u32("mintime")?;
        let e1 = r.u8("extranonce1 size")?;
        let e2 = r.u8("extranonce2 size")?;
        let extranonce = ExtranonceSizes::new(e1.into(), e2.into())
            .map_err(|_| WireError::Invalid("extranonce sizes"))?;
        let coinb1 = r.bytes("coinb1")?.to_vec();
        let coinb2 = r.bytes("coinb2")?.to_vec();
        let count = r.u32("txid count")? as usize;
        if count.saturating_mul(32) > r.0.len() {
            return Err(WireError::Truncated("txids"));
        }
        let mut txids = Vec::with_capacity(count);
        for _ in 0..count {
            txids.push(r.array("txids")?);
        }
        let transactions = r.bytes("transactions")?.to_vec();
        let witness_reserved_value = match r.u8("witness flag")? {
            0 => None,
            1 => Some(r.array("witness reserved value")?),
            _ => return Err(WireError::Invalid("witness flag")),
        };
        if !r.0.is_empty() {
            return Err(WireError::Trailing(r.0.len()));
        }
        Ok(JobMessage {
            epoch,
            token,
            sequence,
            published_us,
            clean,
            parts: JobParts {
                height,
                prev_hash,
                version,
                nbits,
                ntime,
                mintime,
                coinb1,
                coinb2,
                extranonce,
                txids,
                transactions,
                witness_reserved_value,
            },
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError::Truncated(field));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, field)?[0])
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], WireError> {
        let n = self.u32(field)? as usize;
        if n > MAX_FIELD_BYTES {
            return Err(WireError::TooLarge(field));
        }
        self.take(n, field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> FleetKey {
        FleetKey::new(*b"0123456789abcdef0123456789abcdef").unwrap()
    }

    fn other_key() -> FleetKey {
        FleetKey::new(*b"0123456789abcdef0123456789abcdeF").unwrap()
    }

    fn sample() -> JobMessage {
        JobMessage {
            epoch: 0xfeed_beef_dead_cafe,
            token: 7,
            sequence: 42,
            published_us: 1_700_000_000_000_000,
            clean: true,
            parts: JobParts {
                height: 840_000,
                prev_hash: [3; 32],
                version: 0x2000_0000,
                nbits: 0x1703_4219,
                ntime: 1_700_000_000,
                mintime: 1_699_999_000,
                coinb1: vec![1, 2, 3],
                coinb2: vec![4, 5],
                extranonce: ExtranonceSizes::new(4, 8).unwrap(),
                txids: vec![[9; 32], [8; 32]],
                transactions: vec![0xab; 100],
                witness_reserved_value: Some([0; 32]),
            },
        }
    }

    #[test]
    fn round_trips() {
        let m = sample();
        let decoded = JobMessage::decode(&m.encode(&key()), &key()).unwrap();
        assert_eq!(decoded, m);
        assert_eq!(decoded.epoch, 0xfeed_beef_dead_cafe);
        let mut legacy = sample();
        legacy.parts.witness_reserved_value = None;
        legacy.clean = false;
        legacy.epoch = u64::MAX;
        assert_eq!(
            JobMessage::decode(&legacy.encode(&key()), &key()).unwrap(),
            legacy
        );
    }

    #[test]
    fn a_tampered_byte_or_another_key_fails_verification() {
        let bytes = sample().encode(&key());
        assert_eq!(
            JobMessage::decode(&bytes, &other_key()),
            Err(WireError::BadTag)
        );
        assert_eq!(
            JobMessage::decode(&sample().encode(&other_key()), &key()),
            Err(WireError::BadTag)
        );
        // Every byte after the magic is covered, the tag itself included.
        for i in 4..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert_eq!(
                JobMessage::decode(&b, &key()),
                Err(WireError::BadTag),
                "byte {i}"
            );
        }
        // A forger who re-signs without the key (a tag over the body with another key) is refused.
        let body = &bytes[..bytes.len() - TAG_BYTES];
        assert_eq!(
            JobMessage::decode(&seal(&other_key(), body), &key()),
            Err(WireError::BadTag)
        );
        assert_eq!(
            JobMessage::decode(&seal(&key(), body), &key()).unwrap(),
            sample()
        );
    }

    #[test]
    fn unsigned_and_short_messages_are_refused() {
        let mut old = sample().encode(&key());
        old[..4].copy_from_slice(b"SLJ1");
        assert_eq!(JobMessage::decode(&old, &key()), Err(WireError::Unsigned));
        assert_eq!(
            JobMessage::decode(b"SLJ", &key()),
            Err(WireError::Truncated("magic"))
        );
        assert_eq!(
            JobMessage::decode(&[b"SLJ2".as_slice(), &[0; 31]].concat(), &key()),
            Err(WireError::Truncated("tag"))
        );
        assert_eq!(JobMessage::decode(b"XXXX", &key()), Err(WireError::Magic));
    }

    #[test]
    fn fleet_keys_are_at_least_32_bytes_and_never_print() {
        assert_eq!(
            FleetKey::new(vec![7; 31]),
            Err(FleetKeyError::TooShort { len: 31 })
        );
        let k = FleetKey::new(vec![b'z'; 32]).unwrap();
        assert_eq!(format!("{k:?}"), "FleetKey(..)");
    }

    #[test]
    fn every_truncation_and_corruption_is_an_error_not_a_panic() {
        let signed = sample().encode(&key());
        let body = &signed[..signed.len() - TAG_BYTES];
        // Signed bodies cut short reach the parser (the tag is good) and fail there.
        for n in 4..body.len() {
            assert!(
                JobMessage::decode(&seal(&key(), &body[..n]), &key()).is_err(),
                "body prefix of {n} bytes"
            );
        }
        for n in 0..signed.len() {
            assert!(
                JobMessage::decode(&signed[..n], &key()).is_err(),
                "prefix of {n} bytes"
            );
        }
        let mut trailing = body.to_vec();
        trailing.push(0);
        assert_eq!(
            JobMessage::decode(&seal(&key(), &trailing), &key()),
            Err(WireError::Trailing(1))
        );
        for i in 4..body.len() {
            let mut b = body.to_vec();
            b[i] ^= 0xff;
            let _ = JobMessage::decode(&seal(&key(), &b), &key());
        }
        let mut huge = body.to_vec();
        // The txid count claims more than the message holds.
        let at = 4 + 8 + 8 + 8 + 8 + 1 + 8 + 32 + 16 + 2 + 4 + 3 + 4 + 2;
        huge[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            JobMessage::decode(&seal(&key(), &huge), &key()),
            Err(WireError::Truncated("txids"))
        );
    }
}
