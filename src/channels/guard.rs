//! Keeps requests to URLs members supply (webhook endpoints, web push endpoints) off the
//! operator's own network: what counts as a public address, a resolver that drops every other
//! answer, and the check for hosts written as IP addresses, which reqwest connects to without
//! resolving.
//!
//! The check is made when the name is resolved for the connection itself, so a name that
//! resolves to a public address when a member registers it and to a private one later (DNS
//! rebinding) cannot get through. Must not touch: what is sent, or how answers are read.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use url::{Host, Url};

/// `builder` with its DNS answers confined to public addresses.
pub(super) fn confine(builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
    builder.dns_resolver(Arc::new(PublicOnlyResolver))
}

/// Whether `url`'s host is an IP address that is not public. Host names are left to the
/// resolver.
pub(super) fn is_private_literal(url: &Url) -> bool {
    let ip = match url.host() {
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
        Some(Host::Domain(_)) | None => return false,
    };
    !is_public(ip)
}

/// Whether `ip` is an address on the public internet: not loopback, private, link-local,
/// unique-local, CGNAT, unspecified, multicast, broadcast, documentation, benchmarking or
/// reserved. IPv4 addresses carried in IPv6 (mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`)
/// are judged as the IPv4 address they reach.
pub(super) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_public_v4(ip),
        IpAddr::V6(ip) => is_public_v6(ip),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let reserved = a == 0 // "this network", 0.0.0.0 among it
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || (a == 100 && (b & 0xc0) == 64) // CGNAT, 100.64.0.0/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments, 192.0.0.0/24
        || ip.is_documentation()
        || (a == 198 && (b & 0xfe) == 18) // benchmarking, 198.18.0.0/15
        || ip.is_multicast()
        || a >= 240; // reserved 240.0.0.0/4 and broadcast
    !reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    let reserved = s[..6] == [0; 6] // ::, ::1 and the deprecated IPv4-compatible ::/96
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local, fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local, fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated), fec0::/10
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation, 2001:db8::/32
        || s[..4] == [0x0100, 0, 0, 0]; // discard-only, 100::/64
    !reserved
}

/// The resolver used when private addresses are refused: the system's answers, without the
/// non-public ones; no answer left is an error the sender recognizes.
pub(super) struct PublicOnlyResolver;

/// Every address a host name resolved to was non-public.
#[derive(Debug)]
struct RefusedAddress;

impl std::fmt::Display for RefusedAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("host resolves only to non-public addresses")
    }
}

impl std::error::Error for RefusedAddress {}

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let public: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|addr| is_public(addr.ip()))
                .collect();
            if public.is_empty() {
                return Err(Box::new(RefusedAddress) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Whether a failed request failed because [`PublicOnlyResolver`] refused its host.
pub(super) fn refused_by_resolver(err: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(err) = source {
        if err.is::<RefusedAddress>() {
            return true;
        }
        source = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use reqwest::dns::Resolve;

    use super::*;

    #[test]
    fn public_addresses_are_told_apart_from_reserved_ones() {
        for public in ["8.8.8.8", "1.1.1.1", "100.128.0.1", "2606:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
        for reserved in [
            "127.0.0.1",
            "10.0.0.1",
            "172.31.255.255",
            "192.168.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "255.255.255.255",
            "240.0.0.1",
            "239.1.1.1",
            "192.0.2.1",
            "198.18.0.1",
            "::",
            "::1",
            "fc00::1",
            "fdff::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "64:ff9b::7f00:1",
        ] {
            assert!(!is_public(reserved.parse().unwrap()), "{reserved}");
        }
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_that_resolves_only_to_loopback() {
        let err = match PublicOnlyResolver
            .resolve("localhost".parse().unwrap())
            .await
        {
            Ok(addrs) => panic!("resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(err) => err,
        };
        assert!(err.is::<RefusedAddress>(), "{err}");
    }

    #[test]
    fn only_non_public_ip_literals_are_private_literals() {
        for private in [
            "https://127.0.0.1/p",
            "http://[::1]:8080/p",
            "https://10.1.2.3/p",
        ] {
            assert!(
                is_private_literal(&Url::parse(private).unwrap()),
                "{private}"
            );
        }
        for other in [
            "https://8.8.8.8/p",
            "https://push.example.net/p",
            "http://localhost/p",
        ] {
            assert!(!is_private_literal(&Url::parse(other).unwrap()), "{other}");
        }
    }
}
