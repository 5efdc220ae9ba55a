//! The share path allocates nothing: parsing a `mining.submit`, validating it (full and cached merkle
//! paths), and writing the reply into a buffer that has reached its working size. Only the duplicate
//! set may allocate, when it grows.
//!
//! A counting global allocator counts this thread's allocations only, so other tests running in
//! parallel do not disturb the count.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use sluice::share::{DuplicateLimits, Reject, SessionShares, ShareRules};
use sluice::stratum::{message, parse, Request};
use sluice::units::{Extranonce1, Target, VersionMask};
use sluice_stratum::share::RejectAnswer;
use sluice_stratum::share::ValidateSubmit;
use support::*;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is passed on unchanged to the system allocator, which keeps GlobalAlloc's
// contract; counting touches only a const-initialised thread-local cell, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // SAFETY: our caller keeps `alloc`'s contract (a non-zero-sized layout), as System needs.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, that is from System, with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // SAFETY: `ptr` came from System with `layout`, and our caller keeps `realloc`'s contract
        // on `new_size`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCATIONS.with(Cell::get);
    let out = f();
    (out, ALLOCATIONS.with(Cell::get) - before)
}

#[test]
fn share_path_allocates_nothing() {
    let job = template_job(1, PREV_A, HARD_BITS, CURTIME, 100);
    let en1 = Extranonce1::new(&[1, 2, 3, 4]).unwrap();
    let mut shares = SessionShares::new(DuplicateLimits::default());
    let mut out = Vec::with_capacity(512);
    let hard = ShareRules {
        version_mask: VersionMask(0x1fff_e000),
        now: CURTIME,
        share_target: Target::from_le_bytes([0; 32]),
    };
    let lines: Vec<String> = (0..64u32)
        .map(|n| {
            format!(
                r#"{{"id":{n},"method":"mining.submit","params":["bc1qworker.rig-{n}","1","{:016x}","{CURTIME:08x}","{:08x}","{:08x}"]}}"#,
                n / 8,
                n.wrapping_mul(2_654_435_761),
                (n << 13) & 0x1fff_e000,
            )
        })
        .collect();

    for line in &lines {
        let (_, n) = allocations(|| {
            let message = parse(line.as_bytes()).unwrap();
            let Request::Submit(submit) = &message.request else {
                unreachable!()
            };
            // Full path when extranonce2 changes (every 8th line), cached otherwise.
            let verdict = shares.validate_submit(&job, false, &en1, submit, &hard);
            assert_eq!(verdict.result(), Err(Reject::LowDifficulty));
            out.clear();
            message::write_error(&mut out, message.id, Reject::LowDifficulty.stratum_error());
        });
        assert_eq!(n, 0, "allocations for {line}");
    }
    assert_eq!(shares.merkle_cache_hits(), 56);

    // Accepted shares allocate only when the duplicate set grows.
    let easy = ShareRules {
        share_target: Target::MAX,
        ..hard
    };
    let ((), n) = allocations(|| {
        for line in &lines {
            let message = parse(line.as_bytes()).unwrap();
            let Request::Submit(submit) = &message.request else {
                unreachable!()
            };
            assert_eq!(
                shares
                    .validate_submit(&job, false, &en1, submit, &easy)
                    .result(),
                Ok(())
            );
        }
    });
    assert!(
        n <= 8,
        "{n} allocations for 64 accepted shares: more than the set's growth"
    );
}
