//! The PROXY protocol (v1 text and v2 binary) that HAProxy puts in front of a connection, so the
//! engine sees the miner's address rather than the balancer's. Pure: bytes in, the header and its
//! length out, or "need more bytes".

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 header, CRLF included (from the specification).
const V1_MAX: usize = 107;
/// The longest v2 header accepted: addresses plus room for TLVs.
pub const V2_MAX: usize = 16 + 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// A proxied connection: the miner's address and the address it connected to.
    Proxied {
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// The balancer speaking for itself (health checks) or an unknown family: keep the peer address.
    Local,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("connection did not start with a PROXY protocol header")]
    Missing,
    #[error("malformed PROXY protocol v1 header")]
    BadV1,
    #[error("malformed PROXY protocol v2 header")]
    BadV2,
}

/// Reads a header from the front of `buf`: `Ok(None)` when more bytes are needed.
pub fn parse(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        if buf.len() < 16 {
            return Ok(None);
        }
        return parse_v2(buf);
    }
    let n = buf.len().min(6);
    if buf[..n] == b"PROXY "[..n] {
        return parse_v1(buf);
    }
    Err(ProxyError::Missing)
}

fn parse_v1(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let Some(end) = buf.windows(2).take(V1_MAX - 1).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Err(ProxyError::BadV1)
        } else {
            Ok(None)
        };
    };
    let line = std::str::from_utf8(&buf[..end]).map_err(|_| ProxyError::BadV1)?;
    let mut parts = line.split(' ');
    parts.next(); // "PROXY"
    let header = match parts.next() {
        Some("UNKNOWN") => ProxyHeader::Local,
        Some(family @ ("TCP4" | "TCP6")) => {
            let mut field = || parts.next().ok_or(ProxyError::BadV1);
            let src: IpAddr = field()?.parse().map_err(|_| ProxyError::BadV1)?;
            let dst: IpAddr = field()?.parse().map_err(|_| ProxyError::BadV1)?;
            let sport: u16 = field()?.parse().map_err(|_| ProxyError::BadV1)?;
            let dport: u16 = field()?.parse().map_err(|_| ProxyError::BadV1)?;
            if parts.next().is_some()
                || (family == "TCP4") != src.is_ipv4()
                || src.is_ipv4() != dst.is_ipv4()
            {
                return Err(ProxyError::BadV1);
            }
            ProxyHeader::Proxied {
                source: SocketAddr::new(src, sport),
                destination: SocketAddr::new(dst, dport),
            }
        }
        _ => return Err(ProxyError::BadV1),
    };
    Ok(Some((header, end + 2)))
}

fn parse_v2(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let version_command = buf[12];
    let family = buf[13];
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if version_command >> 4 != 2 || 16 + len > V2_MAX {
        return Err(ProxyError::BadV2);
    }
    if buf.len() < 16 + len {
        return Ok(None);
    }
    let body = &buf[16..16 + len];
    let header = match (version_command & 0x0f, family) {
        (0, _) => ProxyHeader::Local,
        (1, 0x11) if len >= 12 => ProxyHeader::Proxied {
            source: SocketAddr::new(
                Ipv4Addr::new(body[0], body[1], body[2], body[3]).into(),
                u16::from_be_bytes([body[8], body[9]]),
            ),
            destination: SocketAddr::new(
                Ipv4Addr::new(body[4], body[5], body[6], body[7]).into(),
                u16::from_be_bytes([body[10], body[11]]),
            ),
        },
        (1, 0x21) if len >= 36 => {
            let ip = |b: &[u8]| Ipv6Addr::from(<[u8; 16]>::try_from(b).expect("16 bytes"));
            ProxyHeader::Proxied {
                source: SocketAddr::new(
                    ip(&body[..16]).into(),
                    u16::from_be_bytes([body[32], body[33]]),
                ),
                destination: SocketAddr::new(
                    ip(&body[16..32]).into(),
                    u16::from_be_bytes([body[34], body[35]]),
                ),
            }
        }
        // UNSPEC or UNIX families: nothing usable, keep the peer address.
        (1, 0x00) | (1, 0x31) | (1, 0x32) => ProxyHeader::Local,
        _ => return Err(ProxyError::BadV2),
    };
    Ok(Some((header, 16 + len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_tcp4_tcp6_unknown_and_partial() {
        let line = b"PROXY TCP4 192.0.2.1 198.51.100.2 51234 3333\r\n{\"id\":1}";
        let (h, used) = parse(line).unwrap().unwrap();
        assert_eq!(used, 46);
        assert_eq!(
            h,
            ProxyHeader::Proxied {
                source: "192.0.2.1:51234".parse().unwrap(),
                destination: "198.51.100.2:3333".parse().unwrap()
            }
        );
        let (h, _) = parse(b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n")
            .unwrap()
            .unwrap();
        assert!(matches!(h, ProxyHeader::Proxied { source, .. } if source.ip().is_ipv6()));
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap().0,
            ProxyHeader::Local
        );
        assert_eq!(parse(b"PROXY TCP4 192.0.2.1").unwrap(), None);
        assert_eq!(parse(b"PRO").unwrap(), None);
        assert_eq!(
            parse(b"PROXY TCP4 192.0.2.1 x 1 2\r\n"),
            Err(ProxyError::BadV1)
        );
        assert_eq!(
            parse(b"PROXY TCP4 2001:db8::1 192.0.2.1 1 2\r\n"),
            Err(ProxyError::BadV1)
        );
        assert_eq!(
            parse(
                &[b'P', b'R', b'O', b'X', b'Y', b' ']
                    .iter()
                    .copied()
                    .chain(std::iter::repeat_n(b'1', 200))
                    .collect::<Vec<_>>()
            ),
            Err(ProxyError::BadV1)
        );
        assert_eq!(parse(b"{\"id\":1}\n"), Err(ProxyError::Missing));
    }

    #[test]
    fn v2_ipv4_local_and_bounds() {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[
            0x21, 0x11, 0, 12, 10, 0, 0, 7, 10, 0, 0, 1, 0x1f, 0x90, 0x0d, 0x05,
        ]);
        let mut with_data = h.clone();
        with_data.extend_from_slice(b"{}");
        let (header, used) = parse(&with_data).unwrap().unwrap();
        assert_eq!(used, 28);
        assert_eq!(
            header,
            ProxyHeader::Proxied {
                source: "10.0.0.7:8080".parse().unwrap(),
                destination: "10.0.0.1:3333".parse().unwrap()
            }
        );
        assert_eq!(parse(&h[..20]).unwrap(), None);
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(parse(&local).unwrap().unwrap(), (ProxyHeader::Local, 16));
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert_eq!(parse(&huge), Err(ProxyError::BadV2));
        let mut v1_in_v2 = V2_SIGNATURE.to_vec();
        v1_in_v2.extend_from_slice(&[0x11, 0x11, 0, 12]);
        assert_eq!(parse(&v1_in_v2), Err(ProxyError::BadV2));
    }
}
