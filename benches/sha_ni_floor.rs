//! What SHA-NI can do on this machine, beside what the engine's hashing (the `sha2` crate's
//! compression function) gets out of it. Not engine code: a measurement and a prototype behind a
//! proposal in `BENCHMARKS.md`.
//!
//! ```text
//! taskset -c 1 cargo bench --bench sha_ni_floor
//! ```
//!
//! - `rounds_only_16_blocks`: 16 blocks' worth of dependent `sha256rnds2` (32 a block) and nothing
//!   else (no message schedule, loads or stores): the latency floor under any compression. The
//!   `_x2_interleaved` variant runs two independent chains in lockstep: the core's SHA throughput.
//! - `compress_16_blocks_prototype`: a plain SHA-NI compression (the Intel reference shape, as
//!   `sha2` has it), inlined, to compare with `hash/compress_16_blocks_sha2`.
//! - `pad_block_precomputed_16`: the constant padding block that ends a 64-byte message (the second
//!   block of every merkle node's first hash), with its message schedule plus round constants
//!   computed once at compile time, so only the rounds remain.
//! - `merkle_parent_prototype` / `merkle_fold_12_levels_prototype`: a merkle node hashed with state
//!   kept in registers across its three compressions and the padding block's schedule precomputed,
//!   checked against `sluice_core::hash::merkle_parent` before timing. `_x2_interleaved` folds two
//!   independent branches (two shares) in lockstep.
//!
//! Without SHA-NI (or off x86-64) the benches are skipped.

#[cfg(target_arch = "x86_64")]
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};

#[cfg(target_arch = "x86_64")]
mod shani {
    use std::arch::x86_64::{
        __m128i, _mm_add_epi32, _mm_alignr_epi8, _mm_blend_epi16, _mm_cvtsi128_si32,
        _mm_loadu_si128, _mm_set_epi32, _mm_set_epi64x, _mm_sha256msg1_epu32, _mm_sha256msg2_epu32,
        _mm_sha256rnds2_epu32, _mm_shuffle_epi32, _mm_shuffle_epi8, _mm_storeu_si128,
    };

    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];

    pub const IV: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];

    /// The message schedule of a constant block, with the round constants added: W[i] + K[i].
    const fn schedule_plus_k(block: [u32; 16]) -> [u32; 64] {
        let mut w = [0u32; 64];
        let mut i = 0;
        while i < 64 {
            w[i] = if i < 16 {
                block[i]
            } else {
                let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
                let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
                w[i - 16]
                    .wrapping_add(s0)
                    .wrapping_add(w[i - 7])
                    .wrapping_add(s1)
            };
            i += 1;
        }
        let mut i = 0;
        while i < 64 {
            w[i] = w[i].wrapping_add(K[i]);
            i += 1;
        }
        w
    }

    /// The padding block after a 64-byte message: 0x80, zeros, the length 512 in bits.
    static PAD_AFTER_64_WK: [u32; 64] = {
        let mut block = [0u32; 16];
        block[0] = 0x8000_0000;
        block[15] = 512;
        schedule_plus_k(block)
    };

    pub fn available() -> bool {
        std::arch::is_x86_feature_detected!("sha")
            && std::arch::is_x86_feature_detected!("sse2")
            && std::arch::is_x86_feature_detected!("ssse3")
            && std::arch::is_x86_feature_detected!("sse4.1")
    }

    /// Byte order of a big-endian 32-bit word in each lane.
    macro_rules! bswap_mask {
        () => {
            _mm_set_epi64x(
                0x0C0D_0E0F_0809_0A0Bu64 as i64,
                0x0405_0607_0001_0203u64 as i64,
            )
        };
    }

    /// Four rounds from four (W + K) words.
    macro_rules! rounds4 {
        ($abef:ident, $cdgh:ident, $wk:expr) => {{
            let wk = $wk;
            $cdgh = _mm_sha256rnds2_epu32($cdgh, $abef, wk);
            $abef = _mm_sha256rnds2_epu32($abef, $cdgh, _mm_shuffle_epi32(wk, 0x0E));
        }};
    }

    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn k4(i: usize) -> __m128i {
        // SAFETY: i < 16, so K[4i..4i + 4] is in bounds; the load is unaligned.
        unsafe { _mm_loadu_si128(K.as_ptr().add(4 * i).cast()) }
    }

    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn schedule(v0: __m128i, v1: __m128i, v2: __m128i, v3: __m128i) -> __m128i {
        let t = _mm_add_epi32(_mm_sha256msg1_epu32(v0, v1), _mm_alignr_epi8(v3, v2, 4));
        _mm_sha256msg2_epu32(t, v3)
    }

    /// A state in the (ABEF, CDGH) lane layout `sha256rnds2` works on.
    #[derive(Clone, Copy)]
    pub struct State(__m128i, __m128i);

    impl State {
        #[inline]
        #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
        pub fn from_words(s: &[u32; 8]) -> State {
            // SAFETY: two unaligned 16-byte loads from a 32-byte array.
            let (dcba, efgh) = unsafe {
                (
                    _mm_loadu_si128(s.as_ptr().cast()),
                    _mm_loadu_si128(s.as_ptr().add(4).cast()),
                )
            };
            let cdab = _mm_shuffle_epi32(dcba, 0xB1);
            let efgh = _mm_shuffle_epi32(efgh, 0x1B);
            State(
                _mm_alignr_epi8(cdab, efgh, 8),
                _mm_blend_epi16(efgh, cdab, 0xF0),
            )
        }

        /// The state as (A B C D, E F G H) lanes: the words of the digest in order.
        #[inline]
        #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
        fn words(self) -> (__m128i, __m128i) {
            let feba = _mm_shuffle_epi32(self.0, 0x1B);
            let dchg = _mm_shuffle_epi32(self.1, 0xB1);
            (
                _mm_blend_epi16(feba, dchg, 0xF0),
                _mm_alignr_epi8(dchg, feba, 8),
            )
        }

        #[inline]
        #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
        pub fn to_words(self) -> [u32; 8] {
            let (dcba, hgef) = self.words();
            let mut out = [0u32; 8];
            // SAFETY: two unaligned 16-byte stores into a 32-byte array.
            unsafe {
                _mm_storeu_si128(out.as_mut_ptr().cast(), dcba);
                _mm_storeu_si128(out.as_mut_ptr().add(4).cast(), hgef);
            }
            out
        }

        /// The digest bytes (big-endian words).
        #[inline]
        #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
        pub fn to_bytes(self) -> [u8; 32] {
            let (dcba, hgef) = self.words();
            let mut out = [0u8; 32];
            // SAFETY: two unaligned 16-byte stores into a 32-byte array.
            unsafe {
                _mm_storeu_si128(
                    out.as_mut_ptr().cast(),
                    _mm_shuffle_epi8(dcba, bswap_mask!()),
                );
                _mm_storeu_si128(
                    out.as_mut_ptr().add(16).cast(),
                    _mm_shuffle_epi8(hgef, bswap_mask!()),
                );
            }
            out
        }

        /// One compression of the message words `w` (lanes in W order).
        #[inline]
        #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
        pub fn compress_words(self, w: [__m128i; 4]) -> State {
            let State(mut abef, mut cdgh) = self;
            let [mut w0, mut w1, mut w2, mut w3] = w;
            // Written out, so that the compiler keeps the schedule in registers.
            macro_rules! step {
                ($i:expr, $a:ident, $b:ident, $c:ident, $d:ident) => {{
                    $a = schedule($a, $b, $c, $d);
                    rounds4!(abef, cdgh, _mm_add_epi32($a, k4($i)));
                }};
            }
            rounds4!(abef, cdgh, _mm_add_epi32(w0, k4(0)));
            rounds4!(abef, cdgh, _mm_add_epi32(w1, k4(1)));
            rounds4!(abef, cdgh, _mm_add_epi32(w2, k4(2)));
            rounds4!(abef, cdgh, _mm_add_epi32(w3, k4(3)));
            step!(4, w0, w1, w2, w3);
            step!(5, w1, w2, w3, w0);
            step!(6, w2, w3, w0, w1);
            step!(7, w3, w0, w1, w2);
            step!(8, w0, w1, w2, w3);
            step!(9, w1, w2, w3, w0);
            step!(10, w2, w3, w0, w1);
            step!(11, w3, w0, w1, w2);
            step!(12, w0, w1, w2, w3);
            step!(13, w1, w2, w3, w0);
            step!(14, w2, w3, w0, w1);
            step!(15, w3, w0, w1, w2);
            State(_mm_add_epi32(abef, self.0), _mm_add_epi32(cdgh, self.1))
        }

        #[inline]
        #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
        pub fn compress(self, block: &[u8; 64]) -> State {
            let p: *const __m128i = block.as_ptr().cast();
            // SAFETY: four unaligned 16-byte loads from a 64-byte array.
            let w = unsafe {
                [
                    _mm_shuffle_epi8(_mm_loadu_si128(p), bswap_mask!()),
                    _mm_shuffle_epi8(_mm_loadu_si128(p.add(1)), bswap_mask!()),
                    _mm_shuffle_epi8(_mm_loadu_si128(p.add(2)), bswap_mask!()),
                    _mm_shuffle_epi8(_mm_loadu_si128(p.add(3)), bswap_mask!()),
                ]
            };
            self.compress_words(w)
        }

        /// One compression of a constant block whose W + K words were computed beforehand.
        #[inline]
        #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
        pub fn compress_precomputed(self, wk: &[u32; 64]) -> State {
            let State(mut abef, mut cdgh) = self;
            for i in 0..16 {
                // SAFETY: i < 16, so wk[4i..4i + 4] is in bounds; the load is unaligned.
                rounds4!(abef, cdgh, unsafe {
                    _mm_loadu_si128(wk.as_ptr().add(4 * i).cast())
                });
            }
            State(_mm_add_epi32(abef, self.0), _mm_add_epi32(cdgh, self.1))
        }
    }

    /// Two independent compressions, their rounds interleaved instruction by instruction, so that
    /// one hides the other's `sha256rnds2` latency.
    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn compress_words_x2(s: [State; 2], w: [[__m128i; 4]; 2]) -> [State; 2] {
        let [State(mut a0, mut c0), State(mut a1, mut c1)] = s;
        let [[mut w00, mut w01, mut w02, mut w03], [mut w10, mut w11, mut w12, mut w13]] = w;
        macro_rules! r2 {
            ($i:expr, $x:expr, $y:expr) => {{
                let kx = _mm_add_epi32($x, k4($i));
                let ky = _mm_add_epi32($y, k4($i));
                c0 = _mm_sha256rnds2_epu32(c0, a0, kx);
                c1 = _mm_sha256rnds2_epu32(c1, a1, ky);
                a0 = _mm_sha256rnds2_epu32(a0, c0, _mm_shuffle_epi32(kx, 0x0E));
                a1 = _mm_sha256rnds2_epu32(a1, c1, _mm_shuffle_epi32(ky, 0x0E));
            }};
        }
        macro_rules! step2 {
            ($i:expr, $a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident) => {{
                $a = schedule($a, $b, $c, $d);
                $e = schedule($e, $f, $g, $h);
                r2!($i, $a, $e);
            }};
        }
        r2!(0, w00, w10);
        r2!(1, w01, w11);
        r2!(2, w02, w12);
        r2!(3, w03, w13);
        step2!(4, w00, w01, w02, w03, w10, w11, w12, w13);
        step2!(5, w01, w02, w03, w00, w11, w12, w13, w10);
        step2!(6, w02, w03, w00, w01, w12, w13, w10, w11);
        step2!(7, w03, w00, w01, w02, w13, w10, w11, w12);
        step2!(8, w00, w01, w02, w03, w10, w11, w12, w13);
        step2!(9, w01, w02, w03, w00, w11, w12, w13, w10);
        step2!(10, w02, w03, w00, w01, w12, w13, w10, w11);
        step2!(11, w03, w00, w01, w02, w13, w10, w11, w12);
        step2!(12, w00, w01, w02, w03, w10, w11, w12, w13);
        step2!(13, w01, w02, w03, w00, w11, w12, w13, w10);
        step2!(14, w02, w03, w00, w01, w12, w13, w10, w11);
        step2!(15, w03, w00, w01, w02, w13, w10, w11, w12);
        [
            State(_mm_add_epi32(a0, s[0].0), _mm_add_epi32(c0, s[0].1)),
            State(_mm_add_epi32(a1, s[1].0), _mm_add_epi32(c1, s[1].1)),
        ]
    }

    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn compress_precomputed_x2(s: [State; 2], wk: &[u32; 64]) -> [State; 2] {
        let [State(mut a0, mut c0), State(mut a1, mut c1)] = s;
        for i in 0..16 {
            // SAFETY: i < 16, so wk[4i..4i + 4] is in bounds; the load is unaligned.
            let k = unsafe { _mm_loadu_si128(wk.as_ptr().add(4 * i).cast()) };
            let k_hi = _mm_shuffle_epi32(k, 0x0E);
            c0 = _mm_sha256rnds2_epu32(c0, a0, k);
            c1 = _mm_sha256rnds2_epu32(c1, a1, k);
            a0 = _mm_sha256rnds2_epu32(a0, c0, k_hi);
            a1 = _mm_sha256rnds2_epu32(a1, c1, k_hi);
        }
        [
            State(_mm_add_epi32(a0, s[0].0), _mm_add_epi32(c0, s[0].1)),
            State(_mm_add_epi32(a1, s[1].0), _mm_add_epi32(c1, s[1].1)),
        ]
    }

    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn load_block(left: &[u8; 32], right: &[u8; 32]) -> [__m128i; 4] {
        let (l, r): (*const __m128i, *const __m128i) =
            (left.as_ptr().cast(), right.as_ptr().cast());
        // SAFETY: two unaligned 16-byte loads from each 32-byte array.
        unsafe {
            [
                _mm_shuffle_epi8(_mm_loadu_si128(l), bswap_mask!()),
                _mm_shuffle_epi8(_mm_loadu_si128(l.add(1)), bswap_mask!()),
                _mm_shuffle_epi8(_mm_loadu_si128(r), bswap_mask!()),
                _mm_shuffle_epi8(_mm_loadu_si128(r.add(1)), bswap_mask!()),
            ]
        }
    }

    /// Two independent merkle nodes at once.
    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn merkle_parent_x2_inner(nodes: [(&[u8; 32], &[u8; 32]); 2]) -> [[u8; 32]; 2] {
        let iv = State::from_words(&IV);
        let first = compress_words_x2(
            [iv, iv],
            [
                load_block(nodes[0].0, nodes[0].1),
                load_block(nodes[1].0, nodes[1].1),
            ],
        );
        let first = compress_precomputed_x2(first, &PAD_AFTER_64_WK);
        let pad2 = _mm_set_epi32(0, 0, 0, 0x8000_0000u32 as i32);
        let len = _mm_set_epi32(256, 0, 0, 0);
        let (x0, x1) = first[0].words();
        let (y0, y1) = first[1].words();
        let [p, q] = compress_words_x2([iv, iv], [[x0, x1, pad2, len], [y0, y1, pad2, len]]);
        [p.to_bytes(), q.to_bytes()]
    }

    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn fold_x2_inner(mut nodes: [[u8; 32]; 2], branches: [&[[u8; 32]]; 2]) -> [[u8; 32]; 2] {
        for (s0, s1) in branches[0].iter().zip(branches[1]) {
            nodes = merkle_parent_x2_inner([(&nodes[0], s0), (&nodes[1], s1)]);
        }
        nodes
    }

    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn compress_blocks_inner(state: &mut [u32; 8], blocks: &[u8]) {
        let mut s = State::from_words(state);
        for block in blocks.chunks_exact(64) {
            s = s.compress(block.try_into().expect("64 bytes"));
        }
        *state = s.to_words();
    }

    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn pad_blocks_inner(state: &mut [u32; 8], n: usize) {
        let mut s = State::from_words(state);
        for _ in 0..n {
            s = s.compress_precomputed(&PAD_AFTER_64_WK);
        }
        *state = s.to_words();
    }

    /// Double SHA-256 of two 32-byte nodes, state in registers throughout.
    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn merkle_parent_inner(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
        let iv = State::from_words(&IV);
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(left);
        block[32..].copy_from_slice(right);
        let first = iv.compress(&block).compress_precomputed(&PAD_AFTER_64_WK);
        // The second hash's message is the first digest's words, then padding for 256 bits.
        let (abcd, efgh) = first.words();
        iv.compress_words([
            abcd,
            efgh,
            _mm_set_epi32(0, 0, 0, 0x8000_0000u32 as i32),
            _mm_set_epi32(256, 0, 0, 0),
        ])
        .to_bytes()
    }

    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn fold_inner(mut node: [u8; 32], branch: &[[u8; 32]]) -> [u8; 32] {
        for sibling in branch {
            node = merkle_parent_inner(&node, sibling);
        }
        node
    }

    /// Blocks per call of the `rounds_only` functions: a chain long enough that criterion's
    /// back-to-back iterations, each independent of the last, cannot overlap much and turn a
    /// latency measurement into a throughput one.
    pub const BLOCKS: usize = 16;

    /// `BLOCKS` blocks' worth of dependent `sha256rnds2` (32 per block), nothing else.
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn rounds_only_inner(seed: u32) -> i32 {
        let s = seed as i32;
        let mut abef = _mm_set_epi32(s, s ^ 1, s ^ 2, s ^ 3);
        let mut cdgh = _mm_set_epi32(s ^ 4, s ^ 5, s ^ 6, s ^ 7);
        let wk = _mm_set_epi32(1, 2, 3, 4);
        for _ in 0..16 * BLOCKS {
            cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk);
            abef = _mm_sha256rnds2_epu32(abef, cdgh, wk);
        }
        _mm_cvtsi128_si32(abef) ^ _mm_cvtsi128_si32(cdgh)
    }

    /// Two independent copies of [`rounds_only_inner`], interleaved instruction by instruction.
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn rounds_only_x2_inner(seed: u32) -> i32 {
        let (s, t) = (seed as i32, seed.wrapping_add(8) as i32);
        let mut a1 = _mm_set_epi32(s, s ^ 1, s ^ 2, s ^ 3);
        let mut c1 = _mm_set_epi32(s ^ 4, s ^ 5, s ^ 6, s ^ 7);
        let mut a2 = _mm_set_epi32(t, t ^ 1, t ^ 2, t ^ 3);
        let mut c2 = _mm_set_epi32(t ^ 4, t ^ 5, t ^ 6, t ^ 7);
        let wk = _mm_set_epi32(1, 2, 3, 4);
        for _ in 0..16 * BLOCKS {
            c1 = _mm_sha256rnds2_epu32(c1, a1, wk);
            c2 = _mm_sha256rnds2_epu32(c2, a2, wk);
            a1 = _mm_sha256rnds2_epu32(a1, c1, wk);
            a2 = _mm_sha256rnds2_epu32(a2, c2, wk);
        }
        _mm_cvtsi128_si32(a1)
            ^ _mm_cvtsi128_si32(c1)
            ^ _mm_cvtsi128_si32(a2)
            ^ _mm_cvtsi128_si32(c2)
    }

    // Safe entry points: each checks the CPU first.

    pub fn compress_blocks(state: &mut [u32; 8], blocks: &[u8]) {
        assert!(available() && blocks.len().is_multiple_of(64));
        // SAFETY: the CPU has the features (checked above).
        unsafe { compress_blocks_inner(state, blocks) }
    }

    pub fn pad_blocks(state: &mut [u32; 8], n: usize) {
        assert!(available());
        // SAFETY: the CPU has the features (checked above).
        unsafe { pad_blocks_inner(state, n) }
    }

    pub fn merkle_parent(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
        assert!(available());
        // SAFETY: the CPU has the features (checked above).
        unsafe { merkle_parent_inner(left, right) }
    }

    pub fn fold(node: [u8; 32], branch: &[[u8; 32]]) -> [u8; 32] {
        assert!(available());
        // SAFETY: the CPU has the features (checked above).
        unsafe { fold_inner(node, branch) }
    }

    /// Two folds of equally long branches, hashed in lockstep.
    pub fn fold_x2(nodes: [[u8; 32]; 2], branches: [&[[u8; 32]]; 2]) -> [[u8; 32]; 2] {
        assert!(available() && branches[0].len() == branches[1].len());
        // SAFETY: the CPU has the features (checked above).
        unsafe { fold_x2_inner(nodes, branches) }
    }

    pub fn rounds_only(seed: u32) -> i32 {
        assert!(available());
        // SAFETY: the CPU has the features (checked above).
        unsafe { rounds_only_inner(seed) }
    }

    pub fn rounds_only_x2(seed: u32) -> i32 {
        assert!(available());
        // SAFETY: the CPU has the features (checked above).
        unsafe { rounds_only_x2_inner(seed) }
    }
}

/// splitmix64, for deterministic inputs.
#[cfg(target_arch = "x86_64")]
fn pseudo_random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) as u8
        })
        .collect()
}

#[cfg(target_arch = "x86_64")]
fn node(seed: u64) -> [u8; 32] {
    pseudo_random_bytes(seed, 32).try_into().expect("32 bytes")
}

#[cfg(target_arch = "x86_64")]
fn bench_sha_ni(c: &mut Criterion) {
    use bitcoin::hashes::{sha256, Hash};

    if !shani::available() {
        eprintln!("no SHA-NI: skipping the sha_ni benches");
        return;
    }

    // Checks, before any timing.
    assert_eq!(
        shani::rounds_only_x2(1),
        shani::rounds_only(1) ^ shani::rounds_only(9)
    );
    let blocks = pseudo_random_bytes(1, 16 * 64);
    {
        // The prototype compression, finished by hand, is SHA-256.
        let mut state = shani::IV;
        shani::compress_blocks(&mut state, &blocks);
        let mut last = [0u8; 64];
        last[0] = 0x80;
        last[56..].copy_from_slice(&(16u64 * 64 * 8).to_be_bytes());
        shani::compress_blocks(&mut state, &last);
        let digest: Vec<u8> = state.iter().flat_map(|w| w.to_be_bytes()).collect();
        assert_eq!(digest, sha256::Hash::hash(&blocks).to_byte_array());
        // A precomputed padding block is the same as the padding block compressed.
        let mut pad = [0u8; 64];
        pad[0] = 0x80;
        pad[62] = 0x02;
        let (mut a, mut b) = (shani::IV, shani::IV);
        shani::compress_blocks(&mut a, &pad);
        shani::pad_blocks(&mut b, 1);
        assert_eq!(a, b);
    }
    for seed in 0..64 {
        let (l, r) = (node(2 * seed), node(2 * seed + 1));
        assert_eq!(
            shani::merkle_parent(&l, &r),
            sluice_core::hash::merkle_parent(&l, &r)
        );
    }
    let branch: Vec<[u8; 32]> = (100..112).map(node).collect();
    let leaf = node(99);
    assert_eq!(
        shani::fold(leaf, &branch),
        sluice_core::chain::merkle::fold(leaf, &branch)
    );
    let other_branch: Vec<[u8; 32]> = (200..212).map(node).collect();
    let other_leaf = node(199);
    assert_eq!(
        shani::fold_x2([leaf, other_leaf], [&branch, &other_branch]),
        [
            sluice_core::chain::merkle::fold(leaf, &branch),
            sluice_core::chain::merkle::fold(other_leaf, &other_branch)
        ]
    );
    let (left, right) = (node(7), node(8));

    let mut group = c.benchmark_group("sha_ni");
    group.bench_function("rounds_only_16_blocks", |b| {
        b.iter(|| black_box(shani::rounds_only(black_box(1))))
    });
    group.bench_function("rounds_only_16_blocks_x2_interleaved", |b| {
        b.iter(|| black_box(shani::rounds_only_x2(black_box(1))))
    });
    group.bench_function("compress_16_blocks_prototype", |b| {
        b.iter(|| {
            let mut state = shani::IV;
            shani::compress_blocks(&mut state, black_box(&blocks));
            black_box(state)
        })
    });
    group.bench_function("pad_block_precomputed_16", |b| {
        b.iter(|| {
            let mut state = black_box(shani::IV);
            shani::pad_blocks(&mut state, 16);
            black_box(state)
        })
    });
    group.bench_function("merkle_parent_prototype", |b| {
        b.iter(|| black_box(shani::merkle_parent(black_box(&left), black_box(&right))))
    });
    group.bench_function("merkle_fold_12_levels_prototype", |b| {
        b.iter(|| black_box(shani::fold(black_box(leaf), black_box(&branch))))
    });
    group.bench_function("merkle_fold_12_levels_prototype_x2_interleaved", |b| {
        b.iter(|| {
            black_box(shani::fold_x2(
                black_box([leaf, other_leaf]),
                black_box([&branch, &other_branch]),
            ))
        })
    });
    group.finish();
}

#[cfg(not(target_arch = "x86_64"))]
fn bench_sha_ni(_: &mut Criterion) {}

criterion_group!(benches, bench_sha_ni);
criterion_main!(benches);
