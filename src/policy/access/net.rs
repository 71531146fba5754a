//! IP prefixes and sets of address ranges, the address side of selectors.
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::OnceLock;

/// An IP prefix (CIDR), stored masked. A bare address parses as a full-length prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpPrefix {
    addr: IpAddr,
    bits: u8,
}

impl IpPrefix {
    /// Builds a prefix, masking host bits; `None` if `bits` exceeds the family's length.
    pub fn new(addr: IpAddr, bits: u8) -> Option<IpPrefix> {
        let max = family_bits(addr);
        if bits > max {
            return None;
        }
        let (lo, _) = span(to_u128(addr), bits, max);
        Some(IpPrefix {
            addr: from_u128(lo, addr.is_ipv6()),
            bits,
        })
    }

    /// Parses `1.2.3.4`, `10.0.0.0/8`, `fd7a:115c:a1e0::1` or `fd7a:115c:a1e0::/48`.
    pub fn parse(text: &str) -> Result<IpPrefix, String> {
        let (addr_text, bits_text) = match text.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (text, None),
        };
        let addr = IpAddr::from_str(addr_text)
            .map_err(|_| format!("{text:?} is not an IP address or CIDR"))?;
        let bits = match bits_text {
            None => family_bits(addr),
            Some(b) => parse_bits(b, addr).ok_or_else(|| {
                format!(
                    "{text:?} has an invalid prefix length (0-{} allowed)",
                    family_bits(addr)
                )
            })?,
        };
        IpPrefix::new(addr, bits).ok_or_else(|| format!("{text:?} is not a valid CIDR"))
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn bits(&self) -> u8 {
        self.bits
    }

    /// True for a single address (/32 or /128).
    pub fn is_single(&self) -> bool {
        self.bits == family_bits(self.addr)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.range().contains(ip)
    }

    pub(crate) fn range(&self) -> AddrRange {
        let (lo, hi) = span(to_u128(self.addr), self.bits, family_bits(self.addr));
        AddrRange {
            v6: self.addr.is_ipv6(),
            lo,
            hi,
        }
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_single() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.bits)
        }
    }
}

fn parse_bits(text: &str, addr: IpAddr) -> Option<u8> {
    // Digits only: no sign, no whitespace, no leading zeros beyond "0" itself.
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if text.len() > 1 && text.starts_with('0') {
        return None;
    }
    let bits: u8 = text.parse().ok()?;
    (bits <= family_bits(addr)).then_some(bits)
}

fn family_bits(addr: IpAddr) -> u8 {
    if addr.is_ipv6() { 128 } else { 32 }
}

fn to_u128(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_u128(value: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(value))
    } else {
        // Values for the v4 family always fit in 32 bits.
        IpAddr::V4(Ipv4Addr::from(value as u32))
    }
}

/// First and last value of a prefix of `bits` in a family of `max` bits.
fn span(value: u128, bits: u8, max: u8) -> (u128, u128) {
    let host_bits = u32::from(max - bits);
    let host_mask = if host_bits == 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    };
    let lo = value & !host_mask;
    (lo, lo | host_mask)
}

/// An inclusive range of addresses in one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct AddrRange {
    pub v6: bool,
    pub lo: u128,
    pub hi: u128,
}

impl AddrRange {
    pub fn single(ip: IpAddr) -> AddrRange {
        let v = to_u128(ip);
        AddrRange {
            v6: ip.is_ipv6(),
            lo: v,
            hi: v,
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv6() == self.v6 && (self.lo..=self.hi).contains(&to_u128(ip))
    }

    pub fn first(&self) -> IpAddr {
        from_u128(self.lo, self.v6)
    }
}

impl fmt::Display for AddrRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.first())
        } else {
            write!(f, "{}-{}", self.first(), from_u128(self.hi, self.v6))
        }
    }
}

/// A set of addresses as sorted, disjoint, non-adjacent ranges (v4 before v6).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct IpSet {
    ranges: Vec<AddrRange>,
}

impl IpSet {
    pub fn from_prefix(prefix: IpPrefix) -> IpSet {
        IpSet {
            ranges: vec![prefix.range()],
        }
    }

    pub fn from_ranges(ranges: impl IntoIterator<Item = AddrRange>) -> IpSet {
        let mut set = IpSet {
            ranges: ranges.into_iter().collect(),
        };
        set.normalize();
        set
    }

    pub fn ranges(&self) -> &[AddrRange] {
        &self.ranges
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let v6 = ip.is_ipv6();
        let v = to_u128(ip);
        // Ranges are sorted by (family, lo): find the last range starting at or before v.
        let idx = self.ranges.partition_point(|r| (r.v6, r.lo) <= (v6, v));
        idx > 0 && {
            let r = self.ranges[idx - 1];
            r.v6 == v6 && v <= r.hi
        }
    }

    pub fn union(&self, other: &IpSet) -> IpSet {
        IpSet::from_ranges(self.ranges.iter().chain(&other.ranges).copied())
    }

    pub fn subtract(&self, other: &IpSet) -> IpSet {
        let mut out = Vec::new();
        for r in &self.ranges {
            let mut pieces = vec![*r];
            for cut in other.ranges.iter().filter(|c| c.v6 == r.v6) {
                pieces = pieces
                    .into_iter()
                    .flat_map(|p| subtract_range(p, *cut))
                    .collect();
            }
            out.extend(pieces);
        }
        IpSet::from_ranges(out)
    }

    /// True when every address of `other` is in `self`.
    pub fn covers(&self, other: &IpSet) -> bool {
        other.subtract(self).is_empty()
    }

    fn normalize(&mut self) {
        self.ranges.sort();
        let mut merged: Vec<AddrRange> = Vec::with_capacity(self.ranges.len());
        for r in self.ranges.drain(..) {
            match merged.last_mut() {
                Some(last) if last.v6 == r.v6 && r.lo <= last.hi.saturating_add(1) => {
                    last.hi = last.hi.max(r.hi);
                }
                _ => merged.push(r),
            }
        }
        self.ranges = merged;
    }
}

fn subtract_range(r: AddrRange, cut: AddrRange) -> Vec<AddrRange> {
    if cut.hi < r.lo || cut.lo > r.hi {
        return vec![r];
    }
    let mut out = Vec::new();
    if cut.lo > r.lo {
        out.push(AddrRange {
            hi: cut.lo - 1,
            ..r
        });
    }
    if cut.hi < r.hi {
        out.push(AddrRange {
            lo: cut.hi + 1,
            ..r
        });
    }
    out
}

fn prefix(text: &str) -> IpPrefix {
    // Only called with the literal constants below, which are valid.
    IpPrefix::parse(text).unwrap_or_else(|e| panic!("bad built-in prefix: {e}"))
}

/// The public internet as `autogroup:internet` means it: IPv4 minus private, shared
/// (CGNAT, i.e. the tailnet), loopback, link-local, multicast and reserved space, and
/// IPv6 global unicast (2000::/3) only.
pub(crate) fn internet() -> &'static IpSet {
    static SET: OnceLock<IpSet> = OnceLock::new();
    SET.get_or_init(|| {
        let all_v4 = IpSet::from_prefix(prefix("0.0.0.0/0"));
        let not_public = IpSet::from_ranges(
            [
                "0.0.0.0/8",
                "10.0.0.0/8",
                "100.64.0.0/10",
                "127.0.0.0/8",
                "169.254.0.0/16",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "224.0.0.0/4",
                "240.0.0.0/4",
            ]
            .iter()
            .map(|p| prefix(p).range()),
        );
        all_v4
            .subtract(&not_public)
            .union(&IpSet::from_prefix(prefix("2000::/3")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_addresses_and_cidrs() {
        assert_eq!(IpPrefix::parse("10.1.2.3").unwrap().to_string(), "10.1.2.3");
        assert_eq!(
            IpPrefix::parse("10.1.2.3/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            IpPrefix::parse("fd7a:115c:a1e0::1/48").unwrap().to_string(),
            "fd7a:115c:a1e0::/48"
        );
        assert_eq!(IpPrefix::parse("0.0.0.0/0").unwrap().bits(), 0);
        assert_eq!(IpPrefix::parse("::/0").unwrap().bits(), 0);
        for bad in [
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/08",
            "10.0.0/8",
            "host",
            "::/129",
        ] {
            assert!(IpPrefix::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prefix_containment() {
        let p = IpPrefix::parse("10.0.0.0/8").unwrap();
        assert!(p.contains(ip("10.255.0.1")));
        assert!(!p.contains(ip("11.0.0.1")));
        assert!(!p.contains(ip("::a00:1")));
        let all = IpPrefix::parse("::/0").unwrap();
        assert!(all.contains(ip("fd7a:115c:a1e0::1")));
        assert!(!all.contains(ip("1.2.3.4")));
    }

    #[test]
    fn set_operations() {
        let a = IpSet::from_prefix(IpPrefix::parse("10.0.0.0/8").unwrap());
        let b = IpSet::from_prefix(IpPrefix::parse("10.1.0.0/16").unwrap());
        let diff = a.subtract(&b);
        assert!(diff.contains(ip("10.0.255.255")));
        assert!(!diff.contains(ip("10.1.2.3")));
        assert!(diff.contains(ip("10.2.0.0")));
        assert!(a.covers(&b));
        assert!(!b.covers(&a));
        assert_eq!(diff.union(&b), a);
    }

    #[test]
    fn internet_excludes_private_and_tailnet_space() {
        let net = internet();
        assert!(net.contains(ip("8.8.8.8")));
        assert!(net.contains(ip("2606:4700::1111")));
        for private in [
            "10.0.0.1",
            "192.168.1.1",
            "172.20.0.1",
            "100.100.100.100",
            "127.0.0.1",
        ] {
            assert!(!net.contains(ip(private)), "{private}");
        }
        assert!(!net.contains(ip("fd7a:115c:a1e0::1")));
    }
}
