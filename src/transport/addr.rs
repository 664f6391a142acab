//! Which addresses are reachable from where: the one rule the DNS updater and the node's
//! client-facing records share.

use std::net::IpAddr;

/// Whether `ip` is a globally reachable unicast address: not unspecified, multicast,
/// private (RFC 1918, carrier-grade NAT 100.64/10, IPv6 unique local), loopback or
/// link-local.
pub fn is_public(ip: IpAddr) -> bool {
    if ip.is_unspecified() || ip.is_multicast() {
        return false;
    }
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            !(a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_broadcast()
                || (o[0] == 100 && (o[1] & 0xc0) == 64))
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            !(a.is_loopback() || (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_and_link_local_are_not_public() {
        for ip in [
            "10.0.0.5",
            "172.16.1.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::",
        ] {
            assert!(!is_public(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["203.0.113.7", "8.8.8.8", "2001:db8::1", "100.128.0.1"] {
            assert!(is_public(ip.parse().expect("ip")), "{ip}");
        }
    }
}
