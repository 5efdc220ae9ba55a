//! Opening the connection to the fleet's Redis (over TLS for `rediss://`, with the files of
//! `--redis-ca-file`, `--redis-cert-file` and `--redis-key-file`), or to the master that
//! `--sentinel` names (`--master-name`), the check that the fleet under a prefix speaks this
//! build's layout, and the clock every age and window is measured by.

use std::path::PathBuf;
use std::time::Duration;

use sluice_layout::{Keys, LAYOUT_VERSION};

use crate::error::{CtlError, Result};

/// A hung Redis must not hang an operator's terminal (or a script) for long.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(3);

/// Refuses a prefix without a fleet or with another layout version. Unlike a Sluice process
/// sluicectl never writes `{P}:layout`, so pointing it at the wrong prefix changes nothing. The
/// keys it writes, only once this check has passed, are an engine's command stream
/// `{P}:cmd:ENGINE` (`session kick`, `engine drain|undrain|reload`), the policies `{P}:policies`
/// (`policy set|rm`) and the lease's steering `{P}:jm:control` (`jobmanager pause|resume|promote`).
/// A prefix with no fleet under today's names but a layout-3 fleet's `P:layout` (keys before the
/// hash tag) is refused as layout 3, not as "no fleet".
pub fn check_layout(redis: &mut Redis, keys: &Keys) -> Result<()> {
    sluice_layout::check_prefix(keys.prefix())
        .map_err(|e| CtlError::Usage(format!("--prefix (SLUICE_PREFIX) {e}")))?;
    let found: Option<String> = redis.query(redis::cmd("GET").arg(keys.layout()))?;
    // The old key may be outside the user's ACL patterns or on another shard: no answer is no
    // old fleet.
    let found = found.or_else(|| {
        redis
            .query::<Option<String>>(redis::cmd("GET").arg(keys.layout_v3()))
            .ok()
            .flatten()
    });
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

/// The PEM files the TLS flags name; all unset, `rediss://` trusts the public roots compiled in
/// (the engine's `redis.tls_*` keys, under the flags' names).
#[derive(Debug, Default, Clone)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    fn is_empty(&self) -> bool {
        self.ca.is_none() && self.cert.is_none() && self.key.is_none()
    }

    /// The files read and checked, as the `redis` crate takes them: a file that would be ignored
    /// (a URL without TLS), is unreadable or holds no PEM of its kind is a usage error naming
    /// its flag.
    fn load(&self, url: &str) -> Result<redis::TlsCertificates> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};

        let usage = |flag: &str, why: String| CtlError::Usage(format!("{flag}: {why}"));
        if !url.starts_with("rediss://") {
            let flag = match (&self.ca, &self.cert) {
                (Some(_), _) => "--redis-ca-file",
                (None, Some(_)) => "--redis-cert-file",
                (None, None) => "--redis-key-file",
            };
            return Err(usage(
                flag,
                format!(
                    "only read for a rediss:// URL, and --redis is {:?}: use rediss:// or drop the flag",
                    redact(url)
                ),
            ));
        }
        let read = |flag: &str, path: &PathBuf| {
            std::fs::read(path).map_err(|e| usage(flag, format!("cannot read {path:?}: {e}")))
        };
        let certs = |flag: &str, path: &PathBuf| {
            let pem = read(flag, path)?;
            let parsed: std::result::Result<Vec<_>, _> =
                CertificateDer::pem_slice_iter(&pem).collect();
            match parsed {
                Ok(list) if !list.is_empty() => Ok(pem),
                _ => Err(usage(flag, format!("{path:?} holds no PEM certificate"))),
            }
        };
        let root_cert = match &self.ca {
            Some(path) => Some(certs("--redis-ca-file", path)?),
            None => None,
        };
        let client_tls = match (&self.cert, &self.key) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(usage(
                    "--redis-key-file",
                    "--redis-cert-file needs its private key".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(usage(
                    "--redis-cert-file",
                    "--redis-key-file needs its certificate".into(),
                ))
            }
            (Some(cert), Some(key_path)) => {
                let client_cert = certs("--redis-cert-file", cert)?;
                let client_key = read("--redis-key-file", key_path)?;
                if PrivateKeyDer::from_pem_slice(&client_key).is_err() {
                    return Err(usage(
                        "--redis-key-file",
                        format!("{key_path:?} holds no PEM private key"),
                    ));
                }
                Some(redis::ClientTlsConfig {
                    client_cert,
                    client_key,
                })
            }
        };
        Ok(redis::TlsCertificates {
            client_tls,
            root_cert,
        })
    }
}

/// What to fix when a connection failed in its TLS handshake, by flag; `None` when it did not.
fn tls_hint(e: &redis::RedisError, tls: &TlsFiles) -> Option<String> {
    fn find<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        // The `redis` crate keeps the `io::Error` rustls' stream hands over in an `Arc`.
        if let Some(shared) =
            e.downcast_ref::<std::sync::Arc<dyn std::error::Error + Send + Sync>>()
        {
            return find(&**shared);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return find(io.get_ref()?);
        }
        find(e.source()?)
    }
    Some(match find(std::error::Error::source(e)?)? {
        rustls::Error::InvalidCertificate(_) => match &tls.ca {
            Some(path) => format!("the server's certificate is not signed by the CA of --redis-ca-file ({path:?}), or does not name the URL's host"),
            None => "the server's certificate is not signed by a public CA, or does not name the URL's host: pass --redis-ca-file (or SLUICE_REDIS_CA_FILE) with the PEM of the CA that signs it".to_owned(),
        },
        rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired) => {
            "the server asks for a client certificate: pass --redis-cert-file and --redis-key-file".to_owned()
        }
        other => format!("TLS refused ({other}): check --redis-ca-file, --redis-cert-file and --redis-key-file"),
    })
}

/// A connection and the URL it came from, so later failures can name it.
pub struct Redis {
    pub con: redis::Connection,
    pub url: String,
}

/// `--sentinel` (repeatable) and `--master-name`: ask them for the master, as the engine does
/// with `redis.sentinels` and `redis.master_name`.
#[derive(Debug, Default, Clone)]
pub struct Sentinels {
    pub addrs: Vec<String>,
    pub master_name: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl Redis {
    pub fn open(url: &str, tls: &TlsFiles) -> Result<Redis> {
        let info = Self::info(url)?;
        Self::open_info(url, info, tls)
    }

    /// The URL as the `redis` crate takes it; a URL it cannot parse is the operator's typo, not
    /// an outage.
    fn info(url: &str) -> Result<redis::ConnectionInfo> {
        use redis::IntoConnectionInfo;
        url.into_connection_info().map_err(|e| {
            CtlError::Usage(format!(
                "{:?} is not a Redis URL ({e}): use redis://HOST:PORT[/DB], rediss://HOST:PORT or unix:///PATH",
                redact(url)
            ))
        })
    }

    /// `url` names `info` in messages (with a sentinel, the master found, not the template).
    fn open_info(url: &str, info: redis::ConnectionInfo, tls: &TlsFiles) -> Result<Redis> {
        let unreachable = |e: redis::RedisError| match tls_hint(&e, tls) {
            // A refused handshake is a setting to fix, not an outage.
            Some(hint) => CtlError::Usage(format!(
                "TLS handshake with Redis at {} failed ({e}): {hint}",
                redact(url)
            )),
            None => CtlError::Unreachable {
                url: url.to_owned(),
                error: e.to_string(),
            },
        };
        let not_a_url = |e: redis::RedisError| {
            CtlError::Usage(format!(
                "{:?} is not a Redis URL ({e}): use redis://HOST:PORT[/DB], rediss://HOST:PORT or unix:///PATH",
                redact(url)
            ))
        };
        let client = if tls.is_empty() {
            redis::Client::open(info).map_err(not_a_url)?
        } else {
            redis::Client::build_with_tls(info, tls.load(url)?).map_err(not_a_url)?
        };
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

    /// The master the sentinels name, asked in order until one names a server that says it is
    /// the master (`ROLE`; a user without `ROLE` takes the sentinel's word). `url`, when given,
    /// gives the scheme, user, password and database; its host and port are not used.
    pub fn open_master(url: Option<&str>, sentinels: &Sentinels, tls: &TlsFiles) -> Result<Redis> {
        let template = url.map_or_else(
            || format!("redis://{}", sentinels.master_name),
            str::to_owned,
        );
        let base = Self::info(&template)?;
        let scheme = match base.addr() {
            redis::ConnectionAddr::TcpTls { .. } => "rediss",
            redis::ConnectionAddr::Tcp(..) => "redis",
            _ => {
                return Err(CtlError::Usage(
                    "--redis: with --sentinel the master is reached over TCP: use redis://[USER:PASSWORD@]MASTER_NAME[/DB] or rediss://...".into(),
                ))
            }
        };
        let mut asked = redis::RedisConnectionInfo::default().set_skip_set_lib_name();
        if let Some(user) = &sentinels.username {
            asked = asked.set_username(user);
        }
        if let Some(password) = &sentinels.password {
            asked = asked.set_password(password);
        }
        let mut last = None;
        for addr in &sentinels.addrs {
            let (host, port) = parse_addr(addr).ok_or_else(|| {
                CtlError::Usage(format!(
                    "--sentinel: {addr:?} is not a sentinel address: use HOST:PORT (e.g. 10.0.1.5:26379)"
                ))
            })?;
            let named = Self::open_info(
                &format!("{scheme}://{addr}"),
                at(&base, &host, port).set_redis_settings(asked.clone()),
                tls,
            )
            .and_then(|mut s| {
                s.query::<Option<(String, u16)>>(
                    redis::cmd("SENTINEL")
                        .arg("get-master-addr-by-name")
                        .arg(&sentinels.master_name),
                )
            });
            let (mhost, mport) = match named {
                Ok(Some(m)) => m,
                Ok(None) => {
                    last = Some(CtlError::Usage(format!(
                        "sentinel {addr} monitors no master named {:?}: check --master-name",
                        sentinels.master_name
                    )));
                    continue;
                }
                // A refused handshake or a sentinel's ACL refusal is a setting to fix.
                Err(e @ (CtlError::Usage(_) | CtlError::Denied(_))) => return Err(e),
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            let shown = redact(&format!("{scheme}://{mhost}:{mport}"));
            let mut master = match Self::open_info(&shown, at(&base, &mhost, mport), tls) {
                Ok(m) => m,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            match redis::cmd("ROLE").query::<redis::Value>(&mut master.con) {
                Ok(redis::Value::Array(items)) if !matches!(items.first(), Some(redis::Value::BulkString(r)) if r == b"master") =>
                {
                    last = Some(CtlError::Unreachable {
                        url: shown,
                        error: format!(
                            "sentinel {addr} names it as master {:?}, but it is a replica (a failover under way)",
                            sentinels.master_name
                        ),
                    });
                    continue;
                }
                _ => return Ok(master),
            }
        }
        Err(last.unwrap_or_else(|| {
            CtlError::Usage(
                "--master-name needs --sentinel HOST:PORT (or SLUICE_REDIS_SENTINELS)".into(),
            )
        }))
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

/// `info` at another TCP address, over TLS when it was.
fn at(info: &redis::ConnectionInfo, host: &str, port: u16) -> redis::ConnectionInfo {
    let addr = match info.addr() {
        redis::ConnectionAddr::TcpTls { insecure, .. } => redis::ConnectionAddr::TcpTls {
            host: host.to_owned(),
            port,
            insecure: *insecure,
            tls_params: None,
        },
        _ => redis::ConnectionAddr::Tcp(host.to_owned(), port),
    };
    info.clone().set_addr(addr)
}

/// `host:port`, or `[v6]:port`.
fn parse_addr(addr: &str) -> Option<(String, u16)> {
    let (host, port) = addr.trim().rsplit_once(':')?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.strip_suffix(']')?,
        None if host.contains(':') => return None,
        None => host,
    };
    let port: u16 = port.parse().ok()?;
    (!host.is_empty() && port != 0).then(|| (host.to_owned(), port))
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
