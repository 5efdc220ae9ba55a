//! The job message jobmanagers publish through Redis and engines read: a compact binary encoding of
//! [`JobParts`] with the publisher's fencing token.
//!
//! Binary rather than JSON because a mainnet job carries the template's transactions (megabytes in
//! hex) to every engine; engines need them to assemble a block. Decoding is total: any bytes give a
//! job or a [`WireError`], never a panic, and every length is checked against what is left.
//!
//! Layout (integers little-endian): magic `SLJ1`, token u64, sequence u64, published_us u64 (the
//! publisher's clock, microseconds since the Unix epoch), clean u8, height u64,
//! prev_hash [32], version u32, nbits u32, ntime u32, mintime u32, extranonce1 size u8, extranonce2
//! size u8, coinb1 (u32 length + bytes), coinb2 (u32 + bytes), txid count u32 then txids [32] each,
//! transactions (u32 + bytes), witness flag u8 then the reserved value [32] when 1.

use crate::chain::JobParts;
use crate::units::ExtranonceSizes;

const MAGIC: &[u8; 4] = b"SLJ1";

/// The largest field accepted: far above any block's transactions.
pub const MAX_FIELD_BYTES: usize = 64 * 1024 * 1024;

/// A job as it travels: who published it (the fencing token of its lease) and in which order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobMessage {
    /// The fencing token of the lease the publisher held; engines ignore jobs with a token below
    /// the highest they have seen.
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
    pub fn encode(&self) -> Vec<u8> {
        let p = &self.parts;
        let mut out = Vec::with_capacity(
            128 + p.coinb1.len() + p.coinb2.len() + 32 * p.txids.len() + p.transactions.len(),
        );
        out.extend_from_slice(MAGIC);
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
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<JobMessage, WireError> {
        let mut r = Reader(bytes);
        if r.take(4, "magic")? != MAGIC {
            return Err(WireError::Magic);
        }
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

    fn sample() -> JobMessage {
        JobMessage {
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
        assert_eq!(JobMessage::decode(&m.encode()).unwrap(), m);
        let mut legacy = sample();
        legacy.parts.witness_reserved_value = None;
        legacy.clean = false;
        assert_eq!(JobMessage::decode(&legacy.encode()).unwrap(), legacy);
    }

    #[test]
    fn every_truncation_and_corruption_is_an_error_not_a_panic() {
        let bytes = sample().encode();
        for n in 0..bytes.len() {
            assert!(
                JobMessage::decode(&bytes[..n]).is_err(),
                "prefix of {n} bytes"
            );
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(JobMessage::decode(&trailing), Err(WireError::Trailing(1)));
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0xff;
            let _ = JobMessage::decode(&b);
        }
        let mut huge = bytes;
        // The txid count claims more than the message holds.
        let at = 4 + 8 + 8 + 8 + 1 + 8 + 32 + 16 + 2 + 4 + 3 + 4 + 2;
        huge[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            JobMessage::decode(&huge),
            Err(WireError::Truncated("txids"))
        );
    }
}
