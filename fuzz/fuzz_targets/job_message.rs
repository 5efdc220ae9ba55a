//! The job message engines read from Redis (`sluice_layout::job_message`): bytes from whoever can publish on the
//! fleet's channel, so decoding must never panic, and must be exact.
//!
//! Checks, with one fixed fleet key: `JobMessage::decode` on the input as it is returns a message
//! or an error, never a panic (random bytes almost never carry a good tag). The input is then
//! signed as a message body (`job_message::seal`), so the parser behind the tag sees every input: decoding
//! that never panics; a decoded message encodes back to exactly the signed bytes (the format has
//! one encoding per message); and its parts either build a `Job` or are refused with an error,
//! never a panic. Seeds are bodies: a whole message without its tag.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_core::chain::Job;
use sluice_core::units::JobId;
use sluice_layout::job_message::{seal, FleetKey, JobMessage};

const KEY: &[u8; 32] = b"sluice fuzz target fleet key 32b";

fuzz_target!(|data: &[u8]| {
    let key = FleetKey::new(*KEY).expect("32 bytes");
    if let Ok(message) = JobMessage::decode(data, &key) {
        assert_eq!(
            message.encode(&key),
            data,
            "decode then encode is the identity"
        );
    }
    let signed = seal(&key, data);
    let Ok(message) = JobMessage::decode(&signed, &key) else {
        return;
    };
    assert_eq!(
        message.encode(&key),
        signed,
        "decode then encode is the identity"
    );
    let _ = Job::new(JobId(1), message.parts, message.clean);
});
