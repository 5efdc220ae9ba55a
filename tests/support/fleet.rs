//! A fleet on one test Redis: `sluice jobmanager` and `sluice stratum` processes under one prefix,
//! each with its own configuration file and share spool. The one place the fleet tests' settings
//! live, so the test files cannot drift apart.

use std::time::Duration;

use super::engine::{eventually, EngineProcess};
use super::redis_server::RedisServer;

/// The key prefix every fleet test uses.
pub const PREFIX: &str = "pool7";

/// The key names under [`PREFIX`].
pub fn keys() -> sluice::plane::Keys {
    sluice::plane::Keys::new(PREFIX)
}

/// The fleet key (`redis.fleet_key`) every test role signs and checks job messages with.
pub const FLEET_KEY: &str = "sluice-test-fleet-key-0123456789abcdef";

/// [`FLEET_KEY`] as the plane takes it, for tests that sign job messages of their own.
pub fn fleet_key() -> sluice::plane::FleetKey {
    sluice::plane::FleetKey::new(FLEET_KEY).unwrap()
}

/// `sluice ROLE` on this Redis under the test prefix, with the test config and `extra` flags.
pub fn role(redis: &RedisServer, role: &str, id: &str, extra: &[&str]) -> EngineProcess {
    role_with(redis, role, id, "", extra)
}

/// As [`role`], with `more` appended to the test configuration (TOML sections of its own).
pub fn role_with(
    redis: &RedisServer,
    role: &str,
    id: &str,
    more: &str,
    extra: &[&str],
) -> EngineProcess {
    let url = redis.url();
    let config = config_file_with(more);
    let mut args = vec![
        "--redis",
        url.as_str(),
        "--prefix",
        PREFIX,
        "--id",
        id,
        "--config",
        config.as_str(),
    ];
    args.extend_from_slice(extra);
    EngineProcess::start_role(role, &args)
}

/// A jobmanager on its own simulated chain: blocks only from miners, every share at difficulty
/// 1e-6 has a fair chance to be one.
pub fn jobmanager(redis: &RedisServer, id: &str) -> EngineProcess {
    role(
        redis,
        "jobmanager",
        id,
        &["--block-interval", "0", "--network-difficulty", "0.00001"],
    )
}

/// A jobmanager whose chain never moves during a test: no block interval and a network
/// difficulty no test share reaches, so the job a share was found on stays current.
pub fn still_jobmanager(redis: &RedisServer, id: &str) -> EngineProcess {
    role(
        redis,
        "jobmanager",
        id,
        &["--block-interval", "0", "--network-difficulty", "1000"],
    )
}

pub fn stratum(redis: &RedisServer, id: &str) -> EngineProcess {
    role(redis, "stratum", id, &[])
}

/// The test configuration in a file of its own (see [`config_file_with`]).
pub fn config_file() -> String {
    config_file_with("")
}

/// A lease of 1 s and a service TTL of 1 s keep the tests short; the defaults are 2 s and 10 s.
/// Each process gets its own file and share spool, and the fleet key; `more` is appended.
pub fn config_file_with(more: &str) -> String {
    let dir = sluice_testkit::TempDir::new("plane").keep();
    let path = dir.join("sluice.toml");
    std::fs::write(
        &path,
        format!("[redis]\nlease_secs = 1.0\nservice_ttl_secs = 1.0\nfleet_key = \"{FLEET_KEY}\"\n[share_log]\nbatch_interval_ms = 50\nspool_path = \"{}\"\n[engine]\nthreads = 1\npin_threads = false\n[vardiff]\nenabled = false\n[[listeners]]\naddress = \"127.0.0.1:0\"\nstart_difficulty = 0.000001\nmin_difficulty = 0.000001\n[admin]\nlisten = \"127.0.0.1:0\"\n{more}", dir.join("shares.spool").display()),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

/// `ID|TOKEN` of the leading jobmanager.
pub fn leader(con: &mut redis::Connection) -> Option<String> {
    redis::cmd("GET")
        .arg(keys().leader())
        .query::<Option<String>>(con)
        .unwrap()
}

/// Waits for a leader and returns `ID|TOKEN`.
pub fn wait_for_leader(con: &mut redis::Connection) -> String {
    eventually(Duration::from_secs(5), || leader(con)).expect("a jobmanager leads")
}

/// The registry's live services, read by score as sluicectl does.
pub fn live_services(con: &mut redis::Connection) -> Vec<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    redis::cmd("ZRANGEBYSCORE")
        .arg(keys().services())
        .arg(now)
        .arg("+inf")
        .query(con)
        .unwrap()
}

type Entries = Vec<(String, Vec<(String, String)>)>;

/// Every entry of `P:shares`, as field maps.
pub fn shares_in_stream(
    con: &mut redis::Connection,
) -> Vec<std::collections::HashMap<String, String>> {
    let entries: Entries = redis::cmd("XRANGE")
        .arg(keys().shares())
        .arg("-")
        .arg("+")
        .query(con)
        .unwrap();
    entries
        .into_iter()
        .map(|(_, fields)| fields.into_iter().collect())
        .collect()
}
