//! Randomness from the operating system, for the ids nobody may guess.

/// A random session id (the subscription id), from the operating system: 64 bits nobody can
/// guess from another session's id or extranonce1.
pub fn random_session_id() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom writes at most `b.len()` bytes into the buffer we own.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    assert_eq!(n, 8, "the OS random source failed");
    u64::from_ne_bytes(b)
}
