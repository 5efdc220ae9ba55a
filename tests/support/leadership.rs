//! What the leadership tests (`tests/plane_leadership.rs`, `tests/fencing.rs`) share: the lease's
//! fencing token, the latest job and the job channel as engines read them, and what a miner sees
//! while the leader changes or someone publishes work of their own.

use std::time::Duration;

use serde_json::Value;
use sluice_layout::job_message::JobMessage;

use super::engine::eventually;
use super::fleet::{fleet_key, keys};
use super::miner::Miner;

/// The prev_hash of stale or forged work a test publishes (the same bytes in the notify's
/// word-swapped order), which no miner may ever be given.
pub const FORGED_PREV: [u8; 32] = [0x5a; 32];

/// The fencing token of a lease value `ID|TOKEN`.
pub fn token_of(lease: &str) -> u64 {
    lease.rsplit('|').next().unwrap().parse().unwrap()
}

/// `P:job:latest`, the signed job message a starting engine takes first.
pub fn latest_job(con: &mut redis::Connection) -> Option<Vec<u8>> {
    redis::cmd("GET")
        .arg(keys().latest_job())
        .query(con)
        .unwrap()
}

/// The latest job, decoded with the fleet key (to publish an altered copy).
pub fn latest_job_message(con: &mut redis::Connection) -> JobMessage {
    let bytes = latest_job(con).expect("the leader's latest job");
    JobMessage::decode(&bytes, &fleet_key()).unwrap()
}

/// Publishes `message` on `P:jobs`, as a leader does (or anyone who can write to Redis).
pub fn publish_job(con: &mut redis::Connection, message: &[u8]) {
    let _: i64 = redis::cmd("PUBLISH")
        .arg(keys().jobs_channel())
        .arg(message)
        .query(con)
        .unwrap();
}

/// The miner's next `mining.notify`, if one comes within `within`.
pub fn next_work_within(miner: &mut Miner, within: Duration) -> Option<Value> {
    eventually(within, || {
        miner.wait_for("mining.notify", Duration::from_millis(100))
    })
}

/// Whether clean work (`mining.notify` with `params[8] == true`) reaches the miner within
/// `within`.
pub fn clean_work_within(miner: &mut Miner, within: Duration) -> bool {
    eventually(within, || {
        let n = miner.wait_for("mining.notify", Duration::from_millis(100))?;
        (n["params"][8] == true).then_some(())
    })
    .is_some()
}

/// Each `mining.notify` the miner gets until none comes for `quiet`, with the prev_hash it then
/// works on.
pub fn works_until_quiet(miner: &mut Miner, quiet: Duration) -> Vec<(Value, [u8; 32])> {
    let mut works = Vec::new();
    while let Some(n) = miner.wait_for("mining.notify", quiet) {
        works.push((n, miner.work.as_ref().unwrap().prev_hash));
    }
    works
}
