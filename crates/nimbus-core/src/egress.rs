//! Outbound network policy: what a function's `allowed_hosts` lets it reach, decided the same
//! way for wasm functions (their outbound HTTP) and process functions (their egress proxy).
//!
//! - An entry is `host`, `host:port`, an IP address or `IP:port` (IPv6 in brackets). Without a
//!   port it allows the web's ports, 80 and 443. Wildcards (`*`) are refused.
//! - A name is resolved by the caller, and only to **public** addresses: loopback, private,
//!   link-local, shared (CGNAT), documentation, multicast, unspecified and reserved ranges are
//!   refused for it — a name that resolves to `127.0.0.1` opens nothing.
//! - An address listed as such is allowed even if it is not public (the operator said so).
//!
//! Nothing here resolves names or opens sockets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Ports an entry without a port allows.
pub const DEFAULT_PORTS: [u16; 2] = [80, 443];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Name(String),
    Addr(IpAddr),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    target: Target,
    port: Option<u16>,
}

/// A function's outbound policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    entries: Vec<Entry>,
}

/// What the policy says about a destination, before its name is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not listed (or not on a listed port).
    Denied,
    /// Listed by address: connect to it as it is.
    Address(IpAddr),
    /// Listed by name: resolve it and connect only to a public address ([`is_public`]).
    Name,
}

fn parse_entry(text: &str) -> Result<Entry, String> {
    let t = text.trim();
    if t.is_empty() || t.contains(['*', '/', ' ', '@']) {
        return Err(format!(
            "`{text}` is not a host: write `example.com`, `example.com:8443`, `203.0.113.7` or \
             `[2001:db8::1]:8080` (wildcards are not allowed: name each host)"
        ));
    }
    if let Ok(ip) = t.parse::<IpAddr>() {
        return Ok(Entry {
            target: Target::Addr(ip),
            port: None,
        });
    }
    if let Ok(sa) = t.parse::<std::net::SocketAddr>() {
        return Ok(Entry {
            target: Target::Addr(sa.ip()),
            port: Some(sa.port()),
        });
    }
    let (host, port) = match t.rsplit_once(':') {
        Some((h, p)) => (
            h,
            Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("`{text}`: `{p}` is not a port"))?,
            ),
        ),
        None => (t, None),
    };
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !valid {
        return Err(format!("`{text}` is not a host name"));
    }
    Ok(Entry {
        target: Target::Name(host.to_ascii_lowercase()),
        port,
    })
}

impl EgressPolicy {
    /// Parses `allowed_hosts`; the first bad entry is the error.
    pub fn parse(hosts: &[String]) -> Result<Self, String> {
        Ok(Self {
            entries: hosts
                .iter()
                .map(|h| parse_entry(h))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Whether nothing is allowed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The loopback destinations listed by address, each port of them: a process sandbox
    /// gets a forwarder at each of these addresses on its own loopback, so any TCP client
    /// (a database driver, not only HTTP) reaches the host's service at the address it was
    /// given.
    pub fn loopback_destinations(&self) -> Vec<std::net::SocketAddr> {
        let mut out = Vec::new();
        for e in &self.entries {
            if let Target::Addr(ip) = e.target
                && ip.is_loopback()
            {
                let ports: &[u16] = match &e.port {
                    Some(p) => std::slice::from_ref(p),
                    None => &DEFAULT_PORTS,
                };
                for p in ports {
                    let sa = std::net::SocketAddr::new(ip, *p);
                    if !out.contains(&sa) {
                        out.push(sa);
                    }
                }
            }
        }
        out
    }

    /// What the policy says about `host` (a name or an address literal) on `port`.
    pub fn decide(&self, host: &str, port: u16) -> Decision {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let literal = host.parse::<IpAddr>().ok();
        let lower = host.to_ascii_lowercase();
        for e in &self.entries {
            let port_ok = e.port.map_or(DEFAULT_PORTS.contains(&port), |p| p == port);
            if !port_ok {
                continue;
            }
            match (&e.target, literal) {
                (Target::Addr(a), Some(ip)) if *a == ip => return Decision::Address(ip),
                (Target::Name(n), None) if *n == lower => return Decision::Name,
                _ => {}
            }
        }
        Decision::Denied
    }
}

/// Whether `ip` is a public unicast address: what a name may resolve to.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || first == 0x2001 && ip.segments()[1] == 0x0db8 // documentation
        || first == 0x0064 && ip.segments()[1] == 0xff9b) // NAT64 (maps to IPv4 anything)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(hosts: &[&str]) -> EgressPolicy {
        EgressPolicy::parse(&hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
            .expect("valid")
    }

    #[test]
    fn names_and_addresses_match_on_their_ports() {
        let p = policy(&[
            "api.example.com",
            "db.example.com:5432",
            "127.0.0.1:9000",
            "[::1]:81",
        ]);
        assert_eq!(p.decide("API.example.com", 443), Decision::Name);
        assert_eq!(
            p.decide("api.example.com", 8080),
            Decision::Denied,
            "not a web port"
        );
        assert_eq!(p.decide("db.example.com", 5432), Decision::Name);
        assert_eq!(p.decide("db.example.com", 443), Decision::Denied);
        assert_eq!(
            p.decide("127.0.0.1", 9000),
            Decision::Address("127.0.0.1".parse().expect("ip"))
        );
        assert_eq!(p.decide("127.0.0.1", 9001), Decision::Denied);
        assert_eq!(
            p.decide("[::1]", 81),
            Decision::Address(IpAddr::V6(Ipv6Addr::LOCALHOST))
        );
        assert_eq!(p.decide("localhost", 80), Decision::Denied);
        assert_eq!(p.decide("evil.com", 443), Decision::Denied);
    }

    #[test]
    fn loopback_addresses_are_listed_for_forwarding() {
        let p = policy(&[
            "127.0.0.1:5432",
            "127.0.0.2",
            "db.example.com:5432",
            "203.0.113.7:80",
            "127.0.0.1:5432",
        ]);
        let got: Vec<String> = p
            .loopback_destinations()
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(got, ["127.0.0.1:5432", "127.0.0.2:80", "127.0.0.2:443"]);
    }

    #[test]
    fn wildcards_and_garbage_are_refused() {
        for bad in [
            "*",
            "*.example.com",
            "",
            "http://x.com",
            "a b",
            "x.com:0",
            "x.com:http",
            "a..b",
        ] {
            assert!(EgressPolicy::parse(&[bad.to_string()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "64:ff9b::7f00:1",
        ] {
            assert!(!is_public(private.parse().expect("ip")), "{private}");
        }
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(public.parse().expect("ip")), "{public}");
        }
    }
}
