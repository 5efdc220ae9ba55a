//! Newtypes for the quantities of mining: 256-bit targets, difficulties, header and block hashes, job ids
//! and extranonces.
//!
//! Targets are compared as exact 256-bit integers, never through floating point. Difficulty is an `f64`
//! because pools hand out fractional difficulties, but the conversion to a target is exact: the `f64` is
//! split into its integer mantissa and power of two and the division is done in integers.

use std::fmt;

/// Four little-endian 64-bit limbs: limb 0 is the least significant.
type Limbs = [u64; 4];

/// The difficulty-1 target, `0x00000000ffff0000…0000`, as `0xffff << 208`.
const DIFF1_MANTISSA: u64 = 0xffff;
const DIFF1_SHIFT: i32 = 208;

/// A 256-bit proof-of-work target: a hash meets it when, read as a little-endian integer, it is less
/// than or equal to it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target(Limbs);

/// Why a target could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("compact target {0:08x} is negative")]
    NegativeCompact(u32),
    #[error("compact target {0:08x} does not fit in 256 bits")]
    CompactOverflow(u32),
    #[error("difficulty must be a finite number greater than zero")]
    BadDifficulty,
}

impl Target {
    /// The largest target (every hash meets it).
    pub const MAX: Target = Target([u64::MAX; 4]);
    /// The difficulty-1 target.
    pub const DIFF1: Target = Target([0, 0, 0, 0x0000_0000_ffff_0000]);

    /// From the 32 bytes of a little-endian 256-bit integer (the byte order of a hash in a header).
    pub fn from_le_bytes(bytes: [u8; 32]) -> Target {
        let mut limbs = [0u64; 4];
        for (limb, chunk) in limbs.iter_mut().zip(bytes.chunks_exact(8)) {
            *limb = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        }
        Target(limbs)
    }

    pub fn to_le_bytes(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (chunk, limb) in out.chunks_exact_mut(8).zip(self.0) {
            chunk.copy_from_slice(&limb.to_le_bytes());
        }
        out
    }

    /// From the big-endian bytes, the order in which targets are written as hex (`getblocktemplate`'s
    /// `target`).
    pub fn from_be_bytes(mut bytes: [u8; 32]) -> Target {
        bytes.reverse();
        Target::from_le_bytes(bytes)
    }

    pub fn to_be_bytes(self) -> [u8; 32] {
        let mut b = self.to_le_bytes();
        b.reverse();
        b
    }

    /// From the compact form in a header's `nbits`.
    pub fn from_compact(nbits: u32) -> Result<Target, TargetError> {
        let exponent = nbits >> 24;
        let mantissa = nbits & 0x007f_ffff;
        if nbits & 0x0080_0000 != 0 && mantissa != 0 {
            return Err(TargetError::NegativeCompact(nbits));
        }
        let mut limbs = [0u64; 4];
        if exponent <= 3 {
            limbs[0] = u64::from(mantissa >> (8 * (3 - exponent)));
        } else {
            let shift = 8 * (exponent - 3);
            let significant_bits = 32 - mantissa.leading_zeros();
            if mantissa != 0 && shift + significant_bits > 256 {
                return Err(TargetError::CompactOverflow(nbits));
            }
            limbs = shl(u128::from(mantissa), shift);
        }
        Ok(Target(limbs))
    }

    /// The compact form (`nbits`) of this target, rounded down to what the form can hold.
    pub fn to_compact(self) -> u32 {
        let be = self.to_be_bytes();
        let Some(first) = be.iter().position(|&b| b != 0) else {
            return 0;
        };
        let mut size = 32 - first;
        let mut mantissa = 0u32;
        for i in 0..3 {
            mantissa <<= 8;
            if let Some(&b) = be.get(first + i) {
                mantissa |= u32::from(b);
            }
        }
        // A set top bit would read as a sign: shift it out into one more byte of size.
        if mantissa & 0x0080_0000 != 0 {
            mantissa >>= 8;
            size += 1;
        }
        ((size as u32) << 24) | mantissa
    }

    /// The exact target of a difficulty: `floor(DIFF1 / difficulty)`, clamped to `1..=MAX`.
    pub fn from_difficulty(difficulty: Difficulty) -> Target {
        let d = difficulty.0;
        // d = m * 2^e exactly, with m < 2^53.
        let bits = d.to_bits();
        let raw_exp = ((bits >> 52) & 0x7ff) as i32;
        let frac = bits & ((1u64 << 52) - 1);
        let (mut m, mut e) = if raw_exp == 0 {
            (frac, -1074)
        } else {
            (frac | (1u64 << 52), raw_exp - 1075)
        };
        let tz = m.trailing_zeros();
        m >>= tz;
        e += tz as i32;
        // DIFF1 / d = (0xffff << (208 - e)) / m
        let shift = DIFF1_SHIFT - e;
        let target = if shift < 0 {
            let down = -shift;
            if down >= 16 {
                [0; 4]
            } else {
                // m < 2^53 and down < 16: the divisor fits in 69 bits.
                [
                    (u128::from(DIFF1_MANTISSA) / (u128::from(m) << down)) as u64,
                    0,
                    0,
                    0,
                ]
            }
        } else if shift as u32 + 16 > 320 {
            return Target::MAX;
        } else {
            // A 384-bit numerator: 0xffff << shift fits because shift + 16 <= 320.
            let mut num = [0u64; 6];
            let (limb, bit) = ((shift / 64) as usize, (shift % 64) as u32);
            let wide = u128::from(DIFF1_MANTISSA) << bit;
            num[limb] = wide as u64;
            if limb + 1 < 6 {
                num[limb + 1] = (wide >> 64) as u64;
            }
            let q = div_small(num, m);
            if q[4] != 0 || q[5] != 0 {
                return Target::MAX;
            }
            [q[0], q[1], q[2], q[3]]
        };
        if target == [0; 4] {
            // A target of zero would reject every hash; the smallest real target is 1.
            Target([1, 0, 0, 0])
        } else {
            Target(target)
        }
    }

    /// Whether a hash meets this target.
    #[inline]
    pub fn is_met_by(&self, hash: &HeaderHash) -> bool {
        let h = hash.limbs();
        for i in (0..4).rev() {
            if h[i] != self.0[i] {
                return h[i] < self.0[i];
            }
        }
        true
    }

    /// The difficulty this target stands for (for display and records, not for judging shares).
    pub fn difficulty(&self) -> f64 {
        Target::DIFF1.to_f64() / self.to_f64().max(1.0)
    }

    fn to_f64(self) -> f64 {
        limbs_to_f64(&self.0)
    }
}

fn limbs_to_f64(limbs: &Limbs) -> f64 {
    limbs.iter().rev().fold(0.0, |acc, &limb| {
        acc * 18_446_744_073_709_551_616.0 + limb as f64
    })
}

fn shl(value: u128, shift: u32) -> Limbs {
    let mut out = [0u64; 4];
    let (limb, bit) = ((shift / 64) as usize, shift % 64);
    let lo = value as u64;
    let hi = (value >> 64) as u64;
    let parts = [
        lo << bit,
        if bit == 0 {
            hi
        } else {
            (hi << bit) | (lo >> (64 - bit))
        },
        if bit == 0 { 0 } else { hi >> (64 - bit) },
    ];
    for (i, part) in parts.into_iter().enumerate() {
        if limb + i < 4 {
            out[limb + i] = part;
        }
    }
    out
}

/// Long division of a 384-bit number by a 64-bit one.
fn div_small(num: [u64; 6], divisor: u64) -> [u64; 6] {
    let mut q = [0u64; 6];
    let mut rem: u128 = 0;
    for i in (0..6).rev() {
        let cur = (rem << 64) | u128::from(num[i]);
        q[i] = (cur / u128::from(divisor)) as u64;
        rem = cur % u128::from(divisor);
    }
    q
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Target({})", crate::hex::encode(&self.to_be_bytes()))
    }
}

/// A share difficulty: finite and greater than zero. May be fractional.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Difficulty(f64);

impl Difficulty {
    pub const ONE: Difficulty = Difficulty(1.0);

    pub fn new(value: f64) -> Result<Difficulty, TargetError> {
        if value.is_finite() && value > 0.0 {
            Ok(Difficulty(value))
        } else {
            Err(TargetError::BadDifficulty)
        }
    }

    pub fn get(self) -> f64 {
        self.0
    }

    pub fn target(self) -> Target {
        Target::from_difficulty(self)
    }
}

impl fmt::Display for Difficulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A block-header hash in the byte order it comes out of double SHA-256 (the reverse of how explorers
/// print it).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct HeaderHash(pub [u8; 32]);

impl HeaderHash {
    #[inline]
    fn limbs(&self) -> Limbs {
        Target::from_le_bytes(self.0).0
    }

    /// The difficulty this hash reaches: `DIFF1 / hash`, the share's own difficulty for the record.
    pub fn difficulty(&self) -> f64 {
        Target::DIFF1.to_f64() / limbs_to_f64(&self.limbs()).max(1.0)
    }

    /// A 64-bit digest of the hash, for sets keyed on it. The hash is already uniform, so its first
    /// eight bytes serve.
    #[inline]
    pub fn short(&self) -> u64 {
        u64::from_le_bytes(self.0[..8].try_into().expect("8 bytes"))
    }
}

impl fmt::Display for HeaderHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut b = self.0;
        b.reverse();
        f.write_str(&crate::hex::encode(&b))
    }
}

impl fmt::Debug for HeaderHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HeaderHash({self})")
    }
}

/// A block's hash once it leaves the session: the header hash of a found block, as it travels to
/// the nodes, the held-blocks file, Redis and `/status`. It is displayed, parsed and serialized as
/// nodes and explorers print it (the 32 bytes reversed, 64 lower-case hex digits); parsing takes
/// either case, since the bytes are the same. Compared as bytes, never as text.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BlockHash(pub [u8; 32]);

/// Why text is not a [`BlockHash`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockHashError {
    #[error("a block hash is 64 hex digits; this one is {0} bytes long")]
    Length(usize),
    #[error("a block hash is hex digits only (0-9, a-f)")]
    Digit,
}

impl From<HeaderHash> for BlockHash {
    fn from(hash: HeaderHash) -> BlockHash {
        BlockHash(hash.0)
    }
}

impl std::str::FromStr for BlockHash {
    type Err = BlockHashError;

    fn from_str(text: &str) -> Result<BlockHash, BlockHashError> {
        let mut b = [0u8; 32];
        crate::hex::decode_into(text.as_bytes(), &mut b).map_err(|e| match e {
            crate::hex::HexError::Length => BlockHashError::Length(text.len()),
            crate::hex::HexError::Digit => BlockHashError::Digit,
        })?;
        b.reverse();
        Ok(BlockHash(b))
    }
}

impl fmt::Display for BlockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&HeaderHash(self.0), f)
    }
}

impl fmt::Debug for BlockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlockHash({self})")
    }
}

impl serde::Serialize for BlockHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for BlockHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<BlockHash, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The version bits a miner may roll (BIP 310's mask): the pool's, a policy's, the one negotiated
/// with a connection, the one a job was sent under. Masks only ever narrow (`within`), so a miner
/// is never allowed more than the pool allows; `0` is no rolling at all. Serialised as the number.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct VersionMask(pub u32);

impl VersionMask {
    /// No version rolling.
    pub const NONE: VersionMask = VersionMask(0);
    /// BIP 320's general-purpose bits 13 to 28: the default `pool.version_mask`.
    pub const BIP320: VersionMask = VersionMask(0x1fff_e000);

    /// The bits both masks allow.
    #[inline]
    pub fn within(self, outer: VersionMask) -> VersionMask {
        VersionMask(self.0 & outer.0)
    }

    /// Whether every bit of `other` is allowed here.
    #[inline]
    pub fn contains(self, other: VersionMask) -> bool {
        other.0 & !self.0 == 0
    }

    /// Whether rolled `bits` stay inside the mask.
    #[inline]
    pub fn allows(self, bits: u32) -> bool {
        bits & !self.0 == 0
    }

    /// `version` with the masked bits taken from `bits`.
    #[inline]
    pub fn roll(self, version: u32, bits: u32) -> u32 {
        (version & !self.0) | (bits & self.0)
    }

    pub fn is_none(self) -> bool {
        self.0 == 0
    }
}

/// Eight lower-case hex digits, as Stratum writes masks.
impl fmt::Display for VersionMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// A job's id as miners see it: a 64-bit number written as lower-case hex without leading zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// The byte sizes of extranonce1 (fixed per session, unique across the fleet) and extranonce2 (rolled
/// by the miner).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtranonceSizes {
    extranonce1: u8,
    extranonce2: u8,
}

/// The most bytes either extranonce may have.
pub const MAX_EXTRANONCE1_SIZE: usize = 8;
pub const MAX_EXTRANONCE2_SIZE: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("extranonce sizes must be 1..={MAX_EXTRANONCE1_SIZE} bytes for extranonce1 and 1..={MAX_EXTRANONCE2_SIZE} for extranonce2 (got {0} and {1})")]
pub struct ExtranonceSizeError(pub usize, pub usize);

impl ExtranonceSizes {
    pub fn new(extranonce1: usize, extranonce2: usize) -> Result<Self, ExtranonceSizeError> {
        if (1..=MAX_EXTRANONCE1_SIZE).contains(&extranonce1)
            && (1..=MAX_EXTRANONCE2_SIZE).contains(&extranonce2)
        {
            Ok(ExtranonceSizes {
                extranonce1: extranonce1 as u8,
                extranonce2: extranonce2 as u8,
            })
        } else {
            Err(ExtranonceSizeError(extranonce1, extranonce2))
        }
    }

    pub fn extranonce1(self) -> usize {
        usize::from(self.extranonce1)
    }

    pub fn extranonce2(self) -> usize {
        usize::from(self.extranonce2)
    }

    pub fn total(self) -> usize {
        self.extranonce1() + self.extranonce2()
    }
}

impl Default for ExtranonceSizes {
    /// Four bytes each, what most pools and miners use.
    fn default() -> Self {
        ExtranonceSizes {
            extranonce1: 4,
            extranonce2: 4,
        }
    }
}

/// A session's extranonce1.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Extranonce1 {
    bytes: [u8; MAX_EXTRANONCE1_SIZE],
    len: u8,
}

impl Extranonce1 {
    /// Returns `None` when `bytes` is empty or longer than [`MAX_EXTRANONCE1_SIZE`].
    pub fn new(bytes: &[u8]) -> Option<Extranonce1> {
        if bytes.is_empty() || bytes.len() > MAX_EXTRANONCE1_SIZE {
            return None;
        }
        let mut b = [0u8; MAX_EXTRANONCE1_SIZE];
        b[..bytes.len()].copy_from_slice(bytes);
        Some(Extranonce1 {
            bytes: b,
            len: bytes.len() as u8,
        })
    }

    /// The big-endian bytes of `counter`, cut to `size` bytes.
    pub fn from_counter(counter: u64, size: usize) -> Option<Extranonce1> {
        if size == 0 || size > MAX_EXTRANONCE1_SIZE {
            return None;
        }
        Extranonce1::new(&counter.to_be_bytes()[8 - size..])
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl fmt::Display for Extranonce1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::hex::encode(self.as_bytes()))
    }
}

impl fmt::Debug for Extranonce1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Extranonce1({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_mask_only_narrows_and_rolls_only_its_bits() {
        let pool = VersionMask::BIP320;
        let asked = VersionMask(0xffff_ffff);
        assert_eq!(
            asked.within(pool),
            pool,
            "a miner never gets more than the pool"
        );
        assert_eq!(
            VersionMask(0x00ff_e000).within(pool),
            VersionMask(0x00ff_e000)
        );
        assert!(pool.contains(VersionMask(0x0000_e000)));
        assert!(!pool.contains(asked));
        assert!(pool.allows(0x1fff_e000) && pool.allows(0));
        assert!(!pool.allows(0x0000_1000) && !pool.allows(0x2000_0000));
        assert_eq!(pool.roll(0x2000_0000, 0xffff_ffff), 0x3fff_e000);
        assert_eq!(
            VersionMask::NONE.roll(0x2000_0004, 0xffff_ffff),
            0x2000_0004
        );
        assert!(VersionMask::NONE.is_none() && !pool.is_none());
        assert_eq!(pool.to_string(), "1fffe000");
        assert_eq!(VersionMask(0xe000).to_string(), "0000e000");
        // Saved sessions carry it as the number they always did.
        assert_eq!(serde_json::to_string(&pool).unwrap(), "536862720");
        assert_eq!(
            serde_json::from_str::<VersionMask>("536862720").unwrap(),
            pool
        );
    }

    #[test]
    fn a_block_hash_reads_and_prints_as_nodes_print_it() {
        let text = "00000000000000000002a7c4c1e48d76c5a37902165a270156b7a8d72728a054";
        let hash: BlockHash = text.parse().unwrap();
        assert_eq!(hash.0[0], 0x54, "stored in hashing order, printed reversed");
        assert_eq!(hash.0[31], 0x00);
        assert_eq!(hash.to_string(), text);
        assert_eq!(BlockHash::from(HeaderHash(hash.0)), hash);
        let json = serde_json::to_string(&hash).unwrap();
        assert_eq!(json, format!("\"{text}\""));
        assert_eq!(serde_json::from_str::<BlockHash>(&json).unwrap(), hash);
    }

    #[test]
    fn a_block_hash_takes_upper_case_and_prints_lower_case() {
        let lower = "00000000000000000002a7c4c1e48d76c5a37902165a270156b7a8d72728a054";
        let upper: BlockHash = lower.to_uppercase().parse().unwrap();
        assert_eq!(upper, lower.parse::<BlockHash>().unwrap());
        assert_eq!(upper.to_string(), lower);
    }

    #[test]
    fn a_block_hash_refuses_what_is_not_64_hex_digits() {
        let good = "ab".repeat(32);
        assert_eq!(
            good[1..].parse::<BlockHash>(),
            Err(BlockHashError::Length(63))
        );
        assert_eq!(
            format!("{good}0").parse::<BlockHash>(),
            Err(BlockHashError::Length(65))
        );
        assert_eq!("".parse::<BlockHash>(), Err(BlockHashError::Length(0)));
        let not_hex = format!("{}zz", &good[2..]);
        assert_eq!(not_hex.parse::<BlockHash>(), Err(BlockHashError::Digit));
        assert_eq!(
            format!("0x{}", &good[2..]).parse::<BlockHash>(),
            Err(BlockHashError::Digit)
        );
        // Multi-byte characters count as bytes: 62 digits and one two-byte character are 64 bytes.
        let wide = format!("{}é", &good[2..]);
        assert_eq!(wide.parse::<BlockHash>(), Err(BlockHashError::Digit));
        assert!(serde_json::from_str::<BlockHash>("\"abc\"").is_err());
        assert!(serde_json::from_str::<BlockHash>("7").is_err());
    }

    fn hex_target(s: &str) -> Target {
        let mut b = [0u8; 32];
        crate::hex::decode_into(s.as_bytes(), &mut b).unwrap();
        Target::from_be_bytes(b)
    }

    #[test]
    fn difficulty_one_is_diff1() {
        assert_eq!(Difficulty::ONE.target(), Target::DIFF1);
        assert_eq!(
            Target::DIFF1,
            hex_target("00000000ffff0000000000000000000000000000000000000000000000000000")
        );
    }

    #[test]
    fn exact_targets_for_integer_and_fractional_difficulties() {
        assert_eq!(
            Difficulty::new(2.0).unwrap().target(),
            hex_target("000000007fff8000000000000000000000000000000000000000000000000000")
        );
        assert_eq!(
            Difficulty::new(0.5).unwrap().target(),
            hex_target("00000001fffe0000000000000000000000000000000000000000000000000000")
        );
        // 0xffff * 2^208 / 3, floored.
        assert_eq!(
            Difficulty::new(3.0).unwrap().target(),
            hex_target("0000000055550000000000000000000000000000000000000000000000000000")
        );
        // 0xffff * 2^208 / 1024.
        assert_eq!(
            Difficulty::new(1024.0).unwrap().target(),
            hex_target("00000000003fffc0000000000000000000000000000000000000000000000000")
        );
    }

    #[test]
    fn extreme_difficulties_clamp() {
        assert_eq!(
            Difficulty::new(f64::MIN_POSITIVE).unwrap().target(),
            Target::MAX
        );
        assert_eq!(
            Difficulty::new(1e-10).unwrap().target(),
            Target::MAX,
            "DIFF1 * 1e10 exceeds 256 bits"
        );
        assert_eq!(
            Difficulty::new(f64::MAX).unwrap().target(),
            Target([1, 0, 0, 0])
        );
        // Huge difficulties whose target is a small integer: 0xffff / (2^52 + 1) * 2^-12, floored, is 0.
        let huge = ((1u64 << 52) + 1) as f64 * 2f64.powi(220);
        assert_eq!(
            Difficulty::new(huge).unwrap().target(),
            Target([1, 0, 0, 0])
        );
        let d = 2f64.powi(208) * 4096.0; // DIFF1 / d = 0xffff / 4096 = 15
        assert_eq!(Difficulty::new(d).unwrap().target(), Target([15, 0, 0, 0]));
        assert!(Difficulty::new(0.0).is_err());
        assert!(Difficulty::new(-1.0).is_err());
        assert!(Difficulty::new(f64::NAN).is_err());
        assert!(Difficulty::new(f64::INFINITY).is_err());
    }

    #[test]
    fn compact_targets() {
        assert_eq!(Target::from_compact(0x1d00ffff).unwrap(), Target::DIFF1);
        assert_eq!(
            Target::from_compact(0x207fffff).unwrap(),
            hex_target("7fffff0000000000000000000000000000000000000000000000000000000000")
        );
        assert_eq!(
            Target::from_compact(0x1b0404cb).unwrap(),
            hex_target("00000000000404cb000000000000000000000000000000000000000000000000")
        );
        assert_eq!(
            Target::from_compact(0x03123456).unwrap(),
            Target([0x123456, 0, 0, 0])
        );
        assert_eq!(
            Target::from_compact(0x02123456).unwrap(),
            Target([0x1234, 0, 0, 0])
        );
        assert!(Target::from_compact(0x04923456).is_err());
        assert!(Target::from_compact(0x217fffff).is_err());
    }

    #[test]
    fn compact_round_trips_and_rounds_down() {
        for bits in [
            0x1d00ffffu32,
            0x207fffff,
            0x1b0404cb,
            0x17034219,
            0x03123456,
        ] {
            assert_eq!(Target::from_compact(bits).unwrap().to_compact(), bits);
        }
        let t = Difficulty::new(0.1).unwrap().target();
        let rounded = Target::from_compact(t.to_compact()).unwrap();
        assert!(rounded.to_le_bytes() != t.to_le_bytes());
        assert!(rounded.difficulty() >= 0.1 && rounded.difficulty() < 0.1001);
    }

    #[test]
    fn hash_meets_target_at_the_edge() {
        let t = Difficulty::new(1.0).unwrap().target();
        let at = HeaderHash(t.to_le_bytes());
        assert!(t.is_met_by(&at));
        let mut above = t.to_le_bytes();
        above[0] = 1; // DIFF1 has a zero low byte; one more is above it
        assert!(!t.is_met_by(&HeaderHash(above)));
        let mut below = t.to_le_bytes();
        below[26] -= 1;
        assert!(t.is_met_by(&HeaderHash(below)));
        assert!((at.difficulty() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn extranonce_sizes_are_bounded() {
        assert!(ExtranonceSizes::new(1, 1).is_ok());
        assert!(ExtranonceSizes::new(8, 16).is_ok());
        assert!(ExtranonceSizes::new(0, 4).is_err());
        assert!(ExtranonceSizes::new(9, 4).is_err());
        assert!(ExtranonceSizes::new(4, 17).is_err());
        assert_eq!(
            Extranonce1::from_counter(0x0102_0304, 4)
                .unwrap()
                .as_bytes(),
            [1, 2, 3, 4]
        );
        assert!(Extranonce1::new(&[0; 9]).is_none());
    }
}
