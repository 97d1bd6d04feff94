//! Which addresses the `http` kind may connect to.
//!
//! A job names a URL; without this check it could make the node call its own admin
//! ports, the cloud metadata service or anything else on the internal network and read
//! the answer back from `jobs show`. Every address a connection would use is classified
//! here: the literal IP of a URL before the request is made, and every address a host
//! name resolves to by the client's resolver (see `resolver.rs`), so what is checked is
//! what is connected to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IP network (`10.0.0.0/8`), or one address (a `/32` or `/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Self {
        Self {
            addr: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            prefix,
        }
    }

    const fn v6(segments: [u16; 8], prefix: u8) -> Self {
        let [a, b, c, d, e, f, g, h] = segments;
        Self {
            addr: IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)),
            prefix,
        }
    }

    /// Parses `ADDR/PREFIX` or a bare address. `None` when it is neither.
    pub fn parse(s: &str) -> Option<Self> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return None;
        }
        // `::ffff:10.0.0.0/104` is how some write `10.0.0.0/8`: connections are judged
        // by the IPv4 address, so the entry is too.
        if let IpAddr::V6(v6) = addr
            && prefix >= 96
            && MAPPED.contains(addr)
        {
            return Some(Self {
                addr: IpAddr::V4(Ipv4Addr::from(u128::from(v6) as u32)),
                prefix: prefix - 96,
            });
        }
        Some(Self { addr, prefix })
    }

    /// Whether the two networks share an address.
    pub fn overlaps(&self, other: &Network) -> bool {
        let prefix = self.prefix.min(other.prefix);
        match (self.addr, other.addr) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                prefix_eq(u32::from(a).into(), u32::from(b).into(), prefix, 32)
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => prefix_eq(u128::from(a), u128::from(b), prefix, 128),
            _ => false,
        }
    }

    /// Whether `ip` lies in this network (IPv4 only in IPv4 networks, and so on).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(u32::from(net).into(), u32::from(ip).into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(u128::from(net), u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, prefix: u8, bits: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = u32::from(bits - prefix);
    (a >> shift) == (b >> shift)
}

/// IPv4 ranges no job may reach unless opened, and what they are.
const REFUSED_V4: &[(Network, &str)] = &[
    (Network::v4(0, 0, 0, 0, 8), "unspecified (\"this network\")"),
    (Network::v4(10, 0, 0, 0, 8), "private"),
    (Network::v4(100, 64, 0, 0, 10), "shared (carrier-grade NAT)"),
    (Network::v4(127, 0, 0, 0, 8), "loopback"),
    (
        Network::v4(169, 254, 0, 0, 16),
        "link-local (cloud metadata)",
    ),
    (Network::v4(172, 16, 0, 0, 12), "private"),
    (Network::v4(192, 0, 0, 0, 24), "IETF protocol assignment"),
    (Network::v4(192, 0, 2, 0, 24), "documentation"),
    (Network::v4(192, 88, 99, 0, 24), "6to4 relay"),
    (Network::v4(192, 168, 0, 0, 16), "private"),
    (Network::v4(198, 18, 0, 0, 15), "benchmarking"),
    (Network::v4(198, 51, 100, 0, 24), "documentation"),
    (Network::v4(203, 0, 113, 0, 24), "documentation"),
    (Network::v4(224, 0, 0, 0, 4), "multicast"),
    (Network::v4(255, 255, 255, 255, 32), "broadcast"),
    (Network::v4(240, 0, 0, 0, 4), "reserved"),
];

/// IPv6 ranges refused outright. Ranges that embed an IPv4 address (mapped, NAT64,
/// 6to4) are judged by that address instead, in [`classify`].
const REFUSED_V6: &[(Network, &str)] = &[
    (Network::v6([0, 0, 0, 0, 0, 0, 0, 0], 128), "unspecified"),
    (Network::v6([0, 0, 0, 0, 0, 0, 0, 1], 128), "loopback"),
    (
        Network::v6([0, 0, 0, 0, 0, 0, 0, 0], 96),
        "IPv4-compatible (deprecated)",
    ),
    (
        Network::v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
        "NAT64 local-use",
    ),
    (
        Network::v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64),
        "discard-only",
    ),
    (
        Network::v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
        "documentation",
    ),
    (
        Network::v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32),
        "Teredo tunnel",
    ),
    (
        Network::v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),
        "documentation",
    ),
    (
        Network::v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
        "unique-local (cloud metadata)",
    ),
    (Network::v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), "link-local"),
    (Network::v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10), "site-local"),
    (Network::v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), "multicast"),
];

const MAPPED: Network = Network::v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96);
const NAT64: Network = Network::v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96);
const SIX_TO_FOUR: Network = Network::v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16);

/// The IPv4 address an IPv6 address stands for, when it embeds one that a connection
/// would end up at: IPv4-mapped (`::ffff:a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) and 6to4
/// (`2002:AABB:CCDD::`).
pub fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    let v6 = IpAddr::V6(ip);
    if MAPPED.contains(v6) || NAT64.contains(v6) {
        Some(Ipv4Addr::from(bits as u32))
    } else if SIX_TO_FOUR.contains(v6) {
        Some(Ipv4Addr::from((bits >> 80) as u32))
    } else {
        None
    }
}

/// Why `ip` is refused by default (`"loopback"`, `"private"` ...), or `None` for an
/// ordinary public address.
pub fn classify(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => REFUSED_V4
            .iter()
            .find(|(n, _)| n.contains(IpAddr::V4(v4)))
            .map(|(_, what)| *what),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => classify(IpAddr::V4(v4)),
            None => REFUSED_V6
                .iter()
                .find(|(n, _)| n.contains(ip))
                .map(|(_, what)| *what),
        },
    }
}

/// `http.allow_private`, parsed: the internal targets an operator opened up. The config
/// holds it parsed (each entry is checked as the file is read, so a bad one is refused
/// with its key and index) and writes it back as the entries given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    entries: Vec<String>,
    networks: Vec<Network>,
    hosts: Vec<String>,
}

/// One `allow_private` entry, parsed.
#[derive(Debug, Clone)]
enum Opened {
    Network(Network),
    Host(String),
}

impl Opened {
    fn parse(entry: &str) -> Result<Self, String> {
        let trimmed = entry.trim();
        if let Some(net) = Network::parse(trimmed) {
            Ok(Self::Network(net))
        } else if is_host_name(trimmed) {
            Ok(Self::Host(normalize_host(trimmed)))
        } else {
            Err(format!(
                "`{entry}` is not an IP address, a network (like `10.0.0.0/8`) or a host name"
            ))
        }
    }
}

/// An address a job may not connect to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{target} is a {class} address: refused (http.allow_private opens internal targets)",
    target = match host { Some(h) => format!("`{h}` resolves to {addr}, which"), None => format!("{addr}") }
)]
pub struct AddressRefused {
    /// The host name that led to the address, if it was not a literal.
    pub host: Option<String>,
    /// The address.
    pub addr: IpAddr,
    /// What kind of address it is.
    pub class: &'static str,
}

/// A host name as compared: lower case, without the trailing dot of a fully
/// qualified name (`localhost.` is `localhost`).
pub fn normalize_host(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

impl AddressPolicy {
    /// Parses `http.allow_private`: each entry an address, a network or a host name.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let mut policy = Self::default();
        for e in entries {
            let opened =
                Opened::parse(e.as_ref()).map_err(|m| format!("http.allow_private: {m}"))?;
            policy.open(e.as_ref(), opened);
        }
        Ok(policy)
    }

    fn open(&mut self, entry: &str, opened: Opened) {
        self.entries.push(entry.to_string());
        match opened {
            Opened::Network(n) => self.networks.push(n),
            Opened::Host(h) => self.hosts.push(h),
        }
    }

    /// The entries as written.
    pub fn entries(&self) -> &[String] {
        &self.entries
    }

    /// Whether any loopback address was opened, by network. Names reserved for the local
    /// machine are refused early only when none was (the resolver still checks every
    /// address they lead to).
    pub fn opens_loopback(&self) -> bool {
        let loopback = [
            Network::v4(127, 0, 0, 0, 8),
            Network::v6([0, 0, 0, 0, 0, 0, 0, 1], 128),
        ];
        self.networks
            .iter()
            .any(|n| loopback.iter().any(|l| l.overlaps(n)))
    }

    /// Whether `host` (a name, not an address) was opened by name.
    pub fn host_opened(&self, host: &str) -> bool {
        let host = normalize_host(host);
        self.hosts.contains(&host)
    }

    /// Checks one address a connection would use. `host` is the name it was resolved
    /// from (`None` for a literal address in the URL); a name opened by
    /// `allow_private` may lead to any address.
    pub fn check(&self, host: Option<&str>, ip: IpAddr) -> Result<(), AddressRefused> {
        let Some(class) = classify(ip) else {
            return Ok(());
        };
        let embedded = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        let opened = self
            .networks
            .iter()
            .any(|n| n.contains(ip) || embedded.is_some_and(|e| n.contains(e)))
            || host.is_some_and(|h| self.host_opened(h));
        if opened {
            Ok(())
        } else {
            Err(AddressRefused {
                host: host.map(str::to_string),
                addr: ip,
                class,
            })
        }
    }
}

impl Serialize for AddressPolicy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.entries.serialize(s)
    }
}

impl<'de> Deserialize<'de> for AddressPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// One entry, parsed as it is read, so that an error names its index.
        struct Entry(String, Opened);
        impl<'de> Deserialize<'de> for Entry {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                let opened = Opened::parse(&raw).map_err(serde::de::Error::custom)?;
                Ok(Entry(raw, opened))
            }
        }
        let mut policy = Self::default();
        for Entry(raw, opened) in Vec::<Entry>::deserialize(d)? {
            policy.open(&raw, opened);
        }
        Ok(policy)
    }
}

/// A DNS name: dot-separated labels of letters, digits, `-` and `_`.
fn is_host_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        // All digits and dots would be an (odd) IPv4 spelling, not a name.
        && !s.chars().all(|c| c.is_ascii_digit() || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_classified() {
        for (addr, class) in [
            ("127.0.0.1", "loopback"),
            ("127.255.1.2", "loopback"),
            ("0.0.0.0", "unspecified (\"this network\")"),
            ("10.1.2.3", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("100.100.100.200", "shared (carrier-grade NAT)"),
            ("169.254.169.254", "link-local (cloud metadata)"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("198.51.100.7", "documentation"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "link-local (cloud metadata)"),
            ("64:ff9b::a00:1", "private"),
            ("2002:7f00:1::", "loopback"),
            ("::127.0.0.1", "IPv4-compatible (deprecated)"),
            ("fd00:ec2::254", "unique-local (cloud metadata)"),
            ("fc00::1", "unique-local (cloud metadata)"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            ("2001:db8::1", "documentation"),
        ] {
            assert_eq!(classify(ip(addr)), Some(class), "{addr}");
        }
        for public in [
            "93.184.215.14",
            "8.8.8.8",
            "172.32.0.1",
            "2606:4700::1111",
            "64:ff9b::808:808",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(classify(ip(public)), None, "{public}");
        }
    }

    #[test]
    fn networks_contain_what_they_should() {
        let n = Network::parse("10.0.0.0/8").unwrap();
        assert!(n.contains(ip("10.255.0.1")));
        assert!(!n.contains(ip("11.0.0.1")));
        assert!(!n.contains(ip("::ffff:10.0.0.1")), "families never mix");
        assert!(Network::parse("::/0").unwrap().contains(ip("fe80::1")));
        assert!(Network::parse("0.0.0.0/0").unwrap().contains(ip("1.2.3.4")));
        assert_eq!(Network::parse("127.0.0.1"), Network::parse("127.0.0.1/32"));
        assert_eq!(
            Network::parse("::ffff:10.0.0.0/104"),
            Network::parse("10.0.0.0/8")
        );
        assert!(Network::parse("10.0.0.0/33").is_none());
        let lo = Network::parse("127.0.0.0/8").unwrap();
        assert!(lo.overlaps(&Network::parse("127.0.0.2").unwrap()));
        assert!(Network::parse("0.0.0.0/0").unwrap().overlaps(&lo));
        assert!(!lo.overlaps(&Network::parse("10.0.0.0/8").unwrap()));
        assert!(Network::parse("10.0.0/8").is_none());
    }

    #[test]
    fn opt_in_by_network_or_name() {
        let p = AddressPolicy::parse(&["127.0.0.1", "10.0.0.0/8", "Internal.Example."]).unwrap();
        assert!(p.check(None, ip("127.0.0.1")).is_ok());
        assert!(p.check(None, ip("::ffff:127.0.0.1")).is_ok());
        assert!(p.check(None, ip("64:ff9b::a01:203")).is_ok());
        assert!(p.check(Some("internal.example"), ip("192.168.0.9")).is_ok());
        let e = p.check(Some("evil.example"), ip("127.0.0.2")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`evil.example` resolves to 127.0.0.2, which is a loopback address: refused \
             (http.allow_private opens internal targets)"
        );
        let e = p.check(None, ip("169.254.169.254")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "169.254.169.254 is a link-local (cloud metadata) address: refused \
             (http.allow_private opens internal targets)"
        );
        assert!(p.check(None, ip("8.8.8.8")).is_ok());
    }

    #[test]
    fn bad_entries_are_named() {
        for bad in ["10.0.0.0/40", "http://x/", "a b", "", "1.2.3"] {
            let e = AddressPolicy::parse(&[bad.to_string()]).unwrap_err();
            assert!(e.starts_with("http.allow_private: `"), "{bad}: {e}");
        }
    }
}
