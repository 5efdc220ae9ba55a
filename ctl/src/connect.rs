//! Opening the connection to the fleet's Redis, the check that the fleet under a prefix speaks
//! this build's layout, and the clock every age and window is measured by.

use std::time::Duration;

use sluice_layout::{Keys, LAYOUT_VERSION};

use crate::error::{CtlError, Result};

/// A hung Redis must not hang an operator's terminal (or a script) for long.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(3);

/// Refuses a prefix without a fleet or with another layout version. Unlike a Sluice process
/// sluicectl never writes `P:layout`, so pointing it at the wrong prefix changes nothing. The keys
/// it writes, only once this check has passed, are an engine's command stream `P:cmd:ENGINE`
/// (`session kick`, `engine drain|undrain|reload`), the policies `P:policies` (`policy set|rm`)
/// and the lease's steering `P:jm:control` (`jobmanager pause|resume|promote`).
pub fn check_layout(redis: &mut Redis, keys: &Keys) -> Result<()> {
    let found: Option<String> = redis.query(redis::cmd("GET").arg(keys.layout()))?;
    match found {
        None => Err(CtlError::NoFleet {
            prefix: keys.prefix().to_owned(),
        }),
        Some(v) if v == LAYOUT_VERSION.to_string() => Ok(()),
        Some(found) => Err(CtlError::Layout {
            prefix: keys.prefix().to_owned(),
            found,
        }),
    }
}

/// A connection and the URL it came from, so later failures can name it.
pub struct Redis {
    pub con: redis::Connection,
    pub url: String,
}

impl Redis {
    pub fn open(url: &str) -> Result<Redis> {
        let unreachable = |e: redis::RedisError| CtlError::Unreachable {
            url: url.to_owned(),
            error: e.to_string(),
        };
        // A URL Redis' client cannot parse is the operator's typo, not an outage.
        let client = redis::Client::open(url).map_err(|e| {
            CtlError::Usage(format!(
                "{:?} is not a Redis URL ({e}): use redis://HOST:PORT[/DB] or unix:///PATH",
                redact(url)
            ))
        })?;
        let con = client
            .get_connection_with_timeout(REDIS_TIMEOUT)
            .map_err(unreachable)?;
        con.set_read_timeout(Some(REDIS_TIMEOUT))
            .map_err(unreachable)?;
        con.set_write_timeout(Some(REDIS_TIMEOUT))
            .map_err(unreachable)?;
        Ok(Redis {
            con,
            url: url.to_owned(),
        })
    }

    /// Runs one command, classifying its failure.
    pub fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> Result<T> {
        cmd.query(&mut self.con)
            .map_err(|e| CtlError::from_redis(&self.url, e))
    }

    /// Runs a pipeline, classifying its failure.
    pub fn query_pipe<T: redis::FromRedisValue>(&mut self, pipe: &redis::Pipeline) -> Result<T> {
        pipe.query(&mut self.con)
            .map_err(|e| CtlError::from_redis(&self.url, e))
    }

    /// Now, in ms, by Redis's clock (`TIME`). Expiry scores and heartbeats are written by the
    /// fleet's clocks; Redis's is the one reference every operator shares, so a laptop with a
    /// skewed clock still sees the same live services and windows as everyone else.
    pub fn now_ms(&mut self) -> Result<u64> {
        let (secs, micros): (u64, u64) = self.query(&redis::cmd("TIME"))?;
        Ok(secs * 1000 + micros / 1000)
    }
}

/// The URL without its password, for messages that may land in logs or tickets.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The last `@` ends the user info: a password may hold `/`, `@` or `:` (the engine's
    // `redact::url` reads URLs the same way).
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_a_message() {
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(
            redact("redis://:s3cret@10.0.0.1:6379/2"),
            "redis://:***@10.0.0.1:6379/2"
        );
        assert_eq!(
            redact("redis://ops:s3cret@host:6379"),
            "redis://ops:***@host:6379"
        );
        assert_eq!(redact("redis://ops@host:6379"), "redis://ops@host:6379");
        assert_eq!(
            redact("redis://ops:a/b@c:d@host:6379/0"),
            "redis://ops:***@host:6379/0",
            "a password holding / @ and :"
        );
        assert_eq!(redact("unix:///run/redis.sock"), "unix:///run/redis.sock");
    }
}
