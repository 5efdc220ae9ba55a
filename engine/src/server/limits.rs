//! Who may connect, and how many: connections in total and per client address, and the networks a
//! PROXY header is believed from. Taken at accept time (or once the PROXY header names the
//! client), released when the connection ends.
//!
//! A client address is counted by what one customer controls: an IPv4 address, or an IPv6 /64
//! (one customer's prefix holds 2^64 addresses, so counting them one by one would be no limit).
//! IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what a dual-stack socket reports) count as the
//! IPv4 address.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::unmapped;
pub use crate::config::{Cidr, DEFAULT_TRUSTED_PROXIES};

/// What the per-address limit counts `ip` under: the IPv4 address, or the IPv6 /64.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match unmapped(ip) {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        v4 => v4,
    }
}

pub struct ConnectionLimits {
    total: AtomicUsize,
    /// Both maxima change on a configuration reload; connections above a lowered maximum stay.
    max_total: AtomicUsize,
    /// Keyed by [`client_key`].
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    max_per_ip: AtomicUsize,
}

/// Which limit refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Total,
    PerIp,
}

/// A place in the total count; dropping it frees the place.
pub struct TotalPermit(Arc<ConnectionLimits>);

impl Drop for TotalPermit {
    fn drop(&mut self) {
        self.0.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A place in one client's count (an IPv4 address or an IPv6 /64).
pub struct IpPermit(Arc<ConnectionLimits>, IpAddr);

impl Drop for IpPermit {
    fn drop(&mut self) {
        let mut map = self.0.per_ip.lock().expect("limits lock");
        if let Some(n) = map.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.1);
            }
        }
    }
}

impl ConnectionLimits {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<ConnectionLimits> {
        Arc::new(ConnectionLimits {
            total: AtomicUsize::new(0),
            max_total: AtomicUsize::new(max_total),
            per_ip: Mutex::new(HashMap::new()),
            max_per_ip: AtomicUsize::new(max_per_ip),
        })
    }

    /// New maxima (a configuration reload).
    pub fn set(&self, max_total: usize, max_per_ip: usize) {
        self.max_total.store(max_total, Ordering::Release);
        self.max_per_ip.store(max_per_ip, Ordering::Release);
    }

    pub fn acquire_total(self: &Arc<Self>) -> Result<TotalPermit, Refused> {
        let prev = self.total.fetch_add(1, Ordering::AcqRel);
        if prev >= self.max_total.load(Ordering::Acquire) {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::Total);
        }
        Ok(TotalPermit(Arc::clone(self)))
    }

    /// A place in the count of `ip`'s client: its IPv4 address, or its IPv6 /64.
    pub fn acquire_ip(self: &Arc<Self>, ip: IpAddr) -> Result<IpPermit, Refused> {
        let ip = client_key(ip);
        let mut map = self.per_ip.lock().expect("limits lock");
        let n = map.entry(ip).or_insert(0);
        if *n >= self.max_per_ip.load(Ordering::Acquire) {
            return Err(Refused::PerIp);
        }
        *n += 1;
        Ok(IpPermit(Arc::clone(self), ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_at_their_edges_and_release() {
        let limits = ConnectionLimits::new(2, 1);
        let a = limits.acquire_total().unwrap();
        let _b = limits.acquire_total().unwrap();
        assert_eq!(limits.acquire_total().err(), Some(Refused::Total));
        drop(a);
        assert!(limits.acquire_total().is_ok());
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        let p = limits.acquire_ip(ip).unwrap();
        assert_eq!(limits.acquire_ip(ip).err(), Some(Refused::PerIp));
        assert!(limits.acquire_ip("127.0.0.10".parse().unwrap()).is_ok());
        drop(p);
        assert!(limits.acquire_ip(ip).is_ok());
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_ipv6_slash_64_is_one_client_at_the_per_address_edge() {
        let limits = ConnectionLimits::new(100, 1);
        let first = limits.acquire_ip(ip("2001:db8:1:2::1")).unwrap();
        // Another address of the same /64 shares its one place...
        assert_eq!(
            limits
                .acquire_ip(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
                .err(),
            Some(Refused::PerIp)
        );
        // ...the neighbouring /64s do not.
        let _next = limits.acquire_ip(ip("2001:db8:1:3::1")).unwrap();
        let _prev = limits.acquire_ip(ip("2001:db8:1:1:ffff::")).unwrap();
        drop(first);
        assert!(limits.acquire_ip(ip("2001:db8:1:2::abcd")).is_ok());
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_their_ipv4_address() {
        let limits = ConnectionLimits::new(100, 1);
        let _p = limits.acquire_ip(ip("192.0.2.7")).unwrap();
        assert_eq!(
            limits.acquire_ip(ip("::ffff:192.0.2.7")).err(),
            Some(Refused::PerIp)
        );
        // Mapped addresses are not folded into one /64: each IPv4 address is its own client.
        assert!(limits.acquire_ip(ip("::ffff:192.0.2.8")).is_ok());
        assert_eq!(client_key(ip("::ffff:192.0.2.8")), ip("192.0.2.8"));
    }

    #[test]
    fn cidrs_parse_match_and_refuse_what_is_not_one() {
        let loopback = Cidr::parse("127.0.0.0/8").unwrap();
        assert!(loopback.contains(ip("127.255.0.1")));
        assert!(!loopback.contains(ip("128.0.0.1")));
        assert!(
            loopback.contains(ip("::ffff:127.0.0.1")),
            "IPv4-mapped peer"
        );
        assert!(!loopback.contains(ip("::1")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        let host = Cidr::parse("10.1.2.3").unwrap();
        assert_eq!(host.to_string(), "10.1.2.3/32");
        assert!(host.contains(ip("10.1.2.3")) && !host.contains(ip("10.1.2.4")));
        let everything = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(everything.contains(ip("255.255.255.255")));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("2001:db8::1")));
        assert!(Cidr::parse("::1/128").unwrap().contains(ip("::1")));
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.1/8",
            "nowhere/8",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad:?} parsed");
        }
        for default in DEFAULT_TRUSTED_PROXIES {
            Cidr::parse(default).unwrap();
        }
    }
}
