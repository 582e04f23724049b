//! Which addresses a webhook may reach, as data: the IANA special-purpose address registries
//! (`iana-ipv4-special-registry`, `iana-ipv6-special-registry`), the multicast blocks, and for
//! IPv6 the address-space registry, under which only `2000::/3` is handed out for global
//! unicast.
//!
//! An address is judged by the most specific range that holds it (the longest prefix, as a
//! router picks a route): a webhook may go there, may not, or (an IPv6 form that carries an
//! IPv4 address) the embedded address decides, because a NAT64 gateway, a 6to4 relay or the
//! host's own stack would deliver the request to it.
//!
//! Where the registry marks a block not globally reachable, it is refused. A few blocks are
//! refused whole although the registry lists a globally reachable exception inside them (the
//! anycast service addresses in `192.0.0.0/24` and `2001::/23`, AMT, AS112, ORCHIDv2): those
//! are protocol infrastructure, never a tenant's webhook receiver, and a shorter table is one
//! that can be checked by eye.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What a range means for a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// Globally reachable: webhooks may go there.
    Public,
    /// This host, a private network, documentation, reserved space: never called.
    Internal,
    /// An IPv6 form carrying an IPv4 address in the 32 bits from this offset; that address
    /// decides.
    Embeds(u32),
}

struct Range<A> {
    net: A,
    len: u32,
    reach: Reach,
    /// The registry's name for it, for the table's readers and its test's messages.
    #[cfg_attr(not(test), allow(dead_code))]
    name: &'static str,
}

const fn v4(net: [u8; 4], len: u32, reach: Reach, name: &'static str) -> Range<Ipv4Addr> {
    Range {
        net: Ipv4Addr::new(net[0], net[1], net[2], net[3]),
        len,
        reach,
        name,
    }
}

const fn v6(net: [u16; 8], len: u32, reach: Reach, name: &'static str) -> Range<Ipv6Addr> {
    let [a, b, c, d, e, f, g, h] = net;
    Range {
        net: Ipv6Addr::new(a, b, c, d, e, f, g, h),
        len,
        reach,
        name,
    }
}

use Reach::{Embeds, Internal, Public};

// One line per range, so the table reads as the registries do.
#[rustfmt::skip]
const V4: &[Range<Ipv4Addr>] = &[
    v4([0, 0, 0, 0],         0,  Public,   "the Internet"),
    v4([0, 0, 0, 0],         8,  Internal, "\"this network\" (RFC 791)"),
    v4([10, 0, 0, 0],        8,  Internal, "private use (RFC 1918)"),
    v4([100, 64, 0, 0],      10, Internal, "shared address space, carrier-grade NAT (RFC 6598)"),
    v4([127, 0, 0, 0],       8,  Internal, "loopback (RFC 1122)"),
    v4([169, 254, 0, 0],     16, Internal, "link-local, where cloud metadata lives (RFC 3927)"),
    v4([172, 16, 0, 0],      12, Internal, "private use (RFC 1918)"),
    v4([192, 0, 0, 0],       24, Internal, "IETF protocol assignments: DS-Lite, NAT64 discovery, anycast services (RFC 6890)"),
    v4([192, 0, 2, 0],       24, Internal, "documentation, TEST-NET-1 (RFC 5737)"),
    v4([192, 88, 99, 0],     24, Internal, "6to4 relay anycast, deprecated (RFC 7526)"),
    v4([192, 168, 0, 0],     16, Internal, "private use (RFC 1918)"),
    v4([198, 18, 0, 0],      15, Internal, "benchmarking (RFC 2544)"),
    v4([198, 51, 100, 0],    24, Internal, "documentation, TEST-NET-2 (RFC 5737)"),
    v4([203, 0, 113, 0],     24, Internal, "documentation, TEST-NET-3 (RFC 5737)"),
    v4([224, 0, 0, 0],       4,  Internal, "multicast (RFC 5771)"),
    v4([240, 0, 0, 0],       4,  Internal, "reserved (RFC 1112)"),
    v4([255, 255, 255, 255], 32, Internal, "limited broadcast (RFC 919)"),
];

#[rustfmt::skip]
const V6: &[Range<Ipv6Addr>] = &[
    // Everything outside the global unicast block is unallocated or special-purpose.
    v6([0, 0, 0, 0, 0, 0, 0, 0],            0,   Internal,   "not global unicast (RFC 4291)"),
    v6([0x2000, 0, 0, 0, 0, 0, 0, 0],       3,   Public,     "global unicast (RFC 4291)"),
    v6([0, 0, 0, 0, 0, 0, 0, 0],            128, Internal,   "unspecified (RFC 4291)"),
    v6([0, 0, 0, 0, 0, 0, 0, 1],            128, Internal,   "loopback (RFC 4291)"),
    // Deprecated, and some stacks still route it to the IPv4 address it carries.
    v6([0, 0, 0, 0, 0, 0, 0, 0],            96,  Internal,   "IPv4-compatible, deprecated (RFC 4291)"),
    v6([0, 0, 0, 0, 0, 0xffff, 0, 0],       96,  Embeds(96), "IPv4-mapped (RFC 4291)"),
    v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0],    96,  Embeds(96), "IPv4/IPv6 translation, NAT64 (RFC 6052)"),
    v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0],    48,  Internal,   "local-use IPv4/IPv6 translation (RFC 8215)"),
    v6([0x100, 0, 0, 0, 0, 0, 0, 0],        64,  Internal,   "discard-only (RFC 6666)"),
    v6([0x100, 0, 0, 1, 0, 0, 0, 0],        64,  Internal,   "dummy prefix (RFC 9780)"),
    // Teredo (2001::/32) included: it carries a client's address only obscured.
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0],       23,  Internal,   "IETF protocol assignments: Teredo, benchmarking, ORCHID, anycast services (RFC 2928)"),
    v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],   32,  Internal,   "documentation (RFC 3849)"),
    v6([0x2002, 0, 0, 0, 0, 0, 0, 0],       16,  Embeds(16), "6to4 (RFC 3056)"),
    v6([0x3fff, 0, 0, 0, 0, 0, 0, 0],       20,  Internal,   "documentation (RFC 9637)"),
    v6([0x5f00, 0, 0, 0, 0, 0, 0, 0],       16,  Internal,   "segment routing SIDs (RFC 9602)"),
    v6([0xfc00, 0, 0, 0, 0, 0, 0, 0],       7,   Internal,   "unique local (RFC 4193)"),
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0],       10,  Internal,   "link-local (RFC 4291)"),
    v6([0xfec0, 0, 0, 0, 0, 0, 0, 0],       10,  Internal,   "site-local, deprecated (RFC 3879)"),
    v6([0xff00, 0, 0, 0, 0, 0, 0, 0],       8,   Internal,   "multicast (RFC 4291)"),
];

/// The top `len` bits of a `BITS`-bit address.
fn prefix(bits: u128, len: u32, width: u32) -> u128 {
    match len {
        0 => 0,
        len => bits >> (width - len),
    }
}

/// The most specific range of `table` that holds `addr`.
fn lookup<A: Copy>(
    table: &'static [Range<A>],
    addr: A,
    bits: fn(A) -> u128,
    width: u32,
) -> &'static Range<A> {
    let ip = bits(addr);
    table
        .iter()
        .filter(|r| prefix(bits(r.net), r.len, width) == prefix(ip, r.len, width))
        .max_by_key(|r| r.len)
        // Both tables start with a range of length 0, which holds every address.
        .unwrap_or(&table[0])
}

fn v4_bits(a: Ipv4Addr) -> u128 {
    u128::from(u32::from(a))
}

fn v6_bits(a: Ipv6Addr) -> u128 {
    u128::from(a)
}

/// Whether webhooks must not call `ip`: anything the registries do not mark globally
/// reachable, and any IPv6 form whose embedded IPv4 address is such.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => lookup(V4, v4, v4_bits, 32).reach != Public,
        IpAddr::V6(v6) => match lookup(V6, v6, v6_bits, 128).reach {
            Public => false,
            Internal => true,
            Embeds(offset) => {
                let embedded = (u128::from(v6) >> (96 - offset)) as u32;
                is_internal(IpAddr::V4(Ipv4Addr::from(embedded)))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_range_is_a_network_address_and_named_once() {
        fn check<A: Copy + std::fmt::Display>(table: &[Range<A>], bits: fn(A) -> u128, width: u32) {
            for (i, r) in table.iter().enumerate() {
                assert!(r.len <= width, "{}/{}", r.net, r.len);
                let host_mask = 1u128
                    .checked_shl(width - r.len)
                    .map_or(u128::MAX, |b| b - 1);
                let host_bits = bits(r.net) & host_mask;
                assert_eq!(host_bits, 0, "{}/{} has host bits set", r.net, r.len);
                let twin = table[..i]
                    .iter()
                    .any(|o| o.len == r.len && bits(o.net) == bits(r.net));
                assert!(!twin, "{}/{} ({}) is listed twice", r.net, r.len, r.name);
            }
        }
        check(V4, v4_bits, 32);
        check(V6, v6_bits, 128);
    }

    /// Each range with an address inside it and the addresses just outside it on either side,
    /// and what each must come to (true: refused).
    #[test]
    fn each_range_refuses_inside_and_only_inside() {
        #[rustfmt::skip]
        let cases: &[(&str, &[(&str, bool)])] = &[
            ("0.0.0.0/8", &[("0.0.0.0", true), ("0.255.255.255", true), ("1.0.0.0", false)]),
            ("10.0.0.0/8", &[("9.255.255.255", false), ("10.1.2.3", true), ("10.255.255.255", true), ("11.0.0.0", false)]),
            ("100.64.0.0/10", &[("100.63.255.255", false), ("100.64.0.1", true), ("100.127.255.255", true), ("100.128.0.0", false)]),
            ("127.0.0.0/8", &[("126.255.255.255", false), ("127.0.0.1", true), ("127.255.255.254", true), ("128.0.0.0", false)]),
            ("169.254.0.0/16", &[("169.253.255.255", false), ("169.254.169.254", true), ("169.255.0.0", false)]),
            ("172.16.0.0/12", &[("172.15.255.255", false), ("172.16.0.1", true), ("172.31.255.255", true), ("172.32.0.0", false)]),
            ("192.0.0.0/24", &[("191.255.255.255", false), ("192.0.0.8", true), ("192.0.0.170", true), ("192.0.1.0", false)]),
            ("192.0.2.0/24", &[("192.0.1.255", false), ("192.0.2.1", true), ("192.0.3.0", false)]),
            ("192.88.99.0/24", &[("192.88.98.255", false), ("192.88.99.1", true), ("192.88.100.0", false)]),
            ("192.168.0.0/16", &[("192.167.255.255", false), ("192.168.1.1", true), ("192.169.0.0", false)]),
            ("198.18.0.0/15", &[("198.17.255.255", false), ("198.18.0.1", true), ("198.19.255.255", true), ("198.20.0.0", false)]),
            ("198.51.100.0/24", &[("198.51.99.255", false), ("198.51.100.7", true), ("198.51.101.0", false)]),
            ("203.0.113.0/24", &[("203.0.112.255", false), ("203.0.113.9", true), ("203.0.114.0", false)]),
            ("224.0.0.0/4", &[("223.255.255.255", false), ("224.0.0.1", true), ("239.255.255.255", true)]),
            ("240.0.0.0/4", &[("240.0.0.1", true), ("255.255.255.254", true), ("255.255.255.255", true)]),
            ("the Internet", &[("8.8.8.8", false), ("93.184.216.34", false), ("1.1.1.1", false)]),
            ("::/128 and ::1/128", &[("::", true), ("::1", true), ("::2", true)]),
            ("::/96", &[("::127.0.0.1", true), ("::8.8.8.8", true), ("::1:0:0", true)]),
            ("::ffff:0:0/96", &[("::ffff:127.0.0.1", true), ("::ffff:169.254.169.254", true), ("::ffff:8.8.8.8", false), ("::fffe:808:808", true), ("::1:0:0:0", true)]),
            ("64:ff9b::/96", &[("64:ff9b::a9fe:a9fe", true), ("64:ff9b::127.0.0.1", true), ("64:ff9b::10.0.0.1", true), ("64:ff9b::8.8.8.8", false), ("64:ff9b::1:0:0", true), ("64:ff9a:ffff:ffff:ffff:ffff:ffff:ffff", true)]),
            ("64:ff9b:1::/48", &[("64:ff9b:1::8.8.8.8", true), ("64:ff9b:1:ffff::1", true), ("64:ff9b:2::808:808", true)]),
            ("100::/64 and 100:0:0:1::/64", &[("100::1", true), ("100:0:0:1::1", true), ("100:0:0:2::1", true)]),
            ("2001::/23", &[("2001::1", true), ("2001:0:4136:e378:8000:63bf:3fff:fdd2", true), ("2001:2::1", true), ("2001:1ff:ffff::1", true), ("2001:200::1", false), ("2000:ffff:ffff::1", false)]),
            ("2001:db8::/32", &[("2001:db7:ffff::1", false), ("2001:db8::1", true), ("2001:db9::", false)]),
            ("2002::/16", &[("2002:7f00:1::1", true), ("2002:a9fe:a9fe::", true), ("2002:c0a8:101::1", true), ("2002:808:808::1", false), ("2001:ffff::1", false), ("2003::1", false)]),
            ("3fff::/20", &[("3ffe:ffff::1", false), ("3fff::1", true), ("3fff:fff::1", true), ("3fff:1000::1", false)]),
            ("5f00::/16", &[("5f00::1", true), ("5eff::1", true), ("4000::1", true)]),
            ("fc00::/7", &[("fbff::1", true), ("fc00::1", true), ("fd12:3456::1", true)]),
            ("fe80::/10", &[("fe80::1", true), ("febf::1", true), ("fec0::1", true)]),
            ("ff00::/8", &[("ff02::1", true), ("ffff::1", true)]),
            ("2000::/3", &[("2606:4700::1111", false), ("2a00:1450::1", false), ("3ffe::1", false), ("1fff:ffff::1", true), ("4000::", true)]),
        ];
        for (range, examples) in cases {
            for (addr, refused) in *examples {
                let ip: IpAddr = addr.parse().unwrap_or_else(|_| panic!("{addr}"));
                assert_eq!(is_internal(ip), *refused, "{addr} (around {range})");
            }
        }
    }

    #[test]
    fn an_embedded_address_is_judged_by_the_ipv4_table() {
        for (v4, refused) in [
            ("127.0.0.1", true),
            ("169.254.169.254", true),
            ("198.18.0.1", true),
            ("8.8.8.8", false),
        ] {
            let v4: Ipv4Addr = v4.parse().unwrap();
            let [a, b, c, d] = v4.octets();
            let (hi, lo) = (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
            for form in [
                Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, hi, lo),
                Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, hi, lo),
                Ipv6Addr::new(0x2002, hi, lo, 0, 0, 0, 0, 1),
            ] {
                assert_eq!(
                    is_internal(IpAddr::V6(form)),
                    refused,
                    "{form} carries {v4}"
                );
            }
        }
    }
}
