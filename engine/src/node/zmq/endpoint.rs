//! The `tcp://HOST:PORT` endpoint of a node's ZMQ publisher: parsed and checked when configuration
//! is loaded, resolved again on every connection.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::str::FromStr;

use super::ZmqError;

/// A `tcp://HOST:PORT` endpoint, the only transport bitcoind's publisher can be reached over from
/// another process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// An IP address literal (IPv6 without brackets) or a name, resolved on every connection so
    /// that a node that moves is found again.
    pub(super) host: String,
    pub(super) port: u16,
}

impl Endpoint {
    pub fn parse(endpoint: &str) -> Result<Endpoint, ZmqError> {
        let bad = |reason| ZmqError::BadEndpoint {
            endpoint: endpoint.to_string(),
            reason,
        };
        let rest = endpoint
            .strip_prefix("tcp://")
            .ok_or_else(|| bad("only tcp://HOST:PORT is supported"))?;
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| bad("missing ']' after an IPv6 address"))?;
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| bad("missing :PORT"))?;
            host.parse::<std::net::Ipv6Addr>()
                .map_err(|_| bad("not an IPv6 address between the brackets"))?;
            (host, port)
        } else {
            let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("missing :PORT"))?;
            if host.contains(':') {
                return Err(bad("an IPv6 address must be in brackets"));
            }
            (host, port)
        };
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        if host == "*" {
            return Err(bad("'*' is for binding; name the node's address"));
        }
        if host
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == b'/')
        {
            return Err(bad("host contains a character no host name has"));
        }
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("port is not a number"));
        }
        let port = match port.parse::<u16>() {
            Ok(0) | Err(_) => return Err(bad("port must be 1-65535")),
            Ok(p) => p,
        };
        Ok(Endpoint {
            host: host.to_string(),
            port,
        })
    }

    pub(super) fn resolve(&self) -> Result<Vec<SocketAddr>, ZmqError> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, self.port)]);
        }
        let resolve_error = |source| ZmqError::Resolve {
            endpoint: self.to_string(),
            source,
        };
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(resolve_error)?
            .collect();
        if addrs.is_empty() {
            return Err(resolve_error(io::Error::new(
                io::ErrorKind::NotFound,
                "no addresses",
            )));
        }
        Ok(addrs)
    }
}

/// Checks an endpoint without connecting, e.g. when loading configuration.
pub fn parse_endpoint(endpoint: &str) -> Result<Endpoint, ZmqError> {
    Endpoint::parse(endpoint)
}

impl FromStr for Endpoint {
    type Err = ZmqError;
    fn from_str(s: &str) -> Result<Endpoint, ZmqError> {
        Endpoint::parse(s)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "tcp://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "tcp://{}:{}", self.host, self.port)
        }
    }
}
