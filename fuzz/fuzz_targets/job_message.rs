//! The job message engines read from Redis (`plane::wire`): bytes from whoever can publish on the
//! fleet's channel, so decoding must never panic, and must be exact.
//!
//! Checks: `JobMessage::decode` on any input returns a message or an error, never a panic; a decoded
//! message encodes back to exactly the input bytes (the format has one encoding per message); and
//! its parts either build a `Job` or are refused with an error, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::chain::Job;
use sluice::plane::wire::JobMessage;
use sluice::units::JobId;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = JobMessage::decode(data) else {
        return;
    };
    assert_eq!(message.encode(), data, "decode then encode is the identity");
    let _ = Job::new(JobId(1), message.parts, message.clean);
});
