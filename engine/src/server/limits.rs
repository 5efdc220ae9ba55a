//! Connection limits shared by every core: connections in total and per client address. Taken at
//! accept time (or once the PROXY header names the client), released when the connection ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub struct ConnectionLimits {
    total: AtomicUsize,
    /// Both maxima change on a configuration reload; connections above a lowered maximum stay.
    max_total: AtomicUsize,
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

/// A place in one address's count.
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

    pub fn acquire_ip(self: &Arc<Self>, ip: IpAddr) -> Result<IpPermit, Refused> {
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
}
