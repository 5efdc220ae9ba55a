//! A network, `ADDRESS/PREFIX`, as `listeners[N].trusted_proxies` names it: parsed and checked
//! with the configuration, matched against peers by the server's accept loops (`server/limits.rs`).
//! Here, below the server, so that the configuration imports nothing of the layers it configures.

use std::net::IpAddr;

/// Why a text is not a network; each message says how to write one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("{0:?} is not a network: use ADDRESS/PREFIX, e.g. 10.0.0.0/8 or 2001:db8::/32")]
    NotAnAddress(String),
    #[error("{text:?}: the prefix length must be 0 to {bits}")]
    Prefix { text: String, bits: u8 },
    #[error("{text:?} has host bits set below /{prefix}: write {network}/{prefix}")]
    HostBits {
        text: String,
        prefix: u8,
        network: IpAddr,
    },
}

/// An IPv4 or IPv6 network, `ADDRESS/PREFIX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a host: /32 or /128). Host bits
    /// set below the prefix are refused: `10.0.0.1/8` is more likely a typo than a wish.
    pub fn parse(text: &str) -> Result<Cidr, CidrError> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| CidrError::NotAnAddress(text.to_owned()))?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(|| CidrError::Prefix {
                    text: text.to_owned(),
                    bits,
                })?,
        };
        let cidr = Cidr { network, prefix };
        if cidr.masked(network) != network {
            return Err(CidrError::HostBits {
                text: text.to_owned(),
                prefix,
                network: cidr.masked(network),
            });
        }
        Ok(cidr)
    }

    fn masked(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        }
    }

    /// Whether `ip` is in this network; an IPv4-mapped IPv6 address matches IPv4 networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = unmapped(ip);
        ip.is_ipv4() == self.network.is_ipv4() && self.masked(ip) == self.network
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The IPv4 address inside an IPv4-mapped IPv6 one; any other address as it is.
pub fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}
