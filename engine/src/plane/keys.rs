//! The Redis layout's check: a process writes the version to `{P}:layout` if the prefix is new and
//! refuses a different one, or a layout-3 fleet's `P:layout` (its keys had no hash tag). The layout itself (every key, its type, writer, reader and bound, and
//! [`LAYOUT_VERSION`]) is written once in the `sluice-layout` crate, shared with sluicectl.

use redis::Connection;

pub use sluice_layout::keys::{Keys, BLOCK_STREAM_MAXLEN, LATEST_JOB_TTL_MS, LAYOUT_VERSION};

/// Why a process will not use this Redis.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("Redis at this prefix holds layout version {found}, this build speaks {LAYOUT_VERSION}: upgrade every process of the fleet together, or use another prefix")]
    Version { found: String },
    #[error("Redis holds a layout-3 fleet under redis.prefix {prefix:?} (key {key:?}: keys without the {{prefix}} hash tag), which this build (layout {LAYOUT_VERSION}) would not see: stop that fleet and delete its keys, or give this fleet another redis.prefix")]
    Version3 { prefix: String, key: String },
    #[error("cannot reach Redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Writes the layout version if the prefix is new, and refuses a different one.
pub fn check_layout(con: &mut Connection, keys: &Keys) -> Result<(), LayoutError> {
    let current: Option<String> = redis::cmd("GET").arg(keys.layout()).query(con)?;
    if current.is_none() && holds_layout_v3(con, keys)? {
        return Err(LayoutError::Version3 {
            prefix: keys.prefix().to_owned(),
            key: keys.layout_v3(),
        });
    }
    let _: Option<String> = redis::cmd("SET")
        .arg(keys.layout())
        .arg(LAYOUT_VERSION)
        .arg("NX")
        .query(con)?;
    let found: String = redis::cmd("GET").arg(keys.layout()).query(con)?;
    if found == LAYOUT_VERSION.to_string() {
        Ok(())
    } else {
        Err(LayoutError::Version { found })
    }
}

/// Whether the prefix holds a layout-3 fleet. Only read when the fleet is new under the tagged
/// names. The old key is in another slot: on a Cluster of several shards Redis may answer with a
/// redirect, which means no such fleet (layout 3 could not run on such a Cluster: its scripts
/// crossed slots). An ACL without the old key's pattern (deploy/redis/users.acl grants it, read
/// only) cannot tell, and must not stop a new fleet: NOPERM is no old fleet either.
fn holds_layout_v3(con: &mut Connection, keys: &Keys) -> Result<bool, LayoutError> {
    match redis::cmd("EXISTS")
        .arg(keys.layout_v3())
        .query::<bool>(con)
    {
        Ok(found) => Ok(found),
        Err(e)
            if matches!(
                e.kind(),
                redis::ErrorKind::Server(
                    redis::ServerErrorKind::Moved | redis::ServerErrorKind::Ask
                )
            ) || e.code() == Some("NOPERM") =>
        {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plane::test_redis::TestRedis;

    #[test]
    fn a_new_prefix_is_written_and_a_layout_3_fleet_is_refused() {
        let redis = TestRedis::start();
        let mut con = redis.con();
        let keys = Keys::new("fresh");
        check_layout(&mut con, &keys).unwrap();
        let v: String = redis::cmd("GET")
            .arg(keys.layout())
            .query(&mut con)
            .unwrap();
        assert_eq!(v, LAYOUT_VERSION.to_string());
        check_layout(&mut con, &keys).unwrap();

        let old = Keys::new("old");
        let _: () = redis::cmd("SET")
            .arg(old.layout_v3())
            .arg(3)
            .query(&mut con)
            .unwrap();
        let err = check_layout(&mut con, &old).unwrap_err().to_string();
        assert!(
            err.contains("layout-3 fleet") && err.contains("redis.prefix"),
            "{err}"
        );
        let new: Option<String> = redis::cmd("GET").arg(old.layout()).query(&mut con).unwrap();
        assert_eq!(new, None, "nothing written under the new names");
    }
}
