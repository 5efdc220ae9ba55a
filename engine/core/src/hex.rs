//! Hex decoding and encoding for the share path.
//!
//! Miners send every binary field of `mining.submit` as hex, in either case. Decoding here writes into
//! caller-provided fixed buffers and never allocates; a field whose length is not exactly what the job
//! expects is refused before any byte is decoded.

/// Why a hex field was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HexError {
    /// The field has the wrong number of hex digits.
    Length,
    /// The field holds a character that is not a hex digit.
    Digit,
}

/// Each byte's value as a hex digit, or `INVALID`. A table, not a `match`: on the random digits of
/// nonces and transaction data a branch per digit is mispredicted half the time.
const INVALID: u8 = 0xff;
const NIBBLE: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// Decodes `hex` into `out`, which must be exactly half its length. On error `out` holds garbage.
#[inline]
pub fn decode_into(hex: &[u8], out: &mut [u8]) -> Result<(), HexError> {
    if hex.len() != out.len() * 2 {
        return Err(HexError::Length);
    }
    // Any invalid digit sets the high bits of `seen`; checked once at the end.
    let mut seen = 0u8;
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let (hi, lo) = (NIBBLE[usize::from(pair[0])], NIBBLE[usize::from(pair[1])]);
        seen |= hi | lo;
        *byte = (hi << 4) | (lo & 0x0f);
    }
    if seen & 0xf0 != 0 {
        return Err(HexError::Digit);
    }
    Ok(())
}

/// Decodes a big-endian `u32` written as exactly eight hex digits (`ntime`, `nonce`, `nbits`).
#[inline]
pub fn decode_u32_exact(hex: &[u8]) -> Result<u32, HexError> {
    if hex.len() != 8 {
        return Err(HexError::Length);
    }
    decode_u32_loose(hex)
}

/// Decodes a big-endian `u32` written as one to eight hex digits (version bits, which some miners
/// send without leading zeros).
#[inline]
pub fn decode_u32_loose(hex: &[u8]) -> Result<u32, HexError> {
    if hex.is_empty() || hex.len() > 8 {
        return Err(HexError::Length);
    }
    let (mut v, mut seen) = (0u32, 0u8);
    for &c in hex {
        let n = NIBBLE[usize::from(c)];
        seen |= n;
        v = (v << 4) | u32::from(n & 0x0f);
    }
    if seen & 0xf0 != 0 {
        return Err(HexError::Digit);
    }
    Ok(v)
}

/// Decodes a big-endian `u64` written as one to sixteen hex digits (job ids).
#[inline]
pub fn decode_u64_loose(hex: &[u8]) -> Result<u64, HexError> {
    if hex.is_empty() || hex.len() > 16 {
        return Err(HexError::Length);
    }
    let (mut v, mut seen) = (0u64, 0u8);
    for &c in hex {
        let n = NIBBLE[usize::from(c)];
        seen |= n;
        v = (v << 4) | u64::from(n & 0x0f);
    }
    if seen & 0xf0 != 0 {
        return Err(HexError::Digit);
    }
    Ok(v)
}

/// Decodes a hex string of any even length into a new vector (templates, not the share path).
pub fn decode_vec(hex: &str) -> Result<Vec<u8>, HexError> {
    if !hex.len().is_multiple_of(2) {
        return Err(HexError::Length);
    }
    let mut out = vec![0u8; hex.len() / 2];
    decode_into(hex.as_bytes(), &mut out)?;
    Ok(out)
}

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Appends the lower-case hex of `bytes` to `out`.
pub fn encode_into(bytes: &[u8], out: &mut Vec<u8>) {
    out.reserve(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0x0f)]);
    }
}

/// Returns the lower-case hex of `bytes`.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len() * 2);
    encode_into(bytes, &mut out);
    // Only ASCII hex digits were written.
    String::from_utf8(out).expect("hex digits are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_either_case() {
        let mut out = [0u8; 2];
        decode_into(b"aBcD", &mut out).unwrap();
        assert_eq!(out, [0xab, 0xcd]);
        assert_eq!(decode_u32_exact(b"DEADbeef"), Ok(0xdead_beef));
    }

    #[test]
    fn refuses_wrong_length_and_digits() {
        let mut out = [0u8; 2];
        assert_eq!(decode_into(b"abc", &mut out), Err(HexError::Length));
        assert_eq!(decode_into(b"abcdef", &mut out), Err(HexError::Length));
        assert_eq!(decode_into(b"zzzz", &mut out), Err(HexError::Digit));
        assert_eq!(decode_u32_exact(b"1234567"), Err(HexError::Length));
        assert_eq!(decode_u32_exact(b"123456789"), Err(HexError::Length));
        assert_eq!(decode_u32_exact(b" 1234567"), Err(HexError::Digit));
        assert_eq!(decode_u32_loose(b""), Err(HexError::Length));
        assert_eq!(decode_u32_loose(b"2000"), Ok(0x2000));
        assert_eq!(decode_u64_loose(b"ffffffffffffffff"), Ok(u64::MAX));
        assert_eq!(
            decode_u64_loose(b"1ffffffffffffffff"),
            Err(HexError::Length)
        );
    }

    #[test]
    fn table_agrees_with_the_standard_library_for_every_byte() {
        for b in 0..=255u8 {
            let expected = (b as char).to_digit(16);
            let got = decode_u32_loose(&[b]).ok();
            assert_eq!(got, expected, "byte {b:#04x}");
            let mut out = [0u8; 1];
            assert_eq!(
                decode_into(&[b'0', b], &mut out).is_ok(),
                expected.is_some()
            );
            assert_eq!(
                decode_into(&[b, b'0'], &mut out).is_ok(),
                expected.is_some()
            );
        }
    }

    #[test]
    fn round_trips() {
        let bytes = [0u8, 1, 0x7f, 0x80, 0xff];
        assert_eq!(decode_vec(&encode(&bytes)).unwrap(), bytes);
    }
}
