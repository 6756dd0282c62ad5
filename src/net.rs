//! IPv4 networks in CIDR form (`a.b.c.d/n`): the scenario's cluster ranges, the Podman
//! driver's host networks and the Vagrant driver's private network all use this one type.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network: an address whose host bits are all zero, and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Net {
    network: Ipv4Addr,
    prefix: u8,
}

/// Why a text is not an IPv4 network; each message quotes the offending part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("'{0}' is not a CIDR (expected a.b.c.d/n)")]
    NotCidr(String),
    #[error("'{0}' is not an IPv4 address")]
    Address(String),
    #[error("'{0}' is not a prefix length (0-32)")]
    Prefix(String),
    #[error("'{0}' has host bits set")]
    HostBits(String),
}

impl Ipv4Net {
    /// `network/prefix`, or `None` when the prefix exceeds 32 or `network` has host bits
    /// set. A `const fn`, so fixed networks can be constants.
    pub const fn new(network: Ipv4Addr, prefix: u8) -> Option<Ipv4Net> {
        if prefix > 32 || network.to_bits() & !mask(prefix) != 0 {
            return None;
        }
        Some(Ipv4Net { network, prefix })
    }

    /// The network of `prefix` bits that `address` lies in (host bits cleared), e.g. a
    /// route's destination; `None` when the prefix exceeds 32.
    pub const fn containing(address: Ipv4Addr, prefix: u8) -> Option<Ipv4Net> {
        if prefix > 32 {
            return None;
        }
        Some(Ipv4Net {
            network: Ipv4Addr::from_bits(address.to_bits() & mask(prefix)),
            prefix,
        })
    }

    /// The network address (all host bits zero).
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The last address of the network (all host bits one).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from_bits(self.network.to_bits() | !mask(self.prefix))
    }

    pub fn contains(&self, address: Ipv4Addr) -> bool {
        address.to_bits() & mask(self.prefix) == self.network.to_bits()
    }

    /// Whether the two networks share any address (one then contains the other).
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        let shorter = mask(self.prefix.min(other.prefix));
        self.network.to_bits() & shorter == other.network.to_bits() & shorter
    }

    /// The `n`-th address counted from the network address (`nth(1)` is the first usable
    /// one, e.g. the gateway or the `kubernetes` Service IP); `None` past the broadcast address.
    pub fn nth(&self, n: u32) -> Option<Ipv4Addr> {
        let size = self.size();
        (u64::from(n) < size).then(|| Ipv4Addr::from_bits(self.network.to_bits() + n))
    }

    /// The `index`-th network of `prefix` bits inside this one (`subnet(24, 3)` of
    /// 172.30.0.0/16 is 172.30.3.0/24); `None` when `prefix` is shorter than this network's,
    /// longer than 32, or `index` is past the last one.
    pub fn subnet(&self, prefix: u8, index: u32) -> Option<Ipv4Net> {
        if prefix < self.prefix || prefix > 32 {
            return None;
        }
        let count = 1u64 << (prefix - self.prefix);
        if u64::from(index) >= count {
            return None;
        }
        let step = 1u64 << (32 - prefix);
        let offset = u32::try_from(u64::from(index) * step).ok()?;
        Some(Ipv4Net {
            network: Ipv4Addr::from_bits(self.network.to_bits() + offset),
            prefix,
        })
    }

    /// Number of addresses, network and broadcast included (2^32 for /0, hence u64).
    fn size(&self) -> u64 {
        1u64 << (32 - self.prefix)
    }
}

/// The netmask of a prefix length as an integer (`0` for /0, whose shift would overflow).
const fn mask(prefix: u8) -> u32 {
    match u32::MAX.checked_shl(32 - prefix as u32) {
        Some(mask) => mask,
        None => 0,
    }
}

impl FromStr for Ipv4Net {
    type Err = NetError;

    /// `a.b.c.d/n` with the host bits of `a.b.c.d` zero.
    fn from_str(s: &str) -> Result<Ipv4Net, NetError> {
        let (address, prefix) = s
            .split_once('/')
            .ok_or_else(|| NetError::NotCidr(s.to_string()))?;
        let network: Ipv4Addr = address
            .parse()
            .map_err(|_| NetError::Address(address.to_string()))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| NetError::Prefix(prefix.to_string()))?;
        Ipv4Net::new(network, prefix).ok_or_else(|| NetError::HostBits(s.to_string()))
    }
}

/// Scenario files hold networks as `a.b.c.d/n` strings; a bad one is a parse error located
/// at its line and column.
impl<'de> serde::Deserialize<'de> for Ipv4Net {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Ipv4Net, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Rendered as `a.b.c.d/n` (templates, state files).
impl serde::Serialize for Ipv4Net {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("valid CIDR")
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("valid address")
    }

    #[test]
    fn parse_accepts_networks_and_names_what_is_wrong() {
        assert_eq!(net("10.3.0.0/24").network(), ip("10.3.0.0"));
        assert_eq!(net("10.3.0.0/24").prefix(), 24);
        assert_eq!(net("0.0.0.0/0").prefix(), 0);
        assert_eq!(net("10.2.0.1/32").network(), ip("10.2.0.1"));
        let err = |s: &str| s.parse::<Ipv4Net>().unwrap_err().to_string();
        assert_eq!(
            err("10.3.0.0"),
            "'10.3.0.0' is not a CIDR (expected a.b.c.d/n)"
        );
        assert_eq!(err("10.3.0/24"), "'10.3.0' is not an IPv4 address");
        assert_eq!(err("10.3.0.0/33"), "'33' is not a prefix length (0-32)");
        assert_eq!(err("10.3.0.0/x"), "'x' is not a prefix length (0-32)");
        assert_eq!(err("10.2.0.1/16"), "'10.2.0.1/16' has host bits set");
        assert_eq!(
            "172.30.9.77/24".parse::<Ipv4Net>(),
            Err(NetError::HostBits("172.30.9.77/24".into()))
        );
    }

    #[test]
    fn new_and_containing_differ_on_host_bits() {
        assert_eq!(Ipv4Net::new(ip("172.30.9.77"), 24), None);
        assert_eq!(Ipv4Net::new(ip("172.30.9.0"), 33), None);
        assert_eq!(
            Ipv4Net::new(ip("172.30.9.0"), 24),
            Some(net("172.30.9.0/24"))
        );
        let around = Ipv4Net::containing(ip("172.30.9.77"), 24).unwrap();
        assert_eq!(around.to_string(), "172.30.9.0/24");
        assert_eq!(
            Ipv4Net::containing(ip("1.2.3.4"), 0),
            Some(net("0.0.0.0/0"))
        );
        assert_eq!(Ipv4Net::containing(ip("1.2.3.4"), 33), None);
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "10.3.0.0/24",
            "0.0.0.0/0",
            "192.168.1.7/32",
            "172.16.0.0/12",
        ] {
            assert_eq!(net(s).to_string(), s);
        }
    }

    #[test]
    fn contains_checks_the_prefix_bits() {
        let n = net("10.3.0.0/24");
        assert!(n.contains(ip("10.3.0.0")));
        assert!(n.contains(ip("10.3.0.10")));
        assert!(n.contains(ip("10.3.0.255")));
        assert!(!n.contains(ip("10.3.1.10")));
        assert!(net("0.0.0.0/0").contains(ip("255.255.255.255")));
        assert!(net("10.2.0.1/32").contains(ip("10.2.0.1")));
        assert!(!net("10.2.0.1/32").contains(ip("10.2.0.2")));
    }

    #[test]
    fn overlap_is_symmetric_and_exact() {
        assert!(net("172.30.0.0/16").overlaps(&net("172.30.9.0/24")));
        assert!(net("172.30.9.0/24").overlaps(&net("172.30.0.0/16")));
        assert!(net("172.30.6.0/23").overlaps(&net("172.30.7.0/24")));
        assert!(!net("172.30.9.0/24").overlaps(&net("172.30.10.0/24")));
        assert!(!net("172.30.6.0/23").overlaps(&net("172.30.8.0/24")));
        assert!(net("0.0.0.0/0").overlaps(&net("10.0.0.0/8")));
    }

    #[test]
    fn nth_counts_from_the_network_address_and_stays_inside() {
        let n = net("10.3.0.0/24");
        assert_eq!(n.nth(0), Some(ip("10.3.0.0")));
        assert_eq!(n.nth(1), Some(ip("10.3.0.1")));
        assert_eq!(n.nth(255), Some(ip("10.3.0.255")));
        assert_eq!(n.nth(256), None);
        assert_eq!(n.broadcast(), ip("10.3.0.255"));
        assert_eq!(net("172.31.0.0/16").nth(255), Some(ip("172.31.0.255")));
        assert_eq!(net("172.31.0.0/16").nth(256), Some(ip("172.31.1.0")));
        assert_eq!(net("10.2.0.1/32").nth(0), Some(ip("10.2.0.1")));
        assert_eq!(net("10.2.0.1/32").nth(1), None);
        assert_eq!(net("0.0.0.0/0").nth(u32::MAX), Some(ip("255.255.255.255")));
    }

    #[test]
    fn subnet_numbers_the_smaller_networks_inside() {
        let pool = net("172.30.0.0/16");
        assert_eq!(pool.subnet(24, 0), Some(net("172.30.0.0/24")));
        assert_eq!(pool.subnet(24, 3), Some(net("172.30.3.0/24")));
        assert_eq!(pool.subnet(24, 255), Some(net("172.30.255.0/24")));
        assert_eq!(pool.subnet(24, 256), None);
        assert_eq!(pool.subnet(16, 0), Some(pool));
        assert_eq!(pool.subnet(16, 1), None);
        assert_eq!(pool.subnet(15, 0), None, "larger than the pool");
        assert_eq!(pool.subnet(33, 0), None);
        assert_eq!(pool.subnet(32, 65535), Some(net("172.30.255.255/32")));
        assert_eq!(
            net("0.0.0.0/0").subnet(1, 1),
            Some(net("128.0.0.0/1")),
            "the widest network splits without overflow"
        );
    }
}
