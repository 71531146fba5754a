//! Ports, port sets and IP protocols as written in `acls` (`proto`, `dst` ports) and
//! `grants` (`ip`).
use std::fmt;

/// An inclusive range of ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub const ALL: PortRange = PortRange {
        first: 0,
        last: u16::MAX,
    };

    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == PortRange::ALL {
            write!(f, "*")
        } else if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// A set of ports as sorted, disjoint, non-adjacent ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PortSet {
    ranges: Vec<PortRange>,
}

impl PortSet {
    pub fn all() -> PortSet {
        PortSet {
            ranges: vec![PortRange::ALL],
        }
    }

    pub fn from_ranges(ranges: impl IntoIterator<Item = PortRange>) -> PortSet {
        let mut sorted: Vec<PortRange> = ranges.into_iter().collect();
        sorted.sort();
        let mut merged: Vec<PortRange> = Vec::with_capacity(sorted.len());
        for r in sorted {
            match merged.last_mut() {
                Some(last) if u32::from(r.first) <= u32::from(last.last) + 1 => {
                    last.last = last.last.max(r.last);
                }
                _ => merged.push(r),
            }
        }
        PortSet { ranges: merged }
    }

    pub fn ranges(&self) -> &[PortRange] {
        &self.ranges
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn is_all(&self) -> bool {
        self.ranges == [PortRange::ALL]
    }

    pub fn contains(&self, port: u16) -> bool {
        self.ranges.iter().any(|r| r.contains(port))
    }

    pub fn union(&self, other: &PortSet) -> PortSet {
        PortSet::from_ranges(self.ranges.iter().chain(&other.ranges).copied())
    }

    pub fn difference(&self, other: &PortSet) -> PortSet {
        let mut out = self.ranges.clone();
        for cut in &other.ranges {
            out = out.into_iter().flat_map(|r| subtract(r, *cut)).collect();
        }
        PortSet::from_ranges(out)
    }
}

impl fmt::Display for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.ranges.iter().map(ToString::to_string).collect();
        write!(f, "{}", parts.join(","))
    }
}

fn subtract(r: PortRange, cut: PortRange) -> Vec<PortRange> {
    if cut.last < r.first || cut.first > r.last {
        return vec![r];
    }
    let mut out = Vec::new();
    if cut.first > r.first {
        out.push(PortRange {
            first: r.first,
            last: cut.first - 1,
        });
    }
    if cut.last < r.last {
        out.push(PortRange {
            first: cut.last + 1,
            last: r.last,
        });
    }
    out
}

/// Parses a port list: `*`, `22`, `22,80,443`, `8000-8999`, or a comma mix of those.
pub fn parse_ports(text: &str) -> Result<PortSet, String> {
    if text == "*" {
        return Ok(PortSet::all());
    }
    let mut ranges = Vec::new();
    for item in text.split(',') {
        let range = match item.split_once('-') {
            Some((a, b)) => {
                let range = PortRange {
                    first: parse_port_number(a, text)?,
                    last: parse_port_number(b, text)?,
                };
                if range.first > range.last {
                    return Err(format!(
                        "port range {item:?} is inverted (first port above last)"
                    ));
                }
                range
            }
            None => {
                let port = parse_port_number(item, text)?;
                if port == 0 {
                    return Err("port 0 is not a valid port; use \"*\" for all ports".into());
                }
                PortRange {
                    first: port,
                    last: port,
                }
            }
        };
        ranges.push(range);
    }
    Ok(PortSet::from_ranges(ranges))
}

fn parse_port_number(text: &str, whole: &str) -> Result<u16, String> {
    let digits_only = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits_only {
        return Err(format!(
            "{whole:?} is not a valid port list (expected \"*\", a port, \"first-last\", or a comma-separated list)"
        ));
    }
    text.parse::<u16>()
        .map_err(|_| format!("port {text} in {whole:?} is out of range (0-65535)"))
}

/// An IP protocol number (IANA), e.g. 6 for TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Proto(pub u8);

/// Protocol names accepted in `proto` and grant `ip` entries, with their IANA numbers.
const PROTO_NAMES: &[(&str, u8)] = &[
    ("icmp", 1),
    ("igmp", 2),
    ("ipv4", 4),
    ("ip-in-ip", 4),
    ("tcp", 6),
    ("egp", 8),
    ("igp", 9),
    ("udp", 17),
    ("gre", 47),
    ("esp", 50),
    ("ah", 51),
    ("ipv6-icmp", 58),
    ("sctp", 132),
];

impl Proto {
    pub const ICMP: Proto = Proto(1);
    pub const TCP: Proto = Proto(6);
    pub const UDP: Proto = Proto(17);
    pub const ICMPV6: Proto = Proto(58);
    pub const SCTP: Proto = Proto(132);

    /// Parses a protocol name (case-insensitive) or a number 1-255 without leading zeros.
    pub fn parse(text: &str) -> Result<Proto, String> {
        let lower = text.to_ascii_lowercase();
        if let Some((_, n)) = PROTO_NAMES.iter().find(|(name, _)| *name == lower) {
            return Ok(Proto(*n));
        }
        let numeric = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
        if numeric && !text.starts_with('0') {
            if let Ok(n) = text.parse::<u8>() {
                return Ok(Proto(n));
            }
        }
        Err(format!(
            "unknown protocol {text:?} (use a name like tcp, udp, icmp, or a number 1-255)"
        ))
    }

    /// TCP, UDP and SCTP have ports; for every other protocol only "all ports" is meaningful.
    pub fn has_ports(self) -> bool {
        matches!(self, Proto::TCP | Proto::UDP | Proto::SCTP)
    }

    pub fn name(self) -> Option<&'static str> {
        PROTO_NAMES
            .iter()
            .find(|(_, n)| *n == self.0)
            .map(|(name, _)| *name)
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}"),
            None => write!(f, "{}", self.0),
        }
    }
}

/// A set of IP protocol numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ProtoSet([u64; 4]);

impl ProtoSet {
    /// What a rule without `proto` covers: TCP, UDP, ICMP and ICMPv6 (as Tailscale compiles it).
    pub fn default_set() -> ProtoSet {
        ProtoSet::of(&[Proto::TCP, Proto::UDP, Proto::ICMP, Proto::ICMPV6])
    }

    pub fn all() -> ProtoSet {
        ProtoSet([u64::MAX; 4])
    }

    pub fn of(protos: &[Proto]) -> ProtoSet {
        let mut set = ProtoSet::default();
        for p in protos {
            set.0[usize::from(p.0 / 64)] |= 1 << (p.0 % 64);
        }
        set
    }

    pub fn contains(&self, p: Proto) -> bool {
        self.0[usize::from(p.0 / 64)] & (1 << (p.0 % 64)) != 0
    }

    pub fn is_all(&self) -> bool {
        *self == ProtoSet::all()
    }

    pub fn iter(&self) -> impl Iterator<Item = Proto> + '_ {
        (0..=u8::MAX).map(Proto).filter(|p| self.contains(*p))
    }

    /// True when at least one member protocol has ports (so specific ports make sense).
    pub fn any_with_ports(&self) -> bool {
        self.iter().any(Proto::has_ports)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(first: u16, last: u16) -> PortRange {
        PortRange { first, last }
    }

    #[test]
    fn parses_port_lists() {
        assert!(parse_ports("*").unwrap().is_all());
        assert_eq!(parse_ports("22").unwrap().ranges(), [r(22, 22)]);
        assert_eq!(
            parse_ports("443,22,80").unwrap().ranges(),
            [r(22, 22), r(80, 80), r(443, 443)]
        );
        assert_eq!(
            parse_ports("8000-8999,9000").unwrap().ranges(),
            [r(8000, 9000)]
        );
        assert!(parse_ports("0-65535").unwrap().is_all());
    }

    #[test]
    fn rejects_malformed_ports() {
        for bad in [
            "", "x", "22,", "-1", "1-", "80-22", "65536", "0", " 22", "22 ", "+22", "2*",
        ] {
            assert!(parse_ports(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_ports("80-22").unwrap_err().contains("inverted"));
        assert!(parse_ports("70000").unwrap_err().contains("out of range"));
    }

    #[test]
    fn port_set_arithmetic() {
        let all = PortSet::all();
        let ssh = parse_ports("22").unwrap();
        let rest = all.difference(&ssh);
        assert_eq!(rest.ranges(), [r(0, 21), r(23, 65535)]);
        assert!(rest.union(&ssh).is_all());
        assert!(ssh.difference(&all).is_empty());
        assert_eq!(rest.to_string(), "0-21,23-65535");
    }

    #[test]
    fn parses_protocols() {
        assert_eq!(Proto::parse("tcp").unwrap(), Proto::TCP);
        assert_eq!(Proto::parse("UDP").unwrap(), Proto::UDP);
        assert_eq!(Proto::parse("6").unwrap(), Proto::TCP);
        assert_eq!(Proto::parse("ipv6-icmp").unwrap(), Proto::ICMPV6);
        assert_eq!(Proto::parse("200").unwrap(), Proto(200));
        for bad in ["", "*", "0", "06", "256", "tcp ", "http"] {
            assert!(Proto::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(Proto(6).to_string(), "tcp");
        assert_eq!(Proto(200).to_string(), "200");
    }

    #[test]
    fn proto_sets() {
        let d = ProtoSet::default_set();
        assert!(d.contains(Proto::TCP) && d.contains(Proto::UDP) && d.contains(Proto::ICMP));
        assert!(!d.contains(Proto::SCTP));
        assert_eq!(ProtoSet::all().iter().count(), 256);
        assert!(!ProtoSet::of(&[Proto::ICMP]).any_with_ports());
        assert!(ProtoSet::of(&[Proto::SCTP]).any_with_ports());
    }
}
