//! Helpers for the control-plane tests (`tests/plane_*.rs`): talking to engines through Redis
//! the way `sluicectl` does.

use std::time::Duration;

use super::engine::eventually;
use super::fleet::PREFIX;

/// Sends a command to an engine the way sluicectl does and waits for its acknowledgement.
pub fn command(
    con: &mut redis::Connection,
    engine: &str,
    cmd: &str,
    id: &str,
) -> serde_json::Value {
    let _: String = redis::cmd("XADD")
        .arg(sluice_layout::Keys::new(PREFIX).commands(engine))
        .arg("*")
        .arg("id")
        .arg(id)
        .arg("cmd")
        .arg(cmd)
        .arg("arg")
        .arg("")
        .query(con)
        .unwrap();
    let ack: String = eventually(Duration::from_secs(5), || {
        redis::cmd("GET")
            .arg(sluice_layout::Keys::new(PREFIX).ack(id))
            .query::<Option<String>>(con)
            .unwrap()
    })
    .unwrap_or_else(|| panic!("no acknowledgement of {cmd}"));
    serde_json::from_str(&ack).unwrap()
}
