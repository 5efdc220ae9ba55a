//! SHA-256 and double SHA-256 built on the raw compression function, so that a hash can start from a
//! midstate.
//!
//! The share path hashes the coinbase, every level of the merkle branch and the header. What does not
//! change within a job (the 64-byte blocks at the front of `coinb1`) is compressed once per job into a
//! [`Midstate`]; the rest is fed through a [`Sha256`] on the stack. `sha2`'s compression function picks
//! SHA-NI at run time where the CPU has it. Nothing here allocates.

use sha2::digest::generic_array::GenericArray;

const IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// The padding block that follows a message of exactly 64 bytes (one merkle node's two children).
const PAD_AFTER_64: [u8; 64] = {
    let mut b = [0u8; 64];
    b[0] = 0x80;
    b[62] = 0x02; // 512 bits
    b
};

#[inline(always)]
fn compress(state: &mut [u32; 8], block: &[u8; 64]) {
    sha2::compress256(
        state,
        core::slice::from_ref(GenericArray::from_slice(block)),
    );
}

#[inline(always)]
fn state_bytes(state: &[u32; 8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// SHA-256 of a 32-byte digest: the second half of every double SHA-256.
#[inline(always)]
fn sha256_of_digest(digest: &[u8; 32]) -> [u8; 32] {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(digest);
    block[32] = 0x80;
    block[62] = 0x01; // 256 bits
    let mut state = IV;
    compress(&mut state, &block);
    state_bytes(&state)
}

/// The SHA-256 state after a whole number of 64-byte blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Midstate {
    state: [u32; 8],
    /// Bytes compressed so far; always a multiple of 64.
    len: u64,
}

impl Midstate {
    /// Compresses the whole 64-byte blocks at the front of `prefix`; returns the midstate and the
    /// bytes left over, which the caller feeds again in front of what follows.
    pub fn of_prefix(prefix: &[u8]) -> (Midstate, &[u8]) {
        let whole = prefix.len() / 64 * 64;
        let mut state = IV;
        for block in prefix[..whole].chunks_exact(64) {
            compress(&mut state, block.try_into().expect("chunks_exact(64)"));
        }
        (
            Midstate {
                state,
                len: whole as u64,
            },
            &prefix[whole..],
        )
    }
}

/// A streaming SHA-256 on the stack.
#[derive(Clone)]
pub struct Sha256 {
    state: [u32; 8],
    buf: [u8; 64],
    buf_len: usize,
    len: u64,
}

impl Default for Sha256 {
    fn default() -> Self {
        Self::from_midstate(Midstate { state: IV, len: 0 })
    }
}

impl Sha256 {
    /// Continues a hash from a midstate.
    #[inline]
    pub fn from_midstate(mid: Midstate) -> Self {
        Sha256 {
            state: mid.state,
            buf: [0; 64],
            buf_len: 0,
            len: mid.len,
        }
    }

    #[inline]
    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.buf_len > 0 {
            let take = (64 - self.buf_len).min(data.len());
            self.buf[self.buf_len..self.buf_len + take].copy_from_slice(&data[..take]);
            self.buf_len += take;
            data = &data[take..];
            if self.buf_len < 64 {
                return;
            }
            compress(&mut self.state, &self.buf);
            self.buf_len = 0;
        }
        let mut blocks = data.chunks_exact(64);
        for block in &mut blocks {
            compress(&mut self.state, block.try_into().expect("chunks_exact(64)"));
        }
        let rest = blocks.remainder();
        self.buf[..rest.len()].copy_from_slice(rest);
        self.buf_len = rest.len();
    }

    #[inline]
    pub fn finalize(mut self) -> [u8; 32] {
        let bits = self.len.wrapping_mul(8);
        self.buf[self.buf_len] = 0x80;
        self.buf[self.buf_len + 1..].fill(0);
        if self.buf_len >= 56 {
            compress(&mut self.state, &self.buf);
            self.buf.fill(0);
        }
        self.buf[56..].copy_from_slice(&bits.to_be_bytes());
        compress(&mut self.state, &self.buf);
        state_bytes(&self.state)
    }

    /// Finishes this hash and hashes its digest once more.
    #[inline]
    pub fn finalize_double(self) -> [u8; 32] {
        sha256_of_digest(&self.finalize())
    }
}

/// Double SHA-256 of any message.
pub fn sha256d(data: &[u8]) -> [u8; 32] {
    let mut h = Sha256::default();
    h.update(data);
    h.finalize_double()
}

/// Double SHA-256 of two 32-byte nodes: one step up a merkle tree.
#[inline]
pub fn merkle_parent(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(left);
    block[32..].copy_from_slice(right);
    let mut state = IV;
    compress(&mut state, &block);
    compress(&mut state, &PAD_AFTER_64);
    sha256_of_digest(&state_bytes(&state))
}

/// Double SHA-256 of an 80-byte block header.
#[inline]
pub fn header_hash(header: &[u8; 80]) -> [u8; 32] {
    let mut state = IV;
    compress(&mut state, header[..64].try_into().expect("64 bytes"));
    let mut block = [0u8; 64];
    block[..16].copy_from_slice(&header[64..]);
    block[16] = 0x80;
    block[62] = 0x02;
    block[63] = 0x80; // 640 bits
    compress(&mut state, &block);
    sha256_of_digest(&state_bytes(&state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::{sha256, sha256d as reference_d, Hash};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn matches_reference_for_any_length_and_split(data in proptest::collection::vec(any::<u8>(), 0..300), split in 0usize..300) {
            let split = split.min(data.len());
            let (mid, rest) = Midstate::of_prefix(&data[..split]);
            let mut h = Sha256::from_midstate(mid);
            h.update(rest);
            h.update(&data[split..]);
            prop_assert_eq!(h.clone().finalize(), sha256::Hash::hash(&data).to_byte_array());
            prop_assert_eq!(h.finalize_double(), reference_d::Hash::hash(&data).to_byte_array());
        }

        #[test]
        fn merkle_parent_and_header_match_reference(a in any::<[u8; 32]>(), b in any::<[u8; 32]>(), tail in any::<[u8; 16]>()) {
            let mut pair = [0u8; 64];
            pair[..32].copy_from_slice(&a);
            pair[32..].copy_from_slice(&b);
            prop_assert_eq!(merkle_parent(&a, &b), reference_d::Hash::hash(&pair).to_byte_array());
            let mut header = [0u8; 80];
            header[..64].copy_from_slice(&pair);
            header[64..].copy_from_slice(&tail);
            prop_assert_eq!(header_hash(&header), reference_d::Hash::hash(&header).to_byte_array());
        }
    }
}
